"""Turn the bytes of one message into a valid event or a rejection with a reason code.

Pure: no I/O. The checks that need the database (registered source, duplicates) are the
pipeline's. The reason codes are part of the event contract (``schemas/README.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError

from lookout.identity.identifiers import invalid_identifiers
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.schemas import CloudEvent


class Reason(StrEnum):
    not_utf8 = "not_utf8"
    not_json = "not_json"
    too_large = "too_large"
    invalid_envelope = "invalid_envelope"
    unknown_type = "unknown_type"
    schema_violation = "schema_violation"
    invalid_identifier = "invalid_identifier"
    unknown_source = "unknown_source"
    future_time = "future_time"
    duplicate_conflict = "duplicate_conflict"
    # Not the event's fault as far as anyone knows: processing it failed on its own, with an
    # error that retrying does not cure (the worker isolates it from its batch).
    processing_failed = "processing_failed"


# orjson reads JSON nested up to 1,024 levels but writes at most 254: an event nested deeper
# (an extension attribute can hold anything) cannot be hashed or stored.
TOO_DEEP = "the event is nested too deeply (at most 254 levels)"


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a message was rejected. ``detail`` names fields and paths, never their values."""

    reason: Reason
    detail: str
    source: str | None = None
    event_id: str | None = None
    event_type: str | None = None


@dataclass(frozen=True, slots=True)
class Valid:
    event: CloudEvent
    content_hash: bytes


# Where each event type carries persons: (JSON pointer-ish path, role). "*" walks a list.
PERSON_PATHS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "uk.lookout.person.residence.v1": (("person", "subject"),),
    "uk.lookout.person.relationship.v1": (("person", "subject"), ("related_person", "related")),
    "uk.lookout.health.ed_attendance.v1": (("patient", "subject"),),
    "uk.lookout.health.admission.v1": (("patient", "subject"),),
    "uk.lookout.education.enrolment.v1": (("pupil", "subject"),),
    "uk.lookout.education.absence.v1": (("pupil", "subject"),),
    "uk.lookout.education.exclusion.v1": (("pupil", "subject"),),
    "uk.lookout.police.domestic_abuse_incident.v1": (
        ("persons_involved.*.person", "involved"),
        ("children_present.*", "child_present"),
        ("children_resident.*", "child_resident"),
    ),
    "uk.lookout.social_care.child_protection_plan.v1": (("child", "subject"),),
    "uk.lookout.social_care.looked_after.v1": (("child", "subject"),),
    "uk.lookout.charity.concern.v1": (("person", "subject"),),
    "uk.lookout.event.retraction.v1": (),
}


# The event types that can name a person other than their subject.
NAMES_OTHERS: frozenset[str] = frozenset(
    t for t, paths in PERSON_PATHS.items() if any(role != "subject" for _, role in paths)
)


def person_refs(
    event_type: str, data: Mapping[str, Any]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (path, role, person object) for every person the event references."""
    for path, role in PERSON_PATHS.get(event_type, ()):
        yield from _walk(data, path.split("."), path, role)


def _walk(
    node: Any, parts: list[str], path: str, role: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    if not parts:
        if isinstance(node, dict):
            yield path, role, node
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, list):
            for item in node:
                yield from _walk(item, rest, path, role)
    elif isinstance(node, dict) and head in node:
        yield from _walk(node[head], rest, path, role)


def content_hash(document: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical JSON form (sorted keys), so formatting never matters."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).digest()


def validate(
    raw: bytes | None, *, catalogue: Catalogue, max_bytes: int, now: datetime, max_skew: timedelta
) -> Valid | Invalid:
    """Every check that needs only the message itself, in a fixed order."""
    if raw is None:
        return Invalid(Reason.not_json, "the message has no value")
    if len(raw) > max_bytes:
        return Invalid(
            Reason.too_large, f"the message is {len(raw)} bytes; the limit is {max_bytes}"
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid(Reason.not_utf8, f"the message is not UTF-8 (byte {exc.start})")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Invalid(Reason.not_json, f"the message is not JSON: {exc.msg} at position {exc.pos}")
    return validate_document(document, catalogue=catalogue, now=now, max_skew=max_skew, raw=raw)


def validate_document(
    document: Any,
    *,
    catalogue: Catalogue,
    now: datetime,
    max_skew: timedelta,
    raw: bytes | None = None,
) -> Valid | Invalid:
    """The checks after decoding, shared by the worker and HTTPS ingest. ``raw``, the JSON
    the document was decoded from, only saves a walk of the document for NUL characters."""
    if not isinstance(document, dict):
        return Invalid(Reason.invalid_envelope, "the event must be a JSON object")
    # Cut to the rejection row's columns (found by the fuzz test: a 3,000-character id
    # failed the rejection's INSERT, and so its batch, on every retry).
    source = _str_or_none(document.get("source"), 255)
    event_id = _str_or_none(document.get("id"), 200)
    event_type = _str_or_none(document.get("type"), 120)
    # PostgreSQL text and jsonb cannot hold U+0000: such an event could never be stored,
    # and letting it through would fail its whole batch again and again (a poison pill).
    if (raw is None or b"\\u0000" in raw) and _has_nul(document):
        envelope = any(_has_nul(v) for k, v in document.items() if k != "data") or any(
            "\x00" in k for k in document
        )
        return Invalid(
            Reason.invalid_envelope if envelope else Reason.schema_violation,
            f"{'an attribute' if envelope else 'data'} contains the NUL character (\\u0000)",
            source,
            event_id,
            event_type,
        )
    try:
        event = CloudEvent.model_validate(document)
    except ValidationError as exc:
        return Invalid(Reason.invalid_envelope, _envelope_errors(exc), source, event_id, event_type)
    if event.type not in catalogue.types:
        return Invalid(
            Reason.unknown_type,
            f"type {event.type!r} is not in the event catalogue",
            event.source,
            event.id,
            event.type,
        )
    errors = catalogue.errors(event.type, event.data)
    if errors:
        return Invalid(
            Reason.schema_violation, "; ".join(errors), event.source, event.id, event.type
        )
    bad = [
        f"{path}.{field}"
        for path, _, person in person_refs(event.type, event.data)
        for field in invalid_identifiers(person)
    ]
    if bad:
        return Invalid(
            Reason.invalid_identifier,
            "check digit failed: " + ", ".join(bad),
            event.source,
            event.id,
            event.type,
        )
    if event.time - now > max_skew:
        return Invalid(
            Reason.future_time,
            f"time is more than {int(max_skew.total_seconds())} s ahead of the receiver's clock",
            event.source,
            event.id,
            event.type,
        )
    try:
        digest = content_hash(document)
    except orjson.JSONEncodeError:  # found by the fuzz test: it stopped the worker
        return Invalid(Reason.invalid_envelope, TOO_DEEP, event.source, event.id, event.type)
    return Valid(event, digest)


def _str_or_none(value: Any, limit: int) -> str | None:
    # Kept on the rejection row: never a NUL, which PostgreSQL text cannot hold.
    return value[:limit].replace("\x00", "\ufffd") if isinstance(value, str) else None


def _has_nul(node: Any) -> bool:
    if isinstance(node, str):
        return "\x00" in node
    if isinstance(node, dict):
        return any("\x00" in k or _has_nul(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_nul(v) for v in node)
    return False


def _envelope_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
