"""Service errors carry their HTTP status and a message the caller can act on; one handler
turns them into RFC 9457 problem responses. ``transient`` tells the errors of a dependency
that is away for now (PostgreSQL, the broker) from defects."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from lookout.logging import sqlstate

# Seconds a client is asked to wait (``Retry-After``) before retrying a request that met an
# unavailable PostgreSQL or broker: a restart or a failover takes a few.
RETRY_AFTER_S = 5

# SQLSTATEs after which the same work may succeed if tried again: a lost race
# (serialization failure, deadlock), a server shutting down or starting up, a lost
# connection.
TRANSIENT_SQLSTATES = frozenset(
    {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006"}
)


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


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` says that PostgreSQL or the broker is unreachable, restarting or
    overloaded for now (or that a transaction lost a race), so that the same work may
    succeed if tried again: the worker retries it, the API answers 503 with Retry-After."""
    if isinstance(exc, OperationalError | KafkaError | OSError | ConnectionError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg's own errors come from the reads that bypass SQLAlchemy (lookout.db.fetch).
    if isinstance(exc, DBAPIError | asyncpg.PostgresError):
        return sqlstate(exc) in TRANSIENT_SQLSTATES
    return False
