"""Database plumbing: the declarative base, engine and session factories.

Only the edges (an HTTP request, a worker batch) open a session and commit it;
services and repositories only ``flush()``.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import asyncpg
import orjson
from sqlalchemy import BigInteger, ColumnElement, DateTime, MetaData, any_, bindparam, event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute, Session, SessionTransaction
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


def async_url(url: str) -> str:
    """Accept ``postgresql://`` URLs and use the asyncpg driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def plain_url(url: str) -> str:
    """The libpq form of a database URL (for asyncpg connections made directly)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def json_dumps(value: Any) -> str:
    # Non-string keys become strings, as the standard library's json does.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def column_arrays(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], json: Container[str] = ()
) -> list[list[Any]]:
    """``rows`` as one list per column, in ``columns``' order: the parameters of an
    ``INSERT ... SELECT * FROM unnest($1::type[], ...)``. The ``json`` columns are passed
    as text (``json_dumps``; None stays NULL), for the statement to cast to ``jsonb``."""
    return [
        [None if r[c] is None else json_dumps(r[c]) for r in rows]
        if c in json
        else [r[c] for r in rows]
        for c in columns
    ]


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """The async engine. JSON/JSONB values are (de)serialised with orjson rather than the
    standard library (a few per cent of the worker's CPU): the driver takes and returns
    text, so the serializer returns ``str``.

    Instead of SQLAlchemy's pre-ping (for asyncpg: BEGIN, an empty statement and ROLLBACK,
    three round trips before every transaction's own, about 0.5 ms of CPU for each worker
    batch and API request), a pooled connection is checked for a closed socket as it is
    taken from the pool: a PostgreSQL that restarted or ended the session has closed it,
    and asyncpg has seen that by then. Such a connection is replaced (SQLAlchemy retries
    the checkout with a new one) before anything can use it, as the pre-ping did."""
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    engine = create_async_engine(async_url(url), **kwargs)
    event.listen(engine.sync_engine, "checkout", _closed_is_stale)
    return engine


def _closed_is_stale(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the pooled connection was closed by the server")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


_ADVISORY_LOCKS = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest($1::bigint[]) AS k ORDER BY 1) AS s"
)


async def advisory_locks(session: AsyncSession, namespace: int, ids: Iterable[int]) -> None:
    """Transaction-scoped advisory locks on ``namespace | id``, taken in key order so that
    two transactions locking overlapping sets never deadlock. Released at commit/rollback."""
    keys = sorted({namespace | i for i in ids if i > 0})
    if keys:
        await fetch(session, _ADVISORY_LOCKS, keys)


def any_of(
    column: ColumnElement[Any] | QueryableAttribute[Any],
    values: Iterable[Any],
    item_type: type[TypeEngine[Any]] = BigInteger,
) -> ColumnElement[bool]:
    """``column = ANY(:values)``, the values as one array parameter.

    ``column.in_(values)`` renders one bind parameter per value: SQLAlchemy expands and
    renders them on every execution (thousands per batch in the worker), and PostgreSQL
    sees a different statement, prepared again, for every new count. One array keeps the
    statement text, its compiled form and its prepared statement the same whatever the
    count, and means the same for non-NULL values."""
    return column == any_(bindparam(None, list(values), type_=ARRAY(item_type)))


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement (``$1``-style parameters) on the asyncpg connection of the
    session's transaction and return its rows, past SQLAlchemy's execution layer.

    For the statements every worker batch runs (and the audit insert of every request):
    through the session, a statement costs about 1 ms of CPU before PostgreSQL sees it, and
    each row several microseconds more; directly, about a tenth of that (BENCHMARKS.md,
    "Third round"). JSON values decode with the engine's codec (set on every connection by
    the dialect); JSON parameters are passed as text (``json_dumps``) and cast in the SQL.
    The statement runs in the session's transaction (the dialect begins it lazily, at the
    first statement it runs itself), or on its own in autocommit mode
    (``api.deps.commit_each_statement``). Unlike ``session.execute`` it does not flush
    pending ORM objects first. Errors are asyncpg's own, not SQLAlchemy's wrappers."""
    driver: asyncpg.Connection | None = session.info.get(_DRIVER)
    if driver is None:
        driver = await _driver(session)
    return await driver.fetch(sql, *args)


# The asyncpg connection of a session's transaction, kept in ``session.info`` from the
# first ``fetch`` until the transaction ends: finding it through the session costs about
# as much CPU as running a small statement (BENCHMARKS.md, item 22).
_DRIVER = "lookout.db.driver"


async def _driver(session: AsyncSession) -> asyncpg.Connection:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    autocommit = raw.dbapi_connection is not None and raw.dbapi_connection.autocommit
    if not driver.is_in_transaction() and not autocommit:
        await connection.exec_driver_sql("SELECT 1")
    session.info[_DRIVER] = driver
    return driver


@event.listens_for(Session, "after_transaction_end")
def _forget_driver(session: Session, transaction: SessionTransaction) -> None:
    """The session gives its connection back when its transaction ends (commit, rollback,
    close): the next ``fetch`` looks up the connection of the next transaction."""
    session.info.pop(_DRIVER, None)
