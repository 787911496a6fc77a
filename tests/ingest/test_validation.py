"""Every rejection reason the worker can give without the database, one test each."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.factories import NOW, ed_attendance, person

from lookout.ingest.catalogue import Catalogue
from lookout.ingest.validation import Invalid, Reason, Valid, validate
from lookout.settings import PROJECT_ROOT

CATALOGUE = Catalogue.load(PROJECT_ROOT / "schemas")


def check(raw: bytes | None, max_bytes: int = 64 * 1024) -> Valid | Invalid:
    return validate(
        raw, catalogue=CATALOGUE, max_bytes=max_bytes, now=NOW, max_skew=timedelta(minutes=5)
    )


def reason_of(raw: bytes | None, **kw: Any) -> Reason | None:
    outcome = check(raw, **kw)
    return outcome.reason if isinstance(outcome, Invalid) else None


def good() -> dict[str, Any]:
    return ed_attendance(person())


def test_a_valid_event_passes_with_a_stable_content_hash() -> None:
    event = good()
    first, second = (
        check(orjson.dumps(event)),
        check(orjson.dumps(event, option=orjson.OPT_INDENT_2)),
    )
    assert isinstance(first, Valid)
    assert isinstance(second, Valid)
    assert first.content_hash == second.content_hash


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.update(specversion="0.3"), Reason.invalid_envelope),
        (lambda e: e.pop("subject"), Reason.invalid_envelope),
        (lambda e: e.update(time="2026-11-20T21:00:00"), Reason.invalid_envelope),  # no offset
        (lambda e: e.update(type="uk.lookout.health.teleport.v1"), Reason.unknown_type),
        (lambda e: e["data"].update(presenting_reasons=["bored"]), Reason.schema_violation),
        (lambda e: e["data"].update(extra=1), Reason.schema_violation),
        (lambda e: e["data"]["patient"].update(nhs_number="9434765918"), Reason.invalid_identifier),
        (lambda e: e.update(time=(NOW + timedelta(minutes=6)).isoformat()), Reason.future_time),
    ],
)
def test_each_reason(mutate: Any, reason: Reason) -> None:
    event = good()
    mutate(event)
    assert reason_of(orjson.dumps(event)) is reason


def test_a_little_clock_skew_is_accepted() -> None:
    event = good()
    event["time"] = (NOW + timedelta(minutes=4)).isoformat()
    assert reason_of(orjson.dumps(event)) is None


def test_bytes_level_reasons() -> None:
    assert reason_of(b"\xff\xfe{}") is Reason.not_utf8
    assert reason_of(b"{nope") is Reason.not_json
    assert reason_of(None) is Reason.not_json
    assert reason_of(b"[1, 2]") is Reason.invalid_envelope
    assert reason_of(orjson.dumps(good()), max_bytes=100) is Reason.too_large


def test_details_never_quote_personal_data() -> None:
    event = good()
    event["data"]["patient"]["nhs_number"] = "9434765918"
    outcome = check(orjson.dumps(event))
    assert isinstance(outcome, Invalid)
    assert "9434765918" not in outcome.detail
    assert "patient.nhs_number" in outcome.detail


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(check(raw), Valid | Invalid)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=30,
    )
)
def test_arbitrary_json_never_raises(document: Any) -> None:
    assert isinstance(check(json.dumps(document).encode()), Valid | Invalid)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.update(id="a\x00b"), Reason.invalid_envelope),
        (lambda e: e.update(subject="\x00"), Reason.invalid_envelope),
        (lambda e: e.update({"ext\x00": "x"}), Reason.invalid_envelope),
        (lambda e: e["data"]["patient"].update(given_name="Sa\x00rah"), Reason.schema_violation),
        (lambda e: e["data"].update(presenting_reasons=["alcohol\x00"]), Reason.schema_violation),
    ],
)
def test_a_nul_character_is_rejected_before_it_can_poison_a_batch(
    mutate: Any, reason: Reason
) -> None:
    """PostgreSQL text and jsonb cannot hold U+0000: found by the fuzz test, such an event
    failed its batch's INSERT on every retry and stopped the worker."""
    event = good()
    mutate(event)
    outcome = check(orjson.dumps(event))
    assert isinstance(outcome, Invalid)
    assert outcome.reason == reason
    assert "\x00" not in (outcome.event_id or "")  # the rejection row can be stored


def test_a_rejection_keeps_the_attributes_cut_to_what_its_row_can_hold() -> None:
    """Found by the fuzz test: a 3,000-character id failed the rejection's INSERT."""
    event = good()
    event.update(id="i" * 3000, source="s" * 3000, type="t" * 3000)
    outcome = check(orjson.dumps(event))
    assert isinstance(outcome, Invalid)
    assert outcome.reason == Reason.invalid_envelope
    assert (len(outcome.event_id or ""), len(outcome.source or "")) == (200, 255)
    assert len(outcome.event_type or "") == 120


def test_an_event_nested_too_deeply_to_hash_is_rejected() -> None:
    """Found by the fuzz test: orjson reads 1,024 levels but writes 254, so hashing such an
    event raised and stopped the worker on every restart."""
    raw = orjson.dumps(good())[:-1] + b', "ext": ' + b"[" * 600 + b"]" * 600 + b"}"
    assert reason_of(raw) == Reason.invalid_envelope
