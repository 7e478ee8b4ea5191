"""``wasmplug bindgen``: generated modules convert correctly and type-check as user code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.plugins import GREETER_HOST_INTERFACE
from wasmplug import Err, Manifest, Ok, Variant
from wasmplug._bridge.lift import record_class
from wasmplug._bridge.wit import (
    ComponentShape,
    EnumT,
    FuncSig,
    InterfaceShape,
    ListT,
    OptionT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
)
from wasmplug._cli.main import main
from wasmplug.authoring._bindgen import render_bindings

S, U32 = Prim("string"), Prim("u32")
OP = EnumT(("eq", "not-equal"))
CELL = VariantT((("null", None), ("int", Prim("s64")), ("text", S)))
COLUMN = RecordT((("name", S), ("type-name", S), ("op", OP), ("default", CELL)))
SHAPE = ComponentShape(
    imports={
        "acme:kit/host@0.1.0": InterfaceShape(
            "acme:kit/host@0.1.0",
            (
                FuncSig("lookup", (("key", S),), ResultT(CELL, S)),
                FuncSig("log", (("level", OP), ("msg", S)), None),
            ),
            (),
        )
    },
    import_functions=(),
    exports={
        "acme:kit/api@0.1.0": InterfaceShape(
            "acme:kit/api@0.1.0", (FuncSig("describe", (("n", U32),), ListT(COLUMN)),), ()
        )
    },
    export_functions=(
        FuncSig("first", (("cells", ListT(CELL)),), OptionT(CELL)),
        FuncSig("pair", (("p", TupleT((S, OP))),), ResultT(TupleT((OP, CELL)), S)),
        FuncSig("nested", (("r", ResultT(COLUMN, None)),), OptionT(OptionT(U32))),
    ),
)
NAMED = {OP: "op", CELL: "cell", COLUMN: "column"}


class FakePlugin:
    """Stands in for Plugin.call: records bridge-level arguments, returns canned values."""

    def __init__(self, returns: dict[str, Any]) -> None:
        self.returns, self.calls = returns, []  # type: ignore[var-annotated]

    def call(self, name: str, *args: Any) -> Any:
        self.calls.append((name, args))
        return self.returns[name]


@pytest.fixture(scope="module")
def mod() -> Any:
    code = render_bindings(SHAPE, NAMED)
    namespace: dict[str, Any] = {"__name__": "kit_bindings"}
    exec(compile(code, "kit_bindings.py", "exec"), namespace)
    return type("M", (), namespace)


def test_generated_types_and_converters(mod: Any) -> None:
    bridge_col = record_class(("name", "type-name", "op", "default"))
    fake = FakePlugin({
        "acme:kit/api@0.1.0#describe": [bridge_col("n", "integer", "not-equal", Variant("int", 3))],
        "first": Variant("null"),
        "pair": ("eq", Variant("text", "x")),
        "nested": None,
    })  # fmt: skip
    exports = mod.PluginExports(fake)
    [col] = exports.api.describe(7)
    assert col == mod.Column("n", "integer", mod.Op.NOT_EQUAL, mod.CellInt(3))
    assert exports.first([mod.CellText("a"), mod.CellNull()]) == mod.CellNull()
    assert fake.calls[-1] == ("first", ([Variant("text", "a"), Variant("null")],))
    assert exports.pair(("s", mod.Op.EQ)) == (mod.Op.EQ, mod.CellText("x"))
    assert fake.calls[-1][1] == (("s", mod.Op.EQ),)  # enum members go to the bridge as is
    assert exports.nested(Ok(col)) is None
    lowered = fake.calls[-1][1][0]
    assert lowered == Ok({"name": "n", "type-name": "integer", "op": mod.Op.NOT_EQUAL,
                          "default": Variant("int", 3)})  # fmt: skip


def test_imports_protocol_adapter_converts(mod: Any) -> None:
    class Impl:
        def __init__(self) -> None:
            self.logged: list[tuple[Any, str]] = []

        def lookup(self, key: str) -> Any:
            if key == "missing":
                raise Err("no such key")
            return mod.CellInt(len(key))

        def log(self, level: Any, msg: str) -> None:
            self.logged.append((level, msg))

    provided: dict[str, Any] = {}

    class FakeHost:
        def provide(self, name: str, impl: Any, *, sensitive: bool = False) -> None:
            provided[name] = impl

    impl = Impl()
    mod.provide_host(FakeHost(), impl)
    table = provided["acme:kit/host@0.1.0"]
    assert table["lookup"]("abc") == Variant("int", 3)
    with pytest.raises(Err) as info:
        table["lookup"]("missing")
    assert info.value.value == "no such key"
    table["log"]("eq", "hi")
    assert impl.logged == [(mod.Op.EQ, "hi")]


def _mypy(tmp_path: Path, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--cache-dir", str(tmp_path / ".mypy_cache"), *map(str, files)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip


def test_synthetic_bindings_pass_mypy_strict(tmp_path: Path) -> None:
    (tmp_path / "kit_bindings.py").write_text(render_bindings(SHAPE, NAMED))
    proc = _mypy(tmp_path, [tmp_path / "kit_bindings.py"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


USER_APP = '''\
"""An application written against bindings generated for the greeter plugin."""

from __future__ import annotations

from pathlib import Path

from wasmplug import ErrorResult, Manifest, PluginHost

from greeter_bindings import HostImports, PluginExports, provide_host


class MyHost:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, msg: str) -> None:
        self.lines.append(msg)

    def get_config(self, key: str) -> str | None:
        return {"colour": "blue"}.get(key)


def run(wasm: Path, manifest: Manifest) -> tuple[str, int, str | None, list[str], str]:
    impl: HostImports = MyHost()
    with PluginHost() as host:
        provide_host(host, impl)
        plugin = PluginExports(host.load(wasm, allow_unsigned=True, manifest=manifest))
        greeting: str = plugin.greet("typed")
        doubled: int = plugin.api.run(20)
        colour: str | None = plugin.config_value("colour")
        try:
            plugin.divide(1, 0)
            error = ""
        except ErrorResult as e:
            error = str(e.value)
    assert isinstance(impl, MyHost)
    return greeting, doubled, colour, impl.lines, error
'''


@pytest.mark.slow
def test_greeter_bindings_type_check_and_run(tmp_path: Path, greeter_wasm: Path) -> None:
    assert main(["bindgen", str(greeter_wasm), "-o", str(tmp_path / "greeter_bindings.py")]) == 0
    (tmp_path / "user_app.py").write_text(USER_APP)
    proc = _mypy(tmp_path, [tmp_path / "user_app.py", tmp_path / "greeter_bindings.py"])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # A type error in user code is caught: the bindings carry real types.
    bad = USER_APP.replace('plugin.greet("typed")', "plugin.greet(42)")
    (tmp_path / "bad_app.py").write_text(bad)
    proc = _mypy(tmp_path, [tmp_path / "bad_app.py"])
    assert proc.returncode == 1, proc.stdout
    assert 'incompatible type "int"' in proc.stdout, proc.stdout

    sys.path.insert(0, str(tmp_path))
    try:
        import user_app  # type: ignore[import-not-found]

        manifest = Manifest(name="greeter", host_interfaces=(GREETER_HOST_INTERFACE,))
        result = user_app.run(greeter_wasm, manifest)
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("user_app", "greeter_bindings"):
            sys.modules.pop(name, None)
    assert result == ("Hello, typed!", 41, "blue", ["greeting typed"], "division by zero")


# -- the db_wrapper example's committed bindings ---------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DB_WRAPPER = ROOT / "examples" / "db_wrapper"
_FIRST_LINE = re.compile(r'^"""Typed bindings for ``[^`]*`` \(sha256 [0-9a-f]+\)', re.M)


def _normalise(code: str) -> str:
    # The docstring names the component file and its hash, which change with any edit of
    # the plugin's app.py; only the types matter here.
    return _FIRST_LINE.sub('"""Typed bindings for ``<component>``', code, count=1)


@pytest.mark.slow
def test_db_wrapper_bindings_up_to_date_and_strict(tmp_path: Path) -> None:
    """``examples/db_wrapper/bindings.py`` is ``wasmplug bindgen`` of the current csv-source
    component (plus its header comment); set WASMPLUG_REGEN_BINDINGS=1 to rewrite it."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from examples.db_wrapper import build

    component = build.build_plugins(progress=None)["csv-source"]
    out = tmp_path / "bindings.py"
    assert main(["bindgen", str(component), "-o", str(out)]) == 0
    committed_path = DB_WRAPPER / "bindings.py"
    committed = committed_path.read_text()
    header, sep, _ = committed.partition("# fmt: off\n")
    assert sep, "bindings.py lost its header comment (ending with '# fmt: off')"
    expected = header + sep + out.read_text()
    if os.environ.get("WASMPLUG_REGEN_BINDINGS"):
        committed_path.write_text(expected)
        committed = expected
    assert _normalise(committed) == _normalise(expected), (
        "examples/db_wrapper/bindings.py is stale; regenerate it with "
        "WASMPLUG_REGEN_BINDINGS=1 python -m pytest tests/test_bindgen.py -k db_wrapper"
    )

    # The bindings and the example modules that use them pass mypy --strict.
    users = [committed_path, DB_WRAPPER / "fdw.py", DB_WRAPPER / "vtable.py"]
    proc = _mypy(tmp_path, users)
    assert proc.returncode == 0, proc.stdout + proc.stderr
