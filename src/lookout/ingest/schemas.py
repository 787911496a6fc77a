"""The event contract (v1): a CloudEvents 1.0 envelope in structured JSON mode."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

EVENT_TYPE_PATTERN = r"^uk\.lookout\.[a-z_]+\.[a-z_]+\.v[0-9]+$"


class CloudEvent(BaseModel):
    """One event as an agency publishes it. Extension attributes are allowed and ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=255)
    type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=120)
    time: AwareDatetime
    subject: str = Field(min_length=1, max_length=200)
    datacontenttype: Literal["application/json"] | None = None
    data: dict[str, Any]
