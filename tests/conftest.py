"""What every test may ask for.

Hypothesis profiles for the property tests:

- ``ci`` (the default): 500 examples per property, no per-example deadline
  (an example compiles and dry-runs nft; timing is not what is tested).
- ``long``: 20000 examples, for a soak run before a release:
  ``HYPOTHESIS_PROFILE=long python -m pytest -q tests/test_properties.py``.

Fixtures for tests on the real kernel (tests/kernel.py): ``namespace`` (one
network namespace), ``namespaces`` (a maker: ``namespaces("fw")``) and, for
module-scoped fixtures, ``module_namespaces``; each namespace is removed when
its test (or module) ends, and the test is skipped where namespaces cannot be
made (``namespaces_work``, which a test that makes its own, through
failclosed.load, uses alone). ``checkout_copy``: a copy of this working tree for a tool that builds
or commits in it (pip, pre-commit).
"""

import os
import shutil

import pytest
from hypothesis import settings

import kernel
from e2e.netns import install_cleanup, prerequisites, reap_stale

settings.register_profile("ci", max_examples=500, deadline=None)
settings.register_profile("long", max_examples=20000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def namespaces_work():
    """Skips the test where network namespaces cannot be made (root, ip and
    nft needed); where they can, removes those of runs that were killed, and
    ours however this run ends (atexit, SIGTERM, SIGHUP)."""
    reason = prerequisites([])
    if reason:
        pytest.skip(reason)
    install_cleanup()
    reap_stale()


@pytest.fixture
def namespaces(namespaces_work):
    with kernel.namespaces() as make:
        yield make


@pytest.fixture(scope="module")
def module_namespaces(namespaces_work):
    with kernel.namespaces() as make:
        yield make


@pytest.fixture
def namespace(namespaces, request):
    """One namespace, named after the test module (test_nft: nft-XXXXXXXX)."""
    return namespaces(request.module.__name__.removeprefix("test_"))


@pytest.fixture(scope="module")
def checkout_copy(tmp_path_factory):
    """This working tree copied without its version control, virtual
    environment and build leftovers: pip builds in the folder it installs
    from, and pre-commit commits a hook repository. One copy per module."""
    copy = tmp_path_factory.mktemp("checkout") / "source"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".hypothesis"))
    return copy
