"""Address sets from list files (`{file: PATH}`): the line format, where a
relative path points, and that diagnostics point into the list."""

import os
from pathlib import Path

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
SPAMHAUS_JSON = Path(__file__).resolve().parent / "lists"      # drop_v4.json, drop_v6.json
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


def test_spamhaus_json_lines_are_read_as_published(tmp_path):
    """drop_v4.json and drop_v6.json: each object's cidr, the metadata line skipped."""
    (tmp_path / "policy.yaml").write_text(
        POLICY.replace("block: [drop_list]", "block: [drop_list, drop_v6]")
        .replace("{file: lists/drop.txt}", f"{{file: {SPAMHAUS_JSON / 'drop_v4.json'}}}")
        + f"  drop_v6: {{file: {SPAMHAUS_JSON / 'drop_v6.json'}}}\n")
    sets = {s.name: address_texts(s.family, s.intervals)
            for s in compile_path(str(tmp_path / "policy.yaml")).or_raise().ruleset.sets}
    assert sets == {"_block_v4": ["192.0.2.0/25", "198.51.100.128/26", "203.0.113.0/24"],
                    "_block_v6": ["2001:db8:66::/48", "2001:db8:99:1::/64"]}


def test_json_lines_whole_line_is_json_and_other_objects_are_skipped():
    text = ('\n  {"cidr": "192.0.2.0/24", "note": "a # and a ; in a string"}\r\n'
            '# a comment line\n{"sblid": "SBL9", "rir": "arin"}\n'
            '{"rir":"arin","cidr":"10.0.0.0/8"}\n')
    found = [(place.position().line, place.position().col, entry)
             for place, entry in lists.entries("l", text)]
    assert found == [(2, 13, "192.0.2.0/24"), (5, 23, "10.0.0.0/8")]


@pytest.mark.parametrize("text, line, col, message", [
    ('{"cidr": "192.0.2.0/24"}\n198.51.100.0/24\n', 2, 1,
     "a text line in a list of JSON lines: a list file is one or the other"),
    ('# text\n198.51.100.0/24 ; x\n{"cidr": "192.0.2.0/24"}\n', 3, 1,
     "a JSON line in a list of text lines: a list file is one or the other"),
    ('{"cidr": "192.0.2.0/24"}\n{"cidr": "192.0.2.0/24",\n', 2, 25,
     "a JSON line that is not valid JSON: Expecting property name enclosed in double quotes"),
    ('{"cidr": 3221225984}\n', 1, 1, "a JSON line whose cidr is not a string: 3221225984"),
], ids=["text-in-json", "json-in-text", "invalid-json", "cidr-not-a-string"])
def test_a_list_that_is_not_one_kind_of_lines_stops_at_the_first_wrong_line(
        tmp_path, text, line, col, message):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "drop.txt").write_text(text)
    (tmp_path / "policy.yaml").write_text(POLICY)
    errors = [str(d) for d in compile_path(str(tmp_path / "policy.yaml")).errors]
    assert errors == [f"{tmp_path}/lists/drop.txt:{line}:{col}: error: {message}"]


def test_a_json_network_error_points_at_the_cidr_value(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "drop.txt").write_text(
        '{"cidr":"192.0.2.0/24"}\n{"sblid":"SBL2","cidr":"192.0.2.1/24"}\n')
    (tmp_path / "policy.yaml").write_text(POLICY)
    (error,) = compile_path(str(tmp_path / "policy.yaml")).errors
    assert str(error).startswith(f"{tmp_path}/lists/drop.txt:2:25: error: 192.0.2.1/24 has host")
