"""`mailpubc integration fail2ban|crowdsec`: the configuration of a tool that
feeds the policy's run-time sets (`mailpubc.integration`); and `mailpubc audit`,
the policy against the mail servers' configuration (`mailpubc.audit`)."""

from __future__ import annotations

import argparse
import json
import re

from ..diagnostics import ExitCode, UsageError
from .common import Exit, compiled_or_exit, emit, netns_name, say


def add(commands) -> None:
    integration = commands.add_parser(
        "integration", help="configuration for the tools that ban into dynamic_block",
        description="Print another tool's configuration for the policy's run-time sets "
                    "(firewall.dynamic_block). Exit 0; 1 an invalid policy or one without "
                    "dynamic_block.")
    tools = integration.add_subparsers(dest="tool", metavar="TOOL", required=True)
    fail2ban = tools.add_parser(
        "fail2ban", help="a fail2ban action file banning into the dynamic sets",
        description="A fail2ban action (for action.d/) that bans into NAME_v4 and NAME_v6 "
                    "with the ticket's ban time as the element's timeout, unbans, and never "
                    "creates, flushes or deletes a set.")
    fail2ban.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    fail2ban.add_argument("--netns", metavar="NS", type=netns_name,
                          help="run nft in this network namespace")
    fail2ban.add_argument("--set", metavar="NAME", dest="chosen",
                          help="the dynamic_block to ban into, when several are fed by "
                               "operators")
    fail2ban.add_argument("-o", "--output", metavar="FILE",
                          help="write the action file to FILE (atomically) instead of stdout")
    fail2ban.set_defaults(run=integration_file)
    crowdsec = tools.add_parser(
        "crowdsec", help="the CrowdSec firewall bouncer's configuration",
        description="The configuration of CrowdSec's firewall bouncer in set-only mode, "
                    "writing into NAME_v4 and NAME_v6 of the dynamic_block fed by crowdsec "
                    "(firewall.dynamic_block: [{name: NAME, feeder: crowdsec}]); the API key "
                    "stays in the bouncer's .yaml.local.")
    crowdsec.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    crowdsec.add_argument("--set", metavar="NAME", dest="chosen",
                          help="the dynamic_block to write into, when several are fed by crowdsec")
    crowdsec.add_argument("--api-url", metavar="URL", type=api_url,
                          help="CrowdSec's local API (default http://127.0.0.1:8080/)")
    crowdsec.add_argument("-o", "--output", metavar="FILE",
                          help="write the configuration to FILE (atomically) instead of stdout")
    crowdsec.set_defaults(run=integration_file)
    _add_audit(commands)


def _add_audit(commands) -> None:
    audit = commands.add_parser(
        "audit", help="check the policy against Postfix's and Dovecot's configuration",
        description="Each published mail port against the listeners of Postfix (postconf -c "
                    "DIR) and Dovecot (doveconf -c FILE), or the sockets listening on the "
                    "firewall for its own publications; listeners no publication names; a "
                    "hairpin SNAT address inside mynetworks; postscreen and rate limits "
                    "under hairpin SNAT; IPv6 published to an IPv4-only Postfix. Lines ok, "
                    "warning or error. Exit 0 no error, 1 some error, 2 usage or an "
                    "unreadable configuration.")
    audit.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    audit.add_argument("--postfix", metavar="DIR", help="Postfix's configuration folder")
    audit.add_argument("--dovecot", metavar="FILE", help="Dovecot's dovecot.conf")
    audit.add_argument("--netns", metavar="NS", type=netns_name,
                       help="read the listening sockets in this network namespace")
    audit.add_argument("--format", choices=("text", "json"), default="text")
    audit.set_defaults(run=audit_mail)


def api_url(text: str) -> str:
    """An http(s) URL with nothing a configuration line could break on."""
    if not re.fullmatch(r"https?://[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+", text):
        raise argparse.ArgumentTypeError(f"not an http or https URL: {text!r}")
    return text


def integration_file(args: argparse.Namespace) -> int:
    from .. import integration
    result = compiled_or_exit(args.policy)
    try:
        if args.tool == "fail2ban":
            text = integration.fail2ban_action(result.policy, args.netns, args.chosen)
        else:
            text = integration.crowdsec_bouncer(result.policy, args.chosen,
                                                args.api_url or integration.DEFAULT_API_URL)
    except integration.NoDynamicSets as exc:
        say(f"error: {exc}")
        raise Exit(ExitCode.INVALID) from exc
    emit(text, args.output)
    return ExitCode.OK


def audit_mail(args: argparse.Namespace) -> int:
    from .. import audit
    result = compiled_or_exit(args.policy, invalid=ExitCode.USAGE)
    try:
        findings = audit.run(result.policy, args.postfix, args.dovecot, args.netns)
    except audit.AuditError as exc:
        raise UsageError(str(exc)) from exc
    errors = sum(f.level == "error" for f in findings)
    if args.format == "json":
        print(json.dumps({"errors": errors, "findings": [f.as_json() for f in findings]},
                         indent=2))
    else:
        print("\n".join(map(str, findings)) if findings else "nothing to check")
    return ExitCode.INVALID if errors else ExitCode.OK
