"""Lookout's one settings object (environment variables prefixed ``LOOKOUT_``).

Read once with :func:`get_settings`; engines and clients are built from it in the
API's lifespan or the worker's start, never at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV_ENV_FILE = PROJECT_ROOT / ".lookout" / "dev.env"


class Settings(BaseSettings):
    """Every knob Lookout has. Defaults suit the embedded local stack."""

    model_config = SettingsConfigDict(env_prefix="LOOKOUT_", extra="ignore")

    # Connections. Empty means "start the embedded one" (``lookout run``) or,
    # for the CLI, "read .lookout/dev.env written by the running stack".
    database_url: str = ""
    kafka_bootstrap_servers: str = ""
    api_url: str = "http://127.0.0.1:8000"

    # Topics and consumer group.
    events_topic: str = "lookout.events"
    dlq_topic: str = "lookout.events.dlq"
    events_partitions: int = 8
    consumer_group: str = "lookout-worker"
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    kafka_fetch_max_wait_ms: int = 50
    kafka_max_poll_records: int = 2_000

    # Ingest limits.
    max_event_bytes: int = 256 * 1024
    max_future_skew_s: int = 300

    # Rules.
    rules_dir: Path = PROJECT_ROOT / "rules"
    schemas_dir: Path = PROJECT_ROOT / "schemas"
    alerting_horizon_days: int = 30
    timezone: str = "Europe/London"

    # Identity resolution: demographic match bands, as log2 match weights (docs/identity.md).
    identity_auto_link_at: float = 32.0
    identity_possible_match_at: float = 18.0
    identity_max_candidates: int = Field(default=200, gt=0)
    # Organisations granted the identity_reviewer role (operators always have it).
    identity_reviewer_orgs: list[str] = Field(default_factory=list)
    # Practitioners may read a household as it was from this many days before an alert's
    # trigger date up to the alert's closure (or now): the longest look-back of the rules.
    household_read_window_days: int = Field(default=90, ge=0)

    # API and auth.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    token_secret: SecretStr = SecretStr("")
    token_ttl_s: int = 900
    page_size_max: int = 200

    # Worker.
    worker_metrics_port: int = 9108
    worker_batch_max: int = 2_000

    # Embedded stack (local development only).
    state_dir: Path = PROJECT_ROOT / ".lookout"

    log_level: str = "INFO"
    log_json: bool = True

    retry_backoff_max_s: float = Field(default=30.0, gt=0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once. ``.lookout/dev.env`` fills connection gaps."""
    return Settings(_env_file=DEV_ENV_FILE if DEV_ENV_FILE.exists() else None)
