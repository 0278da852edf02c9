"""What users rely on when they load the output with `nft -f`, on a real
kernel: it loads into an empty network namespace, loading it again replaces
the first load in one transaction, other tables are left alone, and a load
that fails leaves the previous ruleset in place."""

import uuid
from pathlib import Path

import pytest

from cli import run_mailpubc

from e2e.netns import CommandError, Namespace, prerequisites

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def namespace():
    reason = prerequisites(["nft"])
    if reason:
        pytest.skip(reason)
    created = Namespace(f"load-{uuid.uuid4().hex[:8]}")
    yield created
    created.delete()


def compiled(policy: Path) -> str:
    run = run_mailpubc(policy)
    assert run.returncode == 0, run.stderr
    return run.stdout


def load(namespace, path: Path, check=True):
    return namespace.run("nft", "-f", str(path), check=check)


def listing(namespace) -> str:
    return namespace.run("nft", "list", "ruleset").stdout


def test_loads_twice_and_replaces_only_its_own_table(namespace, tmp_path):
    ruleset = tmp_path / "rules.nft"
    ruleset.write_text(compiled(ROOT / "examples" / "seed.yaml"))
    namespace.run("nft", "add", "table", "inet", "other")
    namespace.run("nft", "add", "chain", "inet", "other", "keep")
    load(namespace, ruleset)
    first = listing(namespace)
    # a rule added by hand to our table is gone after the reload: replaced, not merged
    namespace.run("nft", "add", "rule", "inet", "mailpub", "input", "tcp", "dport", "9", "accept")
    assert "tcp dport 9 accept" in listing(namespace)
    load(namespace, ruleset)
    second = listing(namespace)
    assert second == first
    assert "tcp dport 9 accept" not in second
    assert "table inet other" in second and "chain keep" in second


def test_failed_load_leaves_previous_ruleset(namespace, tmp_path):
    good = tmp_path / "good.nft"
    good.write_text(compiled(ROOT / "golden" / "scenario2" / "policy.yaml"))
    load(namespace, good)
    before = listing(namespace)
    # the next version of the ruleset, broken half way through its last chain
    text = compiled(ROOT / "examples" / "seed.yaml")
    broken = tmp_path / "broken.nft"
    broken.write_text(text[: text.rindex("snat ip to")] + "snat ip to nowhere\n}\n}\n")
    with pytest.raises(CommandError):
        load(namespace, broken)
    assert listing(namespace) == before
