"""Start-up cost (issue #12): each command imports only the stages it runs.
Checked by which modules a fresh interpreter holds afterwards, not by timing."""

import os
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "seed.yaml"
MISFIT = ROOT / "golden" / "err-address-bad-octet" / "policy.yaml"
SCHEDULED = Path(__file__).resolve().parent.parent / "golden" / "schedules" / "policy.yaml"


def _modules_after(*args: str) -> set[str]:
    """The modules loaded once `mailpubc ARGS...` has run in a new interpreter,
    laid out as installed: `mailpubc` a folder on the path, and no site (-S),
    whose .pth files would start an editable install's finder (it imports pathlib)."""
    script = ("import sys\nfrom mailpubc.cli import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print('\\n'.join(sys.modules), file=sys.stderr)")
    with tempfile.TemporaryDirectory() as folder:
        os.symlink(ROOT / "compiler", os.path.join(folder, "mailpubc"))
        path = os.pathsep.join([folder, *site.getsitepackages()])
        run = subprocess.run([sys.executable, "-S", "-c", script, *args], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "PYTHONPATH": path})
    return set(run.stderr.split())


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"], ["install-unit", "--help"]])
def test_building_the_parser_loads_no_compiler(args):
    loaded = _modules_after(*args)
    assert "mailpubc.cli" in loaded
    assert not loaded & {"mailpubc.api", "mailpubc.nft", "jsonschema", "jinja2",
                         "concurrent.futures", "subprocess"}


def test_check_dry_runs_json_so_it_loads_no_jinja2():
    loaded = _modules_after("check", str(EXAMPLE))
    assert {"mailpubc.api", "mailpubc.nft", "mailpubc.shape"} <= loaded
    assert not loaded & {"jinja2", "mailpubc.generate.text", "concurrent.futures",
                         "mailpubc.state", "jsonschema", "importlib.resources"}
    assert "zoneinfo" not in loaded      # the example has no schedule


def test_check_loads_no_standard_module_it_does_not_use():
    """tempfile (the dry run's file is made with os.open), pathlib (the schema
    is read with open) and socket (addresses need only _socket's inet_pton)."""
    loaded = _modules_after("check", str(EXAMPLE))
    assert "mailpubc.nft" in loaded
    assert not loaded & {"tempfile", "pathlib", "socket"}


def test_a_policy_with_a_schedule_loads_zoneinfo():
    assert "zoneinfo" in _modules_after("check", "--no-nft-check", str(SCHEDULED))


def test_only_a_policy_that_does_not_fit_the_schema_loads_jsonschema():
    """jsonschema says where and why a policy does not fit; shape.py alone
    passes one that fits."""
    assert "jsonschema" in _modules_after("check", str(MISFIT))
