"""A scenario's expectations judged by explain alone, at a given instant.

No kernel and no namespaces: the lab's own judges (lab.JUDGES) run on an
ExplainedLab, whose probes are answered by `mailpubc explain` (the library,
as `explain --at` answers) at one instant, connection by connection as the
agreement test asks it (agreement.ask): a connection gets through when
explain accepts it and something listens where it ends; a DNS or SMTP
server there sees explain's translated source. So a scenario whose
expectations only hold at some times can be tried at any instant, on any
day (tests/test_scenario_clock.py).

JUDGED are the expectation kinds whose outcome that decides. explain sees
connections, not sessions: a TLS handshake and a reader finding the
message are taken to work (the kernel's lab checks them). Every other kind
(a sweep, a series of connections, a log entry, a ping, a dynamic block)
is a failure here, never a skip.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from mailpubc.explain import Explainer, parse_destination
from mailpubc.model import Policy
from mailpubc.plan import Ruleset

from .agreement import ask
from .lab import JUDGES, LabModel
from .scenario import Scenario
from .topology import Host

JUDGED = ("reach", "smtp-deliver", "snat-source")


class ExplainedLab(LabModel):
    """The scenario's lab with explain in place of the kernel: `policy` is in
    the scenario's zone (agreement.in_zone), `ruleset` its plan."""

    def __init__(self, scenario: Scenario, policy: Policy, ruleset: Ruleset):
        super().__init__(scenario, policy)
        self.ruleset = ruleset
        self.explainer: Explainer | None = None
        self.delivered: dict[str, tuple[Host, dict]] = {}     # by subject

    def judge_all(self, at: datetime) -> list[str | None]:
        """None or a failure message for each expectation at `at`, as Lab.judge_all."""
        self.explainer = Explainer(self.ruleset, at)
        self.delivered = {}
        return [self._judge(exp) for exp in self.scenario.expectations]

    def _judge(self, exp: dict) -> str | None:
        if exp["kind"] not in JUDGED:
            return f"explain cannot judge a {exp['kind']} expectation; it judges {JUDGED}"
        try:
            return JUDGES[exp["kind"]](self, exp)
        except (KeyError, ValueError) as exc:
            return f"could not judge: {exc}"

    def probe(self, source: str, request: dict) -> dict:
        """What the probe would report, were the kernel to do what explain says."""
        kind = request["kind"]
        if kind == "reach" and request["service"] != "dns":
            _, _, through = self._ask(source, request, "tcp", request["port"])
            return _status([through], f"tcp/{request['port']}")
        if kind in ("reach", "whoami"):
            answers = [self._ask(source, request, transport, request["port"])
                       for transport in ("udp", "tcp")]
            result = _status([through for _, _, through in answers], f"dns/{request['port']}")
            if kind == "whoami":
                result["addresses"] = sorted({_peer(answer.translated_source)
                                              for answer, _, through in answers if through})
            return result
        if kind == "deliver":
            return self._deliver(source, request)
        raise ValueError(f"explain answers no {kind} probe")

    def _ask(self, source: str, request: dict, protocol: str, port: int):
        return ask(self, self.explainer, source, request["host"], protocol, port)

    def _deliver(self, source: str, request: dict) -> dict:
        """The message is sent when the SMTP connection gets through, read
        back when every reader's connection does."""
        answer, _, through = self._ask(source, request, "tcp", request["port"])
        if not through:
            return _status([False], f"smtp/{request['port']}")
        subject = f"explained {len(self.delivered)}"
        server, _ = parse_destination(answer.translated_destination, "tcp")
        self.delivered[subject] = (self.topology.owner(ipaddress.ip_address(str(server))), {
            "peer": _peer(answer.translated_source), "tls": True, "port": request["port"]})
        unread = [reader["service"] for reader in request.get("read_with", [])
                  if not self._ask(source, request, "tcp", reader["port"])[2]]
        if unread:
            return {"status": "broken", "subject": subject,
                    "detail": f"sent, but explain closes {', '.join(unread)}"}
        return {"status": "open", "subject": subject, "detail": "sent and read back"}

    def smtp_record(self, subject: str) -> tuple[Host, dict] | None:
        return self.delivered.get(subject)


def _status(throughs: list[bool], what: str) -> dict:
    """A probe's status: open when every connection got through, closed when none did."""
    status = "open" if all(throughs) else "closed" if not any(throughs) else "broken"
    return {"status": status, "detail": f"{what}: explain says {status}"}


def _peer(translated_source: str) -> str:
    if translated_source == "masquerade":
        raise ValueError("explain says masquerade: which address the kernel picks is not "
                         "judged here")
    return translated_source
