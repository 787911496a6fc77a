"""Applied rule sets: which rule versions are live, who applied them, when and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base


class RuleSet(Base):
    """One ``lookout rules apply``: the whole set of rules, each with its content and
    version. The newest row is the live set; every worker switches to it between batches."""

    __tablename__ = "rule_sets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    applied_at: Mapped[datetime] = mapped_column(server_default=func.now())
    applied_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    # [{"id": ..., "version": ..., "content": {...}}, ...] sorted by id
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
