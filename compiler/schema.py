"""Validate stage, part one: the policy's shape, by its JSON Schema.

The schema (`schemas/policy.schema.json`, draft 2020-12) is the single
statement of which keys exist and what type each value has. This module only
turns jsonschema's findings into positioned diagnostics a person can act on:
the unknown key itself is pointed at, with a "did you mean" when a known key
is close, and the schema's own `x-message` texts explain patterns and formats.
A document that fits, as `shape` decides, is passed without importing
jsonschema (0.05-0.08 s of a `check`'s start-up); only one that does not fit
goes through jsonschema, which says where and why.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Optional

from . import shape
from .datafiles import data_text
from .addresses import EntryError, parse_entry
from .diagnostics import Collector, Diagnostic, Position, did_you_mean
from .loader import Document, Path

if TYPE_CHECKING:   # jsonschema is imported only for a document that does not fit (shape.py)
    from jsonschema import FormatChecker
    from jsonschema.exceptions import ValidationError

_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", int: "a number",
               bool: "a boolean", type(None): "an empty value"}
ANNOTATIONS = {"description", "default", "examples",   # keys that do not change validation
               "x-default"}                            # (a default in words: keys.md)
_SCHEMA_TYPES = {"object": "a mapping", "array": "a list", "string": "a string",
                 "integer": "a whole number", "boolean": "a boolean"}


def _format_checker() -> FormatChecker:
    from jsonschema import FormatChecker
    checker = FormatChecker(formats=())
    for name, test in shape.FORMATS.items():
        checker.checks(name)(lambda v, test=test: not isinstance(v, str) or test(v))
    return checker


@lru_cache(maxsize=1)
def policy_schema() -> dict:
    return json.loads(data_text("schemas", "policy.schema.json"))


def _for_python(node: Any, definitions: dict) -> Any:
    """The schema as Python's jsonschema should run it, with the same meaning:

    - each local `$ref` replaced by its definition, which validates three
      times faster (a reference is looked up on every use, and a policy may
      hold tens of thousands of addresses); annotations beside the `$ref`
      (a key's description, default, examples) are kept on the copy;
    - each pattern's final `$` made `\\Z`: in the schema's ECMA regex, `$` is
      the end of the text, but Python's also matches before a final newline,
      which would let "eth0\\n" pass as an interface name.
    """
    if isinstance(node, dict):
        reference = node.get("$ref", "")
        if reference.startswith("#/$defs/") and set(node) - {"$ref"} <= ANNOTATIONS:
            definition = _for_python(definitions[reference[len("#/$defs/"):]], definitions)
            return {**definition, **{key: node[key] for key in node if key != "$ref"}}
        converted = {key: _for_python(value, definitions) for key, value in node.items()}
        if isinstance(node.get("pattern"), str):
            converted["pattern"] = shape.python_pattern(node["pattern"])
        return converted
    if isinstance(node, list):
        return [_for_python(value, definitions) for value in node]
    return node


# keys of an item schema that the fast path below fully honours
_PLAIN_STRING_KEYS = {"type", "format", "x-message", "description", "examples", "title"}


def _items(validator, items, instance, schema):
    """jsonschema's `items`, with a fast path for lists of plain formatted
    strings (address lists run to hundreds of thousands of entries): an item
    that is a string of the right format is valid without descending into
    it; every other item is validated, and reported, exactly as before."""
    fmt = items.get("format") if isinstance(items, dict) else None
    if (fmt is None or items.get("type") != "string" or not items.keys() <= _PLAIN_STRING_KEYS
            or "prefixItems" in schema or not isinstance(instance, list)):
        from jsonschema import Draft202012Validator
        yield from Draft202012Validator.VALIDATORS["items"](validator, items, instance, schema)
        return
    conforms = validator.format_checker.conforms
    for index, item in enumerate(instance):
        if not (isinstance(item, str) and conforms(item, fmt)):
            yield from validator.descend(item, items, path=index)


@lru_cache(maxsize=1)
def _python_schema() -> dict:
    schema = policy_schema()
    return _for_python(schema, schema["$defs"])


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator, validators
    extended = validators.extend(Draft202012Validator, {"items": _items})
    return extended(_python_schema(), format_checker=_format_checker())


@lru_cache(maxsize=1)
def fits():
    """`shape`'s predicate for the schema: True means jsonschema finds no error."""
    return shape.compile_schema(policy_schema())


def validate(document: Document) -> tuple[list[Diagnostic], Optional[Document]]:
    """Every place where the document does not fit the schema, and the
    document the next stage can check: the document itself when it fits;
    when only list elements are wrong and the document fits without them,
    the document without them, so that one run also reports what resolving
    finds in the rest (a host-bits error next to a malformed address); else
    None (a required or single value is wrong: nothing more can be said)."""
    if fits()(document.data):
        return [], document
    errors = list(_validator().iter_errors(document.data))
    problems = Collector()
    for error in errors:
        _report(document, error, problems)
    if not errors:
        return [], document
    wrong = {tuple(error.absolute_path) for error in errors}
    if not all(path and isinstance(path[-1], int) for path in wrong):
        return problems.diagnostics, None
    pruned = _without(document, wrong)
    if next(_validator().iter_errors(pruned.data), None) is not None:
        return problems.diagnostics, None
    return problems.diagnostics, pruned


def _without(document: Document, removed: set[Path]) -> Document:
    """The document without the list elements at `removed`, each remaining
    value keeping the position where it was written."""
    positions: dict[Path, Position] = {}
    key_positions: dict[Path, Position] = {}

    def copy(node: Any, old: Path, new: Path) -> Any:
        if old in document.positions:
            positions[new] = document.positions[old]
        if old in document.key_positions:
            key_positions[new] = document.key_positions[old]
        if isinstance(node, dict):
            return {key: copy(value, old + (key,), new + (key,)) for key, value in node.items()}
        if isinstance(node, list):
            kept = [i for i in range(len(node)) if old + (i,) not in removed]
            return [copy(node[i], old + (i,), new + (j,)) for j, i in enumerate(kept)]
        return node

    data = copy(document.data, (), ())
    return Document(document.file, data, positions, key_positions, document.folder)


def _describe(value: Any) -> str:
    """A value as the user wrote it in YAML, not as Python spells it."""
    kind = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)) or value is None:
        return kind
    if isinstance(value, bool):
        return f"{kind} ({str(value).lower()})"
    return f"{kind} ({value!r})"


def _report(document: Document, error: ValidationError, problems: Collector) -> None:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        _unknown_keys(document, error, path, problems)
        return
    if error.validator == "uniqueItems":
        _repeated_items(document, error, path, problems)
        return
    if "propertyNames" in error.relative_schema_path:
        where = document.key_position(path + (error.instance,))   # the key itself is wrong
    else:
        where = document.position(path)
    if error.validator == "required":
        unknown = [key for key in error.instance if key not in _schema(error).get("properties", {})]
        for key in error.validator_value:
            # a misspelt key is reported once, as unknown with its suggestion
            if key not in error.instance and not did_you_mean(key, unknown):
                problems.error(where, f"missing required key {key!r}")
        return
    problems.error(where, _message(error))


def _schema(error: ValidationError) -> dict:
    return error.schema if isinstance(error.schema, dict) else {}


def _unknown_keys(document: Document, error: ValidationError, path: tuple,
                  problems: Collector) -> None:
    known = sorted(_schema(error).get("properties", {}))
    for key in error.instance:
        if key in known:
            continue
        listed = f" (known keys: {', '.join(known)})" if known else ""
        message = f"unknown key {key!r}" + (did_you_mean(key, known) or listed)
        problems.error(document.key_position(path + (key,)), message)


def _repeated_items(document: Document, error: ValidationError, path: tuple,
                    problems: Collector) -> None:
    seen = []
    for index, item in enumerate(error.instance):
        if item in seen:
            problems.error(document.position(path + (index,)), f"{item!r} is listed twice")
        else:
            seen.append(item)


# what a list of addresses given to a key that takes one value is told
LIST_KEYS = ("; the keys that take a list of addresses are publish[].server and "
             "external_address (at most one a family), allow_from, block, outbound from and "
             "to, management ssh and ping, firewall.block, and a zone's networks, routed "
             "and address")


def _addresses_listed(value: Any) -> bool:
    """A list of addresses, networks or ranges (given where one value goes)?"""
    if not isinstance(value, list) or not value or not all(isinstance(i, str) for i in value):
        return False
    try:
        for item in value:
            parse_entry(item)
    except EntryError:
        return False
    return True


def _message(error: ValidationError) -> str:
    """The message of a problem with one value."""
    schema, instance, validator = _schema(error), error.instance, error.validator
    if validator == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        names = " or ".join(_SCHEMA_TYPES.get(w, w) for w in wanted)
        hint = LIST_KEYS if _addresses_listed(instance) else ""
        return f"expected {names}, got {_describe(instance)}{hint}"
    if validator == "enum":
        allowed = [str(v) for v in error.validator_value]
        shown = repr(instance) if isinstance(instance, str) else _describe(instance)
        return f"{shown} is not one of: {', '.join(allowed)}" + did_you_mean(str(instance),
                                                                            allowed)
    if validator in ("pattern", "format", "minimum", "maximum", "minLength", "maxLength"):
        return f"{instance!r} {_schema_message(schema)}"
    if validator == "const":
        return schema.get("x-message", f"must be {error.validator_value!r}")
    if validator == "minItems":
        return "the list must not be empty"
    if validator == "maxItems":
        return f"the list must not have more than {error.validator_value} entries"
    if validator == "minProperties":
        return schema.get("x-message", "must not be empty")
    return error.message


def _schema_message(schema: dict) -> str:
    return schema.get("x-message", "is not valid here")
