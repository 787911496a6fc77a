"""Check-digit validation for the person identifiers Lookout accepts.

Two identifiers carry a check character that a publisher's typo almost always breaks:

* the NHS number (Modulus 11 check digit), and
* the DfE Unique Pupil Number (modulo 23 check letter).

A JSON Schema can only check their shape, so the worker runs these functions on every
person object after schema validation and rejects the event with the reason code
``invalid_identifier`` when one fails (see ``schemas/README.md``).

All functions are pure and never raise on malformed *values* being validated; the
``*_check_*`` helpers raise :class:`ValueError` when given input of the wrong shape, since
that is a programming error in the caller (typically a test data generator).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from operator import mul
from typing import Final

__all__ = [
    "UPN_LETTERS",
    "invalid_identifiers",
    "is_valid_nhs_number",
    "is_valid_upn",
    "nhs_number_check_digit",
    "upn_check_letter",
]

_NHS_WEIGHTS: Final = range(10, 1, -1)
_UPN_POSITIONS: Final = range(2, 14)

# ASCII only: str.isdigit() would accept e.g. Arabic-Indic or superscript digits.
_NINE_DIGITS: Final = re.compile(r"[0-9]{9}")
_TEN_DIGITS: Final = re.compile(r"[0-9]{10}")

UPN_LETTERS: Final = "ABCDEFGHJKLMNPQRTUVWXYZ"
"""The 23 letters used by the UPN scheme, in value order (A=0 ... Z=22; no I, O or S).

They are both the possible check letters (remainder -> letter) and the possible final
characters of a temporary UPN (letter -> value used in the weighted sum).
"""
# The value of each character in a UPN's weighted sum: a digit its own, a letter its index.
_UPN_VALUE: Final = {str(d): d for d in range(10)} | {c: i for i, c in enumerate(UPN_LETTERS)}

_UPN_BODY: Final = re.compile(rf"[0-9]{{11}}[0-9{UPN_LETTERS}]")
_UPN: Final = re.compile(rf"[{UPN_LETTERS}][0-9]{{11}}[0-9{UPN_LETTERS}]")


def nhs_number_check_digit(first9: str) -> int | None:
    """Return the NHS number check digit for the first nine digits, or ``None``.

    Rule (NHS Data Dictionary, "NHS Number", Modulus 11 algorithm):

    1. multiply each of the first nine digits by a weight, 10 for the first digit down
       to 2 for the ninth;
    2. add the products and take the remainder of the total divided by 11;
    3. subtract the remainder from 11; the result is the check digit;
    4. a result of 11 gives check digit 0; a result of 10 means the nine digits can never
       form a valid NHS number, so ``None`` is returned.

    Raises:
        ValueError: if ``first9`` is not exactly nine ASCII digits.
    """
    if _NINE_DIGITS.fullmatch(first9) is None:
        raise ValueError("first9 must be exactly nine ASCII digits")
    # The digits' byte values are their values plus 48 (ASCII "0"): the weighted sum of
    # the bytes, less 48 times the sum of the weights (54). Every event's NHS numbers go
    # through here, so the loop runs in C.
    total: int = sum(map(mul, first9.encode("ascii"), _NHS_WEIGHTS)) - 48 * 54
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def is_valid_nhs_number(value: str) -> bool:
    """Return whether ``value`` is a well-formed NHS number with a correct check digit.

    The value must be exactly ten ASCII digits with no spaces or separators (publishers
    strip the usual ``943 476 5919`` spacing), and the tenth digit must equal the Modulus 11
    check digit of the first nine (see :func:`nhs_number_check_digit`). Nine digits whose
    check digit would be 10 are never valid.
    """
    if _TEN_DIGITS.fullmatch(value) is None:
        return False
    expected = nhs_number_check_digit(value[:9])
    return expected is not None and expected == int(value[9])


def upn_check_letter(body12: str) -> str:
    """Return the check letter for the twelve characters that follow it in a UPN.

    Rule (DfE, "Unique Pupil Numbers (UPN): a guide for schools and local authorities";
    UK Government Data Standards Catalogue, "Unique Pupil Number" v2.0; school census
    validation rule 1510):

    * ``body12`` is UPN characters 2 to 13: the 3-digit LA number, the 4-digit DfE
      establishment number, the 2-digit year of allocation and a 3-character serial whose
      last character is a digit (permanent UPN) or a letter from :data:`UPN_LETTERS`
      (temporary UPN);
    * multiply the character in UPN position *n* by *n* (position 2 by 2, ..., position 13
      by 13); a digit counts as its value, a final letter counts as its index in
      :data:`UPN_LETTERS` (A=0, B=1, ..., H=7, J=8, ..., N=12, P=13, Q=14, R=15, T=16, ...,
      Z=22);
    * add the products; the remainder of the total divided by 23 indexes
      :data:`UPN_LETTERS` to give the check letter.

    Raises:
        ValueError: if ``body12`` is not eleven ASCII digits followed by a digit or one of
            :data:`UPN_LETTERS`.
    """
    if _UPN_BODY.fullmatch(body12) is None:
        raise ValueError(
            f"body12 must be eleven ASCII digits followed by a digit or a letter of {UPN_LETTERS!r}"
        )
    total: int = sum(map(mul, map(_UPN_VALUE.__getitem__, body12), _UPN_POSITIONS))
    return UPN_LETTERS[total % 23]


def is_valid_upn(value: str) -> bool:
    """Return whether ``value`` is a well-formed Unique Pupil Number with a correct check letter.

    A UPN is 13 characters: the check letter (one of :data:`UPN_LETTERS`), eleven digits,
    then a digit (permanent UPN) or a letter of :data:`UPN_LETTERS` (temporary UPN). The
    first character must equal :func:`upn_check_letter` of the other twelve. Upper case
    only; I, O and S never appear. Whether characters 2-4 are a real LA number is not
    checked here.
    """
    if _UPN.fullmatch(value) is None:
        return False
    return upn_check_letter(value[1:]) == value[0]


def invalid_identifiers(person: Mapping[str, object]) -> list[str]:
    """Return the names of the check-digit identifiers of ``person`` that fail their check.

    ``person`` is a person object as defined in ``schemas/events/defs.json``. The fields
    checked are ``nhs_number`` (:func:`is_valid_nhs_number`) and ``upn``
    (:func:`is_valid_upn`); a field that is absent is not reported, a field that is present
    but not a string is. The result is in that fixed order and empty when all pass.
    """
    failed: list[str] = []
    nhs_number = person.get("nhs_number")
    if "nhs_number" in person and not (
        isinstance(nhs_number, str) and is_valid_nhs_number(nhs_number)
    ):
        failed.append("nhs_number")
    upn = person.get("upn")
    if "upn" in person and not (isinstance(upn, str) and is_valid_upn(upn)):
        failed.append("upn")
    return failed
