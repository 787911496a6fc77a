"""schemas/rules/rule.schema.json is the JSON Schema of a rule file: it is what the code
validates (kept in step with ``RuleSpec``), every rule in rules/ passes it, and a broken
rule does not."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from lookout.rules.model import rule_json_schema
from lookout.settings import PROJECT_ROOT

SCHEMA_FILE = PROJECT_ROOT / "schemas" / "rules" / "rule.schema.json"
RULE_FILES = sorted((PROJECT_ROOT / "rules").glob("*.yaml"))


def test_the_schema_file_is_the_one_the_code_validates() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == rule_json_schema(), (
        "regenerate it: lookout rules schema > schemas/rules/rule.schema.json"
    )


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_every_rule_file_passes_the_schema(path: Path) -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text()))
    assert validator.is_valid(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    "change",
    [
        {"recipients": ["the_press"]},
        {"minimisation": {"school": {"carries": ["everything"]}}},
        {"household": [{"id": "x", "description": "x", "member": {"joined_within_days": 0}}]},
    ],
)
def test_a_broken_rule_fails_the_schema(change: dict[str, object]) -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text()))
    content = {**yaml.safe_load(RULE_FILES[0].read_text()), **change}
    assert not validator.is_valid(content)
