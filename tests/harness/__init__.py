"""The test harness behind `make test`: `python -m tests.harness [--only sqlite|postgres] [pytest args]`.

It runs the suite twice, first on SQLite (the default settings), then on a real PostgreSQL
server it starts itself. `PostgresServer` is reusable by tests that need a server of their own.
"""

from tests.harness.postgres import PostgresServer, PostgresUnavailable, find_bin_dir

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir"]
