"""The architecture rules that a reviewer should not have to check by eye.

The import direction (``_cli`` -> ``testing`` -> ``authoring`` -> ``_runtime`` ->
``_distribution`` -> ``_trust`` -> ``_sandbox`` -> ``_bridge`` -> the leaf modules) and "no
import cycles inside a package" are import-linter contracts in ``pyproject.toml``
([tool.importlinter]).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_LINT = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"


def test_import_contracts_are_kept() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _LINT, "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout, proc.stdout


# -- only the public API outside the package --------------------------------------------

# Everything a user reads or copies: examples, benchmarks, the plugin template, scripts,
# the docs' and README's code blocks. The tests may use private names; nothing else may.
_PUBLIC_ONLY = ["examples", "benchmarks", "templates", "scripts", "docs", "README.md"]
# Files that measure internals below the public API on purpose, each with its reason.
_ALLOWED = {
    "benchmarks/bench_oci.py": "times the OCI session and blob cache, which have no public API",
    "benchmarks/bench_bridge.py": "measures the raw ctypes call floor through _bridge.ffi",
    "benchmarks/bench_stdio.py": "switches stdiopipe off for its callback-stream baseline",
    "benchmarks/bench_telemetry.py": "reloads _telemetry without OpenTelemetry for its baseline",
}
_TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".sh", ".cfg", ".ini", ".rst"}


def _private_wasmplug_names(source: str) -> list[str]:
    """The private ``wasmplug`` names that ``source`` imports (AST, else a line scan)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a template with Jinja, a Markdown page, a shell script
        names = [m.group(1) or m.group(2) for m in _IMPORT_RE.finditer(source)]
        lines = [ln for ln in source.splitlines() if "import" in ln and "wasmplug" in ln]
        # ``from wasmplug.x import _private`` on one line:
        names += [
            f"wasmplug.{m.group(1)}"
            for ln in lines
            for m in re.finditer(r"\bimport\s+.*?\b(_[A-Za-z]\w*)", ln)
            if ln.lstrip().startswith("from wasmplug")
        ]
        return sorted({n for n in names if _is_private(n)})
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_private(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [n for n in [node.module, *names] if _is_private(n)]
    return sorted(set(found))


_IMPORT_RE = re.compile(
    r"^\s*(?:from\s+(wasmplug(?:\.\w+)*)\s+import\b|import\s+(wasmplug(?:\.\w+)*))", re.M
)


def _is_private(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "wasmplug" and any(p.startswith("_") and p != "__version__" for p in parts)


def test_private_name_detector_is_not_blind() -> None:
    assert _private_wasmplug_names("from wasmplug._trust.signing import sign\n")
    assert _private_wasmplug_names("import wasmplug._fsutil as f\n")
    assert _private_wasmplug_names("from wasmplug.authoring import _build\n")
    assert _private_wasmplug_names("text\n```python\nfrom wasmplug._errors import X\n```\n")
    assert not _private_wasmplug_names("from wasmplug import PluginHost, __version__\n")
    assert not _private_wasmplug_names("from wasmplug.authoring import build_python\n")


def test_nothing_outside_the_package_imports_a_private_name() -> None:
    offenders = []
    for entry in _PUBLIC_ONLY:
        root = ROOT / entry
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if path.suffix not in _TEXT_SUFFIXES or "_build" in path.parts or not path.is_file():
                continue
            if path.relative_to(ROOT).as_posix() in _ALLOWED:
                continue
            for name in _private_wasmplug_names(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    hint = "use the public API (wasmplug, wasmplug.authoring, wasmplug.testing):"
    assert not offenders, "\n".join([hint, *offenders])
