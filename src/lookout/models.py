"""Every ORM model, imported once so that metadata (and Alembic) sees all tables."""

from lookout.alerts.models import Alert, AlertEvidence, AlertNote, OrgSequence
from lookout.audit.models import AuditCheckpoint, AuditRecord, AuditSeal
from lookout.db import Base
from lookout.delivery.models import AlertEvent, Subscription, WebhookAttempt, WebhookMessage
from lookout.household.models import Flag, Household, Relationship, Residence
from lookout.identity.models import Person, PersonIdentifier
from lookout.ingest.models import ConsumerOffset, Event, Rejection
from lookout.orgs.models import Client, Organisation
from lookout.rules.models import RuleSet

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertEvidence",
    "AlertNote",
    "AuditCheckpoint",
    "AuditRecord",
    "AuditSeal",
    "Base",
    "Client",
    "ConsumerOffset",
    "Event",
    "Flag",
    "Household",
    "OrgSequence",
    "Organisation",
    "Person",
    "PersonIdentifier",
    "Rejection",
    "Relationship",
    "Residence",
    "RuleSet",
    "Subscription",
    "WebhookAttempt",
    "WebhookMessage",
]
