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
      - Kept in O(dest) once made final, so C(mailpubc reapply) finds it later; a policy
        that was refused or rolled back never replaces the one kept there.
        Address list files (C(file:)) in it need absolute paths.
    type: str
  dest:
    description:
      - Where the policy given as O(content) is kept on the target. It is applied from a
        new file beside O(dest) (C(mailpubc apply --record-as DEST)) and replaces O(dest)
        only once final, at once without O(confirm_timeout); with it, it waits beside
        O(dest) as C(.NAME.pending) until the task with O(confirm=true) (same O(content)
        or O(dest)) finds it confirmed, and is removed if it was rolled back. Confirmed by
        C(mailpubc confirm) at a shell, it is moved by the module's next run; until then
        C(mailpubc reapply) refuses (nothing loaded).
      - Written 0600 under any umask, never through a symbolic link, renamed atomically
        and the folder fsynced. A O(dest) that is a symbolic link or another user's file,
        or in a folder other users may write, is refused (nothing applied).
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

import hashlib
import json
import os
import shutil
import stat
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
    if module.check_mode:
        module.exit_json(**result)
    kept = Kept(module) if module.params["content"] is not None else None
    if kept:
        kept.settle()
    if not changed:
        module.exit_json(**result)
    timeout = module.params["confirm_timeout"]
    wait = ["--confirm", str(timeout), "--no-wait"] if timeout is not None else []
    force = ["--force"] if module.params["force"] else []
    if kept is None:
        rc, out, err = mailpubc.run("apply", *wait, *force, policy)
        if rc != 0:
            mailpubc.fail("apply", rc, out, err)
        module.exit_json(**result)
    candidate = kept.candidate()
    mailpubc.shown[candidate] = "content"
    try:
        rc, out, err = mailpubc.run("apply", *wait, *force, "--record-as", kept.dest, candidate)
        if rc != 0:
            mailpubc.fail("apply", rc, out, err)
        kept.move(candidate, kept.pending if wait else kept.dest)
    finally:
        if os.path.lexists(candidate):
            os.unlink(candidate)
    module.exit_json(**result)


def make_folders(path):
    """`path` and the folders above it that are missing, each 0700 (os.makedirs
    would make those above with 0777 less the umask: 0777 under umask 000)."""
    if os.path.isdir(path):
        return
    make_folders(os.path.dirname(path))
    os.mkdir(path, 0o700)


class Kept:
    """Where `content` is kept for `mailpubc reapply` (dest), and how it gets
    there: only a policy made final may replace dest. The candidate is
    applied from a new file beside dest (so `file:` paths resolve alike),
    with `--record-as dest`; without confirmation it becomes dest at once,
    with it it waits beside dest (`.NAME.pending`) until a later run (the
    confirming task, over a new connection) finds that mailpubc made its very
    text final (state.json: dest and its digest). Every file is the running
    user's, 0600, made afresh (O_EXCL), renamed over dest (a rename never
    follows a symbolic link), the folder fsynced; a dest that is a link or
    another user's, or a folder others may write, is refused."""

    def __init__(self, module):
        self.module = module
        params = module.params
        base = params["state_dir"] or os.environ.get("MAILPUBC_STATE_DIR") or STATE_DIR
        self.state = os.path.join(base, *(["netns", params["netns"]] if params["netns"] else []))
        self.dest = os.path.abspath(params["dest"] or os.path.join(self.state,
                                                                   "ansible-policy.yaml"))
        self.folder, name = os.path.split(self.dest)
        self.pending = os.path.join(self.folder, f".{name}.pending")
        try:
            make_folders(self.folder)
        except OSError as exc:      # a file where a folder must be, say
            module.fail_json(msg=f"dest {self.dest}: cannot make its folder {self.folder}: "
                                 f"{exc.strerror} ({exc.filename})")
        self.refuse_unsafe()

    def refuse_unsafe(self):
        info = os.stat(self.folder)
        uid = os.geteuid()
        if not stat.S_ISDIR(info.st_mode):
            self.module.fail_json(msg=f"dest {self.dest}: {self.folder} is not a folder")
        if info.st_uid != uid or info.st_mode & 0o022:
            self.module.fail_json(msg=f"refusing dest {self.dest}: its folder {self.folder} "
                                      f"is writable by other users or not uid {uid}'s")
        for path in (self.dest, self.pending):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
                self.module.fail_json(msg=f"refusing dest {self.dest}: {path} is not a "
                                          f"regular file of uid {uid} (a symbolic link?)")

    def candidate(self):
        """The content in a new file beside dest: 0600, fsynced."""
        fd, path = tempfile.mkstemp(prefix=".mailpubc-candidate-", dir=self.folder)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            os.fchmod(fd, 0o600)
            stream.write(self.module.params["content"])
            stream.flush()
            os.fsync(fd)
        return path

    def move(self, path, target):
        """Rename `path` over `target` and fsync the folder."""
        os.replace(path, target)
        folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def settle(self, confirmed=False):
        """Move the waiting candidate into dest if mailpubc made its text final;
        `confirmed` (nothing is pending any more): else remove it."""
        try:
            fd = os.open(self.pending, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        with os.fdopen(fd, "rb") as stream:
            digest = hashlib.sha256(stream.read()).hexdigest()
        try:
            with open(os.path.join(self.state, "state.json"), encoding="utf-8") as stream:
                final = json.load(stream)
        except FileNotFoundError:
            final = {}
        if (final.get("policy"), final.get("digest")) == (self.dest, digest):
            self.move(self.pending, self.dest)
        elif confirmed:
            os.unlink(self.pending)


def confirm(module, mailpubc, scratch):
    if module.check_mode:
        module.exit_json(changed=False, msg="check mode: nothing confirmed")
    rc, out, err = mailpubc.run("confirm")
    if rc not in (0, 1):
        mailpubc.fail("confirm", rc, out, err)
    if module.params["content"] is not None or module.params["dest"]:
        Kept(module).settle(confirmed=True)
    if module.params["src"] or module.params["content"] is not None:
        differs, diff_text = compare(module, mailpubc, policy_file(module, mailpubc, scratch))
        if differs:
            module.fail_json(msg="the live table is not this policy (rolled back?)",
                             diff_text=diff_text)
    module.exit_json(changed=rc == 0, msg=(out + err).strip())


if __name__ == "__main__":
    main()
