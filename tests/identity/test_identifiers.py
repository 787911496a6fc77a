"""Check-digit rules for NHS numbers and Unique Pupil Numbers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lookout.identity.identifiers import (
    UPN_LETTERS,
    invalid_identifiers,
    is_valid_nhs_number,
    is_valid_upn,
    nhs_number_check_digit,
    upn_check_letter,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DIGITS = "0123456789"

# ---------------------------------------------------------------------------- NHS number


@pytest.mark.parametrize(
    "value",
    [
        "9434765919",
        "9434765870",
        "9434765889",
        "4010232137",
        "9434765900",  # 11 - (sum % 11) == 11, so the check digit is 0
    ],
)
def test_valid_nhs_numbers(value: str) -> None:
    assert is_valid_nhs_number(value)


@pytest.mark.parametrize(
    "value",
    [
        "9434765871",  # wrong check digit
        "9434765918",  # wrong check digit
        "4334765919",  # transposed first two digits
        "9434765960",  # first nine give check 10: never valid
        "1234567890",  # first nine give check 10: never valid
        "943476591",  # too short
        "94347659190",  # too long
        "943 476 5919",  # separators are not accepted
        "943-476-5919",
        " 9434765919",
        "",
        "943476591X",
        "٩٤٣٤٧٦٥٩١٩",  # Arabic-Indic digits (str.isdigit() is True for these)
    ],
)
def test_invalid_nhs_numbers(value: str) -> None:
    assert not is_valid_nhs_number(value)


def test_nhs_check_digit_known_values() -> None:
    assert nhs_number_check_digit("943476591") == 9
    assert nhs_number_check_digit("943476590") == 0
    assert nhs_number_check_digit("943476596") is None
    assert nhs_number_check_digit("123456789") is None


@pytest.mark.parametrize("bad", ["", "12345678", "1234567890", "12345678a", "٩٤٣٤٧٦٥٩١"])
def test_nhs_check_digit_rejects_malformed_input(bad: str) -> None:
    with pytest.raises(ValueError, match="nine ASCII digits"):
        nhs_number_check_digit(bad)


nine_digits = st.text(alphabet=DIGITS, min_size=9, max_size=9)


@given(first9=nine_digits)
def test_nhs_check_digit_completes_a_valid_number(first9: str) -> None:
    check = nhs_number_check_digit(first9)
    if check is None:
        # No tenth digit can make these nine valid.
        assert not any(is_valid_nhs_number(first9 + d) for d in DIGITS)
    else:
        assert is_valid_nhs_number(f"{first9}{check}")
        assert [d for d in DIGITS if is_valid_nhs_number(first9 + d)] == [str(check)]


@given(first9=nine_digits, position=st.integers(0, 9), replacement=st.sampled_from(DIGITS))
def test_nhs_any_single_digit_change_invalidates(
    first9: str, position: int, replacement: str
) -> None:
    check = nhs_number_check_digit(first9)
    assume(check is not None)
    valid = f"{first9}{check}"
    assume(valid[position] != replacement)
    changed = valid[:position] + replacement + valid[position + 1 :]
    assert not is_valid_nhs_number(changed)


# ---------------------------------------------------------------------------- UPN


@pytest.mark.parametrize(
    "value",
    [
        "B801200005001",  # python-stdnum's documented example
        "P207000016049",  # the school census 1510 worked example, with its arithmetic fixed
        "L204200121001",
        "K20420012101A",  # temporary UPN: final letter counts as its table value (A=0)
        "M80120000500A",
    ],
)
def test_valid_upns(value: str) -> None:
    assert is_valid_upn(value)


@pytest.mark.parametrize(
    "value",
    [
        "A801200005001",  # wrong check letter
        "Q207000016049",  # wrong check letter
        "l204200121001",  # lower case
        "L204200121001 ",
        "L20420012100",  # too short
        "L2042001210011",  # too long
        "I204200121001",  # I, O and S are never check letters
        "O204200121001",
        "S204200121001",
        "X80120000A001",  # letters only allowed in the last position
        "K20420012101I",  # I, O and S never end a temporary UPN
        "K20420012101O",
        "K20420012101S",
        "K20420012101a",
        "",
        "L٢٠٤200121001",  # noqa: RUF001 - non-ASCII digits
    ],
)
def test_invalid_upns(value: str) -> None:
    assert not is_valid_upn(value)


def test_upn_check_letter_worked_example() -> None:
    # 2*2 + 4*7 + 9*1 + 10*6 + 12*4 + 13*9 = 266; 266 % 23 = 13 -> P (A=0 ... H=7, J=8 ...)
    assert upn_check_letter("207000016049") == "P"
    assert upn_check_letter("801200005001") == "B"
    # Temporary UPN: the final "A" counts as 0, so it has the same letter as a final "0".
    assert upn_check_letter("80120000500A") == upn_check_letter("801200005000")


@pytest.mark.parametrize(
    "bad", ["", "80120000500", "8012000050011", "8012000050I1", "80120000500I"]
)
def test_upn_check_letter_rejects_malformed_input(bad: str) -> None:
    with pytest.raises(ValueError, match="body12"):
        upn_check_letter(bad)


def test_upn_letters_table() -> None:
    assert len(UPN_LETTERS) == 23
    assert set(UPN_LETTERS) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") - set("IOS")
    assert sorted(UPN_LETTERS) == list(UPN_LETTERS)


upn_bodies = st.builds(
    lambda digits, last: digits + last,
    st.text(alphabet=DIGITS, min_size=11, max_size=11),
    st.sampled_from(DIGITS + UPN_LETTERS),
)


@given(body=upn_bodies)
def test_upn_check_letter_makes_a_valid_upn(body: str) -> None:
    assert is_valid_upn(upn_check_letter(body) + body)


@given(body=upn_bodies, other=st.sampled_from(UPN_LETTERS))
def test_upn_changing_the_check_letter_invalidates(body: str, other: str) -> None:
    letter = upn_check_letter(body)
    assume(other != letter)
    assert not is_valid_upn(other + body)


@given(body=upn_bodies, position=st.integers(0, 11), data=st.data())
def test_upn_any_single_character_change_invalidates(
    body: str, position: int, data: st.DataObject
) -> None:
    allowed = DIGITS if position < 11 else DIGITS + UPN_LETTERS

    def value(c: str) -> int:  # a temporary UPN's serial letter weighs its index in the alphabet
        return int(c) if c.isdigit() else UPN_LETTERS.index(c)

    # A letter and a digit of equal weight (e.g. "5" and "F") are indistinguishable to the
    # check letter by design; every other single change is caught.
    replacement = data.draw(
        st.sampled_from([c for c in allowed if value(c) != value(body[position])])
    )
    upn = upn_check_letter(body) + body
    changed = upn[: position + 1] + replacement + upn[position + 2 :]
    assert not is_valid_upn(changed)


def test_defs_upn_pattern_agrees_with_the_algorithm() -> None:
    defs = json.loads((SCHEMAS / "events" / "defs.json").read_text(encoding="utf-8"))
    pattern = re.compile(defs["$defs"]["person"]["properties"]["upn"]["pattern"])
    for body in ["801200005001", "80120000500A", "20420012101Z"]:
        upn = upn_check_letter(body) + body
        assert pattern.search(upn)
        assert is_valid_upn(upn)
    for shape_only in ["I801200005001", "B80120000500S", "B80120000500a", "b801200005001"]:
        assert not pattern.search(shape_only)
        assert not is_valid_upn(shape_only)


# ---------------------------------------------------------------------------- persons


def test_invalid_identifiers_names_failing_fields() -> None:
    assert invalid_identifiers({"nhs_number": "9434765919", "upn": "L204200121001"}) == []
    assert invalid_identifiers({"family_name": "Turner", "birth_date": "1994-03-12"}) == []
    assert invalid_identifiers({"la_person_id": "9434765918"}) == []  # no check digit
    assert invalid_identifiers({"nhs_number": "9434765918"}) == ["nhs_number"]
    assert invalid_identifiers({"upn": "A801200005001"}) == ["upn"]
    assert invalid_identifiers({"upn": "A801200005001", "nhs_number": "9434765918"}) == [
        "nhs_number",
        "upn",
    ]
    assert invalid_identifiers({"nhs_number": 9434765919}) == ["nhs_number"]
    assert invalid_identifiers({"upn": None}) == ["upn"]


def _person_like(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "nhs_number" in value or "upn" in value:
            yield value
        for child in value.values():
            yield from _person_like(child)
    elif isinstance(value, list):
        for child in value:
            yield from _person_like(child)


def _catalogue_documents() -> list[tuple[str, Any]]:
    files = sorted((SCHEMAS / "examples").glob("*.json")) + sorted(
        (SCHEMAS / "events").glob("*.json")
    )
    return [(f"{p.parent.name}/{p.name}", json.loads(p.read_text("utf-8"))) for p in files]


def test_every_identifier_in_the_catalogue_and_examples_passes() -> None:
    checked = 0
    for name, document in _catalogue_documents():
        # In schemas, person-like dicts are also the "properties" maps: only check examples.
        scope = document.get("examples", []) if "$schema" in document else document
        if "$defs" in document:
            scope = [d.get("examples", []) for d in document["$defs"].values()]
        for person in _person_like(scope):
            assert invalid_identifiers(person) == [], (name, person)
            checked += 1
    assert checked >= 30
