"""Validate stage, the quick half: does a document fit the policy schema?

Importing jsonschema costs 0.05-0.08 s, most of a `mailpubc check` of a
valid policy (issue #12). This module interprets exactly the JSON Schema
(draft 2020-12) keywords that `schemas/policy.schema.json` uses and answers
only "fits or not"; `schema.validate` asks jsonschema, the validator of
record, only about a document that does not fit, to say where and why.

`compile_schema` raises `Unsupported` on a keyword it does not implement,
so the schema cannot outgrow this module silently (a new keyword is a new
function in `_KEYWORDS`), and `tests/test_shape.py` holds its answer to
jsonschema's on many documents: it must never pass what jsonschema refuses.
Data is what the loader yields: dicts with string keys, lists, strings,
integers, booleans and None (floats are handled as JSON's numbers).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from . import addresses

Check = Callable[[Any], bool]

# The project's formats; jsonschema's format checker is built from these too.
# A format applies to strings only: any other value passes it.
FORMATS: dict[str, Callable[[str], bool]] = {
    "ip-address": lambda v: addresses.parse_address(v) is not None,
    "ip-address-or-localhost": lambda v: v == "localhost" or addresses.parse_address(v) is not None,
    "ip-network": lambda v: addresses.parse_network(v) is not None,
    "address-entry": addresses.is_address_entry,
}

# Keys that do not change whether a document is valid.
ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "default", "examples"}

_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    # draft 2020-12: 1.0 is an integer too
    "integer": lambda v: ((isinstance(v, int) and not isinstance(v, bool))
                          or (isinstance(v, float) and v.is_integer())),
}


class Unsupported(Exception):
    """The schema uses something this interpreter does not implement."""


def compile_schema(schema: dict) -> Check:
    """The root schema as one predicate; `$ref` reaches its `$defs` only."""
    compiler = _Compiler(schema.get("$defs", {}))
    for name, definition in compiler.definitions.items():   # all: each is checked for keywords
        compiler.compiled[name] = compiler.node(definition)
    return compiler.node({key: value for key, value in schema.items() if key != "$defs"})


class _Compiler:
    def __init__(self, definitions: dict):
        self.definitions = definitions
        self.compiled: dict[str, Check] = {}    # filled as definitions compile: read at call time

    def node(self, schema: Any) -> Check:
        if schema is True or schema is False:
            return lambda value, answer=schema: answer
        if not isinstance(schema, dict):
            raise Unsupported(f"not a schema: {schema!r}")
        checks = []
        for key, argument in schema.items():
            if key in ANNOTATIONS or key.startswith("x-") or key in _PART_OF:
                if key in _PART_OF and _PART_OF[key] not in schema:
                    raise Unsupported(f"{key!r} without {_PART_OF[key]!r}")
                continue
            keyword = _KEYWORDS.get(key)
            if keyword is None:
                raise Unsupported(f"keyword {key!r}")
            checks.append(keyword(self, argument, schema))
        return _all(checks)

    def ref(self, reference: str) -> Check:
        name = reference[len("#/$defs/"):]
        if not reference.startswith("#/$defs/") or name not in self.definitions:
            raise Unsupported(f"$ref {reference!r}: only #/$defs/NAME")
        compiled = self.compiled
        return lambda value: compiled[name](value)


def _all(checks: list[Check]) -> Check:
    """One check that holds when each holds (a plain loop: lists of 100,000
    addresses go through it)."""
    if len(checks) == 1:
        return checks[0]

    def check(value) -> bool:
        for each in checks:
            if not each(value):
                return False
        return True
    return check


def _type(compiler, wanted, schema) -> Check:
    names = [wanted] if isinstance(wanted, str) else wanted
    if not all(name in _TYPES for name in names):
        raise Unsupported(f"type {wanted!r}")
    if len(names) == 1:
        return _TYPES[names[0]]
    tests = [_TYPES[name] for name in names]
    return lambda value: any(test(value) for test in tests)


def _properties(compiler, properties, schema) -> Check:
    checks = {name: compiler.node(sub) for name, sub in properties.items()}
    return lambda value: (not isinstance(value, dict)
                          or all(check(value[name]) for name, check in checks.items()
                                 if name in value))


def _additional_properties(compiler, additional, schema) -> Check:
    if "patternProperties" in schema:
        raise Unsupported("patternProperties")
    known = set(schema.get("properties", {}))
    check = compiler.node(additional)
    return lambda value: (not isinstance(value, dict)
                          or all(check(value[key]) for key in value if key not in known))


def _property_names(compiler, names, schema) -> Check:
    check = compiler.node(names)
    return lambda value: not isinstance(value, dict) or all(map(check, value))


def _required(compiler, required, schema) -> Check:
    return lambda value: not isinstance(value, dict) or all(key in value for key in required)


def _items(compiler, items, schema) -> Check:
    if "prefixItems" in schema:
        raise Unsupported("prefixItems")
    check = compiler.node(items)
    return lambda value: not isinstance(value, list) or all(map(check, value))


def _if(compiler, condition, schema) -> Check:
    test = compiler.node(condition)
    then = compiler.node(schema.get("then", True))
    otherwise = compiler.node(schema.get("else", True))
    return lambda value: then(value) if test(value) else otherwise(value)


def _same(a: Any, b: Any) -> bool:
    """JSON's equality: true and 1 differ, 1 and 1.0 do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return a == b


def _unique(items: list) -> bool:
    if all(isinstance(item, str) for item in items):
        return len(set(items)) == len(items)
    return not any(_same(items[i], items[j])
                   for i in range(len(items)) for j in range(i + 1, len(items)))


def _unique_items(compiler, wanted, schema) -> Check:
    return lambda value: not wanted or not isinstance(value, list) or _unique(value)


def _enum(compiler, allowed, schema) -> Check:
    return lambda value: any(_same(value, each) for each in allowed)


def _const(compiler, wanted, schema) -> Check:
    return lambda value: _same(value, wanted)


def python_pattern(pattern: str) -> str:
    """The schema's ECMA pattern for Python's `re`: a final `$` is the end of
    the text, while Python's also matches before a final newline ("eth0\\n")."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\Z"
    return pattern


def _pattern(compiler, pattern, schema) -> Check:
    pattern = python_pattern(pattern)    # compiled on first use (re's cache), as jsonschema does
    return lambda value: not isinstance(value, str) or re.search(pattern, value) is not None


def _format(compiler, name, schema) -> Check:
    if name not in FORMATS:
        raise Unsupported(f"format {name!r}")
    test = FORMATS[name]
    return lambda value: not isinstance(value, str) or test(value)


def _number(compare: Callable[[Any, Any], bool]):
    def keyword(compiler, bound, schema) -> Check:
        return lambda value: not _TYPES["number"](value) or compare(value, bound)
    return keyword


def _length(kind: str, compare: Callable[[int, int], bool]):
    def keyword(compiler, bound, schema) -> Check:
        return lambda value: not _TYPES[kind](value) or compare(len(value), bound)
    return keyword


def _at_least(a, b) -> bool:
    return a >= b


def _at_most(a, b) -> bool:
    return a <= b


_KEYWORDS = {
    "$ref": lambda compiler, reference, schema: compiler.ref(reference),
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional_properties,
    "propertyNames": _property_names,
    "required": _required,
    "items": _items,
    "if": _if,
    "uniqueItems": _unique_items,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
    "format": _format,
    "minimum": _number(_at_least),
    "maximum": _number(_at_most),
    "minLength": _length("string", _at_least),
    "maxLength": _length("string", _at_most),
    "minItems": _length("array", _at_least),
    "maxItems": _length("array", _at_most),
    "minProperties": _length("object", _at_least),
}
# keywords read by another keyword, and refused without it
_PART_OF = {"then": "if", "else": "if"}
