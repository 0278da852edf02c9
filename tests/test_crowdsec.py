"""`mailpubc integration crowdsec` with the real CrowdSec (Debian's crowdsec
1.4 as the local API, and crowdsec-firewall-bouncer 0.0.25), both run by
the test in the firewall's namespace with their own configuration and
database, never the system services: `cscli decisions add --ip` bans a lab
client, which then reaches no published SMTP server, neither the firewall's
own (input) nor the DNATed one (forward), over IPv4 and IPv6; the ban
outlives `mailpubc apply`; `cscli decisions delete` lets the client back. A
range decision bans only the range's first address (the bouncer's
limitation, as observed here). Stopping the bouncer empties its own sets
and nothing else: fail2ban's `banned` keeps its elements."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from banlab import CLIENT, POLICY, PUBLISHED, build, elements, mailpubc, reachable, until
from cli import run_mailpubc

pytestmark = pytest.mark.usefixtures("namespaces_work")

API = "127.0.0.1:8080"
KEY = "mailpubc0test0bouncer0key0000000"
LAPI = """\
common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: .
config_paths:
  config_dir: {folder}/
  data_dir: {folder}/data/
  simulation_path: {folder}/simulation.yaml
  hub_dir: {folder}/hub/
  index_path: {folder}/hub/.index.json
  notification_dir: {folder}/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: {folder}/acquis.yaml
cscli:
  output: human
  color: false
db_config:
  log_level: info
  type: sqlite
  db_path: {folder}/data/crowdsec.db
  use_wal: false
api:
  client:
    insecure_skip_verify: false
    credentials_path: {folder}/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: {api}
    profiles_path: /etc/crowdsec/profiles.yaml
    trusted_ips: ["127.0.0.1", "::1"]
prometheus:
  enabled: false
"""
# over the printed configuration, as Debian's package keeps the key: the
# bouncer reads FILE.local over FILE; here also a log of its own and a
# quicker poll than the 10 s the printed configuration keeps
LOCAL = """\
api_key: {key}
log_dir: {folder}/
pid_dir: {folder}/
update_frequency: 1s
"""


class CrowdSec:
    """The local API (`crowdsec -no-cs -no-capi`) and the firewall bouncer."""

    def __init__(self, firewall, folder: Path):
        self.firewall, self.folder = firewall, folder
        (folder / "data").mkdir(parents=True)
        self.conf = folder / "config.yaml"
        self.conf.write_text(LAPI.format(folder=folder, api=API))
        (folder / "simulation.yaml").write_text("simulation: false\n")
        (folder / "acquis.yaml").write_text("")
        self.cscli("machines", "add", "mailpubc-test", "--auto", "-f",
                   str(folder / "local_api_credentials.yaml"), "--url", f"http://{API}")
        self.cscli("bouncers", "add", "mailpubc", "-k", KEY)
        lapi = firewall.spawn("crowdsec", "-c", str(self.conf), "-no-cs", "-no-capi",
                              log=str(folder / "crowdsec.log"))
        firewall.wait_listening({("tcp", 8080)}, [lapi], timeout=30)
        self.bouncer = None

    def cscli(self, *args: str) -> str:
        return self.firewall.run("cscli", "-c", str(self.conf), *args, timeout=60).stdout

    def start_bouncer(self, config: Path) -> None:
        Path(f"{config}.local").write_text(LOCAL.format(key=KEY, folder=self.folder))
        self.bouncer = self.firewall.spawn("crowdsec-firewall-bouncer", "-c", str(config),
                                           log=str(self.folder / "bouncer.out"))

    def stop_bouncer(self) -> None:
        self.bouncer.send_signal(signal.SIGTERM)
        self.bouncer.wait(timeout=30)

    def log(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.folder.glob("*.log")))


@pytest.fixture(scope="module")
def lab(module_namespaces, tmp_path_factory):
    if shutil.which("crowdsec") is None or shutil.which("crowdsec-firewall-bouncer") is None:
        pytest.skip("needs Debian's crowdsec and crowdsec-firewall-bouncer")
    return build(module_namespaces, tmp_path_factory.mktemp("crowdsec"))


def test_the_bouncer_bans_into_the_policy_sets_on_input_and_forward(lab):
    firewall, client, policy, state, folder = lab
    assert all(reachable(client).values())
    config = folder / "crowdsec-firewall-bouncer.yaml"
    made = run_mailpubc("integration", "crowdsec", "-o", config, policy)
    assert (made.returncode, made.stdout, made.stderr) == (0, "", "")
    crowdsec = CrowdSec(firewall, folder / "cs")
    # an operator's ban in fail2ban's set, which the bouncer must leave alone
    firewall.run("nft", "add", "element", "inet", "mailpub", "banned_v4", "{ 203.0.113.0/24 }")
    crowdsec.start_bouncer(config)
    try:
        for family in (4, 6):
            crowdsec.cscli("decisions", "add", "--ip", CLIENT[family], "--duration", "1h")
        for family in (4, 6):
            until(lambda: CLIENT[family] in elements(firewall, family, "crowdsec"),
                  f"the IPv{family} decision in crowdsec_v{family}")
        assert "timeout" in elements(firewall, 4, "crowdsec")    # the decision's duration
        assert reachable(client) == dict.fromkeys(PUBLISHED[4] + PUBLISHED[6], False)
        # apply carries the bouncer's elements; the bouncer writes on into the new table
        assert mailpubc(state, "apply", "--netns", firewall.name, policy).returncode == 0
        assert CLIENT[4] in elements(firewall, 4, "crowdsec")
        assert CLIENT[6] in elements(firewall, 6, "crowdsec")
        assert not any(reachable(client).values())
        # a range decision: 0.0.25 writes the range's first address only
        crowdsec.cscli("decisions", "add", "--range", "198.51.100.128/25", "--duration", "1h")
        until(lambda: "198.51.100.128" in elements(firewall, 4, "crowdsec"),
              "the range decision's first address")
        assert "198.51.100.129" not in elements(firewall, 4, "crowdsec")
        assert "prefix" not in elements(firewall, 4, "crowdsec")
        # deleted decisions let the client back
        for family in (4, 6):
            crowdsec.cscli("decisions", "delete", "--ip", CLIENT[family])
        for family in (4, 6):
            until(lambda: CLIENT[family] not in elements(firewall, family, "crowdsec"),
                  f"the IPv{family} decision gone from crowdsec_v{family}")
        assert all(reachable(client).values())
    finally:
        crowdsec.stop_bouncer()
    assert "error" not in (folder / "cs" / "crowdsec-firewall-bouncer.log").read_text().lower()
    # stopped, the bouncer emptied its own sets and left fail2ban's alone
    assert "198.51.100.128" not in elements(firewall, 4, "crowdsec")
    assert "203.0.113.0" in elements(firewall, 4, "banned")


def test_each_tool_feeds_only_its_own_sets(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    runs = {
        "crowdsec --set banned": ("is fed by operator, not crowdsec",
                                  ["crowdsec", "--set", "banned"]),
        "fail2ban --set crowdsec": ("is fed by crowdsec, not operator",
                                    ["fail2ban", "--set", "crowdsec"]),
        "crowdsec --set nothing": ("no firewall.dynamic_block is named 'nothing'",
                                   ["crowdsec", "--set", "nothing"]),
    }
    for what, (message, args) in runs.items():
        run = run_mailpubc("integration", *args, policy)
        assert (run.returncode, run.stdout) == (1, ""), what
        assert message in run.stderr, what
    policy.write_text(POLICY.replace("[banned, {name: crowdsec, feeder: crowdsec}]", "banned"))
    run = run_mailpubc("integration", "crowdsec", policy)
    assert (run.returncode, run.stdout) == (1, "")
    assert "no firewall.dynamic_block fed by crowdsec" in run.stderr
    assert "{name: NAME, feeder: crowdsec}" in run.stderr
    bad = run_mailpubc("integration", "crowdsec", "--api-url", "http://x/\napi_key: stolen",
                       policy)
    assert (bad.returncode, bad.stdout) == (2, "")


def test_the_printed_configuration_passes_the_bouncers_own_check(tmp_path):
    """`crowdsec-firewall-bouncer -t`, as the packaged unit runs it before it
    starts: the printed file with Debian's .local beside it."""
    if shutil.which("crowdsec-firewall-bouncer") is None:
        pytest.skip("needs Debian's crowdsec-firewall-bouncer")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    config = tmp_path / "crowdsec-firewall-bouncer.yaml"
    assert run_mailpubc("integration", "crowdsec", "-o", config, policy).returncode == 0
    Path(f"{config}.local").write_text(LOCAL.format(key=KEY, folder=tmp_path))
    checked = subprocess.run(["crowdsec-firewall-bouncer", "-c", str(config), "-t"],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
