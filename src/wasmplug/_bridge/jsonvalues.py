"""JSON ↔ Python values for the CLI, guided by the WIT type.

JSON shapes: records are objects (kebab or snake keys), variants are
``{"case": name, "value": payload}``, enums are strings, flags are arrays of
strings, ``option`` is ``null`` or the payload, results are ``{"ok": v}`` or
``{"err": e}``, ``list<u8>`` is an array of ints or a UTF-8 string, tuples are
arrays. Output uses the same shapes (``list<u8>`` as an array of ints).
"""

from __future__ import annotations

from typing import Any

import attrs

from wasmplug._errors import WitTypeError

from .resources import Resource
from .values import Err, Ok, Some, Variant
from .wit import (
    EnumT,
    FlagsT,
    HandleT,
    ListT,
    OptionT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
)

__all__ = ["from_json", "to_json"]


def from_json(t: WitType, v: Any) -> Any:
    """Convert a decoded JSON value to the Python shape the bridge expects for ``t``.

    Raises:
        WitTypeError: if ``v`` cannot represent a value of ``t``.
    """
    if isinstance(t, Prim):
        if t.name in ("f32", "f64") and isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        return v
    if isinstance(t, ListT):
        if t.element == Prim("u8") and isinstance(v, str):
            return v.encode()
        if not isinstance(v, list):
            raise WitTypeError(f"expects {t} as a JSON array")
        return [from_json(t.element, item) for item in v]
    if isinstance(t, RecordT):
        if not isinstance(v, dict):
            raise WitTypeError(f"expects {t} as a JSON object")
        out = {}
        for name, ft in t.fields:
            key = name if name in v else name.replace("-", "_")
            if key not in v:
                raise WitTypeError(f"record field {name!r} is missing")
            out[name] = from_json(ft, v[key])
        return out
    if isinstance(t, TupleT):
        if not isinstance(v, list) or len(v) != len(t.elements):
            raise WitTypeError(f"expects {t} as a JSON array of {len(t.elements)}")
        return tuple(from_json(et, item) for et, item in zip(t.elements, v, strict=True))
    if isinstance(t, VariantT):
        if not isinstance(v, dict) or not isinstance(v.get("case"), str):
            raise WitTypeError(f'expects {t} as {{"case": "<name>", "value": ...}}')
        payload = dict(t.cases).get(v["case"])
        value = v.get("value")
        return Variant(v["case"], None if payload is None else from_json(payload, value))
    if isinstance(t, EnumT):
        return v
    if isinstance(t, FlagsT):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise WitTypeError(f"expects {t} as a JSON array of strings")
        return set(v)
    if isinstance(t, OptionT):
        if v is None:
            return None
        inner = from_json(t.payload, v)
        return Some(inner) if isinstance(t.payload, OptionT) else inner
    if isinstance(t, ResultT):
        if isinstance(v, dict) and len(v) == 1 and "ok" in v:
            return Ok(None if t.ok is None else from_json(t.ok, v["ok"]))
        if isinstance(v, dict) and len(v) == 1 and "err" in v:
            return Err(None if t.err is None else from_json(t.err, v["err"]))
        raise WitTypeError(f'expects {t} as {{"ok": ...}} or {{"err": ...}}')
    assert isinstance(t, HandleT)
    raise WitTypeError(f"{t} cannot be passed from the command line")


def to_json(v: Any) -> Any:
    """Convert a value returned by the bridge to JSON-serialisable data."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, bytes):
        return list(v)
    if isinstance(v, list | tuple):
        return [to_json(x) for x in v]
    if isinstance(v, frozenset | set):
        return sorted(v)
    if isinstance(v, Variant):
        return {"case": v.case, "value": to_json(v.value)}
    if isinstance(v, Ok):
        return {"ok": to_json(v.value)}
    if isinstance(v, Err):
        return {"err": to_json(v.value)}
    if isinstance(v, Some):
        return to_json(v.value)
    if isinstance(v, Resource):
        return f"<resource {v.type_name}>"
    if attrs.has(type(v)):
        return {
            a.name.replace("_", "-"): to_json(getattr(v, a.name)) for a in attrs.fields(type(v))
        }
    return repr(v)
