"""Which stored trigger events a graph change re-evaluates: those whose household changed on
their date, and no others (the pure parts here; through the pipeline in
tests/pipeline/test_reevaluation_scope.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from lookout.household.service import ALWAYS, Touched, changed_spans, covers
from lookout.ingest.repository import StoredEvent
from lookout.pipeline import needs_reevaluation

D = date(2026, 3, 1)
LONDON = ZoneInfo("Europe/London")


def day(n: int) -> date:
    return D + timedelta(days=n)


def test_nothing_changed_means_no_span() -> None:
    facts = [(10, day(0), None), (20, None, day(-5))]
    assert changed_spans(facts, list(reversed(facts))) == []


def test_an_end_date_on_an_open_residence_changes_only_the_days_after_it() -> None:
    assert changed_spans([(10, day(0), None)], [(10, day(0), day(30))]) == [(day(30), None)]


def test_an_earlier_move_in_changes_the_days_in_between_and_the_joined_date() -> None:
    # On every day from the new move-in the member is there with a different joined date
    # (the snapshot shows when each member joined), so all of them changed.
    assert changed_spans([(10, day(10), None)], [(10, day(0), None)]) == [(day(0), None)]


def test_a_removed_period_changes_exactly_that_period() -> None:
    before = [(10, day(0), day(10)), (10, day(20), day(30))]
    assert changed_spans(before, before[:1]) == [(day(20), day(30))]


def test_unbounded_facts() -> None:
    assert changed_spans([], [("plan", None, None)]) == [ALWAYS]
    assert changed_spans([("plan", None, day(5))], []) == [(None, day(5))]


def test_adjacent_changed_segments_merge() -> None:
    assert changed_spans([], [(10, day(0), day(5)), (10, day(5), day(9))]) == [(day(0), day(9))]


def in_force(facts: list[tuple[int, date | None, date | None]], on: date) -> Counter[object]:
    return Counter(
        (what, start)
        for what, start, end in facts
        if (start is None or start <= on) and (end is None or on < end)
    )


fact = st.tuples(
    st.integers(1, 3),
    st.one_of(st.none(), st.integers(0, 20).map(day)),
    st.one_of(st.none(), st.integers(0, 20).map(day)),
)


@given(st.lists(fact, max_size=5), st.lists(fact, max_size=5))
def test_spans_are_exactly_the_days_that_read_differently(
    before: list[tuple[int, date | None, date | None]],
    after: list[tuple[int, date | None, date | None]],
) -> None:
    spans = changed_spans(before, after)
    for n in range(-3, 25):
        on = day(n)
        assert covers(spans, on) == (in_force(before, on) != in_force(after, on)), on


def stored(pk: int, at: datetime, subject: int | None, household: int | None = None) -> StoredEvent:
    return StoredEvent(pk, "urn:x", f"e{pk}", "t", at, {}, subject, household)


def test_an_event_is_re_evaluated_only_on_a_changed_date_of_one_of_its_households() -> None:
    touched = Touched({10: [(day(5), None)]})
    homes = {1: {10}}
    before = stored(1, datetime(2026, 3, 3, 12, tzinfo=UTC), subject=1)
    after = stored(2, datetime(2026, 3, 7, 12, tzinfo=UTC), subject=1)
    assert not needs_reevaluation(before, touched, homes, LONDON)
    assert needs_reevaluation(after, touched, homes, LONDON)
    # Someone who never lived there: not related, whatever the date.
    assert not needs_reevaluation(stored(3, after.time, subject=2), touched, homes, LONDON)


def test_the_date_is_the_local_date() -> None:
    # 23:30 UTC on 5 March is 23:30 in London (GMT); on 4 April (BST) it is the next day.
    touched = Touched({10: [(date(2026, 4, 5), None)]})
    late_evening = stored(1, datetime(2026, 4, 4, 23, 30, tzinfo=UTC), subject=1)
    assert needs_reevaluation(late_evening, touched, {1: {10}}, LONDON)
    assert not needs_reevaluation(late_evening, touched, {1: {10}}, ZoneInfo("UTC"))


def test_the_household_at_whose_address_it_happened_counts() -> None:
    touched = Touched({10: [ALWAYS]})
    incident = stored(1, datetime(2026, 3, 3, tzinfo=UTC), subject=None, household=10)
    assert needs_reevaluation(incident, touched, {}, LONDON)


def test_a_household_the_subject_left_for_good_still_counts() -> None:
    """The rebuild removed every residence the subject had there (a retracted move-in):
    the alerts its events raised there must be looked at again."""
    touched = Touched({10: [(day(0), None)]}, former={1: {10}})
    event = stored(1, datetime(2026, 3, 3, 12, tzinfo=UTC), subject=1)
    assert needs_reevaluation(event, touched, {}, LONDON)
