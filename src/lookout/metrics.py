"""Every Prometheus metric Lookout exposes, defined once. Labels stay low-cardinality:
never a person, event or alert id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "lookout_events_consumed_total",
    "Messages consumed from the events topic, by event type, source and outcome "
    "(unknown types are 'other', unregistered sources 'unregistered').",
    ["type", "source", "outcome"],
)
REJECTIONS = Counter(
    "lookout_rejections_total",
    "Rejected messages (recorded and copied to the DLQ), by reason.",
    ["reason"],
)
DLQ_PUBLISHED = Counter("lookout_dlq_published_total", "Rejections copied to the DLQ topic.")
BATCH_SIZE = Histogram(
    "lookout_worker_batch_size",
    "Messages per worker batch.",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
BATCH_SECONDS = Histogram(
    "lookout_worker_batch_seconds",
    "Time to process and commit one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_RETRIES = Counter(
    "lookout_worker_batch_retries_total", "Batches retried after a retriable error.", ["error"]
)
BATCH_SPLITS = Counter(
    "lookout_worker_batch_splits_total",
    "Batches split in two to isolate an event that fails processing (see the "
    "processing_failed rejections).",
)
FENCED = Counter(
    "lookout_worker_fenced_total",
    "Batches refused because the stored offset moved (partition lost).",
)
RULE_EVALUATIONS = Counter(
    "lookout_rule_evaluations_total", "Rule evaluations of trigger events.", ["rule", "version"]
)
RULE_ERRORS = Counter(
    "lookout_rule_errors_total",
    "Trigger conditions that failed to evaluate on an event (treated as no match).",
    ["rule"],
)
ALERTS_RAISED = Counter(
    "lookout_alerts_raised_total",
    "Alerts raised (rule fires), by rule, rule version, severity and recipient kind.",
    ["rule", "version", "severity", "recipient_kind"],
)
ALERTS_UNDELIVERABLE = Counter(
    "lookout_alerts_undeliverable_total",
    "Alerts raised with no registered recipient organisation.",
    ["rule"],
)
ALERTS_MARKED_FOR_REVIEW = Counter(
    "lookout_alerts_marked_for_review_total",
    "Alerts kept but marked for review because a later fact undermined them: a retracted "
    "supporting event (retracted), conditions that re-evaluation found no longer hold "
    "(falsified), or a child the alert names that none of its events names now "
    "(child_unsupported).",
    ["reason"],
)
ALERT_EVIDENCE_ADDED = Counter(
    "lookout_alert_evidence_added_total",
    "Matches absorbed as evidence into an open alert.",
    ["rule"],
)
EVENT_TO_ALERT_SECONDS = Histogram(
    "lookout_event_to_alert_seconds",
    "From the trigger event's time to the alert's commit.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
NEW_CLUSTER = Counter(
    "lookout_worker_new_log_total",
    "Partitions found on a new broker cluster and read from the start.",
)
API_REQUESTS = Counter(
    "lookout_api_requests_total",
    "HTTP requests, by route, method and status.",
    ["route", "method", "status"],
)
API_LATENCY = Histogram(
    "lookout_api_request_seconds",
    "HTTP request latency, by route and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONSUMER_LAG = Gauge(
    "lookout_consumer_lag_messages",
    "Messages between the offset committed in PostgreSQL and the log end (fetch high-water mark).",
    ["topic", "partition"],
)
SOURCE_LAST_EVENT = Gauge(
    "lookout_source_last_event_timestamp_seconds",
    "When an event from each registered source was last accepted (by this worker).",
    ["source"],
)
OPEN_ALERTS = Gauge(
    "lookout_open_alerts",
    "Alerts not yet closed, by severity and age band (refreshed by the workers).",
    ["severity", "age"],
)
PARTITION_STOPPED = Gauge(
    "lookout_partition_stopped",
    "1 while a partition is stopped because its stored offset is beyond the log end.",
    ["topic", "partition"],
)
WORKER_UP = Gauge(
    "lookout_worker_assigned_partitions",
    "Partitions assigned to this worker and sought to their stored offsets.",
)
AUDIT_SEALED = Counter(
    "lookout_audit_sealed_total", "Audit records chained by the sealer (lookout sealer)."
)
AUDIT_SEALED_SEQ = Gauge("lookout_audit_sealed_seq", "The last audit record the sealer chained.")
AUDIT_CHECKPOINTS = Counter(
    "lookout_audit_checkpoints_total", "Signed audit checkpoints written by the sealer."
)
AUDIT_VERIFICATIONS = Counter(
    "lookout_audit_verifications_total", "Audit trail verifications, by result.", ["result"]
)
AUDIT_LAST_CHECKPOINT = Gauge(
    "lookout_audit_last_checkpoint_timestamp_seconds",
    "When the sealer last signed an audit checkpoint (its age is time() minus this).",
)
RETENTION_PURGED = Counter(
    "lookout_retention_purged_total",
    "Rows whose personal data the retention job purged, by kind.",
    ["kind"],
)
WEBHOOK_DELIVERIES = Counter(
    "lookout_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome (delivered, retry, failed, gone, refused).",
    ["outcome"],
)
WEBHOOK_DISABLED = Gauge(
    "lookout_webhook_subscriptions_disabled",
    "Webhook subscriptions disabled after exhausting their retries or a 410 (not deleted).",
)
WEBHOOK_RETRY_QUEUE = Gauge(
    "lookout_webhook_retry_queue_depth",
    "Webhook messages waiting for a (re)try, as the dispatcher last counted.",
)
ESCALATIONS = Counter(
    "lookout_alert_escalations_total",
    "Urgent alerts escalated for not being acknowledged in time.",
)
ALERT_STATUS_CHANGES = Counter(
    "lookout_alert_status_changes_total",
    "Alert workflow actions by recipients, by action.",
    ["action"],
)
HTTPS_INGEST = Counter(
    "lookout_https_ingest_events_total",
    "Events received over HTTPS, by outcome (accepted or the rejection reason).",
    ["outcome"],
)
IDENTITY_LINKS = Counter(
    "lookout_identity_links_total",
    "Identity decisions: merges, conflicts, demographic bands, reviews and unlinks.",
    ["outcome"],
)
