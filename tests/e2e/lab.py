"""One scenario's lab: build it, load the compiled ruleset, judge expectations.

The ruleset is made the way a user makes it: the CLI prints it
(``python -m mailpubc POLICY``, or the command in MAILPUBC_E2E_CMD, e.g.
``mailpubc`` or a wrapper that mutates the output to see the suite fail),
and ``mailpubc.nft.load`` loads it, in one transaction as ``nft -f`` does,
inside the firewall namespace (the text is kept with the lab's files).  The lab's
shape and the services' ports come from the compiler's model of the same
file, so the tests hold no second reading of the policy language.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import yaml

from mailpubc import nft
from mailpubc.diagnostics import PolicyError
from mailpubc.model import Policy
from mailpubc.api import compile_path
from mailpubc.vocab import BUILTIN_SERVICES, PortRange

from . import agreement, netns, pki, services
from .netns import CommandError
from .scenario import REPO, Scenario, describe, load
from .topology import MEMBERSHIP_EXPIRY, Host, Topology

PROBE = Path(__file__).resolve().parent / "probe.py"
NFLOG = Path(__file__).resolve().parent / "nflog.py"
TLS_SERVICES = {"smtps", "submission"}
SWEEP_TIMEOUT = 0.5
PARALLEL_PROBES = 12
PING_WAIT = 2           # seconds ping waits for the echo reply
EVIDENCE = ("*.nft", "*.yaml", "*.conf", "*.log", "*.jsonl", "*.out")


class LabError(RuntimeError):
    """The lab could not be set up (bad policy, compiler failure, dead server)."""


def compiler_command() -> list[str]:
    return shlex.split(os.environ.get("MAILPUBC_E2E_CMD", "")) or [sys.executable, "-m", "mailpubc"]


class LabModel:
    """A scenario's lab as the compiler's model of its policy describes it:
    the hosts (not built), their addresses and the services' ports. The
    kernel's Lab and explain's (e2e/explained.py) share it."""

    def __init__(self, scenario: Scenario, policy: Policy):
        self.scenario = scenario
        self.policy = policy
        self.topology = Topology(policy, scenario.hosts, scenario.mld_snooping)

    def address(self, name: str, family: int | None) -> str:
        try:
            return str(ipaddress.ip_address(name))
        except ValueError:
            return str(self.topology.host(name).address(family or 4))

    def service_ports(self, service: str) -> tuple[PortRange, ...]:
        """A built-in service's ports, or those of a custom one as a rule uses it
        (the model keeps custom services only inside the rules)."""
        if service in BUILTIN_SERVICES:
            return BUILTIN_SERVICES[service]
        for rule in (*self.policy.publish, *self.policy.outbound):
            for used in rule.services:
                if used.name == service:
                    return used.ports
        raise KeyError(f"service {service!r} is neither built in nor used by a rule")

    def service_port(self, service: str) -> int:
        return self.service_ports(service)[-1].high


class Lab(LabModel):
    """The namespaces, servers and ruleset of one scenario, and its checks."""

    def __init__(self, scenario: Scenario, ca: Path, evidence: Path):
        self.ca = ca
        self.evidence = evidence
        self.nflog_lock = threading.Lock()
        self.listener_lock = threading.Lock()   # datagrams checks share their listeners' ports
        # Short (unix socket paths) and traversable by Dovecot's mail user.
        self.workdir = netns.scratch_dir()
        self.workdir.chmod(0o755)
        self.policy_file = scenario.policy_file
        self.probes: dict[int, list[agreement.Probe]] = {}   # by expectation, for explain
        self._recording = threading.local()
        if self.policy_file is None:
            self.policy_file = self.workdir / "policy.yaml"
            self.policy_file.write_text(yaml.safe_dump(scenario.policy, sort_keys=False))
        try:
            super().__init__(scenario, compile_path(str(self.policy_file)).or_raise().policy)
        except (PolicyError, KeyError, TypeError, ValueError) as exc:
            self._keep_evidence()
            raise LabError(f"scenario {scenario.name}: cannot derive the lab: {exc!r}"
                           f" [lab files: {evidence}]") from exc

    def start(self) -> None:
        try:
            self.topology.build()
            cert, key = pki.issue(self.ca, self.workdir, self.topology.all_addresses())
            for host in self.topology.hosts.values():
                services.start(host, self.workdir, cert, key)
            self._load_ruleset()
            if self.topology.snooping:
                # Not an assertion on time: the checks must run once every
                # membership the ruleset keeps from being renewed has lapsed.
                time.sleep(MEMBERSHIP_EXPIRY)
        except (CommandError, nft.NftError, ValueError, KeyError) as exc:
            raise LabError(f"scenario {self.scenario.name}: lab setup failed: {exc}") from exc

    def _load_ruleset(self) -> None:
        """Compile and load, both in the scenario's zone when it has one."""
        zone = self.scenario.timezone
        tz = ["env", f"TZ={zone}"] if zone else []
        compiled = _run_compiler([*tz, *compiler_command(), str(self.policy_file)])
        (self.workdir / "ruleset.nft").write_text(compiled)
        nft.load(compiled, netns=self.topology.firewall.ns.name)

    def close(self) -> None:
        self.topology.destroy()
        self._keep_evidence()

    def _keep_evidence(self) -> None:
        """Copy the lab's files to the evidence folder and remove the workdir."""
        self.evidence.mkdir(parents=True, exist_ok=True)
        for pattern in EVIDENCE:
            for path in self.workdir.rglob(pattern):
                target = self.evidence / path.relative_to(self.workdir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        netns.remove_dir(self.workdir)

    # -- judging ----------------------------------------------------------

    def judge_all(self) -> list[str | None]:
        """Run every expectation (in parallel, sweeps first as they take longest);
        None or a failure message each."""
        expectations = self.scenario.expectations
        with ThreadPoolExecutor(PARALLEL_PROBES) as pool:
            order = sorted(range(len(expectations)),
                           key=lambda i: expectations[i]["kind"] != "portsweep")
            futures = {i: pool.submit(self._judge_safely, expectations[i], i) for i in order}
            outcomes = [futures[i].result() for i in range(len(expectations))]
        return [None if o is None else
                f"scenario {self.scenario.name}, expectation #{i} ({describe(e)}): {o}"
                f" [lab files: {self.evidence}]"
                for i, (e, o) in enumerate(zip(self.scenario.expectations, outcomes))]

    def _judge_safely(self, exp: dict, index: int) -> str | None:
        self._recording.probes = self.probes[index] = []
        self._recording.run_time_elements = False
        try:
            return JUDGES[exp["kind"]](self, exp)
        except (CommandError, KeyError, ValueError) as exc:
            return f"could not run: {exc}"

    def probe(self, source: str, request: dict, timeout: float = 60) -> dict:
        user, password = services.ACCOUNT
        request = dict(request, cafile=str(self.ca), account=[user, password],
                       zone=services.ZONE, whoami_zone=services.WHOAMI_ZONE)
        host = self.topology.host(source)
        at = datetime.now(timezone.utc)
        out = host.ns.run(sys.executable, str(PROBE), json.dumps(request), timeout=timeout)
        result = json.loads(out.stdout)
        self._recording.probes.append(agreement.Probe(
            source, request, result, at, self._recording.run_time_elements))
        return result

    def explain_all(self) -> list[agreement.Tally]:
        """explain's verdicts on every probe each expectation sent (e2e/agreement.py)."""
        return [agreement.check(self, self.probes.get(i, []))
                for i in range(len(self.scenario.expectations))]

    def smtp_record(self, subject: str) -> tuple[Host, dict] | None:
        """Which lab SMTP server received ``subject``, and its log entry."""
        for host in self.topology.hosts.values():
            log = services.smtp_log(host, self.workdir)
            if "smtp" in host.servers and log.exists():
                for line in log.read_text().splitlines():
                    record = json.loads(line)
                    if record["subject"] == subject:
                        return host, record
        return None


def _run_compiler(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"compiler did not run: {exc}") from exc
    if proc.returncode != 0:
        raise CommandError(f"compiler exited {proc.returncode}: {' '.join(argv)}\n{proc.stderr}")
    return proc.stdout


def _reach(lab: Lab, exp: dict) -> str | None:
    target = lab.address(exp["to"], exp.get("family"))
    if "port" in exp:
        checks = [("tcp", int(str(exp["port"]).removeprefix("tcp/")))]
    elif exp["service"] in BUILTIN_SERVICES:
        checks = [(exp["service"], lab.service_port(exp["service"]))]
    else:                       # a custom service: a TCP handshake on each port
        checks = [("tcp", port) for ports in lab.service_ports(exp["service"])
                  if ports.protocol == "tcp" for port in sorted({ports.low, ports.high})]
        if not checks:
            raise ValueError(f"service {exp['service']} has no TCP port to check")
    for service, port in checks:
        result = lab.probe(exp["from"], {"kind": "reach", "service": service,
                                         "host": target, "port": port})
        if result["status"] != exp["expect"]:
            return f"expected {exp['expect']}, got {result['status']}: {result['detail']}"
    return None


def _deliver(lab: Lab, exp: dict) -> str | None:
    service = exp.get("service", "smtp")
    readers = [{"service": s, "port": lab.service_port(s)} for s in exp.get("read_with", [])]
    result = lab.probe(exp["from"], {
        "kind": "deliver", "service": service, "port": lab.service_port(service),
        "host": lab.address(exp["to"], exp.get("family")), "read_with": readers})
    if result["status"] != "open":
        return f"delivery {result['status']}: {result['detail']}"
    received = lab.smtp_record(result["subject"])
    if received is None:
        return "the message reached no lab SMTP server's log"
    server, record = received
    if "expect_server" in exp and server is not lab.topology.host(exp["expect_server"]):
        return f"the message went to {server.name}, expected {exp['expect_server']}"
    if service in TLS_SERVICES and not record["tls"]:
        return f"the server saw no TLS on port {record['port']}"
    if "expect_peer" in exp:
        peer = lab.address(exp["expect_peer"], exp.get("family"))
        if ipaddress.ip_address(record["peer"]) != ipaddress.ip_address(peer):
            return f"the server saw the connection from {record['peer']}, expected {peer}"
    return None


def _snat(lab: Lab, exp: dict) -> str | None:
    expected = str(ipaddress.ip_address(exp["expect_source"]))
    if exp["service"] == "smtp":
        return _deliver(lab, dict(exp, expect_peer=expected))
    if exp["service"] != "dns":
        raise ValueError("snat-source checks smtp or dns")
    result = lab.probe(exp["from"], {"kind": "whoami", "port": lab.service_port("dns"),
                                     "host": lab.address(exp["to"], exp.get("family"))})
    if result["status"] != "open":
        return f"DNS {result['status']}: {result['detail']}"
    if result["addresses"] != [expected]:
        return f"the DNS server saw queries from {result['addresses']}, expected [{expected}]"
    return None


def _sweep(lab: Lab, exp: dict) -> str | None:
    first, _, last = str(exp.get("ports", "1-65535")).partition("-")
    expected = sorted(int(p) for p in exp["expect_open"])
    result = lab.probe(exp["from"], {
        "kind": "sweep", "host": lab.address(exp["target"], exp.get("family")),
        "first": int(first), "last": int(last or first), "expected": expected,
        "timeout": SWEEP_TIMEOUT}, timeout=120)
    if result["status"] != "open":
        return f"sweep {result['status']}: {result['detail']}"
    found = set(result["open"])
    if found != set(expected):
        return (f"open ports {sorted(found)}, expected {expected}: unexpected "
                f"{sorted(found - set(expected))}, missing {sorted(set(expected) - found)} "
                f"(sweep: {result['counts']})")
    return None


def _dynamic_block(lab: Lab, exp: dict) -> str | None:
    """Open; closed while the source is in the run-time set; open once removed."""
    family = exp.get("family", 4)
    source = str(lab.topology.host(exp["from"]).address(family))
    element = ["inet", lab.policy.firewall.table, f"{exp['set']}_v{family}", "{", source, "}"]
    firewall = lab.topology.firewall.ns
    steps = (("before", "open", None), ("in the set", "closed", ["add", "element", *element]),
             ("removed", "open", ["delete", "element", *element]))
    for when, expected, command in steps:
        if command is not None:
            firewall.run("nft", *command)
        # explain assumes the run-time sets empty: it judges no probe made meanwhile
        lab._recording.run_time_elements = command is not None and command[0] == "add"
        failure = _reach(lab, dict(exp, expect=expected))
        if failure:
            return f"{when}: {failure}"
    return None


def _port(lab: Lab, exp: dict) -> int:
    return int(exp["port"]) if "port" in exp else lab.service_port(exp["service"])


def _connections(lab: Lab, exp: dict) -> str | None:
    """New connections from one source one after another (held open with
    `hold`; with `rotate`, each from the next address the host has in the
    family), each open or closed as listed; then one from `then_from`, open."""
    target, port = lab.address(exp["to"], exp.get("family")), _port(lab, exp)
    request = {"kind": "connections", "host": target, "port": port}
    if exp.get("rotate"):
        version = ipaddress.ip_address(target).version
        request["sources"] = [str(a) for a in lab.topology.host(exp["from"]).addresses
                              if a.version == version]
    result = lab.probe(exp["from"], dict(request, count=len(exp["expect"]),
                                         hold=exp.get("hold", False)))
    got = [status.split(" ")[0] for status in result["results"]]
    if got != exp["expect"]:
        return f"expected {'-'.join(exp['expect'])}, got {result['detail']}"
    if "then_from" in exp:
        request.pop("sources", None)
        other = lab.probe(exp["then_from"], dict(request, count=1))
        if other["results"] != ["open"]:
            return f"then {exp['then_from']} expected open, got {other['detail']}"
    return None


def _log(lab: Lab, exp: dict) -> str | None:
    """What the firewall logs to an nflog group while `from` opens one
    connection (at least one entry with the prefix), or floods a UDP port
    with `flood` datagrams (at least one, at most `at_most`)."""
    target, port = lab.address(exp["to"], exp.get("family")), _port(lab, exp)
    source = lab.address(exp["from"], exp.get("family"))
    with lab.nflog_lock:    # one reader per group and namespace
        reader = subprocess.Popen(
            lab.topology.firewall.ns.argv(sys.executable, str(NFLOG), str(exp["group"])),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if reader.stdout.readline().strip() != "ready":
                return f"the nflog reader did not start: {reader.communicate(timeout=10)[1]}"
            if "flood" in exp:
                lab.probe(exp["from"], {"kind": "flood", "host": target, "port": port,
                                        "count": exp["flood"]})
            else:
                result = lab.probe(exp["from"], {"kind": "connections", "host": target,
                                                 "port": port, "count": 1})
                if result["results"] != ["open"]:
                    return f"the connection was not open: {result['detail']}"
            out, err = reader.communicate("", timeout=30)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
    entries = json.loads(out)
    count = sum(1 for e in entries if e["prefix"] == exp["expect_prefix"]
                and e["source"] is not None
                and ipaddress.ip_address(e["source"]) == ipaddress.ip_address(source))
    if count == 0 or count > exp.get("at_most", count):
        return (f"{count} entries with prefix {exp['expect_prefix']!r} from {source}, expected "
                f"1 to {exp.get('at_most', 'any number')}; all entries: {entries}")
    return None


def _ping(lab: Lab, exp: dict) -> str | None:
    """One echo request with ping(8), answered within PING_WAIT seconds or not."""
    family = exp.get("family", 4)
    target = lab.address(exp["to"], family)
    ping = lab.topology.host(exp["from"]).ns.run(
        "ping", f"-{family}", "-n", "-c1", f"-W{PING_WAIT}", target,
        timeout=PING_WAIT + 10, check=False)
    status = {0: "open", 1: "closed"}.get(ping.returncode, "broken")
    if status != exp["expect"]:
        return f"expected {exp['expect']}, got {status}: {ping.stdout}{ping.stderr}".rstrip()
    return None


def _datagrams(lab: Lab, exp: dict) -> str | None:
    """UDP datagrams from `from` (from a forged `source` when given: an address
    of another network put on `from` for the probe) to `to`:`port`, and what
    a listener on host `at` receives: nothing (dropped), or datagrams from
    `expect_peer` (received)."""
    family = exp.get("family", 4)
    sender = lab.topology.host(exp["from"])
    receiver = lab.topology.host(exp["at"])
    forged = exp.get("source")
    if forged:
        address = ipaddress.ip_address(forged)
        sender.ns.ip("addr", "add", f"{address}/{address.max_prefixlen}", "dev", "eth0",
                     *(["nodad"] if address.version == 6 else []))
    request = {"kind": "listen", "port": exp["port"], "family": family, "drain": 1.0}
    with lab.listener_lock:
        listener = subprocess.Popen(
            receiver.ns.argv(sys.executable, str(PROBE), json.dumps(request)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = listener.stdout.readline().strip()
            if first != "ready":
                return f"the UDP listener did not start: {first} {listener.communicate()[1]}"
            lab.probe(exp["from"], {"kind": "datagrams", "port": exp["port"], "count": 5,
                                    "host": lab.address(exp["to"], family), "source": forged})
            out, _ = listener.communicate("", timeout=30)
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait()
            if forged:
                sender.ns.ip("addr", "del", f"{address}/{address.max_prefixlen}", "dev", "eth0")
    peers = {str(ipaddress.ip_address(p.removeprefix("::ffff:"))) if "." in p else
             str(ipaddress.ip_address(p)) for p in json.loads(out.splitlines()[-1])["peers"]}
    if exp["expect"] == "dropped":
        return None if not peers else f"expected nothing at {exp['at']}, it received from {peers}"
    if not peers:
        return f"expected datagrams at {exp['at']}, none arrived"
    expected = lab.address(exp.get("expect_peer", exp["from"]), family)
    if peers != {str(ipaddress.ip_address(expected))}:
        return f"{exp['at']} received datagrams from {sorted(peers)}, expected {expected}"
    return None


JUDGES = {"reach": _reach, "smtp-deliver": _deliver, "snat-source": _snat, "portsweep": _sweep,
          "dynamic-block": _dynamic_block,
          "connections": _connections, "log": _log,
          "ping": _ping, "datagrams": _datagrams}


class Labs:
    """Runs each scenario once, when its first test asks: builds the lab,
    judges all its expectations, asks explain about every probe, tears it
    down.  The tests then report the outcomes one by one (or each the error
    that stopped the lab)."""

    def __init__(self, ca: Path, evidence_root: Path):
        self.ca = ca
        self.evidence_root = evidence_root
        # by scenario: (failures, explain tallies or the error explain raised), or the lab's error
        self.outcomes: dict[str, tuple[list, list | Exception] | Exception] = {}

    def _outcome(self, scenario: Scenario) -> tuple[list, list | Exception]:
        if scenario.name not in self.outcomes:
            # placeholders filled in again: the time is now the lab's, not collection's
            scenario = load(scenario.path, scenario.timezone)
            try:
                lab = Lab(scenario, self.ca, self.evidence_root / scenario.name)
            except LabError as exc:
                self.outcomes[scenario.name] = exc
            else:
                try:
                    lab.start()
                    failures = lab.judge_all()
                    try:
                        tallies = lab.explain_all()
                        self._log_tallies(scenario, tallies)
                    except Exception as exc:  # noqa: BLE001 - the explain tests report it
                        tallies = exc
                    self.outcomes[scenario.name] = (failures, tallies)
                except Exception as exc:  # noqa: BLE001 - every test of the scenario reports it
                    self.outcomes[scenario.name] = exc
                finally:
                    lab.close()
        outcome = self.outcomes[scenario.name]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _log_tallies(self, scenario: Scenario, tallies: list[agreement.Tally]) -> None:
        """explain's agreement counts, one line an expectation, for the run's report."""
        with open(self.evidence_root / "explain-agreement.jsonl", "a") as log:
            for index, tally in enumerate(tallies):
                log.write(json.dumps({"scenario": scenario.name, "expectation": index,
                                      "agreed": tally.agreed, "unobservable": tally.unobservable,
                                      "unjudged": tally.unjudged,
                                      "disagreed": len(tally.disagreements)}) + "\n")

    def results(self, scenario: Scenario) -> list[str | None]:
        return self._outcome(scenario)[0]

    def explained(self, scenario: Scenario) -> list[agreement.Tally]:
        tallies = self._outcome(scenario)[1]
        if isinstance(tallies, Exception):
            raise tallies
        return tallies
