"""Manifest parsing: every problem reported at once, unknown keys rejected."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmplug import FilesystemRequest, Limits, Manifest, ManifestError, WasmplugError
from wasmplug._sandbox.manifest import MAX_MANIFEST_CHARS, undeclared_imports

FULL = """
[plugin]
name = "acme:greeter"
version = "1.2.3-beta.1"
description = "Says hello"
world = "demo:plugin/greeter"

[capabilities]
host-interfaces = ["demo:plugin/host@0.1.0", "log"]
env = ["GREETING", "_X1"]
allowed-outbound-hosts = ["https://api.example.com", "https://*.example.org:8443"]
stdio = "discard"

[[capabilities.filesystem]]
guest-path = "/data"
mode = "ro"
description = "input files"

[[capabilities.filesystem]]
guest-path = "/out"
mode = "rw"

[limits]
memory-bytes = 67108864
timeout-ms = 100
fuel = 1000000
"""


def test_full_manifest_parses() -> None:
    m = Manifest.from_toml(FULL)
    assert m.name == "acme:greeter"
    assert m.version == "1.2.3-beta.1"
    assert m.description == "Says hello"
    assert m.world == "demo:plugin/greeter"
    assert m.host_interfaces == ("demo:plugin/host@0.1.0", "log")
    assert m.env == ("GREETING", "_X1")
    assert m.filesystem == (
        FilesystemRequest("/data", "ro", "input files"),
        FilesystemRequest("/out", "rw"),
    )
    assert m.allowed_outbound_hosts == ("https://api.example.com", "https://*.example.org:8443")
    assert m.stdio == "discard"
    assert m.limits == attrs.evolve(
        Limits.unlimited(), timeout_ms=100, memory_bytes=64 * 2**20, fuel=1_000_000
    )


def test_minimal_manifest_defaults() -> None:
    m = Manifest.from_toml('[plugin]\nname = "x"\nversion = "0.1.0"\n')
    assert (m.description, m.world, m.env, m.allowed_outbound_hosts) == ("", None, (), ())
    assert m.host_interfaces == ()
    assert m.filesystem == ()
    assert m.stdio == "log"
    assert m.limits.timeout_ms is None
    assert m.limits.memory_bytes is None


def test_every_problem_is_reported_at_once() -> None:
    text = """
[plugin]
name = "Bad Name"
version = "1.0"
colour = "blue"

[capabilities]
env = ["OK", "1BAD"]
host-interfaces = ["not an interface"]
stdio = "shout"
allowed-outbound-hosts = ["ftp://x"]

[[capabilities.filesystem]]
guest-path = "relative/path"
mode = "rwx"

[[capabilities.filesystem]]
guest-path = "/a/../b"

[limits]
memory-bytes = -1
timeout = 5

[extra]
"""
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(text, source="wasmplug.toml")
    problems = info.value.problems
    joined = "\n".join(problems)
    for needle in (
        "plugin.name",
        "plugin.version",
        "plugin.colour: unknown key",
        "extra: unknown key",
        "capabilities.env[1]",
        "capabilities.host-interfaces[0]",
        "capabilities.stdio",
        "capabilities.allowed-outbound-hosts[0]",
        "capabilities.filesystem[0].mode",
        "capabilities.filesystem[1].guest-path",
        "limits.memory-bytes",
        "limits.timeout: unknown key",
    ):
        assert needle in joined, needle
    assert len(problems) >= 12
    assert "wasmplug.toml" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, WasmplugError)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("data", "absolute"),
        ("/a/../etc", ".."),
        ("/a//b", "normalised"),
        ("/a/\0", "NUL"),
    ],
    ids=["relative", "dotdot", "unnormalised", "nul"],
)
def test_guest_path_rules(path: str, reason: str) -> None:
    text = (
        '[plugin]\nname = "x"\nversion = "0.1.0"\n'
        f"[[capabilities.filesystem]]\nguest-path = {json.dumps(path)}\n"
    )
    with pytest.raises(ManifestError, match=reason):
        Manifest.from_toml(text)


def test_missing_plugin_table_and_bad_toml() -> None:
    with pytest.raises(ManifestError, match=r"\[plugin\] table is required"):
        Manifest.from_toml("[capabilities]\n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        Manifest.from_toml("[plugin\nname=")


def test_from_path_reports_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        Manifest.from_path(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ManifestError, match="cannot read"):
        Manifest.from_path(tmp_path / "bad.toml")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        Manifest.from_toml(text)
    except ManifestError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["plugin", "capabilities", "limits", "junk"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=8), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    )
)
def test_arbitrary_structures_give_manifest_errors(data: dict[str, object]) -> None:
    from wasmplug._sandbox.manifest import _Validator

    try:
        _Validator("<test>").manifest(data)
    except ManifestError:
        pass


# -- one validator: Manifest(...) in code and the TOML parser apply the same rules ---------

# (Manifest keyword arguments, the TOML that says the same, the key in the problem)
SAME_RULES = {
    "name with capitals": ({"name": "Bad"}, 'name = "Bad"', "plugin.name"),
    "name with trailing newline": ({"name": "tool\n"}, 'name = "tool\\n"', "plugin.name"),
    "version not semver": ({"version": "1.0"}, 'version = "1.0"', "plugin.version"),
    "version with trailing newline": (
        {"version": "1.0.0\n"},
        'version = "1.0.0\\n"',
        "plugin.version",
    ),
    "interface name": (
        {"host_interfaces": ("Not An Interface",)},
        '[capabilities]\nhost-interfaces = ["Not An Interface"]',
        "capabilities.host-interfaces[0]",
    ),
    "interface with trailing newline": (
        {"host_interfaces": ("a:b/c\n",)},
        '[capabilities]\nhost-interfaces = ["a:b/c\\n"]',
        "capabilities.host-interfaces[0]",
    ),
    "env key": ({"env": ("1BAD",)}, '[capabilities]\nenv = ["1BAD"]', "capabilities.env[0]"),
    "env key with newline": (
        {"env": ("HOME\n",)},
        '[capabilities]\nenv = ["HOME\\n"]',
        "capabilities.env[0]",
    ),
    "duplicate env keys": (
        {"env": ("A", "A")},
        '[capabilities]\nenv = ["A", "A"]',
        "capabilities.env",
    ),
    "env as a string": ({"env": "HOME"}, '[capabilities]\nenv = "HOME"', "capabilities.env"),
    "host pattern": (
        {"allowed_outbound_hosts": ("ftp://x",)},
        '[capabilities]\nallowed-outbound-hosts = ["ftp://x"]',
        "capabilities.allowed-outbound-hosts[0]",
    ),
    "stdio": ({"stdio": "print"}, '[capabilities]\nstdio = "print"', "capabilities.stdio"),
    "guest path": (
        {"filesystem": (FilesystemRequest("data"),)},
        '[[capabilities.filesystem]]\nguest-path = "data"',
        "capabilities.filesystem[0].guest-path",
    ),
    "mode": (
        {"filesystem": (FilesystemRequest("/d", "rwx"),)},  # type: ignore[arg-type]
        '[[capabilities.filesystem]]\nguest-path = "/d"\nmode = "rwx"',
        "capabilities.filesystem[0].mode",
    ),
    "guest path twice": (
        {"filesystem": (FilesystemRequest("/d"), FilesystemRequest("/d"))},
        '[[capabilities.filesystem]]\nguest-path = "/d"\n'
        '[[capabilities.filesystem]]\nguest-path = "/d"',
        "capabilities.filesystem[1].guest-path",
    ),
}


def toml_for(fragment: str) -> str:
    plugin = {"name": '"tool"', "version": '"1.0.0"'}
    lines = []
    rest = []
    for line in fragment.splitlines():
        key = line.split(" = ")[0]
        if key in plugin and not rest:
            plugin[key] = line.split(" = ", 1)[1]
        else:
            rest.append(line)
    lines = ["[plugin]", *(f"{k} = {v}" for k, v in plugin.items()), *rest]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("kwargs", "toml", "key"), SAME_RULES.values(), ids=SAME_RULES.keys())
def test_code_and_toml_apply_the_same_rules(kwargs: dict[str, object], toml: str, key: str) -> None:
    values: dict[str, object] = {"name": "tool", "version": "1.0.0", **kwargs}
    with pytest.raises(ManifestError) as in_code:
        Manifest(**values)  # type: ignore[arg-type]
    with pytest.raises(ManifestError) as in_toml:
        Manifest.from_toml(toml_for(toml))
    assert any(p.startswith(f"{key}:") for p in in_code.value.problems), in_code.value.problems
    assert [p.split(":")[0] for p in in_code.value.problems] == [
        p.split(":")[0] for p in in_toml.value.problems
    ]


def test_a_manifest_built_in_code_round_trips_through_toml() -> None:
    m = Manifest(
        name="acme:tool",
        version="1.2.3",
        host_interfaces=["demo:plugin/host@0.1.0"],  # type: ignore[arg-type]
        env=["KEY"],  # type: ignore[arg-type]
        allowed_outbound_hosts=("https://*.example.org:8443",),
        filesystem=(FilesystemRequest("/data", "rw", "input"),),
    )
    assert m.host_interfaces == ("demo:plugin/host@0.1.0",)
    text = (
        '[plugin]\nname = "acme:tool"\nversion = "1.2.3"\n[capabilities]\n'
        'host-interfaces = ["demo:plugin/host@0.1.0"]\nenv = ["KEY"]\n'
        'allowed-outbound-hosts = ["https://*.example.org:8443"]\n'
        '[[capabilities.filesystem]]\nguest-path = "/data"\nmode = "rw"\ndescription = "input"\n'
    )
    assert Manifest.from_toml(text) == m


NAME_RULE = "is not valid (use lowercase kebab-case, optionally 'namespace:name')"
PLUGIN_KEYS = "description, name, version, world"


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ('[plugin]\nname = 3\nversion = "1.0.0"\n', ["plugin.name: must be a string, got int"]),
        ('[plugin]\nversion = "1.0.0"\n', ["plugin.name: is required"]),
        (
            "plugin = 3\n",
            [
                "plugin: must be a table, got int",
                "plugin.name: is required",
                "plugin.version: is required",
            ],
        ),
        (
            '[plugin]\nname = "x"\nversion = "1.0.0"\n[capabilities]\nenv = "A"\n',
            ["capabilities.env: must be an array of strings, got str"],
        ),
        (
            '[plugin]\nname = "x"\nversion = "1.0.0"\ncolour = 1\n',
            [f"plugin.colour: unknown key (known: {PLUGIN_KEYS})"],
        ),
        (
            '[plugin]\nname = "x"\nversion = "1.0.0"\n[extra]\n',
            ["extra: unknown key (known: capabilities, limits, plugin)"],
        ),
        (
            '[plugin]\nname = "Bad Name"\nversion = "1.0"\n',
            [
                f"plugin.name: 'Bad Name' {NAME_RULE}",
                "plugin.version: '1.0' is not valid (use a semantic version such as 1.2.3)",
            ],
        ),
        (
            '[plugin]\nname = "x"\nversion = "1.0.0"\n[capabilities]\nenv = [1, "OK", 2.5]\n',
            [
                "capabilities.env[0]: must be a string, got int",
                "capabilities.env[2]: must be a string, got float",
            ],
        ),
        (
            '[plugin]\nname = "x"\nversion = "1.0.0"\n[capabilities]\nfilesystem = 3\n',
            ["capabilities.filesystem: must be an array of tables ([[capabilities.filesystem]])"],
        ),
        (
            '[capabilities]\nstdio = "log"\n',
            [
                "plugin: the [plugin] table is required",
                "plugin.name: is required",
                "plugin.version: is required",
            ],
        ),
    ],
    ids=[
        "type",
        "required",
        "table",
        "array",
        "unknown-key",
        "unknown-table",
        "name-version",
        "items",
        "filesystem",
        "no-plugin",
    ],
)
def test_each_problem_names_its_key_and_what_is_wrong(text: str, problems: list[str]) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(text, source="wasmplug.toml")
    assert list(info.value.problems) == problems
    assert str(info.value).startswith(f"invalid manifest wasmplug.toml: {len(problems)} problem")


def test_errors_name_the_source() -> None:
    with pytest.raises(ManifestError, match=r"^invalid manifest <manifest>: 1 problem"):
        Manifest.from_toml("x = [")  # the default source
    with pytest.raises(
        ManifestError, match=r"^invalid manifest m\.toml: 1 problem\n  - not valid TOML: "
    ):
        Manifest.from_toml("x = [", source="m.toml")
    with pytest.raises(ManifestError, match=r"^invalid manifest Manifest\(name='Bad Name'\): "):
        Manifest(name="Bad Name")
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml("x = " + "[" * 100_000, source="deep.toml")  # tomllib recurses
    assert info.value.problems == ("not valid TOML: nested too deeply",)
    assert str(info.value).startswith("invalid manifest deep.toml: 1 problem")


def test_the_size_limit_is_one_mebi_character(tmp_path: Path) -> None:
    head = '[plugin]\nname = "x"\nversion = "0.1.0"\n# '
    # exactly at the limit, in 4-byte characters: 4 MiB on disk, still read whole
    at_limit = head + "\U0001f600" * (MAX_MANIFEST_CHARS - len(head))
    assert len(at_limit) == MAX_MANIFEST_CHARS
    assert Manifest.from_toml(at_limit).name == "x"
    (tmp_path / "big.toml").write_text(at_limit, encoding="utf-8")
    assert Manifest.from_path(tmp_path / "big.toml").name == "x"
    # over it: refused, and a file is read no further than the limit allows
    with pytest.raises(ManifestError, match="is 1048577 characters long; the limit is 1048576"):
        Manifest.from_toml(at_limit + "x", source="m.toml")
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * (5 * MAX_MANIFEST_CHARS))
    with pytest.raises(ManifestError) as info:
        Manifest.from_path(huge)
    assert info.value.problems == (
        f"is {4 * MAX_MANIFEST_CHARS + 1} characters long; the limit is {MAX_MANIFEST_CHARS}",
    )
    assert str(info.value).startswith(f"invalid manifest {huge}: ")


def test_from_path_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ManifestError, match=f"^invalid manifest {missing}: 1 problem"):
        Manifest.from_path(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text('[plugin]\nname = "x"\n')
    with pytest.raises(ManifestError, match=f"^invalid manifest {bad}: 1 problem") as info:
        Manifest.from_path(bad)
    assert info.value.problems == ("plugin.version: is required",)


def test_every_non_wasi_import_must_be_declared() -> None:
    """The one import rule of load and install: a declared interface covers semver-compatible
    versions; a world-level resource's functions are declared by the resource's name."""
    m = Manifest(name="x", host_interfaces=("demo:plugin/host@0.1.0", "counter", "log"))
    imports = [
        "wasi:cli/environment@0.2.0",  # WASI: linked capability-less, never declared
        "demo:plugin/host@0.1.2",
        "demo:plugin/host@0.2.0",
        "other:x/y",
        "[constructor]counter",
        "[method]counter.get",
        "[static]thing.make",
        "[method]thing.get",
        "log",
    ]
    rule = "imported but not declared in the manifest ([capabilities] host-interfaces)"
    assert undeclared_imports(m, imports) == [
        f"demo:plugin/host@0.2.0: {rule}",
        f"other:x/y: {rule}",
        f"thing: {rule}",  # once per resource
    ]
    assert undeclared_imports(m, ["wasi:http/outgoing-handler@0.2.0", "log"]) == []


@pytest.mark.parametrize(
    ("declared", "malformed", "problem"),
    [
        (
            '[capabilities]\nenv = [1, "1BAD", "1BAD"]\n',
            "capabilities.env[0]",
            "capabilities.env[1]: '1BAD' is not",
        ),
        (
            '[[capabilities.filesystem]]\nmode = "ro"\n'
            '[[capabilities.filesystem]]\nguest-path = "/a"\nmode = "rwx"\n',
            "capabilities.filesystem[0]",
            "capabilities.filesystem[1].mode: must be 'ro' or 'rw'",
        ),
        (
            "[capabilities]\nfilesystem = [3, {guest-path = '/a', mode = 'rwx'}]\n",
            "capabilities.filesystem[0]",
            "capabilities.filesystem[1].mode: must be 'ro' or 'rw'",
        ),
    ],
    ids=["env", "filesystem", "filesystem-not-a-table"],
)
def test_a_problem_after_a_malformed_item_names_its_own_index(
    declared: str, malformed: str, problem: str
) -> None:
    """Found by the mutation run: the parse dropped a malformed item, so the value
    rules ran on a shorter tuple and named the wrong index (``env[0]`` for ``env[1]``)."""
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml('[plugin]\nname = "x"\nversion = "1.0.0"\n' + declared)
    problems = info.value.problems
    assert any(p.startswith(problem) for p in problems), problems
    assert len([p for p in problems if p.startswith(malformed)]) == 1, problems


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"description": 3}, "plugin.description: must be a string, got int"),
        ({"world": 3}, "plugin.world: must be a string, got int"),
        ({"limits": "x"}, "limits: must be a Limits, got str"),
        ({"stdio": "shout"}, "capabilities.stdio: must be 'log' or 'discard', got 'shout'"),
        ({"declarations": {"nope": ("a",)}}, "capabilities.nope: unknown key"),
    ],
    ids=["description", "world", "limits", "stdio", "unknown-declaration"],
)
def test_a_manifest_built_in_code_gets_the_same_rules(
    kwargs: dict[str, object], problem: str
) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest(name="x", **kwargs)  # type: ignore[arg-type]
    assert info.value.problems == (problem,)


def test_an_unknown_keyword_names_the_known_ones() -> None:
    with pytest.raises(TypeError, match=r"^Manifest\(\) got an unexpected keyword argument 'bo"):
        Manifest(name="x", bogus=1)


def test_wrong_toml_types_are_named_where_they_are() -> None:
    text = (
        '[plugin]\nname = "x"\nversion = "1.0.0"\ndescription = 3\nworld = 4\n'
        "[capabilities]\nstdio = 5\nbogus = 1\n"
    )
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(text)
    bogus, *rest = info.value.problems
    assert bogus.startswith("capabilities.bogus: unknown key (known: allowed-outbound-hosts, ")
    assert rest == [
        "plugin.description: must be a string, got int",
        "plugin.world: must be a string, got int",
        "capabilities.stdio: must be a string, got int",
    ]


def test_limits_are_positive_integers() -> None:
    head = '[plugin]\nname = "x"\nversion = "1.0.0"\n[limits]\n'
    ones = "timeout-ms = 1\nmemory-bytes = 1\nfuel = 1\ntable-elements = 9\n"
    m = Manifest.from_toml(head + ones)
    assert (m.limits.timeout_ms, m.limits.memory_bytes, m.limits.fuel) == (1, 1, 1)
    assert m.limits.table_elements == 9
    for bad, shown in (("0", "0"), ("-5", "-5"), ("true", "True"), ("1.5", "1.5")):
        with pytest.raises(ManifestError) as info:
            Manifest.from_toml(head + f"timeout-ms = {bad}\n")
        expected = f"limits.timeout-ms: must be a positive integer, got {shown}"
        assert info.value.problems == (expected,)
