"""Read a component's top-level import and export names without compiling it.

Compiling an 18 MB componentize-py component takes seconds; listing what it
imports and exports should take microseconds. This module decodes just the
component-level import (id 10) and export (id 11) sections of the Component
Model binary format (``design/mvp/Binary.md`` in WebAssembly/component-model)::

    import         ::= na:<nameattributes> et:<externtype>
    export         ::= na:<nameattributes> si:<sortidx> et?:<externtype>?
    nameattributes ::= 0x00 len:<u32> en:<externname>
                     | 0x01 len:<u32> en:<externname>
                     | 0x02 len:<u32> en:<externname> a*:vec(<attribute>)
    attribute      ::= 0x00 len:<u32> <interfacename> | 0x01 len:<u32> <semversuffix>
                     | 0x02 <name>
    externtype     ::= 0x00 0x11 <core:typeidx>  (core module)
                     | 0x01 <typeidx>            (func)
                     | 0x02 <valuebound>         (value: 0x00 <valueidx> | 0x01 <valtype>)
                     | 0x03 <typebound>          (type: 0x00 <typeidx> | 0x01)
                     | 0x04 <typeidx>            (component)
                     | 0x05 <typeidx>            (instance)
    sortidx        ::= <sort> <u32>
    sort           ::= 0x00 <core:sort> | 0x01 func | 0x02 value | 0x03 type
                     | 0x04 component | 0x05 instance

(``0x00`` and ``0x01`` name prefixes are equivalent; older toolchains used
``0x01`` for interface names. An optional ``x?`` is encoded ``0x00`` or
``0x01 x``.) Nested components, types and core modules are skipped as opaque
sections: only the outermost component's imports and exports are reported,
which is exactly what ``Component.type.imports()/.exports()`` list.

Nothing here validates types or indices, so a component this module accepts
may still fail to compile. Anything it cannot decode raises
:class:`~wasmplug.InvalidComponentError`, and nothing else.
"""

from __future__ import annotations

from typing import Literal

import attrs

from wasmplug._errors import InvalidComponentError

from . import wasm_sections as ws

__all__ = ["ComponentInfo", "ExternItem", "Kind", "read_component_info"]

Kind = Literal["function", "instance", "type", "component", "module", "value"]
"""What an import or export is. ``"instance"`` is a WIT interface."""

IMPORT_SECTION_ID = 10
EXPORT_SECTION_ID = 11
_MAX_SECTION_ID = 12  # value sections (id 12) are the last ones the format defines
_CORE_SORT_MODULE = 0x11

_SORTS: dict[int, Kind] = {
    0x01: "function",
    0x02: "value",
    0x03: "type",
    0x04: "component",
    0x05: "instance",
}


@attrs.frozen
class ExternItem:
    """One top-level import or export.

    Attributes:
        name: The extern name, e.g. ``"demo:plugin/host@0.1.0"`` or ``"greet"``.
        kind: What it is (``"function"``, ``"instance"`` = interface, ...).
    """

    name: str
    kind: Kind


@attrs.frozen
class ComponentInfo:
    """A component's top-level imports and exports, in file order."""

    imports: tuple[ExternItem, ...]
    exports: tuple[ExternItem, ...]

    @property
    def import_names(self) -> list[str]:
        """The import names, in file order."""
        return [i.name for i in self.imports]

    @property
    def export_names(self) -> list[str]:
        """The export names, in file order."""
        return [e.name for e in self.exports]


def _string(r: ws.ByteReader, what: str) -> str:
    raw = r.slice(what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidComponentError(f"{what} at offset {r.pos - len(raw)} is not UTF-8") from None


def _byte(r: ws.ByteReader, what: str) -> int:
    return r.take(1, what)[0]


def _name(r: ws.ByteReader, what: str) -> str:
    start = r.pos
    prefix = _byte(r, f"{what} name prefix")
    if prefix not in (0x00, 0x01, 0x02):
        raise InvalidComponentError(
            f"{what} name at offset {start}: unknown prefix byte 0x{prefix:02x} "
            "(expected 0x00, 0x01 or 0x02)"
        )
    name = _string(r, f"{what} name")
    if prefix == 0x02:
        for _ in range(r.u32(f"{what} name attribute count")):
            tag = _byte(r, f"{what} name attribute")
            if tag > 0x02:
                raise InvalidComponentError(
                    f"{what} {name!r}: unknown name attribute 0x{tag:02x} at offset {r.pos - 1}"
                )
            _string(r, f"{what} name attribute")
    return name


def _externtype(r: ws.ByteReader, what: str) -> Kind:
    start = r.pos
    tag = _byte(r, what)
    if tag == 0x00:
        core = _byte(r, what)
        if core != _CORE_SORT_MODULE:
            raise InvalidComponentError(
                f"{what} at offset {start}: core extern 0x{core:02x} is not a module (0x11)"
            )
        r.u32(f"{what} type index")
        return "module"
    if tag in (0x01, 0x04, 0x05):
        r.u32(f"{what} type index")
    elif tag in (0x02, 0x03):
        bound = _byte(r, f"{what} bound")
        if bound == 0x00 or (bound == 0x01 and tag == 0x02):
            r.u32(f"{what} bound index")  # (eq i), or a value's valtype (one LEB128)
        elif bound != 0x01:
            raise InvalidComponentError(
                f"{what} at offset {start}: unknown bound 0x{bound:02x} (expected 0x00 or 0x01)"
            )
    else:
        raise InvalidComponentError(
            f"{what} at offset {start}: unknown extern type 0x{tag:02x} (expected 0x00-0x05)"
        )
    return _SORTS[tag]


def _sort(r: ws.ByteReader, what: str) -> Kind:
    start = r.pos
    tag = _byte(r, what)
    if tag == 0x00:
        core = _byte(r, what)
        if core != _CORE_SORT_MODULE:
            raise InvalidComponentError(
                f"{what} at offset {start}: core sort 0x{core:02x} cannot be exported "
                "(only core modules can)"
            )
        kind: Kind = "module"
    elif tag in _SORTS:
        kind = _SORTS[tag]
    else:
        raise InvalidComponentError(
            f"{what} at offset {start}: unknown sort 0x{tag:02x} (expected 0x00-0x05)"
        )
    r.u32(f"{what} index")
    return kind


def _imports(payload: bytes) -> list[ExternItem]:
    r = ws.ByteReader(payload)
    items = []
    for _ in range(r.u32("import count")):
        name = _name(r, "import")
        items.append(ExternItem(name, _externtype(r, f"import {name!r} type")))
    r.done("the import section")
    return items


def _exports(payload: bytes) -> list[ExternItem]:
    r = ws.ByteReader(payload)
    items = []
    for _ in range(r.u32("export count")):
        name = _name(r, "export")
        kind = _sort(r, f"export {name!r}")
        has_type = _byte(r, f"export {name!r} type flag")
        if has_type == 0x01:
            _externtype(r, f"export {name!r} type")
        elif has_type != 0x00:
            raise InvalidComponentError(
                f"export {name!r}: bad optional-type flag 0x{has_type:02x} at offset {r.pos - 1}"
            )
        items.append(ExternItem(name, kind))
    r.done("the export section")
    return items


def read_component_info(data: bytes) -> ComponentInfo:
    """List a component's top-level imports and exports, without compiling it.

    Args:
        data: The component binary.

    Returns:
        The imports and exports with their kinds, in file order.

    Raises:
        InvalidComponentError: ``data`` is not a component (too short, no
            ``\\0asm`` magic, a core module), or its section framing, import
            section or export section cannot be decoded. The message says what
            and where.
    """
    header = ws.parse_header(data)
    if header != ws.COMPONENT_HEADER:
        raise InvalidComponentError(
            "this is a core WebAssembly module, not a component; turn it into one with "
            "`wasm-tools component new` or build with componentize-py / jco"
        )
    imports: list[ExternItem] = []
    exports: list[ExternItem] = []
    for section, start, _ in ws.iter_section_spans(data):
        if section.id > _MAX_SECTION_ID:
            raise InvalidComponentError(f"unknown component section id {section.id} at {start}")
        try:
            if section.id == IMPORT_SECTION_ID:
                imports += _imports(section.data)
            elif section.id == EXPORT_SECTION_ID:
                exports += _exports(section.data)
        except InvalidComponentError as e:
            raise InvalidComponentError(f"section id {section.id} at offset {start}: {e}") from None
    return ComponentInfo(tuple(imports), tuple(exports))
