"""Flag and enrolment periods are a function of the set of facts, not of their order."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lookout.household.service import enrolment_periods, flag_periods

BASE = date(2024, 1, 1)


def flag(
    change: str, day: int, kind: str = "child_protection_plan", la: str = "E09000012"
) -> dict[str, Any]:
    return {
        "flag": kind,
        "la_code": la,
        "change": change,
        "date": (BASE + timedelta(days=day)).isoformat(),
    }


def test_a_plan_runs_from_start_to_end() -> None:
    [period] = flag_periods(7, [(1, flag("started", 0)), (2, flag("ended", 90))])
    assert (period.kind, period.holder, period.valid_from, period.valid_to) == (
        "child_protection_plan",
        "E09000012",
        BASE,
        BASE + timedelta(days=90),
    )


def test_an_open_plan_and_an_end_without_start() -> None:
    periods = flag_periods(
        7, [(1, flag("started", 10, la="E09000002")), (2, flag("ceased", 5, kind="looked_after"))]
    )
    assert {(p.kind, p.holder, p.valid_from, p.valid_to) for p in periods} == {
        ("child_protection_plan", "E09000002", BASE + timedelta(days=10), None),
        ("looked_after", "E09000012", None, BASE + timedelta(days=5)),
    }


FLAG_FACTS = st.lists(
    st.tuples(
        st.sampled_from(["started", "ended"]),
        st.integers(min_value=0, max_value=60),
        st.sampled_from(["child_protection_plan", "looked_after"]),
        st.sampled_from(["E09000012", "E09000002"]),
    ),
    max_size=8,
)


@given(FLAG_FACTS, st.randoms())
def test_flag_periods_do_not_depend_on_arrival_order(facts: list[Any], rnd: Any) -> None:
    numbered = [(pk, flag(c, d, k, la)) for pk, (c, d, k, la) in enumerate(facts)]
    shuffled = list(numbered)
    rnd.shuffle(shuffled)
    assert flag_periods(1, numbered) == flag_periods(1, shuffled)


def enrolled(urn: str, start: int, end: int | None = None) -> dict[str, Any]:
    fact: dict[str, Any] = {
        "school_urn": urn,
        "start_date": (BASE + timedelta(days=start)).isoformat(),
        "dsl_org_id": f"school-{urn}",
    }
    if end is not None:
        fact["end_date"] = (BASE + timedelta(days=end)).isoformat()
    return fact


def test_a_leaving_date_closes_the_enrolment_the_day_after() -> None:
    periods = enrolment_periods(
        3,
        [(1, enrolled("100241", 0)), (2, enrolled("100241", 0, 100)), (3, enrolled("100242", 101))],
    )
    assert [(p.kind, p.valid_from, p.valid_to) for p in periods] == [
        ("100241", BASE, BASE + timedelta(days=101)),
        ("100242", BASE + timedelta(days=101), None),
    ]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["100241", "100242"]),
            st.integers(min_value=0, max_value=30),
            st.one_of(st.none(), st.integers(min_value=31, max_value=60)),
        ),
        max_size=6,
    ),
    st.randoms(),
)
def test_enrolment_periods_do_not_depend_on_arrival_order(facts: list[Any], rnd: Any) -> None:
    numbered = [(pk, enrolled(u, s, e)) for pk, (u, s, e) in enumerate(facts)]
    shuffled = list(numbered)
    rnd.shuffle(shuffled)
    renumbered = [(pk, f) for pk, (_, f) in enumerate(shuffled)]
    assert enrolment_periods(1, numbered) == enrolment_periods(1, renumbered)
