"""WIT types as generated Python, for bindgen: annotations, classes and converters.

:class:`TypeGen` names the generated class of every record, variant and enum
(the component's own type names where it exports them), writes their
declarations, and the functions that lift a bridge value into a generated one
and lower it back. ``_bindgen`` renders the module around them.
"""

from __future__ import annotations

import keyword

from wasmplug._bridge.wit import (
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
    pascal,
    snake,
)

__all__ = ["RESERVED", "TypeGen", "ident"]

_PRIMS = {"bool": "bool", "f32": "float", "f64": "float", "char": "str", "string": "str"}
RESERVED = {"Any", "Callable", "Protocol", "Union", "PluginHost", "Plugin", "Ok", "Err", "Some",
            "Variant", "PluginExports", "attrs", "enum", "cast", "ClassVar", "Self", "Resource",
            "_GuestResource"}  # fmt: skip
"""Names the generated module's prelude defines: never a generated class's."""


def ident(name: str) -> str:
    """A WIT name as a Python identifier (snake_case, ``_`` after keywords)."""
    py = snake(name)
    return f"{py}_" if keyword.iskeyword(py) or py in ("self", "cls") else py


def _key(t: WitType) -> object:
    """A dict key for ``t``: types that mention a handle hold wasmtime's unhashable
    ``ResourceType``, so they are keyed by identity (the shape keeps them alive)."""
    try:
        hash(t)
    except TypeError:
        return ("id", id(t))
    return t


class TypeGen:
    """Accumulates declarations and converters while rendering types."""

    def __init__(self, named: dict[WitType, str]) -> None:
        self.named = {_key(t): n for t, n in named.items()}
        self.classes: dict[object, str] = {}
        self.used: set[str] = set(RESERVED)
        self.decls: list[str] = []
        self.funcs: list[str] = []
        self.lifts: dict[object, str] = {}
        self.lowers: dict[object, str] = {}
        self.cases: dict[object, list[str]] = {}
        self.resources: dict[tuple[str, str], str] = {}
        """Generated class name of each exported resource, by (interface, WIT name)."""

    # -- names and annotations ------------------------------------------------------

    def fresh(self, base: str) -> str:
        """``base``, or ``base2``, ``base3``...: a name not used yet in the module."""
        name, i = base, 2
        while name in self.used:
            name, i = f"{base}{i}", i + 1
        self.used.add(name)
        return name

    def class_name(self, t: RecordT | VariantT | EnumT, hint: str) -> str:
        name = self.classes.get(_key(t))
        if name is not None:
            return name
        wit_name = self.named.get(_key(t), hint)
        name = self.classes[_key(t)] = self.fresh(pascal(wit_name) or "Anon")
        if isinstance(t, EnumT):
            members = "".join(f"    {ident(n).upper()} = {n!r}\n" for n in t.names)
            self.decls.append(f'class {name}(enum.Enum):\n    """WIT {t}."""\n\n{members}')
        elif isinstance(t, RecordT):
            fields = "".join(
                f"    {ident(n)}: {self.ann(ft, name + pascal(n))}\n" for n, ft in t.fields
            )
            doc = f'    """WIT record {wit_name}."""\n'
            fields = fields or "    pass\n"
            self.decls.append(f"@attrs.frozen\nclass {name}:\n{doc}\n{fields}")
        else:
            cases = self.cases[_key(t)] = []
            for case, ct in t.cases:
                cname = self.fresh(name + pascal(case))
                cases.append(cname)
                body = "    pass\n" if ct is None else f"    value: {self.ann(ct, cname)}\n"
                doc = f'    """Case ``{case}`` of :data:`{name}`."""\n'
                self.decls.append(f"@attrs.frozen\nclass {cname}:\n{doc}\n{body}")
            self.decls.append(f'{name} = Union[{", ".join(cases)}]\n"""WIT {t}."""\n')
        return name

    def ann(self, t: WitType | None, hint: str) -> str:
        """The Python annotation of ``t`` (``hint`` names anonymous records)."""
        if t is None:
            return "None"
        if isinstance(t, Prim):
            return _PRIMS.get(t.name, "int")
        if isinstance(t, ListT):
            return "bytes" if t.element == Prim("u8") else f"list[{self.ann(t.element, hint)}]"
        if isinstance(t, RecordT | VariantT | EnumT):
            return self.class_name(t, hint)
        if isinstance(t, TupleT):
            return f"tuple[{', '.join(self.ann(e, hint) for e in t.elements) or '()'}]"
        if isinstance(t, FlagsT):
            return "frozenset[str]"
        if isinstance(t, OptionT):
            inner = self.ann(t.payload, hint)
            return f"Some[{inner}] | None" if isinstance(t.payload, OptionT) else f"{inner} | None"
        if isinstance(t, ResultT):
            return f"Ok[{self.ann(t.ok, hint + 'Ok')}] | Err[{self.ann(t.err, hint + 'Error')}]"
        return self.resource_class(t) or "Any"  # a host-defined resource: any object

    def resource_class(self, t: HandleT) -> str | None:
        """The generated class of a handle to a resource the plugin exports."""
        return self.resources.get((t.resource.interface, t.resource.name))

    # -- converters --------------------------------------------------------------------

    def _needs(self, t: WitType | None, lift: bool) -> bool:
        if isinstance(t, HandleT):
            return self.resource_class(t) is not None
        if t is None or isinstance(t, Prim | FlagsT):
            return False
        if isinstance(t, EnumT):
            return lift  # the bridge lowers enum.Enum members by value
        if isinstance(t, RecordT | VariantT):
            return True
        if isinstance(t, ListT):
            return self._needs(t.element, lift)
        if isinstance(t, OptionT):
            return self._needs(t.payload, lift)
        if isinstance(t, ResultT):
            return self._needs(t.ok, lift) or self._needs(t.err, lift)
        return any(self._needs(e, lift) for e in t.elements)

    def lift(self, t: WitType | None, expr: str, hint: str) -> str:
        """Expression converting the bridge value ``expr`` to ``ann(t)``."""
        if t is None:
            return "None"
        if not self._needs(t, lift=True):
            return f"cast({self.ann(t, hint)!r}, {expr})"
        if isinstance(t, HandleT):
            return f"{self.resource_class(t)}._wrap({expr})"
        fn = self.lifts.get(_key(t))
        if fn is None:
            fn = self.lifts[_key(t)] = self.fresh(f"_lift_{len(self.lifts)}")
            self.funcs.append(
                f"def {fn}(v: Any) -> {self.ann(t, hint)}:\n{self._lift_body(t, hint)}"
            )
        return f"{fn}({expr})"

    def _lift_body(self, t: WitType, hint: str) -> str:
        if isinstance(t, EnumT):
            return f"    return {self.ann(t, hint)}(v)\n"
        if isinstance(t, RecordT):
            name = self.ann(t, hint)
            args = ", ".join(
                f"{ident(n)}={self.lift(ft, _getattr('v', snake(n)), name + pascal(n))}"
                for n, ft in t.fields
            )
            return f"    return {name}({args})\n"
        if isinstance(t, VariantT):
            name = self.ann(t, hint)
            lines = []
            for (case, ct), cname in zip(t.cases, self.cases[_key(t)], strict=True):
                arg = "" if ct is None else self.lift(ct, "v.value", cname)
                lines.append(f"    if v.case == {case!r}:\n        return {cname}({arg})\n")
            lines.append(f"    raise ValueError(f'unknown case {{v.case!r}} of {name}')\n")
            return "".join(lines)
        if isinstance(t, ListT):
            return f"    return [{self.lift(t.element, 'e', hint)} for e in v]\n"
        if isinstance(t, OptionT):
            inner = self.lift(t.payload, "v.value" if isinstance(t.payload, OptionT) else "v", hint)
            inner = f"Some({inner})" if isinstance(t.payload, OptionT) else inner
            return f"    return None if v is None else {inner}\n"
        if isinstance(t, ResultT):
            ok = self.lift(t.ok, "v.value", hint + "Ok")
            err = self.lift(t.err, "v.value", hint + "Error")
            return f"    if isinstance(v, Ok):\n        return Ok({ok})\n    return Err({err})\n"
        assert isinstance(t, TupleT)
        elems = ", ".join(self.lift(e, f"v[{i}]", hint) for i, e in enumerate(t.elements))
        return f"    return ({elems},)\n" if len(t.elements) == 1 else f"    return ({elems})\n"

    def lower(self, t: WitType | None, expr: str, hint: str) -> str:
        """Expression converting ``expr`` (of ``ann(t)``) to a value the bridge accepts."""
        if not self._needs(t, lift=False):
            return expr
        assert t is not None
        if isinstance(t, HandleT):
            return f"{expr}.handle"
        fn = self.lowers.get(_key(t))
        if fn is None:
            fn = self.lowers[_key(t)] = self.fresh(f"_lower_{len(self.lowers)}")
            self.funcs.append(
                f"def {fn}(v: {self.ann(t, hint)}) -> Any:\n{self._lower_body(t, hint)}"
            )
        return f"{fn}({expr})"

    def _lower_body(self, t: WitType, hint: str) -> str:
        if isinstance(t, RecordT):
            name = self.ann(t, hint)
            items = ", ".join(
                f"{n!r}: {self.lower(ft, f'v.{ident(n)}', name + pascal(n))}" for n, ft in t.fields
            )
            return f"    return {{{items}}}\n"
        if isinstance(t, VariantT):
            name = self.ann(t, hint)
            lines = []
            for (case, ct), cname in zip(t.cases, self.cases[_key(t)], strict=True):
                payload = "" if ct is None else ", " + self.lower(ct, "v.value", cname)
                lines.append(
                    f"    if isinstance(v, {cname}):\n        return Variant({case!r}{payload})\n"
                )
            lines.append(f"    raise TypeError(f'not a {name}: {{v!r}}')\n")
            return "".join(lines)
        if isinstance(t, ListT):
            return f"    return [{self.lower(t.element, 'e', hint)} for e in v]\n"
        if isinstance(t, OptionT):
            if isinstance(t.payload, OptionT):
                return f"    return None if v is None else Some({self.lower(t.payload, 'v.value', hint)})\n"  # noqa: E501
            return f"    return None if v is None else {self.lower(t.payload, 'v', hint)}\n"
        if isinstance(t, ResultT):
            ok = self.lower(t.ok, "v.value", hint + "Ok")
            err = self.lower(t.err, "v.value", hint + "Error")
            return f"    if isinstance(v, Ok):\n        return Ok({ok})\n    return Err({err})\n"
        assert isinstance(t, TupleT)
        elems = ", ".join(self.lower(e, f"v[{i}]", hint) for i, e in enumerate(t.elements))
        return f"    return ({elems},)\n" if len(t.elements) == 1 else f"    return ({elems})\n"


def _getattr(obj: str, attr: str) -> str:
    return f"getattr({obj}, {attr!r})" if keyword.iskeyword(attr) else f"{obj}.{attr}"
