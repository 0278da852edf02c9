"""Write docs/keys.md, the reference of every policy key, from the JSON Schema.

    python tools/keyref.py           # rewrite docs/keys.md
    python tools/keyref.py --check   # exit 1 if docs/keys.md differs from the schema

Each key's meaning is the schema's `description`, its default `default` (a
value; `x-default` says in words what an absent key means when no value
could), its examples `examples`; the type is read from the schema's own
constraints. So the reference cannot say anything the validator does not
enforce, and a key added without a description or an example, or whose
description speaks of a default the schema does not give, fails the check
(and tests/test_keyref.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "policy.schema.json"
KEYS = ROOT / "docs" / "keys.md"
FORMATS = {"ip-address": "IP address", "ip-address-or-localhost": "IP address or localhost",
           "ip-network": "network", "address-entry": "address entry"}
DEFINED = {"name": "name", "interface": "interface name", "zone_interface": "interface name",
           "dns_name": "DNS name"}
HEADER = """\
# Policy keys

Generated from [`schemas/policy.schema.json`](../schemas/policy.schema.json)
by `python tools/keyref.py`: edit the schema, not this file. The language
and what each part means together: [`policy-language.md`](policy-language.md).
`NAME` stands for a name you choose, `[]` for each element of a list. A
name is a letter, then letters, digits, `_` or `-`, at most 32 characters;
an address entry is an address, a network (ADDRESS/PREFIX), a range (A-B)
or the name of an address set. A default in italics says in words what
leaving the key out means.

| key | type | default | meaning | example |
| --- | --- | --- | --- | --- |
"""


def _resolve(node: dict, schema: dict) -> dict:
    """A node with its local `$ref` replaced by the definition (annotations kept)."""
    while "$ref" in node:
        definition = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        node = {**definition, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def keys(schema: dict) -> list[tuple[str, dict]]:
    """Every key as (path, its schema node as written), in the schema's order."""
    found: list[tuple[str, dict]] = []

    def walk(node: dict, path: str) -> None:
        node = _resolve(node, schema)
        for choice in node.get("oneOf", []) + node.get("anyOf", []):
            walk(choice, path)
        for branch in ("then", "else"):     # if/then/else: each form of the value
            if isinstance(node.get(branch), dict):
                walk(node[branch], path)
        for name, child in node.get("properties", {}).items():
            found.append((f"{path}.{name}".lstrip("."), child))
            walk(child, f"{path}.{name}".lstrip("."))
        if isinstance(node.get("additionalProperties"), dict):
            found.append((f"{path}.NAME", node["additionalProperties"]))
            walk(node["additionalProperties"], f"{path}.NAME")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "")
    return found


def missing_descriptions(schema: dict) -> list[str]:
    return [path for path, node in keys(schema) if not _resolve(node, schema).get("description")]


def missing_examples(schema: dict) -> list[str]:
    return [path for path, node in keys(schema) if not _resolve(node, schema).get("examples")]


def unstated_defaults(schema: dict) -> list[str]:
    """Keys whose description speaks of a default that the default column
    would not show: the schema gives neither `default` nor `x-default`."""
    return [path for path, raw in keys(schema)
            if re.search(r"\bdefault", (node := _resolve(raw, schema)).get("description", ""),
                         re.IGNORECASE)
            and "default" not in node and "x-default" not in node]


def type_of(node: dict, schema: dict) -> str:
    defined = DEFINED.get(node.get("$ref", "").rsplit("/", 1)[-1])
    if defined:
        return defined
    node = _resolve(node, schema)
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        values = [str(value) for value in node["enum"]]
        return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]
    choices = node.get("oneOf", []) + node.get("anyOf", [])
    if "then" in node and "else" in node:      # if/then/else: the plain form first
        plain_first = {"array": [node["else"], node["then"]], "string": [node["then"], node["else"]]}
        if "type" not in node:
            plain_first["object"] = [node["else"], node["then"]]
        choices = plain_first.get(node.get("if", {}).get("type"), choices)
    if choices:
        return " or ".join(type_of(choice, schema) for choice in choices)
    types = node.get("type", [])
    names = []
    for kind in [types] if isinstance(types, str) else types:
        if kind == "array":
            names.append("list of " + type_of(node.get("items", {}), schema))
        elif kind == "object":
            names.append("mapping")
        else:
            names.append(FORMATS.get(node.get("format"), kind))
    return " or ".join(names) or "any"


def _yaml(value) -> str:
    """A value as YAML flow text, as it would be written in a policy."""
    return yaml.safe_dump([value], default_flow_style=True, sort_keys=False, width=10**6)[1:-2]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(schema: dict) -> str:
    rows = []
    for path, raw in keys(schema):
        node = _resolve(raw, schema)
        default = (f"`{_yaml(node['default'])}`" if "default" in node
                   else f"*{node['x-default']}*" if "x-default" in node else "")
        examples = "<br>".join(f"`{_yaml(e)}`" for e in node.get("examples", []))
        rows.append("| " + " | ".join(_cell(text) for text in (
            f"`{path}`", type_of(raw, schema), default, node.get("description", ""),
            examples)) + " |\n")
    return HEADER + "".join(rows)


def main(argv: list[str]) -> int:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    problems = [(what, paths) for what, paths in (
        ("without a description", missing_descriptions(schema)),
        ("without an example", missing_examples(schema)),
        ("whose description names a default the schema does not give",
         unstated_defaults(schema))) if paths]
    for what, paths in problems:
        print(f"keyref: keys {what} in {SCHEMA.name}: {', '.join(paths)}", file=sys.stderr)
    if problems:
        return 1
    text = render(schema)
    if argv == ["--check"]:
        if KEYS.exists() and KEYS.read_text(encoding="utf-8") == text:
            return 0
        print(f"keyref: {KEYS.relative_to(ROOT)} differs from the schema: "
              "run python tools/keyref.py", file=sys.stderr)
        return 1
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    KEYS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
