"""Every scenario fixture in tests/e2e/scenarios/, on a real kernel.

One test per expectation, named after its scenario and what it expects, so
a broken rule shows up as the expectation it breaks; and one per
expectation that `mailpubc explain` agrees with the kernel on every probe
it sent (e2e/agreement.py).  Needs root, iproute2,
nft, Dovecot, Knot and openssl; without them the tests skip and say why.
"""

import pytest

from e2e import netns
from e2e.lab import LabError, Labs
from e2e.pki import make_ca
from e2e.scenario import describe, load_all

SERVER_PROGRAMS = ["dovecot", "knotd", "openssl", "ping"]

CASES = [
    pytest.param(scenario, index, id=f"{scenario.name}-{index:02d}-{describe(exp)}".replace(" ", "_"))
    for scenario in load_all()
    for index, exp in enumerate(scenario.expectations)
]


@pytest.fixture(scope="session")
def labs(tmp_path_factory):
    reason = netns.prerequisites(SERVER_PROGRAMS)
    if reason:
        pytest.skip(reason)
    pytest.importorskip("aiosmtpd", reason="e2e tests need aiosmtpd (pip install -e .[test])")
    pytest.importorskip("dns", reason="e2e tests need dnspython (pip install -e .[test])")
    netns.install_cleanup()
    netns.reap_stale()
    ca = make_ca(tmp_path_factory.mktemp("ca"))
    yield Labs(ca, tmp_path_factory.mktemp("labs"))
    netns.cleanup()


@pytest.mark.e2e
@pytest.mark.parametrize("scenario,index", CASES)
def test_expectation(labs, scenario, index):
    try:
        failure = labs.results(scenario)[index]
    except LabError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(failure, pytrace=False)


@pytest.mark.e2e
@pytest.mark.parametrize("scenario,index", CASES)
def test_explain_agrees(labs, scenario, index):
    try:
        tally = labs.explained(scenario)[index]
    except Exception as exc:  # noqa: BLE001 - the lab's or explain's error, as the failure
        pytest.fail(f"scenario {scenario.name}: {type(exc).__name__}: {exc}", pytrace=False)
    if tally.disagreements:
        pytest.fail(f"scenario {scenario.name}, expectation #{index} "
                    f"({describe(scenario.expectations[index])}): explain disagrees with the "
                    "kernel:\n" + "\n".join(tally.disagreements), pytrace=False)
