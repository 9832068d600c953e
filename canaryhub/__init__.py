"""CanaryHub's kernel package.

The Celery app is loaded by canaryhub.settings (every Django process reads it first), not here:
importing this package must stay free of Django and Celery, so that the command-line client
in canaryhub.cli starts on the standard library alone. `canaryhub.celery_app` still answers."""

from typing import Any

__all__ = ["celery_app"]


def __getattr__(name: str) -> Any:
    if name == "celery_app":
        # Local: loading Celery (and Django's settings) only when asked keeps `import canaryhub` light.
        from canaryhub.celery import app

        return app
    raise AttributeError(f"module 'canaryhub' has no attribute {name!r}")
