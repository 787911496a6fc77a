"""Rule files: their shape (validated on load), their version, and their compiled form.

A rule file is YAML; ``rules/README.md`` is the author's reference. The version of a rule
is the SHA-256 of its normalised content, so any change makes a new version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import cel
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lookout.ingest.schemas import EVENT_TYPE_PATTERN


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    urgent = "urgent"


class UnknownAge(StrEnum):
    counts = "counts"  # a member with no date of birth counts as matching (and is named so)
    excluded = "excluded"  # a member with no date of birth does not match


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FlagKind = Literal["child_protection_plan", "looked_after"]
# A member's relationship to the event's subject, seen from the subject: ``parent`` (the
# member is the subject's parent), ``child``, ``carer``, ``cared_for``, ``partner``.
RelationKind = Literal["parent", "child", "carer", "cared_for", "partner"]
RecipientKind = Literal["children_services", "plan_la", "school"]
# The roles in which an event names persons other than its subject (``person_refs``).
NamedRole = Literal["involved", "child_present", "child_resident", "related"]
# The facts an alert's explanation may carry (see ``RecipientView``).
Fact = Literal[
    "event_type",  # the trigger event's type
    "event_date",  # the trigger event's date (Europe/London)
    "event_time",  # the trigger event's full time
    "event_source",  # the publishing agency (e.g. the police force)
    "event_ref",  # the trigger event's id at its source
    "subject",  # the subject's person id, age and flags
    "household",  # the household's id, local authority, date and size
    "members",  # the members each household condition matched (ids, ages, joined, flags)
    "history",  # the events each history window counted
    "named",  # the persons the event names (ids and roles)
]
ALL_FACTS: tuple[Fact, ...] = (
    "event_type",
    "event_date",
    "event_time",
    "event_source",
    "event_ref",
    "subject",
    "household",
    "members",
    "history",
    "named",
)
# A school sees its own pupils and the minimised trigger: never other members, the
# subject's details, the events behind a history window, or other named persons.
SCHOOL_FORBIDDEN: frozenset[str] = frozenset({"subject", "members", "history", "named"})


class SubjectSpec(_Strict):
    age_at_least: int | None = Field(default=None, ge=0, le=130)
    age_under: int | None = Field(default=None, ge=0, le=130)
    unknown_age: UnknownAge = UnknownAge.excluded
    # The subject must hold one of these flags on the event's date (e.g. a protection plan).
    flags_any: list[FlagKind] = Field(default_factory=list)


class TriggerSpec(_Strict):
    types: list[str] = Field(min_length=1)
    subject: SubjectSpec = SubjectSpec()
    condition: str | None = None
    description: str


class MemberSpec(_Strict):
    age_under: int | None = Field(default=None, ge=0, le=130)
    age_at_least: int | None = Field(default=None, ge=0, le=130)
    unknown_age: UnknownAge = UnknownAge.counts
    exclude_subject: bool = True
    # The member must hold one of these flags on the event's date.
    flags_any: list[FlagKind] = Field(default_factory=list)
    # The member joined the household (moved in) within this many days up to the event's
    # date: joined in (date - N days, date].
    joined_within_days: int | None = Field(default=None, ge=1, le=3660)
    # The member has one of these relationships to the event's subject on the event's date.
    relationship_to_subject: list[RelationKind] = Field(default_factory=list)


class HouseholdCondition(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    count_at_least: int = Field(default=1, ge=1)
    member: MemberSpec
    # Persons the event names in these roles count too, even when they do not live in the
    # household (e.g. a child present at a police incident): ``involved``,
    # ``child_present``, ``child_resident``.
    also_named: list[NamedRole] = Field(default_factory=list)


class HistoryCondition(_Strict):
    """At least ``count_at_least`` matching events in the window (T - within_days, T]."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    scope: Literal["subject", "household"] = "household"
    types: list[str] = Field(min_length=1)
    condition: str | None = None
    member: MemberSpec | None = None
    within_days: int = Field(ge=1, le=3660)
    count_at_least: int = Field(default=1, ge=1)


class RecipientView(_Strict):
    """What one kind of recipient may see of an alert (minimisation)."""

    carries: list[Fact] = Field(min_length=1)
    # ``all``: every child the alert concerns; ``own_pupils``: only the children the
    # recipient school teaches (required for schools).
    children: Literal["all", "own_pupils"] = "all"
    # What this recipient reads in its alert list, instead of the rule's ``summary``.
    summary: str | None = Field(default=None, max_length=500)


FULL_VIEW = RecipientView(carries=list(ALL_FACTS))


class RuleSpec(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=100)
    title: str
    description: str
    owner: str
    review_date: str
    severity: Severity
    trigger: TriggerSpec
    household: list[HouseholdCondition] = Field(default_factory=list)
    history: list[HistoryCondition] = Field(default_factory=list)
    # children_services: of the household's local authority; plan_la: of each local
    # authority holding a flag that a flags_any condition matched; school: each child's
    # school (one alert per school, naming only its pupils).
    recipients: list[RecipientKind] = Field(min_length=1)
    cooldown_days: int = Field(default=0, ge=0)
    summary: str = Field(max_length=500)
    lawful_basis: str
    # Which facts each kind of recipient may see; a kind not listed sees every fact
    # (schools must be listed).
    minimisation: dict[RecipientKind, RecipientView] = Field(default_factory=dict)

    def view(self, kind: str) -> RecipientView:
        """What a recipient of this kind may see (every fact unless the rule says less)."""
        return next((v for k, v in self.minimisation.items() if k == kind), FULL_VIEW)


RULE_SCHEMA_ID = "https://lookout.example/schemas/rules/rule.schema.json"


def rule_json_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file (``schemas/rules/rule.schema.json`` is this, written
    out by ``lookout rules schema``; a test keeps the two in step). Editors and CI can check
    rule files with it; ``lookout rules validate`` also compiles the expressions and checks
    what a schema cannot (event type names, minimisation for schools)."""
    schema = RuleSpec.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": RULE_SCHEMA_ID,
        **schema,
        "title": "Lookout trigger rule",
        "description": "One trigger rule file in rules/ (YAML). The reference is rules/README.md.",
    }


class RuleError(ValueError):
    """A rule file that cannot be used, with the file, the line and what to fix."""

    def __init__(
        self, message: str, problems: list[tuple[tuple[Any, ...], str]] | None = None
    ) -> None:
        super().__init__(message)
        self.problems = problems or []


# The tokens of a CEL expression, enough to tell which fields of ``data`` it reads: string
# and bytes literals (raw ones take no escapes) and comments, which can hold any text;
# identifiers; and any other single character. Whitespace is dropped.
_RAW_STRING = (
    r"""(?:[bB]?[rR]|[rR][bB])(?:'{3}[\s\S]*?'{3}|"{3}[\s\S]*?"{3}|'[^'\r\n]*'|"[^"\r\n]*")"""
)
_STRING = (
    r"""[bB]?(?:'{3}(?:\\[\s\S]|[^\\])*?'{3}|"{3}(?:\\[\s\S]|[^\\])*?"{3}"""
    r"""|'(?:\\.|[^'\\\r\n])*'|"(?:\\.|[^"\\\r\n])*")"""
)
_CEL_TOKENS = re.compile(
    rf"(?P<skip>\s+|//[^\r\n]*)|(?P<string>{_RAW_STRING}|{_STRING})"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<other>[\s\S])"
)


def data_fields(expression: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """The top-level fields of ``data`` that ``expression`` reads, and those of them it
    only tests with ``has(data.f)``; None when it may read ``data`` otherwise (``data[k]``,
    ``size(data)``, ``data`` passed whole), so it needs all of it.

    Found from the tokens: every use of the identifier ``data`` must be followed by
    ``.field`` and not by a call (``data.size()``); so a comprehension that names its
    variable ``data`` gets all of it."""
    tokens = [
        (kind, m.group())
        for m in _CEL_TOKENS.finditer(expression)
        if (kind := m.lastgroup) not in (None, "skip")
    ]
    reads: set[str] = set()
    valued: set[str] = set()
    for i, (kind, text) in enumerate(tokens):
        if kind != "ident" or text != "data":
            continue
        after = tokens[i + 1 : i + 4]
        if len(after) < 2 or after[0] != ("other", ".") or after[1][0] != "ident":
            return None
        if after[2:] == [("other", "(")]:  # a call on data (data.size()), not a field
            return None
        field_ = after[1][1]
        reads.add(field_)
        in_has = (
            tokens[max(i - 3, 0) : i][-2:] == [("ident", "has"), ("other", "(")]
            and (i < 3 or tokens[i - 3] != ("other", "."))
            and after[2:] == [("other", ")")]
        )
        if not in_has:
            valued.add(field_)
    return frozenset(reads), frozenset(reads - valued)


MEMO_LIMIT = 4096  # results a condition keeps (the distinct coded values are few)


@dataclass(frozen=True)
class Condition:
    """A compiled CEL condition on an event's ``data``.

    Handing a Python value to CEL converts all of it, and that conversion, not the
    expression, is most of the cost of an evaluation (tens of microseconds for an event's
    ``data`` with its person references). So a condition is handed only the fields it
    reads (``data_fields``), with those it only tests with ``has()`` as null: the result
    is the same as with the whole of ``data``."""

    source: str
    program: cel.Program
    fields: frozenset[str] | None  # the fields of ``data`` it reads; None: all of ``data``
    presence_only: frozenset[str] = frozenset()  # read only by has(data.f)
    # Results by ``memo_key``: the coded values conditions read (reasons, a change) repeat
    # from event to event, and executing the program costs microseconds each time.
    memo: dict[tuple[Any, ...], bool] = field(default_factory=dict, compare=False, repr=False)

    def context(self, data: dict[str, Any]) -> dict[str, Any]:
        """The variables to execute the program with, for an event's ``data``."""
        if self.fields is None:
            return {"data": data}
        only = self.presence_only
        return {"data": {f: None if f in only else data[f] for f in self.fields if f in data}}

    def holds(self, data: dict[str, Any]) -> bool:
        """Whether the program is true for an event's ``data`` (raises what CEL raises;
        an error is never kept in the memo)."""
        key = self.memo_key(data)
        if key is not None and (known := self.memo.get(key)) is not None:
            return known
        held = self.program.execute(self.context(data)) is True
        if key is not None and len(self.memo) < MEMO_LIMIT:
            self.memo[key] = held
        return held

    def memo_key(self, data: dict[str, Any]) -> tuple[Any, ...] | None:
        """What ``context`` hands the program, as a key exact in type (Python's
        ``True == 1 == 1.0`` must not share a result): each field read is absent (None),
        present (True, read only by ``has()``), text, or a tuple of texts. None when a
        value is anything else, or the condition reads all of ``data``: no memo then."""
        if self.fields is None:
            return None
        key: list[Any] = []
        for f in self.fields:
            if f not in data:
                key.append(None)
            elif f in self.presence_only:
                key.append(True)
            elif type(value := data[f]) is str:
                key.append(value)
            elif type(value) is list and all(type(v) is str for v in value):
                key.append(tuple(value))
            else:
                return None
        return tuple(key)


@dataclass(frozen=True, slots=True)
class View:
    """A recipient's view (``RuleSpec.view``) as the evaluator applies it, worked out once
    per rule: the facts it carries, as a set and in ``ALL_FACTS`` order, and its summary
    with its whitespace folded."""

    carries: frozenset[str]
    listed: tuple[Fact, ...]
    children: Literal["all", "own_pupils"]
    summary: str | None


@dataclass(frozen=True)
class Rule:
    spec: RuleSpec
    version: str
    condition: Condition | None
    path: Path | None = None
    history_conditions: tuple[Condition | None, ...] = ()
    content: dict[str, Any] = field(default_factory=dict)  # as written; the version hashes it

    @property
    def id(self) -> str:
        return self.spec.id

    @cached_property
    def trigger_types(self) -> frozenset[str]:
        """The event types that trigger the rule (the evaluator's first test)."""
        return frozenset(self.spec.trigger.types)

    @cached_property
    def views(self) -> dict[str, View]:
        """Each kind of recipient's view (every fact unless the rule says less)."""
        views: dict[str, View] = {}
        for kind in self.spec.recipients:
            view = self.spec.view(kind)
            carries = frozenset(view.carries)
            views[kind] = View(
                carries,
                tuple(f for f in ALL_FACTS if f in carries),
                view.children,
                " ".join(view.summary.split()) if view.summary else None,
            )
        return views

    @cached_property
    def lawful_basis(self) -> str:
        """The rule's lawful basis with its whitespace folded, as explanations carry it."""
        return " ".join(self.spec.lawful_basis.split())

    @property
    def max_window_days(self) -> int:
        return max((h.within_days for h in self.spec.history), default=0)


def rule_version(content: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def compile_rule(content: Any, *, path: Path | None = None) -> Rule:
    where = str(path) if path else "rule"
    if not isinstance(content, dict):
        raise RuleError(f"{where}: a rule file must be a YAML mapping")
    try:
        spec = RuleSpec.model_validate(content)
    except ValidationError as exc:
        problems = [(tuple(e["loc"]), e["msg"]) for e in exc.errors(include_url=False)]
        text = "; ".join(f"{'.'.join(str(p) for p in loc)}: {msg}" for loc, msg in problems)
        raise RuleError(f"{where}: {text}", problems) from None

    types = [("trigger.types", t) for t in spec.trigger.types]
    types += [(f"history.{h.id}.types", t) for h in spec.history for t in h.types]
    for name, event_type in types:
        if not re.match(EVENT_TYPE_PATTERN, event_type):
            raise RuleError(f"{where}: {name}: {event_type!r} is not an event type")
    _check_minimisation(spec, where)
    program = _compile(spec.trigger.condition, f"{where}: trigger.condition")
    history = tuple(
        _compile(h.condition, f"{where}: history.{h.id}.condition") for h in spec.history
    )
    return Rule(
        spec=spec,
        version=rule_version(content),
        condition=program,
        path=path,
        history_conditions=history,
        content=content,
    )


def _check_minimisation(spec: RuleSpec, where: str) -> None:
    for kind in spec.minimisation:
        if kind not in spec.recipients:
            raise RuleError(f"{where}: minimisation.{kind}: {kind} is not one of the recipients")
    if "school" not in spec.recipients:
        return
    school = spec.minimisation.get("school")
    if school is None:
        raise RuleError(
            f"{where}: minimisation.school: a rule that alerts schools must say what a school "
            "may see (minimisation.school.carries)"
        )
    if school.children != "own_pupils":
        raise RuleError(f"{where}: minimisation.school.children: a school sees only own_pupils")
    if forbidden := sorted(SCHOOL_FORBIDDEN & set(school.carries)):
        raise RuleError(
            f"{where}: minimisation.school.carries: a school may not see {', '.join(forbidden)}"
        )


def _compile(expression: str | None, where: str) -> Condition | None:
    if not expression:
        return None
    try:
        program = cel.compile(expression)
    except ValueError as exc:
        raise RuleError(f"{where}: {exc}") from None
    found = data_fields(expression)
    if found is None:
        return Condition(expression, program, None)
    return Condition(expression, program, *found)


def load_rule_file(path: Path) -> Rule:
    text = path.read_text(encoding="utf-8")
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: not valid YAML: {exc}") from None
    try:
        return compile_rule(content, path=path)
    except RuleError as exc:
        if not exc.problems:
            raise
        root = yaml.compose(text)
        lines = [
            f"{path}:{_line_of(root, loc)}: {'.'.join(str(p) for p in loc)}: {msg}"
            for loc, msg in exc.problems
        ]
        raise RuleError("\n".join(lines), exc.problems) from None


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = 1
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1 if node is not None else line


def load_rules(directory: Path) -> list[Rule]:
    """Every ``*.yaml`` rule in ``directory`` (not its subfolders), sorted by id."""
    rules = [load_rule_file(p) for p in sorted(directory.glob("*.yaml"))]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(f"{rule.path}: rule id {rule.id!r} is used twice")
        seen.add(rule.id)
    return sorted(rules, key=lambda r: r.id)
