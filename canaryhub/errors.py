"""Domain errors raised by services. The API turns each into an RFC 9457 problem document;
the HTML views turn them into form errors or messages. Services never return HTTP objects."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    slug = "domain-error"
    title = "Request refused"

    def __init__(self, detail: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}


class ValidationFailed(DomainError):
    status = 400
    slug = "validation-error"
    title = "Invalid input"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls(f"{name}: {message}", errors={name: [message]})


class Conflict(DomainError):
    """An illegal state transition, or a change refused because of the object's state."""

    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class PermissionRefused(DomainError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"
