"""Residence periods are a function of the set of residence facts, not of their order."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lookout.household.service import residence_intervals
from lookout.household.snapshot import age_on

BASE = date(2020, 1, 1)


def fact(household: int, change: str, day: int, keeps: bool = False) -> dict[str, Any]:
    return {
        "household_id": household,
        "change": change,
        "date": (BASE + timedelta(days=day)).isoformat(),
        "keeps_previous": keeps,
    }


def test_a_move_ends_the_previous_residence() -> None:
    intervals = residence_intervals(
        1, [(1, fact(10, "moved_in", 0)), (2, fact(20, "moved_in", 30))]
    )
    assert [(i.household_id, i.valid_from, i.valid_to) for i in intervals] == [
        (10, BASE, BASE + timedelta(days=30)),
        (20, BASE + timedelta(days=30), None),
    ]


def test_keeps_previous_allows_two_homes() -> None:
    intervals = residence_intervals(
        1, [(1, fact(10, "moved_in", 0)), (2, fact(20, "moved_in", 30, keeps=True))]
    )
    assert {(i.household_id, i.valid_to) for i in intervals} == {(10, None), (20, None)}


def test_move_out_without_move_in_means_lived_there_until_then() -> None:
    [interval] = residence_intervals(1, [(1, fact(10, "moved_out", 5))])
    assert (interval.valid_from, interval.valid_to) == (None, BASE + timedelta(days=5))


facts = st.lists(
    st.tuples(
        st.sampled_from([10, 20, 30]),
        st.sampled_from(["moved_in", "moved_out"]),
        st.integers(0, 60),
        st.booleans(),
    ),
    max_size=8,
)


@given(facts, st.randoms())
def test_any_arrival_order_gives_the_same_periods(
    raw: list[tuple[int, str, int, bool]], rnd: Any
) -> None:
    numbered = [(pk, fact(*f)) for pk, f in enumerate(raw, 1)]
    shuffled = list(numbered)
    rnd.shuffle(shuffled)
    assert residence_intervals(7, numbered) == residence_intervals(7, shuffled)


def test_age_in_whole_years_with_birthdays_and_leap_days() -> None:
    assert age_on(date(2008, 11, 20), date(2026, 11, 20)) == 18
    assert age_on(date(2008, 11, 21), date(2026, 11, 20)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18
    assert age_on(None, date(2026, 3, 1)) is None
