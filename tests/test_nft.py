"""mailpubc.nft on the real kernel: dry run, load and list, by each method
(libnftables, the nft binary), loads and listings inside network namespaces
made here and removed afterwards."""

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from mailpubc import nft
from mailpubc.api import compile_path

from kernel import without_handles

BAD = "table inet broken {\n\tchain input {\n\t\tip daddr 10.0.0.1 tcp dport 25 acceptt\n\t}\n}\n"
SMALL = ("table inet t {\n\tset inside {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
         "\t\telements = { 10.0.0.0/8 }\n\t}\n\n\tchain input {\n"
         "\t\ttype filter hook input priority filter; policy drop;\n"
         '\t\tip saddr @inside tcp dport 25 accept comment "smtp"\n\t}\n}\n')
JSON_TABLE = {"nftables": [{"table": {"family": "inet", "name": "j"}},
                           {"chain": {"family": "inet", "table": "j", "name": "input",
                                      "type": "filter", "hook": "input", "prio": 0,
                                      "policy": "drop"}}]}


@pytest.fixture(scope="module")
def good():
    here = os.path.dirname(os.path.abspath(__file__))
    return compile_path(os.path.join(here, "..", "examples", "seed.yaml")).or_raise().text


@pytest.fixture(params=nft.METHODS)
def method(request):
    """Each way of running nft, forced; skipped where it is not installed."""
    if request.param == "libnftables" and nft._import_binding() is None:
        pytest.skip("python-nftables is not installed (Debian: python3-nftables)")
    if request.param == "nft" and shutil.which("nft") is None:
        pytest.skip("the nft binary is not installed")
    return (request.param,)


def test_method_accepts_good_and_rejects_bad(method, good):
    passed = nft.dry_run(good, methods=method)
    assert passed.ran and passed.ok and passed.method.startswith(method[0]), passed
    failed = nft.dry_run(BAD, methods=method)
    assert failed.ran and not failed.ok
    assert ".nft:3:" in failed.message and "acceptt" in failed.message


def test_method_checks_json(method):
    assert nft.dry_run(json.dumps(JSON_TABLE), json=True, methods=method).ok
    bad = json.loads(json.dumps(JSON_TABLE))
    bad["nftables"][1]["chain"]["hook"] = "inbound"
    failed = nft.dry_run(json.dumps(bad), json=True, methods=method)
    assert failed.ran and not failed.ok and "inbound" in failed.message


def test_dry_run_leaves_no_table_behind(good):
    """A dry run must not apply anything to the host it runs on (a table name
    of its own: other programs may hold a table mailpub on this host)."""
    name = f"mp_dry_{uuid.uuid4().hex[:8]}"
    assert nft.dry_run(good.replace("inet mailpub", f"inet {name}")).ok
    if os.geteuid() == 0:
        assert nft.list_table(name) is None


def test_loads_text_and_json_into_the_namespace_only(method, namespace):
    nft.load(SMALL, netns=namespace.name, methods=method)
    listed = nft.list_table("t", netns=namespace.name, methods=method)
    # what nft itself lists for the table, and nothing of it on the host
    shown = namespace.run("nft", "-j", "list", "table", "inet", "t").stdout
    assert listed == json.loads(shown)
    assert nft.list_table("t") is None
    # nft's JSON listing loads back as the same table
    nft.load("delete table inet t\n", netns=namespace.name, methods=method)
    nft.load(json.dumps(listed), json=True, netns=namespace.name, methods=method)
    again = nft.list_table("t", netns=namespace.name, methods=method)
    assert without_handles(again) == without_handles(listed)
    nft.load(json.dumps(JSON_TABLE), json=True, netns=namespace.name, methods=method)
    assert nft.list_table("j", netns=namespace.name, methods=method) is not None


def test_refused_load_changes_nothing(method, namespace):
    nft.load(SMALL + "table inet other {\n\tchain keep {\n\t}\n}\n",
             netns=namespace.name, methods=method)
    before = nft.list_ruleset(namespace.name, methods=method)
    # replaces t, empties other, adds a table, then fails on its last line
    refused = ("delete table inet t\ntable inet t {\n}\nflush table inet other\n"
               "table inet added {\n}\n" + BAD)
    with pytest.raises(nft.NftError, match="acceptt"):
        nft.load(refused, netns=namespace.name, methods=method)
    assert nft.list_ruleset(namespace.name, methods=method) == before


def test_list_table_tells_missing_tables_and_families_apart(method, namespace):
    assert nft.list_table("t", netns=namespace.name, methods=method) is None
    nft.load("table ip t {\n\tchain c {\n\t}\n}\n", netns=namespace.name, methods=method)
    assert nft.list_table("t", netns=namespace.name, methods=method) is None
    listed = nft.list_table("t", "ip", netns=namespace.name, methods=method)
    assert [next(iter(e)) for e in listed["nftables"]] == ["metainfo", "table", "chain"]


def test_unknown_namespace_is_an_nft_error():
    with pytest.raises(nft.NftError, match="no network namespace mp-absent-"):
        nft.list_ruleset(f"mp-absent-{uuid.uuid4().hex[:8]}")


def test_says_plainly_when_nothing_can_run(monkeypatch):
    monkeypatch.setattr(nft, "_import_binding", lambda: None)
    monkeypatch.setattr(nft.shutil, "which", lambda name: None)
    monkeypatch.setattr(nft.os, "access", lambda path, mode: False)
    result = nft.dry_run("table inet x { }\n")
    assert not result.ran
    assert "python-nftables is not installed" in result.message
    assert "nft binary is not installed" in result.message
    with pytest.raises(nft.NftError, match="nft could not run: python-nftables is not"):
        nft.load("table inet x { }\n")


def test_without_netlink_rights_the_check_runs_in_a_private_namespace(good):
    """As a user without CAP_NET_ADMIN (here: root with it dropped), libnftables
    and plain `nft -c` are refused; the check must still run, via unshare -rn."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"):
        pytest.skip("needs root, setpriv and unshare to drop CAP_NET_ADMIN")
    script = ("import json, sys; from dataclasses import asdict; from mailpubc import nft; "
              "print(json.dumps([asdict(nft.dry_run(t)) for t in sys.argv[1:]]))")
    run = subprocess.run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--",
                          sys.executable, "-c", script, good, BAD],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    passed, failed = json.loads(run.stdout)
    assert passed == {"ran": True, "ok": True, "method": "nft -c in a private network namespace",
                      "message": ""}
    assert failed["ran"] and not failed["ok"] and "acceptt" in failed["message"]
