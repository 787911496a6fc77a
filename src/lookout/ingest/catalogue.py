"""The event catalogue: one compiled JSON Schema validator per CloudEvents ``type``.

The catalogue lives in ``schemas/events/`` (see ``schemas/README.md``): one JSON Schema
(draft 2020-12) per event type for the event's ``data`` object, in a file named after the
full type (``uk.lookout.health.ed_attendance.v1.json``), plus ``defs.json`` with the shared
definitions (person, address, date, ...) that the type schemas reference as
``defs.json#/$defs/person``.

Those references are relative to each schema's ``$id``
(``https://lookout.example/schemas/<type>.json``) and resolve to
``https://lookout.example/schemas/defs.json``. Nothing is fetched over the network: every
schema file is put into a :class:`jsonschema_rs.Registry` under its ``$id`` and the
validators are built ``offline``, so a reference to anything not in the catalogue fails at
load time rather than at validation time.

Error messages name the JSON path of the problem and the rule broken, but never quote the
offending value: event data is personal data and these messages end up in rejection
records, logs and publisher-facing API responses.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import jsonschema_rs

__all__ = ["MAX_ERRORS", "SCHEMA_BASE_URI", "Catalogue", "CatalogueError"]

SCHEMA_BASE_URI: Final = "https://lookout.example/schemas/"
"""Base of every catalogue schema's ``$id``; ``$id`` is this plus the file name."""

DEFS_FILE: Final = "defs.json"
MAX_ERRORS: Final = 5
"""At most this many messages are returned by :meth:`Catalogue.errors`."""

_TYPE_NAME: Final = re.compile(r"uk\.lookout\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[1-9][0-9]*")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_NAME_IN_MESSAGE: Final = 64

# Messages for anyOf failures of shared definitions, keyed by the end of the keyword's
# absolute location. The library's own message quotes the whole failing object.
_ANY_OF_HINTS: Final[Mapping[str, str]] = {
    "/$defs/person/anyOf": (
        "person needs at least one identifier (nhs_number, upn, la_person_id, "
        "police_person_id) or both family_name and birth_date"
    ),
}

_Kind = jsonschema_rs.ValidationErrorKind


class CatalogueError(Exception):
    """The schema directory is missing, malformed or inconsistent."""


class Catalogue:
    """Compiled validators for the ``data`` of every event type in the catalogue.

    Build it once per process with :meth:`load` and share it: it is immutable.
    """

    types: frozenset[str]
    """Every event type the catalogue knows (full CloudEvents ``type`` values)."""

    def __init__(self, validators: Mapping[str, jsonschema_rs.Validator]) -> None:
        self._validators: dict[str, jsonschema_rs.Validator] = dict(validators)
        self.types = frozenset(self._validators)

    @classmethod
    def load(cls, schemas_dir: Path) -> Catalogue:
        """Load and compile the catalogue.

        ``schemas_dir`` is the repository's ``schemas/`` directory (the schemas are read
        from its ``events/`` subdirectory) or that ``events/`` directory itself.

        Raises:
            CatalogueError: if ``defs.json`` is missing, a file is not valid JSON or not a
                valid draft 2020-12 schema, a file name is not an event type, a ``$id`` does
                not match its file name, or a ``$ref`` cannot be resolved inside the
                catalogue.
        """
        events_dir = schemas_dir / "events"
        if not events_dir.is_dir():
            events_dir = schemas_dir
        defs_path = events_dir / DEFS_FILE
        if not defs_path.is_file():
            raise CatalogueError(f"{defs_path}: shared definitions file not found")

        documents: dict[str, dict[str, Any]] = {}
        for path in sorted(events_dir.glob("*.json")):
            name = path.name.removesuffix(".json")
            if path.name != DEFS_FILE and _TYPE_NAME.fullmatch(name) is None:
                raise CatalogueError(
                    f"{path}: file name is not an event type like uk.lookout.<domain>.<name>.v1"
                )
            documents[name] = _read_schema(path)
        # Every file is a reference target; defs.json is not an event type itself.
        # Registry() resolves every $ref eagerly; its default retriever never fetches.
        try:
            registry = jsonschema_rs.Registry(
                (schema["$id"], schema) for schema in documents.values()
            )
        except (ValueError, jsonschema_rs.ReferencingError) as exc:
            raise CatalogueError(f"cannot compile schemas: {exc}") from exc
        documents.pop(DEFS_FILE.removesuffix(".json"))
        if not documents:
            raise CatalogueError(f"{events_dir}: no event type schemas found")

        validators: dict[str, jsonschema_rs.Validator] = {}
        for event_type, schema in documents.items():
            try:
                validators[event_type] = jsonschema_rs.validator_for(
                    schema, validate_formats=True, registry=registry, offline=True
                )
            except (ValueError, jsonschema_rs.ReferencingError) as exc:
                raise CatalogueError(f"{event_type}: cannot compile schema: {exc}") from exc
        return cls(validators)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._validators

    def errors(self, event_type: str, data: object) -> list[str]:
        """Return what is wrong with ``data`` as the ``data`` of an ``event_type`` event.

        Each message starts with the JSON path of the problem (``$`` is ``data`` itself,
        e.g. ``$.patient.nhs_number`` or ``$.persons_involved[0].role``) followed by the
        rule broken. At most :data:`MAX_ERRORS` messages are returned; the list is empty
        when ``data`` is valid. Values from ``data`` are never quoted.

        Raises:
            KeyError: if ``event_type`` is not in the catalogue.
        """
        try:
            validator = self._validators[event_type]
        except KeyError:
            raise KeyError(event_type) from None
        try:
            if validator.is_valid(data):  # fast path: no error objects are built
                return []
            found = list(itertools.islice(validator.iter_errors(data), MAX_ERRORS))
        except ValueError:
            # Raised for Python objects with no JSON equivalent (sets, bytes, ...).
            return ["$: not a JSON value"]
        return [f"{_json_path(error.instance_path)}: {_describe(error)}" for error in found]

    def is_valid(self, event_type: str, data: object) -> bool:
        """Return whether ``data`` is valid; raises :class:`KeyError` for an unknown type."""
        return not self.errors(event_type, data)


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise CatalogueError(f"{path}: a schema must be a JSON object")
    expected_id = SCHEMA_BASE_URI + path.name
    if schema.get("$id") != expected_id:
        raise CatalogueError(f"{path}: $id must be {expected_id!r}")
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        raise CatalogueError(f"{path}: not a valid JSON Schema: {exc.message}") from exc
    return schema


def _json_path(parts: Iterable[str | int]) -> str:
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part) and len(part) <= _MAX_NAME_IN_MESSAGE:
            path += f".{part}"
        else:
            path += f"[{_quote(part)}]"
    return path


def _quote(name: str) -> str:
    """Quote a property name for a message, cut short if a publisher sent a huge one."""
    if len(name) > _MAX_NAME_IN_MESSAGE:
        name = name[:_MAX_NAME_IN_MESSAGE] + "..."
    return json.dumps(name, ensure_ascii=True)


def _describe(error: jsonschema_rs.ValidationError) -> str:
    kind = error.kind
    if isinstance(kind, _Kind.Required):
        return f"missing required property {_quote(kind.property)}"
    if isinstance(kind, _Kind.AdditionalProperties):
        names = ", ".join(_quote(name) for name in kind.unexpected)
        noun = "property" if len(kind.unexpected) == 1 else "properties"
        return f"unexpected {noun} {names} (not in the schema)"
    if isinstance(kind, _Kind.Type):
        return f"must be of type {' or '.join(kind.types)}"
    if isinstance(kind, _Kind.Enum):
        return "must be one of " + ", ".join(json.dumps(option) for option in kind.options)
    if isinstance(kind, _Kind.Constant):
        return f"must be {json.dumps(kind.expected_value)}"
    if isinstance(kind, _Kind.Format):
        return f"must be a valid {kind.format} (JSON Schema format {kind.format!r})"
    if isinstance(kind, _Kind.Pattern):
        return f"does not match the pattern {kind.pattern}"
    if isinstance(kind, _Kind.MinLength):
        return f"must be at least {kind.limit} character(s) long"
    if isinstance(kind, _Kind.MaxLength):
        return f"must be at most {kind.limit} characters long"
    if isinstance(kind, _Kind.MinItems):
        return f"must have at least {kind.limit} item(s)"
    if isinstance(kind, _Kind.MaxItems):
        return f"must have at most {kind.limit} items"
    if isinstance(kind, _Kind.UniqueItems):
        return "must not contain repeated items"
    if isinstance(kind, _Kind.Minimum):
        return f"must be at least {kind.limit}"
    if isinstance(kind, _Kind.Maximum):
        return f"must be at most {kind.limit}"
    if isinstance(kind, _Kind.ExclusiveMinimum):
        return f"must be greater than {kind.limit}"
    if isinstance(kind, _Kind.ExclusiveMaximum):
        return f"must be less than {kind.limit}"
    if isinstance(kind, _Kind.AnyOf):
        location = error.absolute_keyword_location or ""
        for suffix, hint in _ANY_OF_HINTS.items():
            if location.endswith(suffix):
                return hint
        return "does not match any of the allowed forms (anyOf)"
    # Rarer keywords: name the keyword, never echo the library message (it quotes values).
    return f"violates the {kind.name!r} rule of the schema"
