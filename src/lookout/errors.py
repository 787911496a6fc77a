"""Service errors carry their HTTP status and a message the caller can act on; one handler
turns them into RFC 9457 problem responses."""

from __future__ import annotations

from typing import Any


class LookoutError(Exception):
    status: int = 400
    title: str = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotAuthenticated(LookoutError):
    status, title = 401, "Not authenticated"


class NotFound(LookoutError):
    """Also the answer for another organisation's object: its existence is not revealed."""

    status, title = 404, "Not found"


class Forbidden(LookoutError):
    status, title = 403, "Forbidden"


class Conflict(LookoutError):
    status, title = 409, "Conflict"
