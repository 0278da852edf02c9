"""What users rely on when they load the output with `nft -f`, on a real
kernel: it loads into an empty network namespace, loading it again replaces
the first load in one transaction, other tables are left alone, and a load
that fails leaves the previous ruleset in place. Loads and listings go
through mailpubc.nft, which does one `nft -f` per load."""

import uuid
from pathlib import Path

import pytest

from cli import run_mailpubc
from mailpubc import nft

from e2e.netns import Namespace, prerequisites

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def namespace():
    reason = prerequisites(["nft"])
    if reason:
        pytest.skip(reason)
    created = Namespace(f"load-{uuid.uuid4().hex[:8]}")
    yield created.name
    created.delete()


def compiled(policy: Path) -> str:
    run = run_mailpubc(policy)
    assert run.returncode == 0, run.stderr
    return run.stdout


def without_handles(listing: dict) -> list:
    """The listing with nft's handles left out: a reload numbers objects anew."""
    return [{kind: {k: v for k, v in value.items() if k != "handle"}}
            for entry in listing["nftables"] for kind, value in entry.items()]


def comments(listing: dict) -> list[str]:
    return [e["rule"].get("comment") for e in listing["nftables"] if "rule" in e]


def test_loads_twice_and_replaces_only_its_own_table(namespace):
    ruleset = compiled(ROOT / "examples" / "seed.yaml")
    nft.load("table inet other {\n\tchain keep {\n\t}\n}\n", netns=namespace)
    nft.load(ruleset, netns=namespace)
    first = nft.list_ruleset(namespace)
    # a rule added by hand to our table is gone after the reload: replaced, not merged
    nft.load('add rule inet mailpub input tcp dport 9 accept comment "by hand"\n',
             netns=namespace)
    assert "by hand" in comments(nft.list_table("mailpub", netns=namespace))
    nft.load(ruleset, netns=namespace)
    second = nft.list_ruleset(namespace)
    assert without_handles(second) == without_handles(first)
    assert "by hand" not in comments(second)
    other = nft.list_table("other", netns=namespace)["nftables"]
    assert [e["chain"]["name"] for e in other if "chain" in e] == ["keep"]


def test_failed_load_leaves_previous_ruleset(namespace):
    nft.load(compiled(ROOT / "golden" / "scenario2" / "policy.yaml"), netns=namespace)
    before = nft.list_ruleset(namespace)
    # the next version of the ruleset, broken half way through its last chain
    text = compiled(ROOT / "examples" / "seed.yaml")
    with pytest.raises(nft.NftError, match="nowhere"):
        nft.load(text[: text.rindex("snat ip to")] + "snat ip to nowhere\n}\n}\n",
                 netns=namespace)
    assert nft.list_ruleset(namespace) == before
