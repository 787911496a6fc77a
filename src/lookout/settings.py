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
    # uvicorn worker processes of ``lookout api`` (one Python process uses one core at
    # most). More than one: Prometheus metrics are kept per process in a shared folder and
    # /metrics sums them (PROMETHEUS_MULTIPROC_DIR; a temporary one unless set).
    api_workers: int = Field(default=1, ge=1, le=64)
    token_secret: SecretStr = SecretStr("")
    token_ttl_s: int = 900
    page_size_max: int = 200

    # Alerts workflow.
    alert_review_days: int = 90  # every alert gets a review/expiry date this far ahead
    escalate_after_s: int = (
        3_600  # urgent + unacknowledged this long -> escalated (per-org override)
    )

    # Delivery: SSE stream and webhooks (the dispatcher process).
    stream_heartbeat_s: float = Field(default=15.0, gt=0)  # SSE comment line interval
    stream_poll_interval_s: float = Field(
        default=1.0, gt=0
    )  # how often the stream reads the outbox
    # Seconds to wait before each retry after a failed attempt (Standard Webhooks' schedule:
    # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); each wait gets +/-20% jitter. After the
    # last one fails, the subscription is disabled.
    webhook_retry_schedule_s: list[float] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Refuse webhook URLs on private, loopback or link-local addresses unless set (tests).
    webhook_allow_private: bool = False
    dispatcher_poll_interval_s: float = Field(default=1.0, gt=0)
    dispatcher_batch: int = 100
    dispatcher_metrics_port: int = 9128

    # HTTPS ingest (POST /v1/events) limits: over either answers 413.
    ingest_max_request_bytes: int = 4 * 1024 * 1024
    ingest_max_batch_events: int = 500
    # How long an API request (HTTPS ingest, a replay) waits for the broker to take its
    # events before answering 503 with Retry-After.
    api_broker_timeout_s: float = Field(default=10.0, gt=0)

    # Worker.
    worker_metrics_port: int = 9108
    worker_batch_max: int = 2_000

    # Embedded stack (local development only).
    state_dir: Path = PROJECT_ROOT / ".lookout"

    # Audit sealer (``lookout sealer``): hash chain and signed checkpoints.
    # Ed25519 signing key: base64 of the 32-byte raw private key, or PEM. Empty means the
    # key file below (created with mode 0600 on first use by the sealer).
    audit_signing_key: SecretStr = SecretStr("")
    audit_signing_key_file: Path | None = None  # default <state_dir>/audit_signing_key
    # Verifiers that do not hold the private key: base64 of the raw 32-byte public key.
    audit_verify_key: str = ""
    # Where signed checkpoints are written as files for shipping off the box.
    audit_checkpoint_dir: Path | None = None  # default <state_dir>/audit-checkpoints
    audit_seal_interval_s: float = Field(default=2.0, gt=0)
    sealer_metrics_port: int = 9107  # 0: none
    audit_checkpoint_interval_s: float = Field(default=300.0, gt=0)
    # The sealer verifies the whole trail this often (metric lookout_audit_verifications_total).
    audit_verify_interval_s: float = Field(default=900.0, gt=0)
    # How long one pass waits for transactions older than its fence to finish.
    audit_seal_wait_s: float = Field(default=10.0, gt=0)

    # Retention (docs/retention.md). Days; counted from closure, receipt or event time.
    retention_closed_nfa_alert_days: int = Field(default=730, ge=1)  # closed, no further action
    retention_rejection_raw_days: int = Field(default=30, ge=1)  # rejected bytes and detail
    retention_event_data_days: int = Field(default=730, ge=1)  # event payloads (events.data)
    retention_batch_size: int = Field(default=1_000, ge=1)

    log_level: str = "INFO"
    log_json: bool = True

    retry_backoff_max_s: float = Field(default=30.0, gt=0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once. ``.lookout/dev.env`` fills connection gaps."""
    return Settings(_env_file=DEV_ENV_FILE if DEV_ENV_FILE.exists() else None)
