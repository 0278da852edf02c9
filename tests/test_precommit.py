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
GOOD = ROOT / "examples" / "seed.yaml"
BAD = ROOT / "golden" / "err-unknown-key" / "policy.yaml"
GIT = ["git", "-c", "user.name=mailpubc test", "-c", "user.email=test@example.com",
       "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


def git(folder: Path, *args: str) -> None:
    subprocess.run([*GIT, "-C", str(folder), *args], check=True, capture_output=True,
                   timeout=60, stdin=subprocess.DEVNULL)


WARNS = ROOT / "golden" / "warn-mail-without-dns" / "policy.yaml"    # valid, with a warning
README = ROOT / "README.md"


def readme_config() -> str:
    """A user's .pre-commit-config.yaml as the README's "pre-commit" section
    shows it: --strict, and policies named by their folder instead of the
    hook's default pattern."""
    section = README.read_text().split("\n## pre-commit\n", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def hooks(checkout_copy, tmp_path_factory):
    """This working tree committed as a hook repository, and a PRE_COMMIT_HOME."""
    git(checkout_copy, "init", "-q")
    git(checkout_copy, "add", "-A")
    git(checkout_copy, "commit", "-q", "-m", "hooks")
    cache = tmp_path_factory.mktemp("precommit") / "cache"
    return checkout_copy, {**os.environ, "PRE_COMMIT_HOME": str(cache)}


def project(folder: Path, files: dict[str, Path]) -> Path:
    """A git repository at `folder` with `files` (name -> source) staged."""
    for name, source in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / name)
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    return folder


def pre_commit(folder: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pre_commit", *args, "--color", "never"],
                          cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def try_repo(hooks, tmp_path_factory):
    """Run `pre-commit try-repo HOOKS mailpubc-check ARGS` in a project
    repository holding three files: a valid policy, an invalid one, and an
    invalid one whose name the hook's `files` pattern does not match."""
    repository, env = hooks
    folder = project(tmp_path_factory.mktemp("project"), {
        "good.mailpub.yaml": GOOD, "bad.mailpub.yaml": BAD, "notes.yaml": BAD})
    return lambda *args: pre_commit(folder, env, "try-repo", str(repository),
                                    "mailpubc-check", *args)


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


def run_config(hooks, folder: Path, config: str) -> subprocess.CompletedProcess:
    """`pre-commit run --all-files` in `folder` with `config`, naming the hook repository."""
    repository, env = hooks
    revision = subprocess.run(["git", "-C", str(repository), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True, timeout=60)
    (folder / ".pre-commit-config.yaml").write_text(
        config.replace("REPOSITORY", str(repository))
        .replace("REVISION", revision.stdout.strip()))
    return pre_commit(folder, env, "run", "--all-files")


def test_a_users_config_may_name_policies_otherwise(hooks, tmp_path):
    folder = project(tmp_path, {"firewall/edge.yaml": BAD, "good.mailpub.yaml": GOOD})
    run = run_config(hooks, folder, readme_config())
    assert run.returncode == 1, run.stdout + run.stderr
    assert "firewall/edge.yaml:11:5: error: unknown key 'sever'" in run.stdout
    assert "good.mailpub.yaml" not in run.stdout    # outside the user's pattern: not checked


def test_warnings_fail_with_strict_and_pass_silently_without(hooks, tmp_path):
    folder = project(tmp_path, {"firewall/edge.yaml": WARNS})
    config = readme_config()
    assert "args: [--strict]" in config
    strict = run_config(hooks, folder, config)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "firewall/edge.yaml:8:11: warning: outbound rule 'smtp-out' sends mail" in strict.stdout
    lenient = run_config(hooks, folder, "".join(
        line for line in config.splitlines(keepends=True) if "args:" not in line))
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "warning" not in lenient.stdout and "Passed" in lenient.stdout
