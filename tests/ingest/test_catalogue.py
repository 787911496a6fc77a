"""The event catalogue in schemas/ and its loader."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lookout.ingest.catalogue import MAX_ERRORS, SCHEMA_BASE_URI, Catalogue, CatalogueError
from lookout.ingest.validation import Reason

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EVENTS = SCHEMAS / "events"
EXAMPLES = SCHEMAS / "examples"

TYPES = [
    "uk.lookout.person.residence.v1",
    "uk.lookout.person.relationship.v1",
    "uk.lookout.health.ed_attendance.v1",
    "uk.lookout.health.admission.v1",
    "uk.lookout.education.enrolment.v1",
    "uk.lookout.education.absence.v1",
    "uk.lookout.education.exclusion.v1",
    "uk.lookout.police.domestic_abuse_incident.v1",
    "uk.lookout.social_care.child_protection_plan.v1",
    "uk.lookout.social_care.looked_after.v1",
    "uk.lookout.charity.concern.v1",
    "uk.lookout.event.retraction.v1",
]

ED = "uk.lookout.health.ed_attendance.v1"
DA = "uk.lookout.police.domestic_abuse_incident.v1"


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(SCHEMAS)


def _example(event_type: str) -> dict[str, Any]:
    data = _load(EXAMPLES / f"{event_type}.json")["data"]
    assert isinstance(data, dict)
    return data


# ---------------------------------------------------------------------------- coverage


def test_catalogue_has_exactly_the_twelve_types(catalogue: Catalogue) -> None:
    assert catalogue.types == frozenset(TYPES)
    assert {p.stem for p in EVENTS.glob("*.json")} == {*TYPES, "defs"}
    assert {p.stem for p in EXAMPLES.glob("*.json")} == set(TYPES)


def test_load_accepts_the_events_directory_itself() -> None:
    assert Catalogue.load(EVENTS).types == frozenset(TYPES)


@pytest.mark.parametrize("event_type", TYPES)
def test_schema_metadata(event_type: str) -> None:
    schema = _load(EVENTS / f"{event_type}.json")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{SCHEMA_BASE_URI}{event_type}.json"
    assert schema["title"]
    assert schema["description"]
    assert schema["type"] == "object"
    assert schema["examples"]


def _object_schemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield where, node
        for key, value in node.items():
            if key not in {"examples", "properties", "$defs"}:
                yield from _object_schemas(value, f"{where}/{key}")
            elif key != "examples":
                for name, sub in value.items():
                    yield from _object_schemas(sub, f"{where}/{key}/{name}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _object_schemas(item, f"{where}/{i}")


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_every_object_is_closed(path: Path) -> None:
    objects = list(_object_schemas(_load(path)))
    assert objects
    for where, node in objects:
        assert node.get("additionalProperties") is False, f"{path.name} {where}"


@pytest.mark.parametrize("event_type", TYPES)
def test_schema_examples_are_valid(catalogue: Catalogue, event_type: str) -> None:
    for example in _load(EVENTS / f"{event_type}.json")["examples"]:
        assert catalogue.errors(event_type, example) == []


# ---------------------------------------------------------------------------- example envelopes

_NHS_NUMBER = re.compile(r"[0-9]{10}")
_SOURCE = re.compile(r"urn:lookout:agency:[a-z0-9][a-z0-9-]*")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_example_envelope_is_a_valid_cloudevent(catalogue: Catalogue, path: Path) -> None:
    event = _load(path)
    assert set(event) == {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "data",
    }
    assert event["specversion"] == "1.0"
    assert event["type"] == path.stem
    assert isinstance(event["id"], str)
    assert event["id"]
    assert _SOURCE.fullmatch(event["source"])
    assert event["datacontenttype"] == "application/json"
    time = datetime.fromisoformat(event["time"])
    assert time.tzinfo is not None, "time must carry an offset"
    assert re.search(r"[+-][0-9]{2}:[0-9]{2}$", event["time"])
    # The subject is the publisher's own record reference, never an NHS number.
    assert isinstance(event["subject"], str)
    assert event["subject"]
    assert not _NHS_NUMBER.search(event["subject"])
    assert catalogue.errors(event["type"], event["data"]) == []


def test_example_ids_are_unique_per_source() -> None:
    keys = [(e["source"], e["id"]) for e in map(_load, EXAMPLES.glob("*.json"))]
    assert len(keys) == len(set(keys))


def test_nlgn_demo_scenario() -> None:
    """Mother with two children at one UPRN; the mother's ED attendance for alcohol."""
    incident = _example(DA)
    ed = _example(ED)
    mother = ed["patient"]
    assert ed["presenting_reasons"] == ["alcohol"]
    assert incident["persons_involved"][0]["person"] == mother
    assert len(incident["children_resident"]) == 2
    assert _example("uk.lookout.person.residence.v1") == {
        "person": mother,
        "address": incident["address"],
        "change": "moved_in",
        "date": "2024-08-01",
    }


# ---------------------------------------------------------------------------- negative cases


def _mutated(event_type: str, path: list[str | int], value: Any) -> dict[str, Any]:
    """The example data with the value at ``path`` replaced (``...`` deletes it)."""
    data = copy.deepcopy(_example(event_type))
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("event_type", "path", "value", "expected"),
    [
        pytest.param(ED, ["site_ods_code"], ..., '$: missing required property "site_ods_code"',
                     id="missing-required"),
        pytest.param(ED, ["patient", "shoe_size"], 9,
                     '$.patient: unexpected property "shoe_size"', id="extra-person-property"),
        pytest.param(ED, ["triage"], "red", '$: unexpected property "triage"',
                     id="extra-top-level-property"),
        pytest.param(ED, ["presenting_reasons", 0], "drunk",
                     "$.presenting_reasons[0]: must be one of", id="bad-enum"),
        pytest.param(ED, ["presenting_reasons"], [], "$.presenting_reasons: must have at least 1",
                     id="empty-reasons"),
        pytest.param(ED, ["presenting_reasons"], ["alcohol", "alcohol"],
                     "$.presenting_reasons: must not contain repeated items",
                     id="repeated-reasons"),
        pytest.param(ED, ["patient", "birth_date"], "1994-02-30",
                     "$.patient.birth_date: must be a valid date", id="bad-date"),
        pytest.param(ED, ["patient", "birth_date"], "12/03/1994",
                     "$.patient.birth_date: must be a valid date", id="non-iso-date"),
        pytest.param(ED, ["patient"], {"given_name": "Sarah", "postcode": "E8 1DY"},
                     "$.patient: person needs at least one identifier", id="person-unidentified"),
        pytest.param(ED, ["patient"], {"family_name": "Turner"},
                     "$.patient: person needs at least one identifier", id="person-no-birth-date"),
        pytest.param(ED, ["patient", "nhs_number"], "943 476 5919",
                     "$.patient.nhs_number: does not match the pattern", id="nhs-number-spaces"),
        pytest.param(ED, ["patient", "postcode"], "NOT A POSTCODE",
                     "$.patient.postcode: does not match the pattern", id="bad-postcode"),
        pytest.param(ED, ["patient", "upn"], "I204200121001",
                     "$.patient.upn: does not match the pattern", id="upn-letter-i"),
        pytest.param(ED, ["site_ods_code"], 42, "$.site_ods_code: must be of type string",
                     id="wrong-type"),
        pytest.param(DA, ["persons_involved", 1, "role"], "bystander",
                     "$.persons_involved[1].role: must be one of", id="nested-array-enum"),
        pytest.param(DA, ["persons_involved"], [], "$.persons_involved: must have at least 1",
                     id="nobody-involved"),
        pytest.param(DA, ["address", "la_code"], "Hackney",
                     "$.address.la_code: does not match the pattern", id="bad-la-code"),
        pytest.param(DA, ["children_present", 0, "nickname"], "M",
                     '$.children_present[0]: unexpected property "nickname"',
                     id="extra-child-property"),
        pytest.param("uk.lookout.education.absence.v1", ["attendance_rate"], 84,
                     "$.attendance_rate: must be at most 1", id="rate-above-one"),
        pytest.param("uk.lookout.education.exclusion.v1", ["days"], 0,
                     "$.days: must be at least 1", id="zero-days"),
        pytest.param("uk.lookout.education.exclusion.v1", ["days"], 1.5,
                     "$.days: must be of type integer", id="fractional-days"),
        pytest.param("uk.lookout.charity.concern.v1", ["summary"], "x" * 2001,
                     "$.summary: must be at most 2000", id="summary-too-long"),
        pytest.param("uk.lookout.event.retraction.v1", ["retracted_event_id"], "",
                     "$.retracted_event_id: must be at least 1", id="empty-retracted-id"),
    ],
)  # fmt: skip
def test_invalid_data_is_reported_with_its_path(
    catalogue: Catalogue, event_type: str, path: list[str | int], value: Any, expected: str
) -> None:
    errors = catalogue.errors(event_type, _mutated(event_type, path, value))
    assert errors
    assert any(e.startswith(expected) for e in errors), errors


def test_messages_do_not_quote_personal_data(catalogue: Catalogue) -> None:
    data = _mutated(ED, ["patient", "nhs_number"], "9434765919x")
    data["patient"]["given_name"] = ""
    errors = catalogue.errors(ED, data)
    assert len(errors) == 2
    assert not any("9434765919" in e or "Sarah" in e for e in errors)


def test_errors_are_capped(catalogue: Catalogue) -> None:
    data = {
        "patient": {"nhs_number": "1", "postcode": "?", "birth_date": "?"},
        "presenting_reasons": "x",
        "attendance_ref": 5,
        "extra": True,
    }  # 3 person errors, 2 wrong types, 1 unexpected and 1 missing property
    errors = catalogue.errors(ED, data)
    assert len(errors) == MAX_ERRORS


def test_data_must_be_an_object(catalogue: Catalogue) -> None:
    assert catalogue.errors(ED, ["alcohol"]) == ["$: must be of type object"]
    assert catalogue.errors(ED, None) == ["$: must be of type object"]


def test_non_json_python_values_are_reported(catalogue: Catalogue) -> None:
    assert catalogue.errors(ED, {"patient": {1, 2}}) == ["$: not a JSON value"]


def test_unknown_type_raises_key_error(catalogue: Catalogue) -> None:
    with pytest.raises(KeyError):
        catalogue.errors("uk.lookout.health.ed_attendance.v2", {})
    assert "uk.lookout.health.ed_attendance.v2" not in catalogue
    assert ED in catalogue
    assert catalogue.is_valid(ED, _example(ED))


# ---------------------------------------------------------------------------- loader failures


def _copy_catalogue(tmp_path: Path) -> Path:
    events = tmp_path / "events"
    events.mkdir()
    for path in EVENTS.glob("*.json"):
        (events / path.name).write_bytes(path.read_bytes())
    return events


def test_missing_defs_is_a_load_error(tmp_path: Path) -> None:
    events = _copy_catalogue(tmp_path)
    (events / "defs.json").unlink()
    with pytest.raises(CatalogueError, match=r"defs\.json"):
        Catalogue.load(tmp_path)


def test_unresolvable_ref_fails_at_load_without_network(tmp_path: Path) -> None:
    events = _copy_catalogue(tmp_path)
    path = events / f"{ED}.json"
    schema = _load(path)
    schema["properties"]["patient"] = {"$ref": "https://example.com/person.json"}
    path.write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(CatalogueError, match="cannot compile"):
        Catalogue.load(tmp_path)


def test_mismatched_id_is_a_load_error(tmp_path: Path) -> None:
    events = _copy_catalogue(tmp_path)
    path = events / f"{ED}.json"
    schema = _load(path)
    schema["$id"] = f"{SCHEMA_BASE_URI}something-else.json"
    path.write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"\$id"):
        Catalogue.load(tmp_path)


def test_badly_named_file_is_a_load_error(tmp_path: Path) -> None:
    events = _copy_catalogue(tmp_path)
    (events / "notes.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not an event type"):
        Catalogue.load(tmp_path)


def test_invalid_schema_is_a_load_error(tmp_path: Path) -> None:
    events = _copy_catalogue(tmp_path)
    path = events / f"{ED}.json"
    schema = _load(path)
    schema["required"] = "patient"
    path.write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(CatalogueError, match="not a valid JSON Schema"):
        Catalogue.load(tmp_path)


# ---------------------------------------------------------------------------- publisher's guide


def test_readme_documents_every_type_and_its_example_is_valid() -> None:
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    for event_type in TYPES:
        assert f"### `{event_type}`" in readme
    block = re.search(r"```json\n(.*?)\n```", readme, re.DOTALL)
    assert block is not None
    assert json.loads(block.group(1)) == _load(EXAMPLES / f"{ED}.json")


def test_readme_lists_the_rejection_codes() -> None:
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    codes = re.findall(r"^\| `([a-z_0-9]+)` \|", readme.split("## Rejections", 1)[1], re.M)
    assert codes == [reason.value for reason in Reason]
