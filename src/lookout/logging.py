"""structlog set-up: JSON key-value logs with bound context, never personal data.

Log event ids, internal ids, reason codes and counts; never identifiers, names, dates of
birth, payloads, or database error text (which can quote values): use :func:`safe_error`.
"""

from __future__ import annotations

import hashlib
import logging
import sys

import structlog


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def safe_error(exc: BaseException) -> str:
    """An exception's class name and SQLSTATE if any, never its message."""
    code = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}" + (f"[{code}]" if code else "")


def mask(value: str) -> str:
    """A short stable hash of an identifier, for correlating log lines without exposing it."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]
