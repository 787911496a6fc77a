"""Per-recipient minimisation in the pure evaluator: one candidate per recipient, each
naming only the children and carrying only the facts its rule's view allows."""

from __future__ import annotations

from datetime import date

from tests.factories import NOW

from lookout.household.snapshot import HouseholdSnapshot, Member
from lookout.rules.evaluator import NamedPerson, TriggerEvent, evaluate
from lookout.rules.model import load_rules
from lookout.settings import PROJECT_ROOT

[RULE] = [r for r in load_rules(PROJECT_ROOT / "rules") if r.id == "domestic-abuse-children"]


def test_each_school_sees_only_its_pupils_and_the_minimised_trigger() -> None:
    household = HouseholdSnapshot(
        9,
        "100023336956",
        "E09000012",
        date(2026, 11, 20),
        (
            Member(1, 35, None),
            Member(2, 8, None, school_urn="100241"),
            Member(3, None, None, school_urn="100555"),  # no date of birth
        ),
    )
    incident = TriggerEvent(
        7,
        "urn:lookout:agency:met-police",
        "cad-1",
        RULE.spec.trigger.types[0],
        NOW,
        {},
        None,
        None,
        (NamedPerson("involved", 1, 35), NamedPerson("child_present", 4, 5, "100241")),
    )
    found = {c.recipient_key: c for c in evaluate([RULE], incident, household)}
    assert set(found) == {"children_services:E09000012", "school:100241", "school:100555"}
    assert found["children_services:E09000012"].children == (2, 3, 4)
    assert found["school:100241"].children == (2, 4)
    assert found["school:100555"].children == (3,)

    school = found["school:100555"].explanation
    assert set(school) == {"rule", "recipient", "conditions", "children", "lawful_basis"}
    assert school["children"] == [
        {"person_id": 3, "age": None, "note": "date of birth unknown: counted as a possible child"}
    ]
    trigger, condition = school["conditions"]
    assert trigger["events"] == [
        {
            "source": "urn:lookout:agency:met-police",
            "type": RULE.spec.trigger.types[0],
            "date": "2026-11-20",
        }
    ]
    assert set(condition) == {"id", "description", "result"}
    assert found["school:100555"].summary is not None
    assert found["school:100555"].summary.startswith("Operation Encompass")

    council = found["children_services:E09000012"].explanation
    assert council["household"]["members"] == 3
    assert {m["person_id"] for m in council["conditions"][1]["members"]} == {2, 3, 4}
    assert found["children_services:E09000012"].summary is None  # the rule's own summary
