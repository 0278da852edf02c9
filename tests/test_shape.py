"""shape.py, the quick check that spares a valid policy jsonschema's import,
against jsonschema (draft 2020-12), the validator of record.

`schema.validate` takes shape's "fits" without asking jsonschema, so shape
must never pass a document jsonschema refuses (and should not refuse one it
passes, or `check` imports jsonschema for nothing). Compared on drawn
policies broken in their shape, on mutated policy texts and on every policy
file of the repository; every keyword of shape must decide some file, so
that the comparison can fail; a keyword shape does not implement is refused.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from mailpubc import loader, schema, shape
from mailpubc.diagnostics import PolicyError
from strategies import broken_shapes, mutants

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted(
    path for pattern in ("golden/*/policy.yaml", "tests/e2e/scenarios/*.yaml", "examples/*.yaml")
    for path in ROOT.glob(pattern))
SLOW_DRAWS = [HealthCheck.too_slow, HealthCheck.data_too_large]


@lru_cache(maxsize=1)
def _jsonschema():
    from jsonschema import Draft202012Validator
    return Draft202012Validator(schema._python_schema(), format_checker=schema._format_checker())


def _load(path: Path):
    try:
        return loader.parse(path.name, path.read_bytes()).data
    except PolicyError:
        return None       # the loader refuses it: no document to validate


@lru_cache(maxsize=1)
def _documents() -> dict[str, object]:
    loaded = {str(path.relative_to(ROOT)): _load(path) for path in FIXTURES}
    return {name: data for name, data in loaded.items() if data is not None}


def _assert_agree(data) -> None:
    fits, valid = schema.fits()(data), _jsonschema().is_valid(data)
    assert not (fits and not valid), "shape passes what jsonschema refuses"
    assert fits == valid, "shape refuses what jsonschema passes"


def test_the_fixtures_hold_valid_and_invalid_documents():
    verdicts = {_jsonschema().is_valid(data) for data in _documents().values()}
    assert len(_documents()) > 200 and verdicts == {True, False}


@pytest.mark.parametrize("name", sorted(_documents()))
def test_shape_agrees_with_jsonschema_on_every_policy_file(name):
    _assert_agree(_documents()[name])


@pytest.mark.parametrize("keyword", sorted(shape._KEYWORDS))
def test_every_keyword_decides_some_policy_file(keyword, monkeypatch):
    """With `keyword` ignored, shape passes some file jsonschema refuses: the
    comparisons above would catch that keyword broken."""
    monkeypatch.setitem(shape._KEYWORDS, keyword, lambda compiler, argument, node: lambda v: True)
    weakened = shape.compile_schema(schema.policy_schema())
    assert any(weakened(data) and not _jsonschema().is_valid(data)
               for data in _documents().values())


@settings(suppress_health_check=SLOW_DRAWS)
@given(broken_shapes())
def test_shape_agrees_with_jsonschema_on_broken_shapes(broken):
    _assert_agree(broken.data)


@settings(suppress_health_check=SLOW_DRAWS)
@given(mutants())
def test_shape_agrees_with_jsonschema_on_mutated_texts(mutant):
    try:
        document = loader.parse("policy.yaml", mutant.text.encode())
    except PolicyError:
        return
    _assert_agree(document.data)


def _with(node: dict, path: tuple, key: str, value) -> dict:
    changed = copy.deepcopy(node)
    target = changed
    for step in path:
        target = target[step]
    target[key] = value
    return changed


@pytest.mark.parametrize("path, key, value", [
    ((), "not", {}),                                           # a keyword shape lacks
    (("properties", "firewall"), "patternProperties", {}),
    (("$defs", "rate"), "contains", {}),                       # in a definition
    (("$defs", "name"), "format", "hostname"),                 # a format it does not know
    (("$defs", "count"), "type", "decimal"),
    (("properties", "version"), "$ref", "other.json#/x"),      # a reference outside $defs
    (("properties", "version"), "$ref", "#/$defs/missing"),
    (("$defs", "name"), "then", {}),                           # then without if
    (("properties", "firewall"), "$defs", {}),                 # definitions below the root
])
def test_shape_refuses_a_schema_it_cannot_run(path, key, value):
    with pytest.raises(shape.Unsupported):
        shape.compile_schema(_with(schema.policy_schema(), path, key, value))
