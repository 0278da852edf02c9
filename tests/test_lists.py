"""Address sets from list files (`{file: PATH}`): the line format, where a
relative path points, and that diagnostics point into the list."""

import os

import pytest

from cli import run_mailpubc
from mailpubc import lists
from mailpubc.api import compile_data, compile_path, compile_text
from mailpubc.generate import address_texts

POLICY = """\
version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
  block: [drop_list]
address_sets:
  drop_list: {file: lists/drop.txt}
"""
SPAMHAUS = "; Spamhaus DROP List\n; Last-Modified: now\n192.0.2.0/25 ; SBL1\n203.0.113.0/24 ; SBL2\n"


def blocked(result) -> list[str]:
    """The IPv4 addresses the block's set holds."""
    return [text for s in result.ruleset.sets if s.name == "drop_list_v4"
            for text in address_texts(s.family, s.intervals)]


def test_entries_comments_blank_lines_and_columns():
    text = "\n  # FireHOL header\n 192.0.2.1 ; trailing\r\n\t10.0.0.0/8#x\n;\n1.1.1.1 - 1.1.1.3  \n"
    found = [(place.position().line, place.position().col, entry)
             for place, entry in lists.entries("l", text)]
    assert found == [(3, 2, "192.0.2.1"), (4, 2, "10.0.0.0/8"), (6, 1, "1.1.1.1 - 1.1.1.3")]


def test_path_is_relative_to_the_policy_folder(tmp_path, monkeypatch):
    (tmp_path / "site" / "lists").mkdir(parents=True)
    (tmp_path / "site" / "policy.yaml").write_text(POLICY)
    (tmp_path / "site" / "lists" / "drop.txt").write_text("\ufeff" + SPAMHAUS)
    monkeypatch.chdir(tmp_path)
    result = compile_path("site/policy.yaml").or_raise()
    assert blocked(result) == ["192.0.2.0/25", "203.0.113.0/24"]


def test_path_is_relative_to_the_working_directory_for_text_and_data(tmp_path, monkeypatch):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "drop.txt").write_text(SPAMHAUS)
    monkeypatch.chdir(tmp_path)
    assert blocked(compile_text(POLICY).or_raise()) == ["192.0.2.0/25", "203.0.113.0/24"]
    data = {"version": 1, "firewall": {"external": {"interface": "eth0",
                                                    "addresses": ["198.51.100.10"]},
                                       "block": ["drop_list"]},
            "address_sets": {"drop_list": {"file": "lists/drop.txt"}}}
    assert blocked(compile_data(data).or_raise()) == ["192.0.2.0/25", "203.0.113.0/24"]


def test_errors_name_the_list_as_seen_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "site" / "lists").mkdir(parents=True)
    (tmp_path / "site" / "policy.yaml").write_text(POLICY)
    (tmp_path / "site" / "lists" / "drop.txt").write_text("192.0.2.0/24\n  192.0.2.1/24 ; x\n")
    monkeypatch.chdir(tmp_path)
    errors = [str(d) for d in compile_path("site/policy.yaml").errors]
    assert errors == ["site/lists/drop.txt:2:3: error: 192.0.2.1/24 has host bits set: did you "
                      "mean the network 192.0.2.0/24 or the single address 192.0.2.1?"]


@pytest.mark.parametrize("size", [1, 100_000])
def test_a_long_list_is_one_merged_set(tmp_path, size):
    """The set holds merged intervals: 100,000 consecutive addresses are one."""
    (tmp_path / "lists").mkdir()
    first = 10 << 24
    (tmp_path / "lists" / "drop.txt").write_text(
        "".join(f"10.{(first + i) >> 16 & 255}.{(first + i) >> 8 & 255}.{(first + i) & 255}\n"
                for i in range(size)))
    (tmp_path / "policy.yaml").write_text(POLICY)
    result = compile_path(str(tmp_path / "policy.yaml")).or_raise()
    (drop,) = [s for s in result.ruleset.sets if s.name == "drop_list_v4"]
    assert drop.intervals == ((first, first + size - 1),)


@pytest.mark.parametrize("kind", ["FIFO", "directory"])
def test_a_list_that_is_not_a_regular_file_is_an_error_at_its_key(tmp_path, kind):
    """A FIFO with no writer would block the read for ever: the CLI must end
    (the timeout fails the test rather than hangs it) with an error."""
    (tmp_path / "lists").mkdir()
    make = os.mkfifo if kind == "FIFO" else os.mkdir
    make(tmp_path / "lists" / "drop.txt")
    (tmp_path / "policy.yaml").write_text(POLICY)
    run = run_mailpubc("policy.yaml", cwd=tmp_path, timeout=30)
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == ("policy.yaml:6:15: error: cannot read list file 'lists/drop.txt': "
                          f"it is a {kind}, not a regular file\n")
