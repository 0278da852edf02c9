#!/usr/bin/python
"""Ansible module mailpubc.firewall.policy: a thin layer over the `mailpubc`
command on the target (check, diff, apply, confirm), so that Ansible and an
admin at a shell get exactly the same validation, diff and rollback."""

from __future__ import annotations

DOCUMENTATION = r"""
module: policy
short_description: Apply a mailpubc mail-publishing firewall policy
description:
  - Validates the policy with C(mailpubc check) (errors name the policy's lines),
    compares it with the live table (C(mailpubc diff)) and, when they differ,
    loads it with C(mailpubc apply) in one nft transaction.
  - Check mode applies nothing and reports whether the ruleset would change;
    diff mode shows the ruleset's diff.
  - mailpubc must be installed on the target, e.g. with pip into a virtual
    environment whose C(bin/mailpubc) is passed as O(executable), or on PATH.
options:
  src:
    description: Path of the policy file on the target.
    type: path
  content:
    description:
      - The policy as text, e.g. C(lookup('template', 'policy.yaml.j2')) so that a
        fleet shares one policy template filled with host variables.
      - Kept in O(dest) when applied, so C(mailpubc reapply) finds it later.
        Address list files (C(file:)) in it need absolute paths.
    type: str
  dest:
    description:
      - Where the policy given as O(content) is kept on the target.
      - Default C(STATE/ansible-policy.yaml), or C(STATE/netns/NETNS/ansible-policy.yaml)
        with O(netns), STATE being O(state_dir).
    type: path
  netns:
    description: Apply inside this named network namespace (C(ip netns)) instead of the host's.
    type: str
  confirm_timeout:
    description:
      - Lockout protection. Apply with C(--confirm SECONDS --no-wait), the previous table
        being restored after that many seconds unless a later task with O(confirm=true)
        confirms it; run that task over a new connection (after C(- meta) C(reset_connection)),
        so that it proves the new ruleset still lets Ansible in.
    type: int
  confirm:
    description:
      - Confirm a pending apply (C(mailpubc confirm)). With O(src) or O(content), also
        check that the live table is that policy, and fail if it was rolled back.
    type: bool
    default: false
  force:
    description:
      - Apply even if the policy's management SSH rule would not let in the address
        Ansible connects from (C(mailpubc apply --force)); without it that is refused.
    type: bool
    default: false
  executable:
    description: The mailpubc command, a path or a name looked up on PATH.
    type: str
    default: mailpubc
  state_dir:
    description: mailpubc's state folder (C(MAILPUBC_STATE_DIR)); default C(/var/lib/mailpubc).
    type: path
author: mailpubc authors
"""

EXAMPLES = r"""
- name: Firewall from the fleet's shared policy template
  mailpubc.firewall.policy:
    content: "{{ lookup('template', 'policy.yaml.j2') }}"
    executable: /opt/mailpubc/bin/mailpubc
    confirm_timeout: 120

- meta: reset_connection

- name: Still reachable over a new connection, so keep it
  mailpubc.firewall.policy:
    confirm: true
    content: "{{ lookup('template', 'policy.yaml.j2') }}"
    executable: /opt/mailpubc/bin/mailpubc
"""

RETURN = r"""
diff_text:
  description: The unified diff from C(mailpubc diff); empty when nothing changes.
  returned: when the policy was compared with the live table
  type: str
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

STATE_DIR = "/var/lib/mailpubc"
SAME = 0       # mailpubc diff: the live table is the policy
DIFFERS = 1
ARGUMENT_SPEC = dict(
    src=dict(type="path"),
    content=dict(type="str"),
    dest=dict(type="path"),
    netns=dict(type="str"),
    confirm_timeout=dict(type="int"),
    confirm=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    executable=dict(type="str", default="mailpubc"),
    state_dir=dict(type="path"),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("src", "content")],
        supports_check_mode=True,
    )
    params = module.params
    if not (params["src"] or params["content"] is not None or params["confirm"]):
        module.fail_json(msg="one of src or content is required (or confirm: true)")
    mailpubc = Mailpubc(module)
    scratch = tempfile.mkdtemp(prefix="mailpubc-ansible-")
    try:
        if params["confirm"]:
            confirm(module, mailpubc, scratch)
        else:
            apply(module, mailpubc, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class Mailpubc:
    """The mailpubc command on the target, with the module's namespace and state folder."""

    def __init__(self, module):
        self.module = module
        executable = module.params["executable"]
        self.path = executable if os.sep in executable else module.get_bin_path(
            executable, required=True)
        self.netns = ["--netns", module.params["netns"]] if module.params["netns"] else []
        self.environ = ({"MAILPUBC_STATE_DIR": module.params["state_dir"]}
                        if module.params["state_dir"] else {})
        self.shown = {}   # a temporary policy path -> the name errors should show

    def run(self, command, *args, netns=True):
        argv = [self.path, command, *(self.netns if netns else []), *args]
        rc, out, err = self.module.run_command(argv, environ_update=self.environ)
        for path, name in self.shown.items():
            out, err = out.replace(path, name), err.replace(path, name)
        return rc, out, err

    def fail(self, what, rc, out, err):
        self.module.fail_json(msg=f"mailpubc {what} failed (exit {rc}): {err.strip()}",
                              rc=rc, stdout=out, stderr=err)


def policy_file(module, mailpubc, folder):
    """The policy's path on the target; `content` is written into `folder`."""
    if module.params["src"]:
        return module.params["src"]
    path = os.path.join(folder, "policy.yaml")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(module.params["content"])
    mailpubc.shown[path] = "content"
    return path


def compare(module, mailpubc, policy):
    """Validate `policy` (failing with its diagnostics) and diff it with the live table."""
    rc, out, err = mailpubc.run("check", policy, netns=False)
    if rc != 0:
        mailpubc.fail("check", rc, out, err)
    rc, out, err = mailpubc.run("diff", policy)
    if rc not in (SAME, DIFFERS):
        mailpubc.fail("diff", rc, out, err)
    return rc == DIFFERS, out


def apply(module, mailpubc, scratch):
    policy = policy_file(module, mailpubc, scratch)
    changed, diff_text = compare(module, mailpubc, policy)
    result = dict(changed=changed, diff_text=diff_text)
    if module._diff and changed:
        result["diff"] = dict(prepared=diff_text)
    if not changed or module.check_mode:
        module.exit_json(**result)
    if module.params["content"] is not None:
        policy = keep(module, policy)
    timeout = module.params["confirm_timeout"]
    wait = ["--confirm", str(timeout), "--no-wait"] if timeout is not None else []
    force = ["--force"] if module.params["force"] else []
    rc, out, err = mailpubc.run("apply", *wait, *force, policy)
    if rc != 0:
        mailpubc.fail("apply", rc, out, err)
    module.exit_json(**result)


def keep(module, policy):
    """Move the checked `content` policy to `dest`, where reapply will read it."""
    params = module.params
    dest = params["dest"]
    if dest is None:
        base = params["state_dir"] or os.environ.get("MAILPUBC_STATE_DIR") or STATE_DIR
        dest = os.path.join(base, *(["netns", params["netns"]] if params["netns"] else []),
                            "ansible-policy.yaml")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    module.atomic_move(policy, dest)
    return dest


def confirm(module, mailpubc, scratch):
    if module.check_mode:
        module.exit_json(changed=False, msg="check mode: nothing confirmed")
    rc, out, err = mailpubc.run("confirm")
    if rc not in (0, 1):
        mailpubc.fail("confirm", rc, out, err)
    if module.params["src"] or module.params["content"] is not None:
        differs, diff_text = compare(module, mailpubc, policy_file(module, mailpubc, scratch))
        if differs:
            module.fail_json(msg="the live table is not this policy (rolled back?)",
                             diff_text=diff_text)
    module.exit_json(changed=rc == 0, msg=(out + err).strip())


if __name__ == "__main__":
    main()
