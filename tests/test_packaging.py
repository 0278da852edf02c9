"""What `pip install .` installs: the package `mailpubc` with every module,
template and schema, and nothing under a generic name such as `compiler`.
The wheel is built for real and its file list read."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_holds_mailpubc_whole_and_nothing_else(checkout_copy, tmp_path):
    # from a clean copy: a build/ folder left by an earlier build would hide
    # a package that the configuration no longer names
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path), str(checkout_copy)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel, = tmp_path.glob("mailpubc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    data = {t for t in tops if t.endswith(".data")}       # the manual page and the completion
    assert {t for t in tops if not t.endswith(".dist-info")} - data == {"mailpubc"}
    assert sorted(n.split("/", 2)[2] for n in names if n.split("/")[0] in data) == [
        "share/bash-completion/completions/mailpubc", "share/man/man1/mailpubc.1"]
    sources = {p.relative_to(ROOT / "compiler").as_posix()
               for p in (ROOT / "compiler").rglob("*.py")}
    for expected in ([f"mailpubc/{s}" for s in sources]
                     + [f"mailpubc/templates/{p.name}" for p in (ROOT / "templates").glob("*.j2")]
                     + [f"mailpubc/schemas/{p.name}" for p in (ROOT / "schemas").glob("*.json")]
                     + ["mailpubc/nft_keywords.txt"]):
        assert expected in names, f"{expected} is not installed"
