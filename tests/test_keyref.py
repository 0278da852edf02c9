"""docs/keys.md is generated from the schema (tools/keyref.py): it must match
the schema, and every key of the schema must have a description."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
