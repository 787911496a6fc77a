"""The pure demographic matching rules: normalisation, transpositions, levels and bands."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lookout.identity.scoring import (
    Band,
    Demographics,
    Level,
    band,
    dob_level,
    dob_transpositions,
    normalise_name,
    normalise_postcode,
    postcode_district,
    score,
    weight,
)
from lookout.identity.service import MatchThresholds

DATES = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))
THRESHOLDS = MatchThresholds()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Zoë", "zoe"),
        ("  O'Neil-Smith ", "oneilsmith"),
        ("MARY   ANNE", "mary anne"),
        ("Łukasz", "ukasz"),
        ("---", None),
        (None, None),
    ],
)
def test_normalise_name_examples(raw: str | None, expected: str | None) -> None:
    assert normalise_name(raw) == expected


@given(st.text(max_size=40))
def test_normalise_name_is_idempotent_and_plain(raw: str) -> None:
    once = normalise_name(raw)
    assert normalise_name(once) == once
    if once is not None:
        assert once == once.strip()
        assert set(once) <= set("abcdefghijklmnopqrstuvwxyz ")
        assert "  " not in once


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ '-", max_size=30))
def test_case_and_punctuation_do_not_matter(raw: str) -> None:
    assert normalise_name(raw.upper()) == normalise_name(raw.lower())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("e81dy", "E8 1DY"), ("E8 1DY", "E8 1DY"), ("sw1a 1aa", "SW1A 1AA"), ("nonsense", None)],
)
def test_normalise_postcode(raw: str, expected: str | None) -> None:
    assert normalise_postcode(raw) == expected


def test_postcode_district() -> None:
    assert postcode_district("SW1A 1AA") == "SW1A"


@given(DATES)
def test_transpositions_are_real_other_dates(d: date) -> None:
    found = dob_transpositions(d)
    assert d not in found
    for other in found:
        # transposition is symmetric: typing it back gives the original
        assert d in dob_transpositions(other)


@given(DATES)
def test_day_month_swap_is_a_transposition(d: date) -> None:
    assume(d.day <= 12 and d.day != d.month)
    swapped = date(d.year, d.day, d.month)
    assert dob_level(d, swapped) is Level.transposed
    assert dob_level(swapped, d) is Level.transposed


@given(DATES, st.integers(min_value=0, max_value=6))
def test_adjacent_digit_swap_is_a_transposition(d: date, i: int) -> None:
    digits = d.strftime("%Y%m%d")
    assume(digits[i] != digits[i + 1] and (i > 0 or digits[1] != "0"))
    swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
    try:
        other = date(int(swapped[:4]), int(swapped[4:6]), int(swapped[6:]))
    except ValueError:
        return
    assert dob_level(d, other) is Level.transposed


def test_unrelated_dates_disagree_and_missing_is_neutral() -> None:
    assert dob_level(date(1990, 1, 1), date(1985, 6, 30)) is Level.disagree
    assert dob_level(None, date(1990, 1, 1)) is Level.missing
    assert weight("birth_date", Level.missing) == 0


def test_weights_are_ordered_by_agreement() -> None:
    for field in ("given_name", "family_name"):
        levels = [Level.exact, Level.fuzzy, Level.phonetic, Level.disagree]
        weights = [weight(field, lv) for lv in levels]
        assert weights == sorted(weights, reverse=True)
    assert weight("postcode", Level.exact) > weight("postcode", Level.sector)
    assert weight("postcode", Level.sector) > weight("postcode", Level.district)


SARAH = Demographics.from_raw("Sarah", "Turner", date(1994, 3, 12), "E8 1DY")


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        (Demographics.from_raw("SARAH", "turner", date(1994, 3, 12), "e81dy"), Band.auto_link),
        (Demographics.from_raw("Sarah", "Turner", date(1994, 12, 3), "E8 1DY"), Band.auto_link),
        # A twin: same family, date of birth and address, a different given name.
        (Demographics.from_raw("Emma", "Turner", date(1994, 3, 12), "E8 1DY"), Band.possible),
        (Demographics.from_raw(None, "Turner", date(1994, 3, 12), None), Band.possible),
        (Demographics.from_raw("Sara", "Turner", date(1994, 3, 21), "E8 2AB"), Band.possible),
        (Demographics.from_raw("Sarah", "Turner", date(1971, 3, 12), "N1 9GU"), Band.new_person),
        (Demographics.from_raw("John", "Smith", date(1994, 3, 12), "E8 1DY"), Band.new_person),
    ],
)
def test_bands(other: Demographics, expected: Band) -> None:
    total = score(SARAH, other).total
    got = band(total, auto_link_at=THRESHOLDS.auto_link_at, possible_at=THRESHOLDS.possible_at)
    assert got is expected, total


@given(
    st.text(max_size=12),
    st.text(max_size=12),
    st.one_of(st.none(), DATES),
    st.sampled_from([None, "E8 1DY", "e8 1dz", "N1 9GU"]),
)
def test_score_is_symmetric_and_maximal_on_itself(
    given_name: str, family: str, birth: date | None, postcode: str | None
) -> None:
    a = Demographics.from_raw(given_name, family, birth, postcode)
    b = Demographics.from_raw(family, given_name, birth, "SW1A 1AA")
    assert score(a, b).total == pytest.approx(score(b, a).total)
    assert score(a, a).total >= score(a, b).total


def test_evidence_holds_levels_not_values() -> None:
    evidence = score(SARAH, SARAH).evidence()
    text = repr(evidence).lower()
    for value in ("sarah", "turner", "1994", "e8"):
        assert value not in text
    assert evidence["levels"] == {
        "given_name": "exact",
        "family_name": "exact",
        "birth_date": "exact",
        "postcode": "exact",
    }
