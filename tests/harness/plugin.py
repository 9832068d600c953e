"""pytest plugin the harness loads (`-p tests.harness.plugin`): names the database in the report
header and refuses to run a pass on a different database than the harness meant to use."""

from __future__ import annotations

import os

import pytest

EXPECTED_ENV = "CANARYHUB_HARNESS_EXPECT_DB"


def _database() -> tuple[str, str]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    vendor = "postgresql" if db["ENGINE"].endswith("postgresql") else db["ENGINE"].rsplit(".", 1)[-1]
    if vendor == "sqlite3":
        return vendor, str(db.get("NAME"))
    return vendor, f"{db.get('HOST') or 'local socket'}:{db.get('PORT') or '-'}/{db.get('NAME')}"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    expected = os.environ.get(EXPECTED_ENV)
    if not expected:
        return
    vendor, where = _database()
    if vendor != expected:
        raise pytest.UsageError(
            f"the harness meant this pass for {expected}, but the settings give {vendor} ({where})"
        )


def pytest_report_header(config: pytest.Config) -> str:
    vendor, where = _database()
    return f"canaryhub database: {vendor} ({where})"
