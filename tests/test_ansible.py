"""The Ansible collection (ansible/ansible_collections/mailpubc/firewall), run
by the real `ansible-playbook` against localhost, applying into network
namespaces that stand for three firewalls. mailpubc is installed the way
the module's documentation says: with pip into a virtual environment, whose
`bin/mailpubc` the playbooks pass as `executable`.

The playbooks, the policy template and the inventory's shape are the
fixture files in tests/ansible/, which the README quotes; the collection's
README has a playbook of its own, run here as it is written."""

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mailpubc import cli, nft
from mailpubc.state import State

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "tests" / "ansible"
COLLECTION = ROOT / "ansible" / "ansible_collections" / "mailpubc" / "firewall"
FIREWALLS = {"fw1": ("198.51.100.21", "10.1.0.21"),
             "fw2": ("198.51.100.22", "10.1.0.22"),
             "fw3": ("198.51.100.23", "10.1.0.23")}
needs_apply = pytest.mark.skipif("apply" not in cli.COMMANDS,
                                 reason="mailpubc apply is not built yet")


@pytest.fixture(scope="module")
def fleet(module_namespaces, checkout_copy, tmp_path_factory):
    """Three namespaces, an inventory naming them, and mailpubc installed."""
    tmp = tmp_path_factory.mktemp("ansible")
    namespaces = {host: module_namespaces("ans") for host in FIREWALLS}
    hosts = {host: {"netns": namespaces[host].name, "external_address": address,
                    "server": server} for host, (address, server) in FIREWALLS.items()}
    inventory = tmp / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"firewalls": {"hosts": hosts, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "services": ["smtp", "imaps"], "rollback_after": 120, "state_dir": str(tmp / "state"),
        "mailpubc_venv": str(tmp / "venv"), "mailpubc_source": str(checkout_copy)}}}))
    environment = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "ansible"),
                   "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
                   "ANSIBLE_LOCAL_TEMP": str(tmp / "local"),
                   "ANSIBLE_REMOTE_TEMP": str(tmp / "remote"),
                   "ANSIBLE_HOME": str(tmp / "home"), "ANSIBLE_NOCOLOR": "1"}

    runs = iter(range(1000))

    def play(playbook: str, *args: str) -> tuple[int, dict, str]:
        """Run a playbook: its exit status, each host's last task result (the
        tree callback's files), and its screen output."""
        tree = tmp / f"tree-{next(runs)}"
        run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"),
                              "-i", str(inventory), str(PLAYBOOKS / playbook), *args],
                             capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                             env={**environment, "ANSIBLE_CALLBACK_TREE_DIR": str(tree)}, cwd=tmp)
        results = {path.name: json.loads(path.read_text()) for path in tree.glob("*")}
        return run.returncode, results, run.stdout + run.stderr

    play.state_dir = tmp / "state"
    rc, _, output = play("install.yml", "--limit", "fw1")
    assert rc == 0, output
    yield play, {host: ns.name for host, ns in namespaces.items()}
    for namespace in namespaces.values():       # a watcher still waiting exits
        (play.state_dir / "netns" / namespace.name / "pending.json").unlink(missing_ok=True)


def kept(play, netns: str) -> Path:
    """Where the module keeps the fleet's `content` (the default dest)."""
    return play.state_dir / "netns" / netns / "ansible-policy.yaml"


def reapply(play, netns: str, command: str = "reapply") -> subprocess.CompletedProcess:
    """`mailpubc reapply` (or another command) at the target's shell."""
    return subprocess.run([sys.executable, "-m", "mailpubc", command, "--netns", netns],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "MAILPUBC_STATE_DIR": str(play.state_dir)})


def table(netns: str):
    return nft.list_table("mailpub", netns=netns)


def addresses(listing: dict) -> set[str]:
    """Every address a rule of the table matches."""
    found = set()
    for entry in listing["nftables"]:
        for match in entry.get("rule", {}).get("expr", []):
            right = match.get("match", {}).get("right")
            if isinstance(right, str) and right[0].isdigit():
                found.add(right)
    return found


# ansible-core 2.19 imports cryptography's DSA, which cryptography 51
# deprecates: a warning of ansible's own, whatever the collection documents.
THEIR_WARNINGS = "ignore:DSA is deprecated"


def test_documentation_parses_and_names_every_option():
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-j",
                          "mailpubc.firewall.policy"], capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL,
                         env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "ansible"),
                              "PYTHONWARNINGS": THEIR_WARNINGS})
    assert run.returncode == 0 and run.stderr == "", run.stderr
    documented = json.loads(run.stdout)["mailpubc.firewall.policy"]["doc"]["options"]
    spec = importlib.util.spec_from_file_location(
        "policy", COLLECTION / "plugins" / "modules" / "policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert sorted(documented) == sorted(module.ARGUMENT_SPEC)
    for name, argument in module.ARGUMENT_SPEC.items():
        assert documented[name]["type"] == argument["type"], name
        assert documented[name].get("default") == argument.get("default"), name


def test_invalid_policy_fails_with_its_line_numbers(fleet):
    play, _ = fleet
    rc, results, output = play("fleet.yml", "--limit", "fw1",
                               "-e", '{"services": ["smtp", "smtp-typo"]}')
    assert rc == 2, output
    assert "content:14:22: error: unknown service 'smtp-typo'" in results["fw1"]["msg"]


@needs_apply
def test_check_mode_apply_again_and_an_edit_in_diff_mode(fleet):
    play, namespaces = fleet
    netns = namespaces["fw1"]
    rc, results, output = play("fleet.yml", "--limit", "fw1", "--check")
    assert rc == 0 and results["fw1"]["changed"], output
    assert nft.list_ruleset(netns)["nftables"][1:] == []     # metainfo only: nothing loaded
    rc, results, output = play("fleet.yml", "--limit", "fw1")
    assert rc == 0 and results["fw1"]["changed"], output
    assert table(netns) is not None
    for again in ((), ("--check",)):      # check mode agrees with a real run
        rc, results, output = play("fleet.yml", "--limit", "fw1", *again)
        assert rc == 0 and not results["fw1"]["changed"], output
    rc, results, output = play("fleet.yml", "--limit", "fw1", "--diff",
                               "-e", '{"services": ["smtp", "imaps", "pop3s"]}')
    assert rc == 0 and results["fw1"]["changed"], output
    assert "995" in results["fw1"]["diff_text"] and "995" in output    # --diff printed it
    assert "995" in json.dumps(table(netns))


@needs_apply
def test_one_run_applies_each_firewall_its_own_addresses(fleet):
    play, namespaces = fleet
    rc, results, output = play("fleet.yml")
    assert rc == 0 and sorted(results) == sorted(FIREWALLS), output
    for host, (address, server) in FIREWALLS.items():
        seen = addresses(table(namespaces[host]))
        others = {a for a, _ in FIREWALLS.values()} - {address}
        assert address in seen and server in seen and not others & seen, (host, seen)


@needs_apply
def test_confirmed_over_a_new_connection(fleet):
    play, namespaces = fleet
    rc, results, output = play("confirm.yml", "--limit", "fw2",
                               "-e", '{"services": ["submission"]}')
    assert rc == 0 and results["fw2"]["changed"], output    # the last task: confirm
    assert "587" in json.dumps(table(namespaces["fw2"]))


@needs_apply
def test_a_rollback_fails_the_confirming_task(fleet):
    play, namespaces = fleet
    netns = namespaces["fw3"]
    assert play("fleet.yml", "--limit", "fw3")[0] == 0
    final = kept(play, netns).read_text()
    rc, _, output = play("confirm.yml", "--limit", "fw3", "--tags", "apply", "-e",
                         '{"services": ["pop3s"], "rollback_after": 1}')
    assert rc == 0 and "995" in json.dumps(table(netns)), output
    deadline = time.monotonic() + 60      # the watcher restores the table after 1 s
    while "995" in json.dumps(table(netns)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "995" not in json.dumps(table(netns))
    rc, results, output = play("confirm.yml", "--limit", "fw3", "--tags", "confirm",
                               "-e", '{"services": ["pop3s"]}')
    assert rc == 2 and "rolled back?" in results["fw3"]["msg"], output
    assert FIREWALLS["fw3"][0] in addresses(table(netns))    # the fleet's table is back
    assert kept(play, netns).read_text() == final            # and the policy kept with it
    assert [p.name for p in kept(play, netns).parent.glob(".*pending")] == []
    assert reapply(play, netns).returncode == 0


@needs_apply
def test_a_refused_apply_keeps_nothing_and_a_confirmed_one_is_kept(fleet):
    play, namespaces = fleet
    netns = namespaces["fw1"]
    assert play("fleet.yml", "--limit", "fw1")[0] == 0
    final = kept(play, netns).read_text()
    rc, _, output = play("confirm.yml", "--limit", "fw1", "--tags", "apply",
                         "-e", '{"services": ["pop3s"]}')
    assert rc == 0 and kept(play, netns).read_text() == final, output    # not yet final
    rc, results, output = play("confirm.yml", "--limit", "fw1", "--tags", "apply",
                               "-e", '{"services": ["submission"]}')
    assert rc == 2 and "a confirmation is pending" in results["fw1"]["msg"], output
    assert kept(play, netns).read_text() == final
    rc, results, output = play("confirm.yml", "--limit", "fw1", "--tags", "confirm",
                               "-e", '{"services": ["pop3s"]}')
    assert rc == 0 and results["fw1"]["changed"], output
    assert "pop3s" in kept(play, netns).read_text() and "995" in json.dumps(table(netns))
    again = reapply(play, netns)
    assert again.returncode == 0 and "unchanged" in again.stderr, again.stderr


@needs_apply
def test_confirmed_at_a_shell_is_kept_by_the_next_run(fleet):
    """`mailpubc confirm` typed at the target: dest is not yet the text made
    final, so reapply loads nothing; the module's next run keeps it."""
    play, namespaces = fleet
    netns = namespaces["fw3"]
    assert play("fleet.yml", "--limit", "fw3")[0] == 0
    final = kept(play, netns).read_text()
    smtps = '{"services": ["smtps"]}'
    rc, _, output = play("confirm.yml", "--limit", "fw3", "--tags", "apply", "-e", smtps)
    assert rc == 0 and kept(play, netns).read_text() == final, output
    assert reapply(play, netns, "confirm").returncode == 0
    refused = reapply(play, netns)
    assert refused.returncode == 2 and "the policy changed" in refused.stderr, refused.stderr
    assert "465" in json.dumps(table(netns))
    rc, results, output = play("fleet.yml", "--limit", "fw3", "-e", smtps)
    assert rc == 0 and not results["fw3"]["changed"], output
    assert "smtps" in kept(play, netns).read_text()
    again = reapply(play, netns)
    assert again.returncode == 0 and "unchanged" in again.stderr, again.stderr


@needs_apply
def test_dest_is_0600_under_umask_000(fleet):
    play, namespaces = fleet
    previous = os.umask(0)
    try:
        rc, _, output = play("fleet.yml", "--limit", "fw2", "-e", '{"services": ["smtps"]}')
    finally:
        os.umask(previous)
    assert rc == 0, output
    assert stat.S_IMODE(kept(play, namespaces["fw2"]).stat().st_mode) == 0o600


@needs_apply
def with_dest(tmp_path, dest) -> Path:
    """fleet.yml with the module's dest, written beside its template."""
    playbook = tmp_path / "dest.yml"
    shutil.copy(PLAYBOOKS / "policy.yaml.j2", tmp_path)
    playbook.write_text((PLAYBOOKS / "fleet.yml").read_text().replace(
        "state_dir }}\"", f"state_dir }}}}\"\n        dest: {dest}"))
    return playbook


def test_a_symbolic_link_at_dest_is_refused(fleet, tmp_path):
    play, namespaces = fleet
    netns = namespaces["fw2"]
    target, link = tmp_path / "target", tmp_path / "kept" / "policy.yaml"
    target.write_text("not to be overwritten\n")
    link.parent.mkdir(mode=0o700)
    link.symlink_to(target)
    playbook = with_dest(tmp_path, link)
    before = table(netns)
    rc, results, output = play(str(playbook), "--limit", "fw2", "-e", '{"services": ["pop3s"]}')
    assert rc == 2 and "refusing dest" in results["fw2"]["msg"], output
    assert link.is_symlink() and target.read_text() == "not to be overwritten\n"
    assert table(netns) == before


def test_a_file_where_dest_s_folder_must_be_fails_cleanly(fleet, tmp_path):
    """Not a traceback: the module fails naming the folder, and changes nothing."""
    play, namespaces = fleet
    netns = namespaces["fw2"]
    blocking = tmp_path / "kept"
    blocking.write_text("a file, not a folder\n")
    playbook = with_dest(tmp_path, blocking / "policy.yaml")
    before = table(netns)
    rc, results, output = play(str(playbook), "--limit", "fw2", "-e", '{"services": ["pop3s"]}')
    assert rc == 2, output
    assert results["fw2"]["msg"].startswith(f"dest {blocking / 'policy.yaml'}: cannot make its "
                                            f"folder {blocking}"), output
    assert "Traceback" not in results["fw2"]["msg"]
    assert blocking.read_text() == "a file, not a folder\n" and table(netns) == before


def collection_readme_playbook() -> str:
    """The example playbook of the collection's README, as written there."""
    return (COLLECTION / "README.md").read_text().split("```yaml\n", 1)[1].split("```", 1)[0]


@needs_apply
def test_the_collections_readme_playbook_applies_and_confirms(namespace, tmp_path, monkeypatch):
    """Run as written, the policy copied from files/, inside a network
    namespace (`ip netns exec`: the module applies without --netns, as on
    a real firewall) with mailpubc on PATH and a state folder of its own;
    only where the policy lands is moved into the temporary folder."""
    (tmp_path / "files").mkdir()
    shutil.copy(ROOT / "examples" / "seed.yaml", tmp_path / "files" / "firewall.mailpub.yaml")
    (tmp_path / "site.yml").write_text(collection_readme_playbook())
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"firewalls": {"hosts": {"fw": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(tmp_path / "state"))
    environment = {key: value for key, value in os.environ.items() if key != "SSH_CONNECTION"}
    environment.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "ansible"), "ANSIBLE_HOME": str(tmp_path / "home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local"), "ANSIBLE_NOCOLOR": "1"})

    def play() -> tuple[int, dict, str]:
        """The exit status, the play recap's counts (ok, changed, failed, ...), the output."""
        run = subprocess.run(namespace.argv(
            str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.yml",
            "site.yml", "-e", f"policy={tmp_path / 'etc' / 'firewall.mailpub.yaml'}"),
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
            env=environment, cwd=tmp_path)
        output = run.stdout + run.stderr
        recap = re.search(r"^fw +: (.*)$", output, re.M)
        counts = {key: int(value) for key, value in
                  (item.split("=") for item in recap.group(1).split())} if recap else {}
        return run.returncode, counts, output

    try:
        rc, counts, output = play()
        assert rc == 0 and (counts["changed"], counts["failed"]) == (4, 0), output
        live = nft.list_table("mailpub", netns=namespace.name)
        assert "198.51.100.11" in json.dumps(live)
        assert State.of(None).read("pending") is None        # confirmed: no rollback waits
        rc, counts, output = play()
        assert rc == 0 and (counts["changed"], counts["failed"]) == (0, 0), output
    finally:
        State.of(None).remove("pending")      # a watcher still waiting exits
