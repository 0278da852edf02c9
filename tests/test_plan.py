"""The plan stage on its own: each tests/plan/NAME.yaml gives a policy and,
for some chains, the chain policy and every rule that comes from the policy
(fixed rules aside), as typed data: origin, matches, statements; a chain
given as `null` must not exist. The plan is compared as data, not through
rendered text. Adding a case is adding a file.
"""

import dataclasses
from pathlib import Path

import pytest
import yaml

from mailpubc.addresses import int_text, interval_texts
from mailpubc.api import compile_text
from mailpubc.vocab import VERSIONS

CASES = sorted((Path(__file__).parent / "plan").glob("*.yaml"))


def as_data(part) -> dict:
    """A match or statement as the fixtures write it: its kind and fields,
    intervals as address texts, addresses as text."""
    data = {"kind": part.kind}
    for field in dataclasses.fields(part):
        value = getattr(part, field.name)
        if field.name == "intervals":
            if value:
                data["addresses"] = [text for i in value
                                     for text in interval_texts(VERSIONS[part.family], i)]
            continue
        if field.name == "entries":     # a dispatch's map: "ADDRESS . PROTOCOL . PORT : CHAIN"
            data["entries"] = [f"{int_text(VERSIONS[part.family], e.address)} . {e.protocol} . "
                               f"{e.port} : {e.target}" for e in value]
            continue
        if value is None or value is False:
            continue
        data[field.name] = list(value) if isinstance(value, tuple) else (
            str(value) if field.name == "address" else value)
    return data


def rule_data(rule) -> dict:
    origin = [rule.origin.kind, rule.origin.name] + ([rule.origin.service]
                                                      if rule.origin.service else [])
    return {"origin": origin, "matches": [as_data(m) for m in rule.matches],
            "statements": [as_data(s) for s in rule.statements]}


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_plan(case):
    fixture = yaml.safe_load(case.read_text())
    result = compile_text(yaml.safe_dump(fixture["policy"]), case.name).or_raise()
    chains = {chain.name: chain for chain in result.ruleset.chains}
    for name, expected in fixture["chains"].items():
        if expected is None:
            assert name not in chains, f"{case.stem}: chain {name} should not exist"
            continue
        chain = chains[name]
        if "policy" in expected:
            assert chain.hook.policy == expected["policy"], name
        rules = [rule_data(r) for r in chain.rules if r.origin.kind not in ("fixed", "policy")]
        assert rules == expected["rules"], f"{case.stem}: chain {name}"
    for name, expected in fixture.get("sets", {}).items():
        found = {s.name: s for s in result.ruleset.sets}[name]
        assert as_data_set(found) == expected
    if "defines" in fixture:
        assert {define.name: written_data(define.family, define.elements)
                for define in result.ruleset.defines} == fixture["defines"]
        # in order: each define after those it includes
        names = [define.name for define in result.ruleset.defines]
        for define in result.ruleset.defines:
            assert all(names.index(name) < names.index(define.name)
                       for name in define.elements.includes), define.name


def as_data_set(nft_set) -> dict:
    data = {"family": nft_set.family, "flags": list(nft_set.flags),
            "addresses": texts(nft_set.family, nft_set.intervals)}
    if nft_set.written is not None:
        data["written"] = written_data(nft_set.family, nft_set.written)
    return data


def written_data(family: str, elements) -> dict:
    """Elements written through defines: the defines included, then its own."""
    return {"includes": list(elements.includes), "own": texts(family, elements.own)}


def texts(family: str, intervals) -> list[str]:
    return [t for i in intervals for t in interval_texts(VERSIONS[family], i)]
