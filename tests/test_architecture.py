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
import tomllib
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
    "benchmarks/bench_instances.py": "measures the C-API floor of a fresh instance (_bridge.ffi)",
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


# -- no reaching into another package's private attributes ------------------------------

_SRC = ROOT / "src" / "wasmplug"
# The one module that may use wasmtime-py's private names (pinned by tests/bridge).
_PRIVATE_API_HOME = "_bridge/ffi.py"
# Private names of other libraries, used on purpose, each with its reason.
_FOREIGN_PRIVATE = {
    "argparse._SubParsersAction": "the type of add_subparsers(); argparse has no public name",
    "os._exit": "public API despite the underscore: exit a forked worker without cleanup",
    "threading._register_atexit": "the only hook that runs before threading joins threads",
    "t._pool": "httpx's transport keeps its httpcore pool private; httpdeadline replaces it",
}


def _package(path: Path) -> str:
    return path.parent.relative_to(_SRC).as_posix()


def _owned_private_names(tree: ast.Module) -> set[str]:
    """The private attribute names a module defines: members of its classes (methods,
    class attributes, ``__slots__``, ``self._x = ...``). A ``Protocol`` owns nothing: it
    describes another module's object."""
    names: set[str] = set()
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        if any(isinstance(b, ast.Name) and b.id == "Protocol" for b in cls.bases):
            continue
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


class _PrivateReach(ast.NodeVisitor):
    """``obj._name`` where ``obj`` is not the method's own ``self``/``cls`` and this
    module's package defines no private attribute ``_name``."""

    def __init__(self, owned: set[str]) -> None:
        self.owned = owned
        self.own: list[str | None] = [None]
        self.found: list[tuple[int, str]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args.posonlyargs + node.args.args
        self.own.append(args[0].arg if args and args[0].arg in ("self", "cls") else None)
        self.generic_visit(node)
        self.own.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 - ast.NodeVisitor's naming

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if name.startswith("_") and not name.startswith("__") and name not in self.owned:
            mine = isinstance(node.value, ast.Name) and node.value.id == self.own[-1]
            if not mine:
                self.found.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)


def _private_reaches(files: dict[str, ast.Module]) -> list[str]:
    owned: dict[str, set[str]] = {}
    for rel, tree in files.items():
        owned.setdefault(rel.rpartition("/")[0], set()).update(_owned_private_names(tree))
    found = []
    for rel, tree in files.items():
        if rel == _PRIVATE_API_HOME:
            continue
        visitor = _PrivateReach(owned[rel.rpartition("/")[0]])
        visitor.visit(tree)
        found += [
            f"{rel}:{line}: {expr}" for line, expr in visitor.found if expr not in _FOREIGN_PRIVATE
        ]
    return found


def test_no_module_reaches_into_another_packages_private_attributes() -> None:
    """A private attribute (``obj._x``) is used only in the package that defines it: the
    process tier reaches its plugin through ``plugin.PluginPort``, the runtime reaches a
    resource handle through ``_bridge.resources``' functions (docs/architecture.md)."""
    files = {p.relative_to(_SRC).as_posix(): ast.parse(p.read_text()) for p in _SRC.rglob("*.py")}
    offenders = _private_reaches(files)
    assert not offenders, "\n".join(["private attributes of another package:", *offenders])


def test_private_reach_detector_is_not_blind() -> None:
    owner = "class Plugin:\n    def __init__(self):\n        self._pool = []\n"
    files = {
        name: ast.parse(text)
        for name, text in {
            "_runtime/plugin.py": owner,
            "_runtime/host.py": "def close(plugin):\n    plugin._pool.clear()\n",
            "_runtime/process/backend.py": (
                "from typing import Protocol\n"
                "class Owner(Protocol):\n    _pool: list\n"  # a Protocol owns nothing
                "class Backend:\n"
                "    def __init__(self, plugin):\n        self._plugin = plugin\n"
                "    def run(self):\n        self._plugin._pool.clear()\n"
                "        return self._plugin\n"
            ),
        }.items()
    }
    assert _private_reaches(files) == ["_runtime/process/backend.py:8: self._plugin._pool"]


def test_the_import_contracts_have_no_exceptions() -> None:
    """An ``ignore_imports`` line would let a cycle or an upward import through unseen."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = config["contracts"]
    assert {c["id"] for c in contracts} == {"layers", "acyclic"}
    for contract in contracts:
        assert "ignore_imports" not in contract, contract["id"]
        assert "unmatched_ignore_imports_alerting" not in contract, contract["id"]
