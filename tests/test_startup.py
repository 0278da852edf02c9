"""Start-up cost (issue #12): each command imports only the stages it runs.
Checked by which modules a fresh interpreter holds afterwards, not by timing."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seed.yaml"
MISFIT = Path(__file__).resolve().parent / "corpus" / "address_bad_octet.yaml"
SCHEDULED = Path(__file__).resolve().parent.parent / "golden" / "schedules" / "policy.yaml"


def _modules_after(*args: str) -> set[str]:
    """The modules loaded once `mailpubc ARGS...` has run in a new interpreter."""
    script = ("import sys\nfrom mailpubc.cli import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print('\\n'.join(sys.modules), file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                         text=True, timeout=60)
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


def test_a_policy_with_a_schedule_loads_zoneinfo():
    assert "zoneinfo" in _modules_after("check", "--no-nft-check", str(SCHEDULED))


def test_only_a_policy_that_does_not_fit_the_schema_loads_jsonschema():
    """jsonschema says where and why a policy does not fit; shape.py alone
    passes one that fits."""
    assert "jsonschema" in _modules_after("check", str(MISFIT))
