"""The `mailpubc-check` hook of `.pre-commit-hooks.yaml`, run by the real
pre-commit (`pre-commit try-repo`) in a throwaway git repository.

pre-commit installs a hook repository from a commit, so the hook repository
is a copy of this working tree committed afresh in a temporary folder: the
test sees uncommitted edits, and runs the same on a clean clone in CI.
PRE_COMMIT_HOME is temporary too, so nothing is reused from another run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=mailpubc test", "-c", "user.email=test@example.com",
       "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


def git(folder: Path, *args: str) -> None:
    subprocess.run([*GIT, "-C", str(folder), *args], check=True, capture_output=True,
                   timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def try_repo(tmp_path_factory):
    """Run `pre-commit try-repo HOOKS mailpubc-check ARGS` in a project
    repository holding three files: a valid policy, an invalid one, and an
    invalid one whose name the hook's `files` pattern does not match."""
    tmp = tmp_path_factory.mktemp("precommit")
    hooks = tmp / "hooks"
    shutil.copytree(ROOT, hooks, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".hypothesis"))
    git(hooks, "init", "-q")
    git(hooks, "add", "-A")
    git(hooks, "commit", "-q", "-m", "hooks")

    project = tmp / "project"
    project.mkdir()
    shutil.copy(ROOT / "examples" / "seed.yaml", project / "good.mailpub.yaml")
    shutil.copy(ROOT / "golden" / "err-unknown-key" / "policy.yaml", project / "bad.mailpub.yaml")
    shutil.copy(ROOT / "golden" / "err-unknown-key" / "policy.yaml", project / "notes.yaml")
    git(project, "init", "-q")
    git(project, "add", "-A")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp / "cache")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(hooks),
                               "mailpubc-check", "--color", "never", *args],
                              cwd=project, env=env, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)
    return run


def test_valid_policy_passes(try_repo):
    run = try_repo("--files", "good.mailpub.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mailpubc check" in run.stdout and "Passed" in run.stdout


def test_invalid_policy_fails_with_its_line_numbers(try_repo):
    run = try_repo("--files", "good.mailpub.yaml", "bad.mailpub.yaml")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Failed" in run.stdout
    assert ("bad.mailpub.yaml:11:5: error: unknown key 'sever'; did you mean 'server'?"
            in run.stdout)


def test_only_files_named_like_policies_are_checked(try_repo):
    # notes.yaml is as invalid as bad.mailpub.yaml, but not a policy by its name
    run = try_repo("--files", "good.mailpub.yaml", "notes.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "notes.yaml" not in run.stdout
