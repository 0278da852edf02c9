"""docs/keys.md is generated from the schema (tools/keyref.py): it must match
the schema; every key of the schema must have a description and an example,
and show the default the compiler takes when it is left out."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from mailpubc import api, schema, vocab

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "keyref.py"
spec = importlib.util.spec_from_file_location("keyref", TOOL)
keyref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(keyref)
SCHEMA = json.loads(keyref.SCHEMA.read_text(encoding="utf-8"))


def test_keys_md_matches_the_schema():
    run = subprocess.run([sys.executable, TOOL, "--check"], capture_output=True, text=True,
                         timeout=60)
    assert (run.returncode, run.stderr) == (0, "")


def test_every_key_has_a_description():
    assert keyref.missing_descriptions(SCHEMA) == []


def test_a_key_without_description_is_caught_wherever_it_is():
    schema = copy.deepcopy(SCHEMA)
    del schema["properties"]["firewall"]["properties"]["external"]["description"]
    entry = schema["properties"]["publish"]["items"]
    entry["properties"]["services"] = {"type": "array", "description": "services",
                                       "items": {"oneOf": [{"type": "string"}, {
                                           "type": "object",
                                           "properties": {"server_port": {"type": "integer"}}}]}}
    assert keyref.missing_descriptions(schema) == ["firewall.external",
                                                   "publish[].services[].server_port"]


def test_check_fails_when_keys_md_is_stale(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "keys.md"
    stale.write_text(keyref.render(SCHEMA).replace("The rule's name", "The name"))
    monkeypatch.setattr(keyref, "KEYS", stale)
    monkeypatch.setattr(keyref, "ROOT", tmp_path)
    assert keyref.main(["--check"]) == 1
    assert "differs from the schema" in capsys.readouterr().err


def test_every_key_has_an_example_and_shows_the_default_its_description_names():
    assert keyref.missing_examples(SCHEMA) == []
    assert keyref.unstated_defaults(SCHEMA) == []


def test_a_key_without_example_or_with_an_unstated_default_fails_the_check(
        tmp_path, monkeypatch, capsys):
    schema = copy.deepcopy(SCHEMA)
    limit = schema["$defs"]["limit"]["properties"]   # a publication's and a service's
    del limit["concurrent"]["examples"]
    del limit["burst"]["default"]
    limit["burst"]["description"] += " Default 5."
    assert keyref.missing_examples(schema) == ["publish[].services[].limit.concurrent",
                                               "publish[].limit.concurrent"]
    assert keyref.unstated_defaults(schema) == ["publish[].services[].limit.burst",
                                                "publish[].limit.burst"]
    written = tmp_path / "policy.schema.json"
    written.write_text(json.dumps(schema))
    monkeypatch.setattr(keyref, "SCHEMA", written)
    assert keyref.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert ("keys without an example in policy.schema.json: "
            "publish[].services[].limit.concurrent, publish[].limit.concurrent") in err
    assert "names a default the schema does not give" in err and "limit.burst" in err


def test_every_example_and_default_is_a_value_the_key_accepts():
    """Validated by jsonschema against the key's own node, with the project's formats."""
    from jsonschema import Draft202012Validator
    checked = 0
    for path, node in keyref.keys(SCHEMA):
        validator = Draft202012Validator({**node, "$defs": SCHEMA["$defs"]},
                                         format_checker=schema._format_checker())
        for value in node.get("examples", []) + ([node["default"]] if "default" in node else []):
            assert validator.is_valid(value), (path, value)
            checked += 1
    assert checked >= len(keyref.keys(SCHEMA))


# Policies that hold the places of the keys with a default, leaving them
# out: golden/limits-logging sets log.rate, this one does not.
DROP_LOGGING = """version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
  log: {dropped: true}
publish:
  - {name: mail, server: localhost, external_address: 198.51.100.10, services: [smtp]}
"""


def _parents(node, parts: list[str]):
    """The mappings at a key path's parent (`[]`: every element, NAME: every value)."""
    if not parts:
        yield node
        return
    part, rest = parts[0], parts[1:]
    children = (list(node.values()) if part == "NAME"
                else [node.get(part.removesuffix("[]"))] if isinstance(node, dict) else [])
    for child in children:
        for item in (child or []) if part.endswith("[]") else [child]:
            if isinstance(item, dict):
                yield from _parents(item, rest)


def _bases() -> list[tuple[Path, dict]]:
    """The valid golden policies (those with an expected ruleset), the examples
    and DROP_LOGGING, each with the folder its list files are relative to."""
    paths = sorted([*(case.parent / "policy.yaml" for case in ROOT.glob("golden/*/expected.nft")),
                    *ROOT.glob("examples/*.yaml")])
    return [(path, yaml.safe_load(path.read_text())) for path in paths] + [
        (ROOT / "drop-logging.yaml", yaml.safe_load(DROP_LOGGING))]


def test_each_default_is_what_the_compiler_does_without_the_key(monkeypatch):
    """Writing a key's schema default where the key was left out changes no
    ruleset: in every valid golden policy, the examples and DROP_LOGGING, at
    each such place where the key may stand (`limit.burst` needs `new`)."""
    defaults = [(path, node["default"]) for path, node in
                ((path, keyref._resolve(raw, SCHEMA)) for path, raw in keyref.keys(SCHEMA))
                if "default" in node]
    tried = set()
    for path, document in _bases():
        monkeypatch.chdir(path.parent)
        name = str(path.relative_to(ROOT))
        base = api.compile_data(document, name)
        assert base.ok, name
        for key_path, value in defaults:
            *parent, key = key_path.split(".")
            for index, place in enumerate(_parents(document, parent)):
                if key in place:
                    continue
                changed = copy.deepcopy(document)
                list(_parents(changed, parent))[index][key] = copy.deepcopy(value)
                result = api.compile_data(changed, name)
                if result.ok:
                    tried.add(key_path)
                    assert result.text == base.text, (name, key_path, value)
    assert tried == {key_path for key_path, _ in defaults}


def test_services_names_every_built_in_service():
    description = SCHEMA["properties"]["services"]["description"]
    named = re.search(r"built-in (.*?)(?: \(|\.$)", description).group(1)
    assert set(re.split(r", | and ", named)) == set(vocab.BUILTIN_SERVICES)


PORT_FORMS = {"tcp/PORT", "udp/PORT", "tcp/LOW-HIGH", "udp/LOW-HIGH"}


def _texts():
    """Every string of the schema, and every paragraph of the language's docs."""
    def strings(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)
        elif isinstance(node, str):
            yield node
    yield from strings(SCHEMA)
    for doc in ("docs/policy-language.md", "README.md"):
        yield from (ROOT / doc).read_text().split("\n\n")


def test_where_port_forms_are_listed_all_four_are_and_each_compiles():
    """A port range of either protocol works, inline and in services."""
    listings = [text for text in _texts() if "LOW-HIGH" in text]
    assert listings
    for text in listings:
        assert {form for form in PORT_FORMS if form in text} == PORT_FORMS, text
    result = api.compile_text(DROP_LOGGING.replace("[smtp]", "[udp/4000-4010, range]")
                              + "services:\n  range: [udp/5000-5010]\n")
    assert result.ok, result.errors
    assert "udp dport 4000-4010" in result.text and "udp dport 5000-5010" in result.text
