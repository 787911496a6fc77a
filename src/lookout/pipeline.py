"""The one place that states the order of the stages for a batch of messages:

validate -> registered source -> dedupe -> resolve identity -> update household graph
-> lock the households -> evaluate rules -> raise alerts -> number them and write the
delivery outbox -> audit -> rejections -> offsets

Everything runs in the caller's transaction (the worker commits once per batch), so graph
updates, alerts, rejections, audit records and the consumer's offsets land together or not
at all.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from lookout import metrics
from lookout.alerts import repository as alerts_repository
from lookout.alerts import service as alerts
from lookout.audit.actions import Action
from lookout.audit.service import WORKER, Entry, record
from lookout.household import repository as household_repository
from lookout.household import service as household
from lookout.household.snapshot import HouseholdSnapshot, age_on
from lookout.identity import repository as identity_repository
from lookout.identity.service import MatchThresholds, PersonRef, resolve
from lookout.ingest import repository as ingest
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.repository import OffsetMove, Position, StoredEvent
from lookout.ingest.validation import (
    NAMES_OTHERS,
    Invalid,
    Reason,
    Valid,
    person_refs,
    validate,
)
from lookout.rules.evaluator import (
    Candidate,
    HistoryEvent,
    NamedPerson,
    TriggerEvent,
    evaluate,
    may_trigger,
    window_counts,
)
from lookout.rules.model import Rule

RESIDENCE = household.RESIDENCE
RELATIONSHIP = household.RELATIONSHIP
RETRACTION = "uk.lookout.event.retraction.v1"
ENROLMENT = household.ENROLMENT


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed Kafka record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Counting:
    """A history window that counts an event: its rule's trigger types, its length, and
    whether it counts only the trigger's subject's own events (``scope: subject``). It
    counts the event for a trigger event at T when the event is in (T - within, T]."""

    triggers: frozenset[str]
    within: timedelta
    subject_only: bool

    def covers(self, counted_at: datetime, trigger_type: str, trigger_at: datetime) -> bool:
        """Whether an event at ``counted_at`` counts for a trigger of this type at
        ``trigger_at``."""
        return trigger_type in self.triggers and counted_at <= trigger_at < counted_at + self.within


@dataclass(frozen=True)
class PipelineConfig:
    """What a batch runs with. The derived sets below are computed once per configuration
    (a rule switch makes a new one), not per event."""

    catalogue: Catalogue
    rules: Sequence[Rule]
    group_id: str
    cluster_id: str
    max_event_bytes: int
    max_future_skew: timedelta
    alerting_horizon: timedelta
    timezone: ZoneInfo
    clock: Callable[[], datetime]
    review_after: timedelta = timedelta(days=90)
    identity: MatchThresholds = field(default_factory=MatchThresholds)

    @cached_property
    def trigger_types(self) -> frozenset[str]:
        return frozenset(t for r in self.rules for t in r.spec.trigger.types)

    @cached_property
    def history_types(self) -> frozenset[str]:
        return frozenset(t for r in self.rules for h in r.spec.history for t in h.types)

    @cached_property
    def _windows_of(self) -> Mapping[str, tuple[tuple[Rule, int], ...]]:
        """For each history event type: the (rule, window index) of every window counting it."""
        found: dict[str, list[tuple[Rule, int]]] = defaultdict(list)
        for r in self.rules:
            for index, h in enumerate(r.spec.history):
                for t in h.types:
                    found[t].append((r, index))
        return {t: tuple(w) for t, w in found.items()}

    def counting(self, type_: str, data: dict[str, Any]) -> list[Counting]:
        """The history windows that count an event of this type with this ``data`` (its
        type is theirs and their condition holds). Only the trigger events of those rules,
        within those windows after it, can change when the event arrives late."""
        return [
            Counting(
                frozenset(r.spec.trigger.types),
                timedelta(days=r.spec.history[i].within_days),
                r.spec.history[i].scope == "subject",
            )
            for r, i in self._windows_of.get(type_, ())
            if window_counts(r, i, data)
        ]

    @cached_property
    def uses_relationships(self) -> bool:
        """Whether any rule asks about relationships (only then does a late relationship
        re-evaluate its households)."""
        return any(c.member.relationship_to_subject for r in self.rules for c in r.spec.household)

    @cached_property
    def history_window(self) -> timedelta:
        return timedelta(days=max((r.max_window_days for r in self.rules), default=0))


@dataclass(frozen=True, slots=True)
class RejectionOut:
    id: uuid.UUID
    reason: Reason
    message: Message


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejections: list[RejectionOut] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    alerts: list[alerts.Raised] = field(default_factory=list)


class Fenced(Exception):
    """The stored offset of a partition moved: this worker no longer owns it. Roll back."""


@dataclass
class _Accepted:
    message: Message
    valid: Valid
    org_id: str
    pk: int = 0
    subject_person_id: int | None = None
    persons: list[int] = field(default_factory=list)
    household_id: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    retracted_by: int | None = None


def check(messages: Sequence[Message], config: PipelineConfig) -> list[Valid | Invalid]:
    """Stage 1 alone: each message's checks that need nothing but the message (no
    database). The worker runs it for the next batch while the current one waits on
    PostgreSQL."""
    now = config.clock()
    return [
        validate(
            message.value,
            catalogue=config.catalogue,
            max_bytes=config.max_event_bytes,
            now=now,
            max_skew=config.max_future_skew,
        )
        for message in messages
    ]


async def process_batch(
    session: AsyncSession,
    messages: Sequence[Message],
    config: PipelineConfig,
    positions: Mapping[tuple[str, int], Position | None],
    checked: Sequence[Valid | Invalid] | None = None,
) -> BatchResult:
    """``checked``: the messages' outcomes of ``check``, if already known (in order)."""
    result = BatchResult()
    now = config.clock()
    audit: list[Entry] = []
    rejected: list[tuple[Message, Invalid]] = []

    # 1. Validate each message on its own.
    valid: list[tuple[Message, Valid]] = []
    outcomes = check(messages, config) if checked is None else checked
    for message, outcome in zip(messages, outcomes, strict=True):
        if isinstance(outcome, Invalid):
            rejected.append((message, outcome))
        else:
            valid.append((message, outcome))

    # 2. Only registered agencies publish.
    agencies = await ingest.agencies_by_source(session, (v.event.source for _, v in valid))
    registered: list[tuple[Message, Valid]] = []
    for message, v in valid:
        if v.event.source in agencies:
            registered.append((message, v))
        else:
            rejected.append(
                (message, _invalid(v, Reason.unknown_source, "source is not a registered agency"))
            )

    # 3. Dedupe on (source, id): same content is absorbed, different content rejected.
    consumed: Counter[tuple[str, str, str]] = Counter()  # (type, source, outcome), for the metric
    earlier = await ingest.earlier(session, ((v.event.source, v.event.id) for _, v in registered))
    seen = {k: e.content_hash for k, e in earlier.items() if e.content_hash is not None}
    fresh: list[_Accepted] = []
    for message, v in registered:
        key = (v.event.source, v.event.id)
        if key in seen:
            if seen[key] == v.content_hash:
                result.duplicates += 1
                consumed[(v.event.type, v.event.source, "duplicate")] += 1
            else:
                rejected.append(
                    (
                        message,
                        _invalid(
                            v,
                            Reason.duplicate_conflict,
                            "an earlier event with this source and id has different content",
                        ),
                    )
                )
            continue
        seen[key] = v.content_hash
        fresh.append(_Accepted(message, v, agencies[v.event.source]))

    # 4. Resolve every person the events name.
    refs: list[PersonRef] = []
    owners: list[tuple[int, str]] = []
    for index, item in enumerate(fresh):
        for _, role, person in person_refs(item.valid.event.type, item.valid.event.data):
            refs.append(PersonRef(item.org_id, person))
            owners.append((index, role))
    resolution = await resolve(session, refs, config.identity)
    audit.extend(resolution.audit)
    for (index, role), person_id in zip(owners, resolution.person_ids, strict=True):
        item = fresh[index]
        item.persons.append(person_id)
        if role == "subject" and item.subject_person_id is None:
            item.subject_person_id = person_id
    await identity_repository.lock_persons(session, {p for item in fresh for p in item.persons})

    # 5. Households and the facts each event contributes to the graph.
    addresses = {
        (a["uprn"], a["la_code"])
        for item in fresh
        if isinstance(a := item.valid.event.data.get("address"), dict)
    }
    households = await household_repository.household_ids(session, addresses)
    for item in fresh:
        _extract_facts(item, households)
    for item in fresh:
        if found := earlier.get((item.valid.event.source, item.valid.event.id)):
            item.retracted_by = found.retraction
    pks = await ingest.insert_events(session, [_event_row(item) for item in fresh])
    for item, pk in zip(fresh, pks, strict=True):
        item.pk = pk
        audit.append(
            Entry(Action.event_accepted, "event", str(pk), details={"type": item.valid.event.type})
        )
        consumed[(item.valid.event.type, item.valid.event.source, "accepted")] += 1
    result.accepted = len(fresh)
    result.sources = {item.valid.event.source for item in fresh}

    # 6. Retractions: the withdrawn event stops counting; alerts it supported go to review.
    changes: list[alerts.Change] = []
    # Persons whose derived graph (residences, flags, schools) is rebuilt: subjects of graph
    # events here, and (resolution.rebuild, below) persons an identity merge moved events
    # to or from.
    rebuild = {
        i.subject_person_id
        for i in fresh
        if i.valid.event.type in household.GRAPH_TYPES and i.subject_person_id
    }
    # Persons whose relationships changed (a relationship both ends of which live in the
    # household is a fact rules can ask about).
    related = {
        i.subject_person_id
        for i in fresh
        if i.valid.event.type == RELATIONSHIP and i.retracted_by is None and i.subject_person_id
    }
    for item in fresh:
        if item.valid.event.type != RETRACTION:
            continue
        target = await ingest.retract(
            session, item.valid.event.source, item.facts["retracts"], item.pk
        )
        if target is None:
            continue  # not arrived yet: it will be stored as retracted when it does
        audit.append(
            Entry(Action.event_retracted, "event", str(target.event_pk), details={"by": item.pk})
        )
        if target.type in household.GRAPH_TYPES and target.subject_person_id:
            rebuild.add(target.subject_person_id)
        if target.type == RELATIONSHIP:
            await household_repository.remove_relationships_of_events(session, [target.event_pk])
            if target.subject_person_id:
                related.add(target.subject_person_id)
        affected = await alerts_repository.alerts_with_evidence(session, [target.event_pk])
        metrics.ALERTS_MARKED_FOR_REVIEW.labels("retracted").inc(len(affected))
        changes.extend(
            await alerts.mark_for_review(
                session, affected, "a supporting event was retracted by its publisher"
            )
        )
        audit.extend(
            Entry(
                Action.alert_marked_for_review,
                "alert",
                str(a),
                details={"retracted_event": target.event_pk},
            )
            for a in affected
        )

    # 7. The household graph.
    touched = await household.rebuild_graph(session, rebuild, identity_changed=resolution.rebuild)
    if related and config.uses_relationships:
        # A late relationship re-evaluates the households its persons lived in.
        touched.add_always(await household_repository.households_ever(session, related))
    await household_repository.add_relationships(
        session,
        [
            {
                "person_id": i.subject_person_id,
                "related_person_id": i.facts["related_person_id"],
                "kind": i.facts["relationship"],
                "valid_from": _date(i.facts.get("start_date")),
                "valid_to": _date(i.facts.get("end_date")),
                "event_id": i.pk,
            }
            for i in fresh
            if i.valid.event.type == RELATIONSHIP and i.retracted_by is None
        ],
    )

    # 8. Serialise on every household this batch changed or may evaluate, before reading
    # anything that decides what to evaluate. Of two batches that meet in one household (one
    # moves a child in, the other brings an adult's trigger event), the one that locks second
    # reads the other's commit. The persons are locked already, so their homes cannot move.
    evaluated_types = config.trigger_types | config.history_types
    concerned = {
        i.subject_person_id
        for i in fresh
        if i.subject_person_id and i.valid.event.type in evaluated_types
    }
    locked = (
        touched.households
        | {i.household_id for i in fresh if i.household_id}
        | await household_repository.households_ever(session, concerned)
    )
    await household_repository.lock_households(session, locked)

    # 9. What to evaluate: this batch's trigger events, and the trigger events (within the
    # alerting horizon) of everyone in a household whose membership or members' facts just
    # changed, dated on a day on which it changed.
    since = now - config.alerting_horizon
    to_evaluate: dict[int, StoredEvent] = {
        i.pk: StoredEvent(
            i.pk,
            i.valid.event.source,
            i.valid.event.id,
            i.valid.event.type,
            i.valid.event.time,
            i.valid.event.data,
            i.subject_person_id,
            i.household_id,
            tuple(i.persons),
        )
        for i in fresh
        if i.valid.event.type in config.trigger_types
        and i.retracted_by is None
        and i.valid.event.time >= since
    }
    for stored in await _trigger_events_in(session, config, touched, since):
        to_evaluate.setdefault(stored.pk, stored)
    for stored in await _after_late_history(session, config, fresh, since):
        to_evaluate.setdefault(stored.pk, stored)
    if to_evaluate:
        result.alerts, falsified = await _evaluate(
            session, config, list(to_evaluate.values()), locked, audit, now + config.review_after
        )
        changes.extend(falsified)

    # 10. Number the new alerts per organisation and write the delivery outbox (last of the
    # writes: it locks each recipient's counter row until commit).
    await alerts.publish(session, result.alerts, changes)

    # 11. Rejections, audit and offsets, in the same transaction.
    await _store_rejections(session, config, rejected, agencies, result, audit)
    await record(session, WORKER, audit)
    await _advance_offsets(session, messages, config, positions)
    for labels, n in consumed.items():
        metrics.EVENTS_CONSUMED.labels(*labels).inc(n)
    return result


async def reject_unprocessable(
    session: AsyncSession,
    message: Message,
    error: str,
    config: PipelineConfig,
    positions: Mapping[tuple[str, int], Position | None],
) -> BatchResult:
    """Reject one message that failed processing on its own with an error that retrying
    does not cure (``error`` names its class, never its text): a rejection with reason
    ``processing_failed``, its audit record and the offset advance, in one transaction.
    The worker copies it to the dead-letter topic like any rejection; once the cause is
    fixed, ``lookout dlq replay`` publishes it again."""
    [outcome] = check([message], config)
    detail = f"processing failed ({error}); replay it once the cause is fixed"
    invalid = (
        _invalid(outcome, Reason.processing_failed, detail)
        if isinstance(outcome, Valid)
        else Invalid(Reason.processing_failed, detail)
    )
    agencies = await ingest.agencies_by_source(session, [invalid.source] if invalid.source else [])
    result = BatchResult()
    audit: list[Entry] = []
    await _store_rejections(session, config, [(message, invalid)], agencies, result, audit)
    await record(session, WORKER, audit)
    await _advance_offsets(session, [message], config, positions)
    return result


async def _store_rejections(
    session: AsyncSession,
    config: PipelineConfig,
    rejected: Sequence[tuple[Message, Invalid]],
    agencies: Container[str],
    result: BatchResult,
    audit: list[Entry],
) -> None:
    rows = []
    for message, invalid in rejected:
        rejection_id = uuid.uuid4()
        result.rejections.append(RejectionOut(rejection_id, invalid.reason, message))
        metrics.REJECTIONS.labels(invalid.reason.value).inc()
        # Labels stay bounded: a hostile message cannot invent new types or sources.
        type_label = invalid.event_type if invalid.event_type in config.catalogue.types else "other"
        source_label = invalid.source if invalid.source in agencies else "unregistered"
        metrics.EVENTS_CONSUMED.labels(type_label, source_label, "rejected").inc()
        rows.append(
            {
                "id": rejection_id,
                "reason": invalid.reason.value,
                "detail": invalid.detail,
                "source": invalid.source,
                "event_id": invalid.event_id,
                "event_type": invalid.event_type,
                "raw": message.value,
                "kafka_key": message.key,
                "kafka_topic": message.topic,
                "kafka_partition": message.partition,
                "kafka_offset": message.offset,
            }
        )
        audit.append(
            Entry(
                Action.event_rejected, "rejection", str(rejection_id), outcome=invalid.reason.value
            )
        )
    await ingest.insert_rejections(session, rows)


async def _trigger_events_in(
    session: AsyncSession, config: PipelineConfig, touched: household.Touched, since: datetime
) -> list[StoredEvent]:
    """The trigger events (within the horizon) that can evaluate differently now that the
    ``touched`` households changed: those of everyone who ever lived in one of them (or
    did before this change: a retracted move-in), or recorded at its address (a police
    incident), whose date (in the configured time zone) is one on which that household
    changed (:func:`needs_reevaluation`)."""
    if not touched.spans:
        return []
    homes = await household_repository.homes_ever(session, touched.households)
    # A person whose residence there was retracted may live in none of them now, yet their
    # events were evaluated there (and the alerts they raised must go to review).
    left = {p for p, former in touched.former.items() if not former.isdisjoint(touched.spans)}
    found = await ingest.events_of(
        session,
        homes.keys() | left,
        config.trigger_types,
        since,
        household_ids=touched.households,
    )
    return [e for e in found if needs_reevaluation(e, touched, homes, config.timezone)]


def needs_reevaluation(
    event: StoredEvent,
    touched: household.Touched,
    homes: Mapping[int, set[int]],
    tz: ZoneInfo,
) -> bool:
    """Pure: whether a stored trigger event can evaluate differently after ``touched``
    changed. ``homes``: the touched households each person ever lived in (after the
    change; ``touched.former`` has those they lived in before it).

    An evaluation reads the event's households as they were on the event's date (members
    with the day each joined, their ages, flags, schools and relationships, and their
    history up to that date), so it can change only if one of those households changed on
    that date: one of the touched households its subject ever lived in (it may have lived
    there on that date before the change, or after it), or the one at whose address the
    event happened. Evaluating an unchanged event again finds what it found before (the
    alerts it raised hold it as evidence already), so skipping it changes nothing."""
    on = event.time.astimezone(tz).date()
    subject = event.subject_person_id or 0
    related = homes.get(subject, set()) | touched.former.get(subject, set())
    if event.household_id is not None:
        related.add(event.household_id)
    return any(touched.covers(h, on) for h in related)


async def reevaluate(
    session: AsyncSession, config: PipelineConfig, persons: set[int], audit: list[Entry]
) -> list[alerts.Raised]:
    """After an identity change made outside a batch (a confirmed match): rebuild these
    persons' graph and re-evaluate the households it touched, exactly as a batch would."""
    touched = await household.rebuild_graph(session, (), identity_changed=persons)
    await household_repository.lock_households(session, touched.households)  # as a batch
    since = config.clock() - config.alerting_horizon
    events = await _trigger_events_in(session, config, touched, since)
    if not events:
        return []
    raised, changes = await _evaluate(
        session, config, events, touched.households, audit, config.clock() + config.review_after
    )
    await alerts.publish(session, raised, changes)
    return raised


async def _after_late_history(
    session: AsyncSession, config: PipelineConfig, fresh: Sequence[_Accepted], since: datetime
) -> list[StoredEvent]:
    """The stored trigger events (from ``since``) whose evaluation an event of this batch
    can change because a history window counts it (it may have arrived after them): for
    each window that counts it (its type and condition), the trigger events of that rule
    within the window after it, of its subject, and (a window of ``scope: household``) of
    everyone who ever lived in a household its subject lived in, or recorded at such a
    household or at the event's own address (a police incident)."""
    late = [
        (i, c)
        for i in fresh
        if i.valid.event.type in config.history_types and i.retracted_by is None
        for c in config.counting(i.valid.event.type, i.valid.event.data)
    ]
    if not late:
        return []
    household_wide = [(i, c) for i, c in late if not c.subject_only]
    subjects_of = await household_repository.households_ever_of(
        session, {i.subject_person_id for i, _ in household_wide if i.subject_person_id}
    )
    homes_of: dict[int, set[int]] = defaultdict(set)  # subject -> the households they lived in
    for home, persons in subjects_of.items():
        for p in persons:
            homes_of[p].add(home)
    # Who a late event's window can concern: by subject, and by household.
    by_person: dict[int, list[tuple[datetime, Counting]]] = defaultdict(list)
    by_home: dict[int, list[tuple[datetime, Counting]]] = defaultdict(list)
    for item, counting in late:
        at = item.valid.event.time
        if item.subject_person_id:
            by_person[item.subject_person_id].append((at, counting))
        if not counting.subject_only:
            homes = homes_of.get(item.subject_person_id or 0, set())
            for home in homes | ({item.household_id} if item.household_id else set()):
                by_home[home].append((at, counting))
    # Everyone who ever lived in one of those households, with which of them.
    residents = await household_repository.homes_ever(session, by_home)
    stored = await ingest.events_of(
        session,
        set(by_person) | set(residents),
        {t for _, c in late for t in c.triggers},
        max(since, min(i.valid.event.time for i, _ in late)),
        max(i.valid.event.time + c.within for i, c in late),
        household_ids=by_home,
    )

    def concerned(event: StoredEvent) -> bool:
        subject = event.subject_person_id or 0
        homes = residents.get(subject, set()) | {event.household_id or 0}
        windows = by_person.get(subject, []) + [w for h in homes for w in by_home.get(h, ())]
        return any(c.covers(at, event.type, event.time) for at, c in windows)

    return [e for e in stored if concerned(e)]


async def _evaluate(
    session: AsyncSession,
    config: PipelineConfig,
    events: list[StoredEvent],
    locked: set[int],
    audit: list[Entry],
    review_by: datetime,
) -> tuple[list[alerts.Raised], list[alerts.Change]]:
    """Evaluate every rule on these trigger events in each household their subject lived in
    at the event time (or the one at whose address they happened); raise the alerts they
    imply, and mark for review the alerts that these events supported but no longer do (a
    late fact made their conditions false). ``locked``: the households the caller holds
    locks on already."""
    local_dates = [e.time.astimezone(config.timezone).date() for e in events]
    subject_households = await household_repository.households_of(
        session, [(e.subject_person_id or 0, d) for e, d in zip(events, local_dates, strict=True)]
    )
    targets: list[tuple[StoredEvent, date, int]] = []
    for event, on, found in zip(events, local_dates, subject_households, strict=True):
        for household_id in {event.household_id} if event.household_id else set(found):
            targets.append((event, on, household_id))
    # Another resident's trigger event can concern a household the caller did not lock.
    await household_repository.lock_households(session, {h for _, _, h in targets} - locked)
    # Persons the events name other than their subject; a merge since may have moved one.
    named = {e.pk: _named(e) for e in events}
    others = {p for found in named.values() for _, p in found}
    subjects = {e.subject_person_id for e in events if e.subject_person_id}
    now_of = await identity_repository.persons_now(session, subjects | others)
    moved = {p: now.live_id for p in others if (now := now_of.get(p)) and now.live_id != p}
    if moved:
        named = {pk: [(r, moved.get(p, p)) for r, p in found] for pk, found in named.items()}
    # A subject's own birth date; a named person's is the live person's they now are.
    births = {p: now.birth_date for p, now in now_of.items()}
    births |= {now.live_id: now.live_birth_date for p, now in now_of.items() if p in others}
    # The schools of the persons the events name (a child present at a police incident
    # may live elsewhere): one read, only when an event names persons.
    named_on = sorted(
        {(p, on) for e, on in zip(events, local_dates, strict=True) for _, p in named[e.pk]}
    )
    schools = dict(
        zip(named_on, await household_repository.schools_on(session, named_on), strict=True)
    )
    triggers = {
        event.pk: TriggerEvent(
            event_pk=event.pk,
            source=event.source,
            event_id=event.event_id,
            type=event.type,
            time=event.time,
            data=event.data,
            subject_person_id=event.subject_person_id,
            subject_age=age_on(births.get(event.subject_person_id or 0), on),
            named=tuple(
                NamedPerson(r, p, age_on(births.get(p), on), schools.get((p, on)))
                for r, p in named[event.pk]
            ),
        )
        for event, on in zip(events, local_dates, strict=True)
    }
    # Only the events some rule may raise an alert for need a snapshot and a history: the
    # others (an adult's attendance for an injury, a child moving in) raise nothing in any
    # household, and count as evaluated without one.
    flags_ever = await household_repository.flag_kinds_ever(session, subjects)
    rules_of = {
        pk: may_trigger(config.rules, t, flags_ever.get(t.subject_person_id or 0, frozenset()))
        for pk, t in triggers.items()
    }
    evaluations: Counter[str] = Counter(e.type for e, _, _ in targets)  # counted per rule below
    targets = [t for t in targets if rules_of[t[0].pk]]
    snapshots = await household.snapshots(session, [(h, on) for _, on, h in targets])
    history, at_address = await _history(session, config, [e for e, _, _ in targets], snapshots)
    matches: list[tuple[TriggerEvent, Candidate]] = []
    for (event, _, _), snapshot in zip(targets, snapshots, strict=True):
        persons = {m.person_id for m in snapshot.members} | {event.subject_person_id or 0}
        past = [h for p in persons for h in history.get(p, ())]
        past += [h for h in at_address.get(snapshot.household_id, ()) if h.person_id not in persons]
        trigger = triggers[event.pk]
        matches.extend((trigger, c) for c in evaluate(rules_of[event.pk], trigger, snapshot, past))
    for rule in config.rules:
        if n := sum(evaluations[t] for t in rule.spec.trigger.types):
            metrics.RULE_EVALUATIONS.labels(rule.id, rule.version[:12]).inc(n)
    falsified = await alerts.review_unsupported(
        session,
        {e.pk for e in events},
        _named_by_match(matches),
        {r.id for r in config.rules},
        audit,
    )
    return await alerts.apply(session, matches, audit, review_by=review_by), falsified


def _named_by_match(
    matches: Sequence[tuple[TriggerEvent, Candidate]],
) -> dict[tuple[int, str, int, str], frozenset[int]]:
    """The children each (event, rule, household, recipient key) match names."""
    found: dict[tuple[int, str, int, str], frozenset[int]] = {}
    for t, c in matches:
        key = (t.event_pk, c.rule.id, c.household_id, c.recipient_key)
        found[key] = found.get(key, frozenset()) | frozenset(c.children)
    return found


def _named(event: StoredEvent) -> list[tuple[str, int]]:
    """(role, person id) of each person the event names other than its subject."""
    if event.type not in NAMES_OTHERS:
        return []
    roles = [role for _, role, _ in person_refs(event.type, event.data)]
    if len(roles) != len(event.persons):
        return []
    return [(r, p) for r, p in zip(roles, event.persons, strict=True) if r != "subject"]


async def _history(
    session: AsyncSession,
    config: PipelineConfig,
    events: Sequence[StoredEvent],
    snapshots: Sequence[HouseholdSnapshot],
) -> tuple[dict[int, list[HistoryEvent]], dict[int, list[HistoryEvent]]]:
    """One read for the whole batch: the history-window events of every person concerned
    and those recorded at the address of every household concerned (a police incident
    names no subject), over the longest window any rule uses. Returns them by person and
    by household."""
    if not config.history_window or not events:
        return {}, {}
    persons = {m.person_id for s in snapshots for m in s.members}
    persons |= {e.subject_person_id for e in events if e.subject_person_id}
    homes = {s.household_id for s in snapshots}
    start = min(e.time for e in events) - config.history_window
    found = await ingest.events_of(
        session, persons, config.history_types, start, max(e.time for e in events), homes
    )
    by_person: dict[int, list[HistoryEvent]] = defaultdict(list)
    by_household: dict[int, list[HistoryEvent]] = defaultdict(list)
    for e in found:
        past = HistoryEvent(
            e.pk,
            e.subject_person_id,
            e.source,
            e.event_id,
            e.type,
            e.time,
            e.data,
            e.household_id,
        )
        if e.subject_person_id is not None:
            by_person[e.subject_person_id].append(past)
        if e.household_id is not None:
            by_household[e.household_id].append(past)
    return by_person, by_household


async def _advance_offsets(
    session: AsyncSession,
    messages: Sequence[Message],
    config: PipelineConfig,
    positions: Mapping[tuple[str, int], Position | None],
) -> None:
    ends: dict[tuple[str, int], int] = defaultdict(int)
    for m in messages:
        ends[(m.topic, m.partition)] = max(ends[(m.topic, m.partition)], m.offset + 1)
    failed = await ingest.compare_and_set_offsets(
        session,
        config.group_id,
        [
            OffsetMove(
                topic,
                partition,
                positions.get((topic, partition)),
                Position(config.cluster_id, end),
            )
            for (topic, partition), end in sorted(ends.items())
        ],
    )
    if failed:
        raise Fenced(", ".join(f"{m.topic}[{m.partition}]" for m in failed))


def _invalid(v: Valid, reason: Reason, detail: str) -> Invalid:
    return Invalid(reason, detail, v.event.source, v.event.id, v.event.type)


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


def _extract_facts(item: _Accepted, households: Mapping[tuple[str, str], int]) -> None:
    """The graph facts of an event, with internal ids only (they outlive the payload)."""
    event = item.valid.event
    data = event.data
    address = data.get("address")
    if isinstance(address, dict):
        item.household_id = households[(address["uprn"], address["la_code"])]
    if event.type == RESIDENCE:
        item.facts = {
            "household_id": item.household_id,
            "change": data["change"],
            "date": data["date"],
            "keeps_previous": bool(data.get("keeps_previous", False)),
        }
    elif event.type == RELATIONSHIP:
        item.facts = {
            "related_person_id": item.persons[1],
            "relationship": data["relationship"],
            "start_date": data.get("start_date"),
            "end_date": data.get("end_date"),
        }
    elif event.type in household.FLAG_TYPES:
        item.facts = {
            "flag": household.FLAG_TYPES[event.type],
            "la_code": data["la_code"],
            "change": data["change"],
            "date": data["date"],
        }
    elif event.type == ENROLMENT:
        item.facts = {
            "school_urn": data["school_urn"],
            "start_date": data["start_date"],
            "end_date": data.get("end_date"),
            "dsl_org_id": data.get("dsl_org_id"),
        }
    elif event.type == RETRACTION:
        item.facts = {"retracts": data["retracted_event_id"]}
    if len(item.persons) > 1 or (item.persons and item.subject_person_id is None):
        item.facts["persons"] = item.persons


def _event_row(item: _Accepted) -> dict[str, Any]:
    event = item.valid.event
    return {
        "source": event.source,
        "event_id": event.id,
        "type": event.type,
        "event_time": event.time,
        "subject_ref": event.subject,
        "content_hash": item.valid.content_hash,
        "subject_person_id": item.subject_person_id,
        "household_id": item.household_id,
        "data": event.data,
        "facts": item.facts,
        "retracted_by": item.retracted_by,
        "kafka_partition": item.message.partition,
        "kafka_offset": item.message.offset,
    }
