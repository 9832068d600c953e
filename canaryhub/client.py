"""The Python client's import path for applications: `from canaryhub.client import CanaryHubClient`.

The client itself is canaryhub.cli.client (with the command line's HTTP layer, canaryhub.cli.http:
one place for authentication, retries and errors). Standard library only; the cli/ folder imports
nothing outside itself, so an application may vendor it as a package instead of installing
CanaryHub.
"""

from canaryhub.cli.client import (
    ApiError,
    AssignmentUnavailable,
    CanaryHubClient,
    CanaryHubError,
    ClientAssignment,
    Unreachable,
)

__all__ = ["ApiError", "AssignmentUnavailable", "CanaryHubClient", "CanaryHubError", "ClientAssignment", "Unreachable"]
