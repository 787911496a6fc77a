"""Every ORM model, imported once so that metadata (and Alembic) sees all tables."""

from lookout.alerts.models import Alert, AlertEvidence
from lookout.audit.models import AuditRecord
from lookout.db import Base
from lookout.household.models import Enrolment, Flag, Household, Relationship, Residence
from lookout.identity.models import IdentityMerge, Person, PersonIdentifier, PossibleMatch
from lookout.ingest.models import ConsumerOffset, Event, Rejection
from lookout.orgs.models import Client

__all__ = [
    "Alert",
    "AlertEvidence",
    "AuditRecord",
    "Base",
    "Client",
    "ConsumerOffset",
    "Enrolment",
    "Event",
    "Flag",
    "Household",
    "IdentityMerge",
    "Person",
    "PersonIdentifier",
    "PossibleMatch",
    "Rejection",
    "Relationship",
    "Residence",
]
