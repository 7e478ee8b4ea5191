"""The architecture rules that a reviewer should not have to check by eye.

The import direction (``_cli`` -> ``testing`` -> ``authoring`` -> ``_runtime`` ->
``_distribution`` -> ``_trust`` -> ``_sandbox`` -> ``_bridge`` -> the leaf modules) and "no
import cycles inside a package" are import-linter contracts in ``pyproject.toml``
([tool.importlinter]).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_LINT = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"


def test_import_contracts_are_kept() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _LINT, "--no-cache", "--no-logo", "--config", "pyproject.toml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout, proc.stdout
