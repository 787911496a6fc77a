"""Every ORM model, imported once so that metadata (and Alembic) sees all tables."""

from lookout.alerts.models import Alert, AlertEvidence, AlertNote, OrgSequence
from lookout.audit.models import AuditCheckpoint, AuditRecord, AuditSeal
from lookout.db import Base
from lookout.delivery.models import AlertEvent, Subscription, WebhookAttempt, WebhookMessage
from lookout.household.models import Enrolment, Flag, Household, Relationship, Residence
from lookout.identity.models import IdentityMerge, Person, PersonIdentifier, PossibleMatch
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
    "Enrolment",
    "Event",
    "Flag",
    "Household",
    "IdentityMerge",
    "OrgSequence",
    "Organisation",
    "Person",
    "PersonIdentifier",
    "PossibleMatch",
    "Rejection",
    "Relationship",
    "Residence",
    "RuleSet",
    "Subscription",
    "WebhookAttempt",
    "WebhookMessage",
]
