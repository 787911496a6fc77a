"""Every ORM model, imported once so that metadata (and Alembic) sees all tables."""

from lookout.alerts.models import Alert, AlertEvidence
from lookout.audit.models import AuditCheckpoint, AuditRecord, AuditSeal
from lookout.db import Base
from lookout.household.models import Flag, Household, Relationship, Residence
from lookout.identity.models import Person, PersonIdentifier
from lookout.ingest.models import ConsumerOffset, Event, Rejection
from lookout.orgs.models import Client, Organisation
from lookout.rules.models import RuleSet

__all__ = [
    "Alert",
    "AlertEvidence",
    "AuditCheckpoint",
    "AuditRecord",
    "AuditSeal",
    "Base",
    "Client",
    "ConsumerOffset",
    "Event",
    "Flag",
    "Household",
    "Organisation",
    "Person",
    "PersonIdentifier",
    "Rejection",
    "Relationship",
    "Residence",
    "RuleSet",
]
