"""The host surface is what the application's WIT defines, never what a plugin names.

Each hostile component here imports something the application did not offer:
an extra function (``close`` on the HTTP interface, a public helper method of
the provider object), a name that only exists on Python objects (``mro``), a
resource or resource function outside the WIT, or a function with another type.
Every one is a ``LinkError`` at load that names the import; nothing is reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import wat as w
from wasmplug import HostInterfaceError, LinkError, Manifest, PluginHost
from wasmplug._sandbox.http import HTTP_INTERFACE

IFACE = "demo:app/db@0.1.0"

DB_WIT = """
package demo:app@0.1.0;

interface db {
    record row { id: u32, name: string }
    get: func(id: u32) -> option<row>;
    count: func() -> u32;
    resource cursor {
        constructor(start: u32);
        next: func() -> u32;
        open: static func(start: u32) -> cursor;
    }
}
"""

U32 = w.P("u32")
ROW = w.Record("row", (("id", U32), ("name", w.P("string"))))
GET = w.Func("get", (("id", U32),), w.Option(ROW))
COUNT = w.Func("count", (), U32, "(i32.const 0)")
MANIFEST = Manifest(name="t", host_interfaces=(IFACE,))


class Cursor:
    def __init__(self, start: int) -> None:
        self.at = start

    def next(self) -> int:
        self.at += 1
        return self.at

    @staticmethod
    def open(start: int) -> Cursor:
        return Cursor(start)

    def rewind_all(self) -> None:  # a public helper, not in the WIT
        raise AssertionError("reached a method the WIT does not define")


class Database:
    """The application's provider: two WIT functions, and helpers a plugin must never reach."""

    Cursor = Cursor

    def __init__(self) -> None:
        self.rows = {1: {"id": 1, "name": "one"}}
        self.reset = False

    def get(self, id: int) -> dict[str, Any] | None:
        return self.rows.get(id)

    def count(self) -> int:
        return len(self.rows)

    def reset_database(self) -> None:
        self.reset = True
        self.rows.clear()


@pytest.fixture
def db(host: PluginHost) -> Database:
    impl = Database()
    host.provide(IFACE, impl, wit=DB_WIT)
    return impl


def _instance(iface: str, decls: str) -> str:
    """A component that imports ``iface`` with the given instance-type declarations
    (it never calls them: being linked at all is the breach)."""
    return f'(component (import "{iface}" (instance {decls})))'


def test_functions_in_the_wit_link_and_work(host: PluginHost, db: Database) -> None:
    plugin = host.load(
        w.component([], {IFACE: [GET, COUNT]}).encode(), manifest=MANIFEST, allow_unsigned=True
    )
    row = plugin.call("call-get", 1)
    assert (row.id, row.name) == (1, "one")
    assert plugin.call("call-get", 2) is None


@pytest.mark.parametrize(
    "decl",
    [
        '(export "reset-database" (func))',
        '(export "reset-database" (func (result u32)))',
        '(export "rows" (func))',
        '(export "database" (type (sub resource)))',
    ],
    ids=["helper", "helper-with-result", "attribute", "resource"],
)
def test_a_public_member_outside_the_wit_is_refused(
    host: PluginHost, db: Database, decl: str
) -> None:
    with pytest.raises(LinkError) as info:
        host.load(_instance(IFACE, decl).encode(), manifest=MANIFEST, allow_unsigned=True)
    name = decl.split('"')[1]
    assert any(name in p for p in info.value.problems), info.value.problems
    assert not db.reset


@pytest.mark.parametrize(
    "decl",
    [
        '(export "other" (type (sub resource)))',
        '(export "cursor" (type $c (sub resource)))'
        ' (export "[method]cursor.rewind-all" (func (param "self" (borrow $c))))',
        '(export "cursor" (type $c (sub resource))) (export "[static]cursor.mro" (func))',
        '(export "cursor" (type $c (sub resource)))'
        ' (export "[method]cursor.next" (func (param "self" (borrow $c)) (result u64)))',
        '(export "cursor" (type $c (sub resource)))'
        ' (export "[static]cursor.open" (func (param "start" (borrow $c)) (result (own $c))))',
    ],
    ids=["unknown-resource", "helper-method", "type-attribute", "method-type", "own-vs-borrow"],
)
def test_resource_parts_outside_the_wit_are_refused(
    host: PluginHost, db: Database, decl: str
) -> None:
    with pytest.raises(LinkError) as info:
        host.load(_instance(IFACE, decl).encode(), manifest=MANIFEST, allow_unsigned=True)
    assert len(info.value.problems) == 1, info.value.problems


@pytest.mark.parametrize(
    "func",
    [
        w.Func("get", (("id", w.P("string")),), w.Option(ROW)),
        w.Func("get", (("id", w.P("u64")),), w.Option(ROW)),
        w.Func("get", (("id", U32),), ROW),
        w.Func("get", (("id", U32),), w.Option(w.Record("row", (("id", U32),)))),
        w.Func(
            "get", (("id", U32),), w.Option(w.Record("row", (("ID", U32), ("name", w.P("string")))))
        ),
        w.Func("get", (("id", U32), ("extra", U32)), w.Option(ROW)),
        w.Func("count", (), None, ""),
        w.Func("count", (), w.P("s32"), "(i32.const 0)"),
    ],
    ids=[
        "param-type",
        "param-width",
        "result-type",
        "record-fields",
        "field-name",
        "param-count",
        "result-missing",
        "result-sign",
    ],
)
def test_a_function_with_another_type_is_refused(
    host: PluginHost, db: Database, func: w.Func
) -> None:
    with pytest.raises(LinkError, match="the plugin imports it as") as info:
        host.load(w.component([], {IFACE: [func]}).encode(), manifest=MANIFEST, allow_unsigned=True)
    assert f"{IFACE}#{func.name}" in str(info.value)


def test_a_compatible_version_gets_the_same_surface(host: PluginHost, db: Database) -> None:
    newer = "demo:app/db@0.1.9"
    text = _instance(newer, '(export "reset-database" (func))')
    with pytest.raises(LinkError, match="reset-database"):
        host.load(
            text.encode(),
            manifest=Manifest(name="t", host_interfaces=(newer,)),
            allow_unsigned=True,
        )


def test_every_problem_is_listed(host: PluginHost, db: Database) -> None:
    text = _instance(
        IFACE,
        '(export "reset-database" (func)) (export "count" (func (result s64)))'
        ' (export "drop-all" (func))',
    )
    with pytest.raises(LinkError) as info:
        host.load(text.encode(), manifest=MANIFEST, allow_unsigned=True)
    assert len(info.value.problems) == 3


# ---------------------------------------------------------------------------
# The built-in HTTP interface
# ---------------------------------------------------------------------------

HTTP_MANIFEST = Manifest(name="t", allowed_outbound_hosts=("http://127.0.0.1:*",))


@pytest.mark.parametrize(
    "decl",
    [
        '(export "close" (func))',
        '(export "send" (func (param "req" string)))',
        '(export "max-timeout-ms" (func (result u32)))',
    ],
    ids=["close", "send-other-type", "attribute"],
)
def test_http_exposes_exactly_its_wit(host: PluginHost, decl: str) -> None:
    with pytest.raises(LinkError) as info:
        host.load(
            _instance(HTTP_INTERFACE, decl).encode(), manifest=HTTP_MANIFEST, allow_unsigned=True
        )
    assert f"{HTTP_INTERFACE}#{decl.split(chr(34))[1]}" in str(info.value)
    assert not host._http._closed  # type: ignore[attr-defined]


def test_http_provided_by_the_application_also_uses_the_shipped_wit(host: PluginHost) -> None:
    from wasmplug import HttpCapability

    with HttpCapability() as http:
        host.provide(HTTP_INTERFACE, http)  # no wit=: the interface is wasmplug's own
        with pytest.raises(LinkError, match="close"):
            host.load(
                _instance(HTTP_INTERFACE, '(export "close" (func))').encode(),
                manifest=HTTP_MANIFEST,
                allow_unsigned=True,
            )


# ---------------------------------------------------------------------------
# A plain mapping without WIT: explicit keys only
# ---------------------------------------------------------------------------


class Helpers(dict[str, Any]):
    """A mapping that also has public methods; only its keys may ever be linked."""

    def reset_database(self) -> None:
        raise AssertionError("attribute lookup on a mapping")


@pytest.mark.parametrize(
    "decl",
    [
        '(export "reset-database" (func))',
        '(export "clear" (func))',  # a dict method
        '(export "keys" (func))',
        '(export "cursor" (type $c (sub resource))) (export "[constructor]cursor"'
        " (func (result (own $c))))",
    ],
    ids=["object-method", "dict-clear", "dict-keys", "resource-without-key"],
)
def test_a_mapping_links_only_its_explicit_keys(host: PluginHost, decl: str) -> None:
    host.provide(IFACE, Helpers(count=lambda: 1, Cursor=Cursor, cursor=Cursor))
    with pytest.raises(LinkError, match="not provided"):
        host.load(_instance(IFACE, decl).encode(), manifest=MANIFEST, allow_unsigned=True)


def test_a_mapping_never_links_private_keys(host: PluginHost) -> None:
    # A plugin cannot spell "_x" in WIT, but the rule holds on its own: a key that
    # starts with "_" is never consulted, even where snake_case would produce it.
    from wasmplug._bridge.surface import _explicit

    impl = {"_hidden": print, "__class__": print, "ok": print}
    assert _explicit(impl, "_hidden") is None
    assert _explicit(impl, "__class__") is None
    assert _explicit(impl, "ok") is print


def test_a_mapping_with_explicit_resource_keys_links(host: PluginHost) -> None:
    text = f"""
(component
  (import "{IFACE}" (instance $h
    (export "cursor" (type $c (sub resource)))
    (export "[constructor]cursor" (func (param "start" u32) (result (own $c))))
    (export "[method]cursor.next" (func (param "self" (borrow $c)) (result u32)))))
  (alias export $h "cursor" (type $cursor))
  (core func $new (canon lower (func $h "[constructor]cursor")))
  (core func $next (canon lower (func $h "[method]cursor.next")))
  (core module $m
    (import "h" "new" (func $new (param i32) (result i32)))
    (import "h" "next" (func $next (param i32) (result i32)))
    (func (export "run") (param i32) (result i32) (call $next (call $new (local.get 0)))))
  (core instance $i (instantiate $m (with "h" (instance
    (export "new" (func $new)) (export "next" (func $next))))))
  (func (export "run") (param "x" u32) (result u32) (canon lift (core func $i "run"))))
"""
    host.provide(IFACE, {"[constructor]cursor": Cursor, "[method]cursor.next": Cursor.next})
    plugin = host.load(text.encode(), manifest=MANIFEST, allow_unsigned=True)
    assert plugin.call("run", 41) == 42


# ---------------------------------------------------------------------------
# provide(): the application's side
# ---------------------------------------------------------------------------


def test_an_object_needs_wit(host: PluginHost) -> None:
    with pytest.raises(HostInterfaceError, match="only with the interface's WIT"):
        host.provide(IFACE, Database())


def test_the_implementation_must_have_every_function(host: PluginHost) -> None:
    class Partial:
        def get(self, id: int) -> None:
            return None

    with pytest.raises(HostInterfaceError) as info:
        host.provide(IFACE, Partial(), wit=DB_WIT)
    problems = info.value.problems
    assert any("#count" in p for p in problems)
    assert any("Cursor" in p for p in problems)  # the resource class is missing too


def test_arity_is_checked_at_provide(host: PluginHost) -> None:
    impl = {"get": lambda: None, "count": lambda: 0, "cursor": Cursor}
    with pytest.raises(HostInterfaceError, match=r"#get must accept 1 argument"):
        host.provide(IFACE, impl, wit=DB_WIT)


def test_invalid_wit_is_reported_with_wasm_tools_message(host: PluginHost) -> None:
    with pytest.raises(HostInterfaceError, match="expected") as info:
        host.provide(IFACE, Database(), wit="package demo:app@0.1.0; interface db { get: func(; }")
    assert "wasmplug-application" not in str(info.value)


def test_wit_without_the_interface(host: PluginHost) -> None:
    with pytest.raises(HostInterfaceError, match="interface 'other' not found"):
        host.provide("demo:app/other@0.1.0", Database(), wit=DB_WIT)


def test_wit_from_a_file_and_a_directory_with_deps(host: PluginHost, tmp_path: Path) -> None:
    (tmp_path / "db.wit").write_text(DB_WIT)
    host.provide(IFACE, Database(), wit=tmp_path / "db.wit")
    pkg = tmp_path / "pkg"
    (pkg / "deps" / "types").mkdir(parents=True)
    (pkg / "deps" / "types" / "types.wit").write_text(
        "package demo:types@0.1.0;\ninterface t { record row { id: u32, name: string } }\n"
    )
    (pkg / "db.wit").write_text(
        "package demo:app@0.1.0;\ninterface db {\n  use demo:types/t@0.1.0.{row};\n"
        "  get: func(id: u32) -> option<row>;\n  count: func() -> u32;\n}\n"
    )
    host.provide(IFACE, {"get": Database().get, "count": lambda: 0}, wit=str(pkg))
    plugin = host.load(
        w.component([], {IFACE: [GET]}).encode(), manifest=MANIFEST, allow_unsigned=True
    )
    assert plugin.call("call-get", 2) is None


def test_unreadable_wit_path(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(HostInterfaceError, match="cannot read WIT"):
        host.provide(IFACE, Database(), wit=tmp_path / "missing.wit")


def test_world_level_imports(host: PluginHost) -> None:
    with pytest.raises(HostInterfaceError, match="needs world="):
        host.provide("cb", print, wit=DB_WIT)
    with pytest.raises(HostInterfaceError, match="needs a callable"):
        host.provide("cb", 42)
    with pytest.raises(HostInterfaceError, match="only for world-level imports"):
        host.provide(IFACE, Database(), wit=DB_WIT, world="w")
