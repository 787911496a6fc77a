"""Identity resolution: map each person reference in a batch to one Lookout person.

* **Strong identifiers** link deterministically: NHS number and UPN are national;
  agency-local ids (``la_person_id``, ``police_person_id``) are namespaced by the publishing
  organisation (``<org id>:<local id>``). One person per identifier.
* A reference whose identifiers are held by **two persons** merges them (the oldest person
  survives; the other's identifiers, events and relationships move to it and the move is
  recorded in ``identity_merges`` so that an unlink can undo it) — unless the merge would
  give one person two values of one identifier scheme (two NHS numbers, say): that is a
  **conflict**, recorded in ``possible_matches`` for a person to decide, never merged.
* A reference with **demographics only** is scored against candidates found by blocking
  (:func:`lookout.identity.repository.candidates`) with the Fellegi-Sunter model of
  :mod:`lookout.identity.scoring`; the best candidate's score falls in one of three bands:
  auto-link, possible match (a new person, and the pair recorded for review), new person.
  So is a reference whose strong identifiers are **all new**, against the candidates that
  hold no identifier of those schemes: on an auto-link its identifiers go to the candidate.
  Which of the two references came first then does not decide whether they are one person.

Every merge, conflict, demographic link and possible match is audited with internal ids,
identifier *schemes* and agreement levels only, never values.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lookout import metrics
from lookout.alerts import repository as alerts_repository
from lookout.alerts import service as alerts_service
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import Conflict, NotFound
from lookout.identity import repository
from lookout.identity.models import MatchKind, MatchStatus, PossibleMatch
from lookout.identity.scoring import Band, Demographics, band, score
from lookout.ingest.validation import person_refs

NATIONAL = ("nhs_number", "upn")
LOCAL = ("la_person_id", "police_person_id")
PRIORITY = {"nhs_number": 0, "upn": 1, "la_person_id": 2, "police_person_id": 3}


@dataclass(frozen=True, slots=True)
class MatchThresholds:
    """The demographic bands (log2 match weights; see ``docs/identity.md``)."""

    auto_link_at: float = 32.0
    possible_at: float = 18.0
    max_candidates: int = 200


@dataclass(frozen=True, slots=True)
class PersonRef:
    """One person as an event names them, with the publishing organisation for namespacing."""

    org_id: str
    person: Mapping[str, Any]
    _keys: tuple[repository.Key, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        person = self.person
        keys = [(s, str(person[s])) for s in NATIONAL if s in person]
        keys += [(s, f"{self.org_id}:{person[s]}") for s in LOCAL if s in person]
        object.__setattr__(self, "_keys", tuple(keys))

    def identifier_keys(self) -> tuple[repository.Key, ...]:
        return self._keys

    def birth_date(self) -> date | None:
        value = self.person.get("birth_date")
        return date.fromisoformat(value) if isinstance(value, str) else None

    def demographics(self) -> Demographics:
        return Demographics.from_raw(
            _str(self.person.get("given_name")),
            _str(self.person.get("family_name")),
            self.birth_date(),
            _str(self.person.get("postcode")),
        )

    def raw_demographics(self) -> dict[str, Any]:
        return {
            "given_name": _str(self.person.get("given_name")),
            "family_name": _str(self.person.get("family_name")),
            "postcode": _str(self.person.get("postcode")),
        }


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def namespace(key: repository.Key) -> str:
    """The scheme a person may hold one value of: ``nhs_number``, ``upn``, or a local id
    scheme within one issuing organisation (``la_person_id:<org id>``)."""
    scheme, value = key
    if scheme in NATIONAL:
        return scheme
    return f"{scheme}:{value.split(':', 1)[0]}"


@dataclass
class Resolution:
    """The person of each reference, the persons whose derived graph (residences, flags,
    enrolments) must be rebuilt because a merge moved events to or from them, and the
    audit entries to write."""

    person_ids: list[int]
    rebuild: set[int] = field(default_factory=set)
    audit: list[Entry] = field(default_factory=list)


class _Batch:
    """In-memory identity state of one batch: temporary ids (< 0) for persons to create,
    and a union-find for merges decided within the batch."""

    def __init__(self, owners: dict[repository.Key, int], held: dict[int, list[repository.Key]]):
        self.known = dict(owners)
        self.held: dict[int, dict[str, str]] = {
            p: {namespace(k): k[1] for k in keys} for p, keys in held.items()
        }
        self.parent: dict[int, int] = {}
        self.creating: list[int] = []  # temporary ids in creation order (-1, -2, ...)
        self.first_ref: dict[int, PersonRef] = {}
        self.merges: list[tuple[int, int, list[str]]] = []  # (survivor, merged, namespaces)
        self.conflicts: list[tuple[int, int, list[str]]] = []

    def find(self, p: int) -> int:
        while p in self.parent:
            p = self.parent[p]
        return p

    def new(self, ref: PersonRef) -> int:
        temp = -(len(self.creating) + 1)
        self.creating.append(temp)
        self.held[temp] = {}
        self.first_ref[temp] = ref
        return temp

    def give(self, person: int, keys: Sequence[repository.Key]) -> None:
        for k in keys:
            self.known[k] = person
            self.held.setdefault(person, {})[namespace(k)] = k[1]

    def resolve(self, ref: PersonRef) -> int:
        keys = ref.identifier_keys()
        holders = sorted({self.find(self.known[k]) for k in keys if k in self.known}, key=_age)
        unowned = [k for k in keys if k not in self.known]
        if not holders:
            person = self.new(ref)
            self.give(person, keys)
            return person
        combined: dict[str, str] = {}
        clashes: set[str] = set()
        for h in holders:
            for ns, value in self.held.get(h, {}).items():
                if combined.setdefault(ns, value) != value:
                    clashes.add(ns)
        for k in unowned:
            if combined.get(namespace(k), k[1]) != k[1]:
                clashes.add(namespace(k))
        if clashes:
            # The event goes to the holder of its highest-priority known identifier; the
            # identifiers that do not fit become a separate person; both wait for review.
            first = min((k for k in keys if k in self.known), key=lambda k: PRIORITY[k[0]])
            person = self.find(self.known[first])
            for other in holders:
                if other != person:
                    self.conflicts.append((person, other, sorted(clashes)))
            if unowned:
                extra = self.new(ref)
                self.give(extra, unowned)
                self.conflicts.append((person, extra, sorted(clashes)))
            return person
        survivor = holders[0]
        for other in holders[1:]:
            self.parent[other] = survivor
            namespaces = sorted(set(self.held.get(other, {})) | set(self.held[survivor]))
            self.held[survivor].update(self.held.pop(other, {}))
            self.merges.append((survivor, other, namespaces))
        self.give(survivor, unowned)
        return survivor


def _age(p: int) -> tuple[int, int]:
    """Existing persons (oldest first) come before persons created in this batch."""
    return (0, p) if p > 0 else (1, -p)


async def resolve(
    session: AsyncSession,
    refs: Sequence[PersonRef],
    thresholds: MatchThresholds | None = None,
) -> Resolution:
    """The person id of each reference, creating, linking and merging persons as needed."""
    thresholds = thresholds or MatchThresholds()
    all_keys = {k for ref in refs for k in ref.identifier_keys()}
    in_db = await repository.owners(session, all_keys)
    await repository.lock_persons(session, in_db.values())
    held = await repository.identifiers_of(session, set(in_db.values()))
    if any(k not in held.get(p, ()) for k, p in in_db.items()):
        # A merge committed between the lookup and the lock moved some: look again.
        in_db = await repository.owners(session, all_keys)
        await repository.lock_persons(session, in_db.values())
        held = await repository.identifiers_of(session, set(in_db.values()))
    matched = await _match_new_identifiers(session, refs, in_db, thresholds)
    linked = await _demographic_links(session, matched, held)
    incomplete = await repository.incomplete_persons(
        session, set(in_db.values()) | set(linked.values())
    )
    resolution = Resolution(person_ids=[])
    batch = _Batch(in_db, held)
    for keys, person_id in linked.items():
        batch.give(person_id, keys)
        metrics.IDENTITY_LINKS.labels(f"demographic_{Band.auto_link.value}").inc()
        schemes = sorted({k[0] for k in keys})
        resolution.audit.append(
            Entry(
                Action.identity_linked,
                "person",
                str(person_id),
                details={**matched[keys].evidence, "identifier_schemes": schemes},
            )
        )
    chosen: list[int | None] = []
    for ref in refs:
        chosen.append(batch.resolve(ref) if ref.identifier_keys() else None)

    # Persons to create: the temporary roots, with the demographics of their first reference.
    roots = [t for t in batch.creating if batch.find(t) == t]
    rows = [
        repository.person_row(
            batch.first_ref[t].raw_demographics(), batch.first_ref[t].demographics()
        )
        for t in roots
    ]
    real = dict(zip(roots, await repository.create_persons(session, rows), strict=True))

    def final(p: int) -> int:
        root = batch.find(p)
        return real[root] if root < 0 else root

    for keys, match in matched.items():
        if match.band is Band.possible and final(batch.known[keys[0]]) != match.person_id:
            metrics.IDENTITY_LINKS.labels(f"demographic_{Band.possible.value}").inc()
            await _record_possible_match(session, match, final(batch.known[keys[0]]), resolution)
    for survivor, merged, namespaces in batch.merges:
        if merged < 0:
            continue  # never created: its identifiers simply go to the survivor
        evidence = {"identifier_schemes": [n.split(":", 1)[0] for n in namespaces]}
        merge_id = await repository.merge_persons(
            session, survivor, merged, reason="strong_identifier", score=None, evidence=evidence
        )
        resolution.rebuild.update((survivor, merged))
        metrics.IDENTITY_LINKS.labels("merge").inc()
        resolution.audit.append(
            Entry(
                Action.identity_merged,
                "person",
                str(survivor),
                details={"merge": merge_id, "merged": merged, **evidence},
            )
        )
    for person, other, clashes in batch.conflicts:
        a, b = sorted((final(person), final(other)))
        schemes = sorted({c.split(":", 1)[0] for c in clashes})
        match_id = await repository.add_possible_match(
            session,
            kind=MatchKind.conflict,
            person_id=a,
            other_person_id=b,
            score=None,
            evidence={"conflicting_schemes": schemes},
        )
        if match_id is not None:
            metrics.IDENTITY_LINKS.labels("conflict").inc()
            resolution.audit.append(
                Entry(
                    Action.identity_conflict,
                    "possible_match",
                    str(match_id),
                    details={"persons": [a, b], "conflicting_schemes": schemes},
                )
            )
    links = {k: final(p) for k, p in batch.known.items() if k in all_keys and k not in in_db}
    # Another worker may have linked the same identifier first: its person wins.
    owners = await repository.attach_identifiers(session, links)
    # Demographics a person lacks, from every reference to it (the first value wins): for
    # existing persons missing some, and for persons created here from their first reference.
    fills: dict[int, dict[str, Any]] = {}
    created = set(real.values())
    for ref, picked in zip(refs, chosen, strict=True):
        if picked is None:
            person_id = await _resolve_demographics(session, ref, thresholds, resolution)
        else:
            person_id = final(picked)
            lost = [
                owners[k]
                for k in ref.identifier_keys()
                if k in links and links[k] == person_id and owners.get(k, person_id) != person_id
            ]
            if lost:  # another worker attached this identifier first: its person wins
                person_id = min(lost)
            if person_id in incomplete or person_id in created:
                demo = ref.demographics()
                if not demo.empty:
                    row = repository.person_row(ref.raw_demographics(), demo)
                    known = fills.setdefault(person_id, row)
                    for column, value in row.items():
                        if known.get(column) is None:
                            known[column] = value
        resolution.person_ids.append(person_id)
    await repository.fill_demographics(session, fills)
    return resolution


@dataclass(frozen=True, slots=True)
class _Match:
    """The best demographic candidate for a reference: its score, band and evidence
    (agreement levels only)."""

    person_id: int
    score: float
    band: Band
    evidence: dict[str, object]


async def _best_match(
    session: AsyncSession, demo: Demographics, thresholds: MatchThresholds
) -> _Match | None:
    """The best-scoring candidate sharing a blocking key with ``demo``."""
    if demo.empty:
        return None
    return _best_of(
        demo, await repository.candidates(session, demo, thresholds.max_candidates), thresholds
    )


def _best_of(
    demo: Demographics, candidates: Sequence[repository.Candidate], thresholds: MatchThresholds
) -> _Match | None:
    best: tuple[float, int, dict[str, object]] | None = None
    for candidate in candidates:
        scored = score(demo, candidate.demographics)
        if best is None or scored.total > best[0]:
            best = (scored.total, candidate.person_id, scored.evidence())
    if best is None:
        return None
    total, person_id, evidence = best
    outcome = band(total, auto_link_at=thresholds.auto_link_at, possible_at=thresholds.possible_at)
    return _Match(person_id, total, outcome, evidence)


async def _record_possible_match(
    session: AsyncSession, match: _Match, person_id: int, resolution: Resolution
) -> None:
    match_id = await repository.add_possible_match(
        session,
        kind=MatchKind.demographic,
        person_id=match.person_id,
        other_person_id=person_id,
        score=match.score,
        evidence=match.evidence,
    )
    resolution.audit.append(
        Entry(
            Action.identity_possible_match,
            "possible_match",
            str(match_id),
            details={"persons": [match.person_id, person_id], **match.evidence},
        )
    )


async def _demographic_links(
    session: AsyncSession,
    matched: Mapping[tuple[repository.Key, ...], _Match],
    held: dict[int, list[repository.Key]],
) -> dict[tuple[repository.Key, ...], int]:
    """The auto-linked references' identifiers and the person to give them to. The persons
    are locked and their identifiers read again (into ``held``): one that another worker
    has meanwhile given an identifier of those schemes is left out, and so is a person
    that references with different values of one scheme matched (two NHS numbers)."""
    wanted = {keys: m.person_id for keys, m in matched.items() if m.band is Band.auto_link}
    if not wanted:
        return {}
    await repository.lock_persons(session, wanted.values())
    held.update(await repository.identifiers_of(session, set(wanted.values())))
    values: dict[int, dict[str, set[str]]] = {}
    for keys, person_id in wanted.items():
        for k in keys:
            values.setdefault(person_id, {}).setdefault(namespace(k), set()).add(k[1])
    return {
        keys: person_id
        for keys, person_id in wanted.items()
        if all(len(v) == 1 for v in values[person_id].values())
        and not {namespace(k) for k in held[person_id]} & values[person_id].keys()
    }


async def _resolve_demographics(
    session: AsyncSession, ref: PersonRef, thresholds: MatchThresholds, resolution: Resolution
) -> int:
    demo = ref.demographics()
    match = await _best_match(session, demo, thresholds)
    outcome = match.band if match else Band.new_person
    metrics.IDENTITY_LINKS.labels(f"demographic_{outcome.value}").inc()
    if match is not None and outcome is Band.auto_link:
        resolution.audit.append(
            Entry(Action.identity_linked, "person", str(match.person_id), details=match.evidence)
        )
        return match.person_id
    [person_id] = await repository.create_persons(
        session, [repository.person_row(ref.raw_demographics(), demo)]
    )
    if match is not None and outcome is Band.possible:
        await _record_possible_match(session, match, person_id, resolution)
    return person_id


async def _match_new_identifiers(
    session: AsyncSession,
    refs: Sequence[PersonRef],
    known: Mapping[repository.Key, int],
    thresholds: MatchThresholds,
) -> dict[tuple[repository.Key, ...], _Match]:
    """References whose strong identifiers are all new are matched on demographics too,
    as a demographics-only reference is, so that a person first seen on demographics and
    later with a new NHS number (or the other way round) is one person whichever came
    first. Candidates holding any identifier of the reference's schemes are left out (a
    different NHS number is a different person; a local id of another issuer too, to be
    safe). Returns the best match of each such reference's identifiers, when one is at
    least a possible match. One statement for all the references."""
    wanted: dict[tuple[repository.Key, ...], Demographics] = {}
    for ref in refs:
        keys = ref.identifier_keys()
        if keys and keys not in wanted and not any(k in known for k in keys):
            demo = ref.demographics()
            if not demo.empty:
                wanted[keys] = demo
    if not wanted:
        return {}
    found = await repository.candidates_of(
        session,
        list(wanted.values()),
        [{k[0] for k in keys} for keys in wanted],
        thresholds.max_candidates,
    )
    matches: dict[tuple[repository.Key, ...], _Match] = {}
    for (keys, demo), candidates in zip(wanted.items(), found, strict=True):
        match = _best_of(demo, candidates, thresholds)
        if match is not None and match.band is not Band.new_person:
            matches[keys] = match
    return matches


# Review and undo ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    match_id: int
    status: str
    survivor_id: int | None = None
    merge_id: int | None = None
    rebuild: frozenset[int] = frozenset()


def _decider(actor: Actor) -> str:
    return f"{actor.org_id or '-'}/{actor.client_id or '-'}/{actor.end_user or '-'}"


async def confirm(session: AsyncSession, actor: Actor, match_id: int) -> Decision:
    """A person confirms two persons are one: the newer merges into the older."""
    match = await _open_match(session, match_id)
    a = await repository.live_person(session, match.person_id)
    b = await repository.live_person(session, match.other_person_id)
    if a is None or b is None:
        raise NotFound("a person of this match no longer exists")
    await repository.lock_persons(session, (a, b))
    merge_id: int | None = None
    survivor = min(a, b)
    if a != b:
        evidence = {"possible_match": match.id, **match.evidence}
        merge_id = await repository.merge_persons(
            session,
            survivor,
            max(a, b),
            reason="review_confirmed",
            score=match.score,
            evidence=evidence,
        )
    await repository.decide(session, match.id, MatchStatus.confirmed, _decider(actor), merge_id)
    metrics.IDENTITY_LINKS.labels("review_confirmed").inc()
    await record(
        session,
        actor,
        [
            Entry(
                Action.identity_match_confirmed,
                "possible_match",
                str(match.id),
                details={
                    "persons": [a, b],
                    "survivor": survivor,
                    "merge": merge_id,
                    "score": match.score,
                    "evidence": match.evidence,
                },
            )
        ],
    )
    return Decision(match.id, MatchStatus.confirmed, survivor, merge_id, frozenset((a, b)))


async def reject(session: AsyncSession, actor: Actor, match_id: int) -> Decision:
    match = await _open_match(session, match_id)
    await repository.decide(session, match.id, MatchStatus.rejected, _decider(actor), None)
    metrics.IDENTITY_LINKS.labels("review_rejected").inc()
    await record(
        session,
        actor,
        [
            Entry(
                Action.identity_match_rejected,
                "possible_match",
                str(match.id),
                details={
                    "persons": [match.person_id, match.other_person_id],
                    "score": match.score,
                    "evidence": match.evidence,
                },
            )
        ],
    )
    return Decision(match.id, MatchStatus.rejected)


async def _open_match(session: AsyncSession, match_id: int) -> PossibleMatch:
    match = await repository.get_possible_match(session, match_id)
    if match is None:
        raise NotFound("no such possible match")
    if match.status != MatchStatus.open:
        raise Conflict(f"this possible match was already {match.status}")
    return match


@dataclass(frozen=True, slots=True)
class Unlinked:
    merge_id: int
    person_id: int
    restored_person_id: int
    moved_identifiers: int
    moved_events: int
    alerts_for_review: tuple[uuid.UUID, ...]
    rebuild: frozenset[int]


async def unlink(
    session: AsyncSession,
    actor: Actor,
    person_id: int,
    merged_person_id: int | None,
    agencies: Mapping[str, str],
) -> Unlinked:
    """Undo a wrong merge into ``person_id``: the merged person is restored with the
    identifiers it brought, and the events that came in under those identifiers (or were
    moved by the merge and carry none of the survivor's) go back to it. Alerts involving
    either person are marked for review, never deleted or re-evaluated silently.

    ``agencies`` maps event sources to organisation ids (to namespace local identifiers)."""
    merge = await repository.active_merge(session, person_id, merged_person_id)
    if merge is None:
        raise NotFound("no merge into this person to undo")
    survivor, restored = merge.survivor_id, merge.merged_id
    await repository.lock_persons(session, (survivor, restored))
    moved_keys = {(s, v) for s, v in merge.moved_identifiers}
    held = set((await repository.identifiers_of(session, [survivor]))[survivor])
    remaining = held - moved_keys
    moved_before = set(merge.moved_events)
    to_move: list[int] = []
    for event in await repository.events_of(session, survivor):
        keys = _subject_keys(event, agencies)
        if keys & remaining:
            continue
        if event.pk in moved_before or keys & moved_keys:
            to_move.append(event.pk)
    back = sorted(moved_keys & held)
    await repository.undo_merge(session, merge, back, to_move)
    flagged = await alerts_repository.alerts_involving(session, [survivor, restored])
    changes = await alerts_service.mark_for_review(
        session, flagged, "an identity link was undone: the persons behind this alert changed"
    )
    metrics.IDENTITY_LINKS.labels("unlink").inc()
    entries = [
        Entry(
            Action.identity_unlinked,
            "person",
            str(survivor),
            details={
                "merge": merge.id,
                "restored": restored,
                "identifier_schemes": sorted({s for s, _ in back}),
                "events_moved": len(to_move),
                "merge_reason": merge.reason,
                "merge_score": merge.score,
            },
        )
    ]
    entries += [
        Entry(Action.alert_marked_for_review, "alert", str(a), details={"unlinked_merge": merge.id})
        for a in flagged
    ]
    await record(session, actor, entries)
    await alerts_service.publish(session, [], changes)  # recipients are told; last: it locks
    return Unlinked(
        merge.id,
        survivor,
        restored,
        len(back),
        len(to_move),
        tuple(flagged),
        frozenset((survivor, restored)),
    )


def _subject_keys(
    event: repository.SubjectEvent, agencies: Mapping[str, str]
) -> set[repository.Key]:
    if event.data is None:
        return set()
    org = agencies.get(event.source, "")
    for _, role, person in person_refs(event.type, event.data):
        if role in ("subject", "involved"):
            return set(PersonRef(org, person).identifier_keys())
    return set()
