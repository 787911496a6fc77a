"""structlog set-up: JSON key-value logs with bound context, never personal data.

Log event ids, internal ids, reason codes and counts; never identifiers, names, dates of
birth, payloads, or database error text (which can quote values): use :func:`safe_error`.
Library loggers (aiokafka, uvicorn, SQLAlchemy) go through the same JSON renderer, and
those that log message contents at DEBUG are held at WARNING.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import traceback
from pathlib import Path
from typing import TextIO

import structlog

# Loggers that can print message values or SQL parameters at DEBUG/INFO.
QUIET = ("aiokafka", "sqlalchemy", "asyncpg", "kafka")


def configure_logging(level: str = "INFO", json: bool = True, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of a database error (asyncpg's own, or wrapped by the
    SQLAlchemy adapter), if any."""
    orig = getattr(exc, "orig", None)
    for holder in (exc, orig, getattr(orig, "__cause__", None)):
        code = getattr(holder, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def safe_error(exc: BaseException) -> str:
    """An exception's class name and SQLSTATE if any, never its message."""
    code = sqlstate(exc)
    return f"{type(exc).__name__}" + (f"[{code}]" if code else "")


def safe_traceback(exc: BaseException, frames: int = 6) -> list[str]:
    """Where an exception was raised: the innermost frames as ``file:line function``,
    without the message or any local value (for developers to find a defect)."""
    summary = traceback.extract_tb(exc.__traceback__)[-frames:]
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in summary]


def mask(value: str) -> str:
    """A short stable hash of an identifier, for correlating log lines without exposing it."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]
