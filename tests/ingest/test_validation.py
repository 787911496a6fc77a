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
