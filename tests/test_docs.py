"""The documentation builds with Sphinx, warnings as errors, every reference resolved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "sphinx",
            "-W", "--keep-going", "-n", "-E", "-q",
            "-b", "html",
            "-d", str(tmp_path / "doctrees"),
            str(DOCS), str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "html" / "index.html").is_file()
