"""The cycle collector stays off while a policy compiles and while a command
runs (`collector.paused`), and is as the caller had it afterwards."""

import gc
from pathlib import Path

import pytest

from mailpubc import api, plan
from mailpubc.cli import main
from mailpubc.generate import text

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seed.yaml"


def _recording(monkeypatch, module, name: str) -> list[bool]:
    """Whether the collector ran, each time `module.name` was called."""
    seen = []
    wrapped = getattr(module, name)

    def recording(*args, **kwargs):
        seen.append(gc.isenabled())
        return wrapped(*args, **kwargs)
    monkeypatch.setattr(module, name, recording)
    return seen


@pytest.mark.parametrize("compile_", [lambda: api.compile_path(str(EXAMPLE)),
                                      lambda: api.compile_text(EXAMPLE.read_text())])
def test_off_while_compiling_and_on_again_after(monkeypatch, compile_):
    planning = _recording(monkeypatch, plan, "plan")
    gc.enable()
    compile_()
    assert planning == [False]
    assert gc.isenabled()


def test_off_while_a_command_prints_its_ruleset(monkeypatch, capsys):
    """The text is made after the compile, of the objects the compile made."""
    printing = _recording(monkeypatch, text, "generate")
    gc.enable()
    assert main(["--no-nft-check", str(EXAMPLE)]) == 0
    assert printing == [False]
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off(monkeypatch):
    planning = _recording(monkeypatch, plan, "plan")
    gc.disable()
    try:
        api.compile_path(str(EXAMPLE))
        assert planning == [False]
        assert not gc.isenabled()
    finally:
        gc.enable()
