"""Pure demographic matching: normalisation, blocking keys and Fellegi-Sunter scoring.

No I/O. The identity service finds candidates by *blocking* in PostgreSQL (indexed keys
stored on each person, see :class:`Demographics`) and scores each candidate here.

The model (Fellegi & Sunter 1969, as Splink implements it): each field is compared at one
of a few *agreement levels*; each level has an ``m`` probability (how often two records of
the same person agree at that level) and a ``u`` probability (how often two records of
different persons do). The level contributes a match weight ``log2(m / u)``; a missing
value contributes 0. The record pair's score is the sum of the field weights.

The m/u values below are Splink's documented defaults for names and dates of birth
(``splink.comparison_library`` name / date comparisons, trained on UK-style person data),
rounded, and the u of each level is the chance that two random persons in a population the
size of England agree at that level (e.g. a date of birth: about 1 in 30,000). They are not
trained on Lookout's data; retune them with Splink's EM on a labelled sample before relying
on the bands (``docs/identity.md``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

import jellyfish

__all__ = [
    "WEIGHTS",
    "Band",
    "Demographics",
    "Level",
    "Score",
    "band",
    "dob_level",
    "dob_transpositions",
    "normalise_name",
    "normalise_postcode",
    "postcode_district",
    "score",
    "weight",
]


class Level(StrEnum):
    """How two values of one field compare (the evidence kept for a link: never the values)."""

    exact = "exact"
    fuzzy = "fuzzy"  # names: Jaro-Winkler >= 0.92
    phonetic = "phonetic"  # names: same Metaphone code
    transposed = "transposed"  # date of birth: day/month swapped or two adjacent digits
    sector = "sector"  # postcode: same sector (outward code + first inward digit)
    district = "district"  # postcode: same outward code
    disagree = "disagree"
    missing = "missing"


# (m, u) per field and agreement level; weight = log2(m / u).
WEIGHTS: Final[dict[str, dict[Level, tuple[float, float]]]] = {
    "given_name": {
        Level.exact: (0.85, 0.005),
        Level.fuzzy: (0.07, 0.008),
        Level.phonetic: (0.04, 0.015),
        Level.disagree: (0.04, 0.972),
    },
    "family_name": {
        Level.exact: (0.88, 0.002),
        Level.fuzzy: (0.06, 0.004),
        Level.phonetic: (0.03, 0.01),
        Level.disagree: (0.03, 0.984),
    },
    "birth_date": {
        Level.exact: (0.92, 0.000035),
        Level.transposed: (0.05, 0.0003),
        Level.disagree: (0.03, 0.999665),
    },
    "postcode": {
        Level.exact: (0.70, 0.0005),
        Level.sector: (0.08, 0.004),
        Level.district: (0.07, 0.02),
        Level.disagree: (0.15, 0.9755),
    },
}


def weight(field: str, level: Level) -> float:
    if level is Level.missing:
        return 0.0
    m, u = WEIGHTS[field][level]
    return math.log2(m / u)


_NOT_LETTER = re.compile(r"[^a-z ]+")
_SPACES = re.compile(r" +")
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")


def normalise_name(value: str | None) -> str | None:
    """Lower case ASCII letters only: accents folded (``Zoë`` -> ``zoe``), apostrophes and
    hyphens dropped (``O'Neil-Smith`` -> ``oneilsmith``), spaces collapsed and trimmed.
    ``None`` when nothing is left."""
    if value is None:
        return None
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    lowered = folded.lower().replace("'", "").replace("-", "")
    cleaned = _SPACES.sub(" ", _NOT_LETTER.sub(" ", lowered)).strip()
    return cleaned or None


def first_token(value: str | None) -> str | None:
    return value.split(" ", 1)[0] if value else None


def normalise_postcode(value: str | None) -> str | None:
    """``e81dy`` / ``E8 1DY`` -> ``E8 1DY``; ``None`` if it is not a UK postcode shape."""
    if value is None:
        return None
    compact = value.replace(" ", "").upper()
    found = _POSTCODE.match(compact)
    return f"{found[1]} {found[2]}" if found else None


def postcode_district(postcode: str | None) -> str | None:
    """The outward code of a normalised postcode (``E8 1DY`` -> ``E8``)."""
    return postcode.split(" ", 1)[0] if postcode else None


def postcode_sector(postcode: str | None) -> str | None:
    """Outward code and the first inward digit (``E8 1DY`` -> ``E8 1``)."""
    return postcode[:-2] if postcode else None


def phonetic(name: str | None) -> str | None:
    """Metaphone of the first token of a normalised name (scoring)."""
    token = first_token(name)
    return jellyfish.metaphone(token) or None if token else None


def soundex(name: str | None) -> str | None:
    """Soundex of a normalised family name with its spaces removed (blocking: coarser than
    Metaphone, so spelling variants share a block)."""
    if not name:
        return None
    return jellyfish.soundex(name.replace(" ", ""))


def dob_transpositions(value: date) -> set[date]:
    """Dates a clerk may have typed for ``value``: day and month swapped, or two adjacent
    digits of ``YYYYMMDD`` swapped. Only real dates, never ``value`` itself."""
    found: set[date] = set()
    if value.day <= 12:  # a day of 12 or less is a month; a month is always a valid day
        found.add(date(value.year, value.day, value.month))
    digits = f"{value.year:04d}{value.month:02d}{value.day:02d}"
    for i in range(len(digits) - 1):
        if digits[i] == digits[i + 1]:
            continue
        swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
        if swapped[0] == "0":
            continue  # a year below 1000 is not a date of birth
        try:
            found.add(date(int(swapped[:4]), int(swapped[4:6]), int(swapped[6:])))
        except ValueError:
            continue
    found.discard(value)
    return found


def dob_level(a: date | None, b: date | None) -> Level:
    if a is None or b is None:
        return Level.missing
    if a == b:
        return Level.exact
    return Level.transposed if b in dob_transpositions(a) else Level.disagree


def name_level(a: str | None, b: str | None) -> Level:
    if not a or not b:
        return Level.missing
    if a == b:
        return Level.exact
    if jellyfish.jaro_winkler_similarity(a, b) >= 0.92:
        return Level.fuzzy
    if phonetic(a) == phonetic(b):
        return Level.phonetic
    return Level.disagree


def postcode_level(a: str | None, b: str | None) -> Level:
    if not a or not b:
        return Level.missing
    if a == b:
        return Level.exact
    if postcode_sector(a) == postcode_sector(b):
        return Level.sector
    if postcode_district(a) == postcode_district(b):
        return Level.district
    return Level.disagree


@dataclass(frozen=True, slots=True)
class Demographics:
    """A person's normalised demographics and the blocking keys derived from them."""

    given_name: str | None
    family_name: str | None
    birth_date: date | None
    postcode: str | None

    @classmethod
    def from_raw(
        cls,
        given_name: str | None,
        family_name: str | None,
        birth_date: date | None,
        postcode: str | None,
    ) -> Demographics:
        return cls(
            first_token(normalise_name(given_name)),
            normalise_name(family_name),
            birth_date,
            normalise_postcode(postcode),
        )

    @property
    def empty(self) -> bool:
        return not (self.given_name or self.family_name or self.birth_date or self.postcode)

    def blocking_keys(self) -> dict[str, str | int | None]:
        """Columns stored on ``persons`` (each indexed with the birth date or alone)."""
        return {
            "norm_given_name": self.given_name,
            "norm_family_name": self.family_name,
            "norm_postcode": self.postcode,
            "family_soundex": soundex(self.family_name),
            "birth_year": self.birth_date.year if self.birth_date else None,
            "postcode_district": postcode_district(self.postcode),
            "given_initial": self.given_name[0] if self.given_name else None,
        }


@dataclass(frozen=True, slots=True)
class Score:
    total: float
    levels: dict[str, Level]

    def evidence(self) -> dict[str, object]:
        """What an audit row or a review may hold: agreement levels and the score only."""
        return {
            "score": round(self.total, 2),
            "levels": {k: v.value for k, v in self.levels.items()},
        }


def score(a: Demographics, b: Demographics) -> Score:
    """The Fellegi-Sunter match weight of two persons' demographics."""
    levels = {
        "given_name": name_level(a.given_name, b.given_name),
        "family_name": name_level(a.family_name, b.family_name),
        "birth_date": dob_level(a.birth_date, b.birth_date),
        "postcode": postcode_level(a.postcode, b.postcode),
    }
    return Score(sum(weight(f, lv) for f, lv in levels.items()), levels)


class Band(StrEnum):
    auto_link = "auto_link"
    possible = "possible"
    new_person = "new_person"


def band(total: float, *, auto_link_at: float, possible_at: float) -> Band:
    if total >= auto_link_at:
        return Band.auto_link
    if total >= possible_at:
        return Band.possible
    return Band.new_person
