"""Both ways of running nft's dry run, on a good and a bad ruleset."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from mailpubc import nftcheck
from mailpubc.api import compile_path

BAD = "table inet broken {\n\tchain input {\n\t\tip daddr 10.0.0.1 tcp dport 25 acceptt\n\t}\n}\n"


@pytest.fixture(scope="module")
def good():
    here = os.path.dirname(os.path.abspath(__file__))
    return compile_path(os.path.join(here, "..", "examples", "seed.yaml")).or_raise().text


@pytest.mark.parametrize("method", nftcheck.METHODS)
def test_method_accepts_good_and_rejects_bad(method, good):
    if method == "libnftables" and nftcheck._import_binding() is None:
        pytest.skip("python-nftables is not installed (Debian: python3-nftables)")
    if method == "nft" and shutil.which("nft") is None:
        pytest.skip("the nft binary is not installed")
    passed = nftcheck.dry_run(good, methods=(method,))
    assert passed.ran and passed.ok, passed.message
    failed = nftcheck.dry_run(BAD, methods=(method,))
    assert failed.ran and not failed.ok
    assert "acceptt" in failed.message


def test_dry_run_leaves_no_table_behind(good):
    """A dry run must not apply anything to the host it runs on."""
    assert nftcheck.dry_run(good).ok
    if shutil.which("nft") and os.geteuid() == 0:
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert "inet mailpub" not in tables


def test_says_plainly_when_nothing_can_run(monkeypatch):
    monkeypatch.setattr(nftcheck, "_import_binding", lambda: None)
    monkeypatch.setattr(nftcheck.shutil, "which", lambda name: None)
    monkeypatch.setattr(nftcheck.os, "access", lambda path, mode: False)
    result = nftcheck.dry_run("table inet x { }\n")
    assert not result.ran
    assert "python-nftables is not installed" in result.message
    assert "nft binary is not installed" in result.message


def test_without_netlink_rights_the_check_runs_in_a_private_namespace(good):
    """As a user without CAP_NET_ADMIN (here: root with it dropped), libnftables
    and plain `nft -c` are refused; the check must still run, via unshare -rn."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"):
        pytest.skip("needs root, setpriv and unshare to drop CAP_NET_ADMIN")
    script = ("import json, sys; from mailpubc import nftcheck; "
              "print(json.dumps([nftcheck.dry_run(t).__dict__ for t in sys.argv[1:]]))")
    run = subprocess.run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--",
                          sys.executable, "-c", script, good, BAD],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    passed, failed = json.loads(run.stdout)
    assert passed == {"ran": True, "ok": True, "method": "nft -c in a private network namespace",
                      "message": ""}
    assert failed["ran"] and not failed["ok"] and "acceptt" in failed["message"]
