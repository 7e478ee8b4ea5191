"""Implementation of :mod:`wasmplug.testing` and its pytest plugin (the ``pytest11`` entry point).

Import the helpers from :mod:`wasmplug.testing`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import pytest

from wasmplug._errors import PluginFault
from wasmplug._runtime.host import PluginHost
from wasmplug._runtime.plugin import Plugin
from wasmplug._sandbox.grants import Grants
from wasmplug._sandbox.limits import Limits
from wasmplug._sandbox.manifest import SIDECAR_NAME
from wasmplug.authoring import build_project

__all__ = [
    "Call",
    "FaultInfo",
    "RecordingHost",
    "assert_faults",
    "build_plugin",
    "find_project",
]


def find_project(start: str | Path) -> Path:
    """Return the nearest directory at or above ``start`` holding a ``wasmplug.toml``.

    Raises:
        LookupError: there is none.
    """
    start = Path(start).resolve()
    for directory in (start, *start.parents):
        if (directory / SIDECAR_NAME).is_file():
            return directory
    raise LookupError(f"no {SIDECAR_NAME} in {start} or any parent directory")


def build_plugin(
    project: str | Path, *, output: str | Path | None = None, cache_dir: Path | None = None
) -> Path:
    """Build and pack a plugin project, as ``wasmplug build`` does (cached by content).

    Args:
        project: The project directory (``wasmplug.toml``, ``wit/``, ``app.py`` or ``app.js``).
        output: Where to write the packed component (default ``dist/NAME-VERSION.wasm``).
        cache_dir: Build cache directory (default: the user cache directory).

    Returns:
        The packed, unsigned component.

    Raises:
        BuildError: the build failed; ``.output`` holds the tool's message.
    """
    return build_project(project, output=output, cache_dir=cache_dir).path


class Call(NamedTuple):
    """One call recorded by :class:`RecordingHost`: the Python name and the arguments."""

    name: str
    args: tuple[Any, ...]


class RecordingHost:
    """A fake host interface that records calls and returns canned values.

    Pass it to :meth:`PluginHost.provide <wasmplug.PluginHost.provide>` with the
    interface's WIT (``load_plugin(provide=...)`` passes the project's ``wit/``):
    every function the WIT defines resolves to a recorder, by its snake_case name.

    Args:
        returns: Canned results by function name (snake_case or WIT kebab-case).
            A value is returned as is; a callable is called with the arguments
            and its result returned; an exception instance is raised (raise
            :class:`~wasmplug.Err` to return a WIT ``err``). Functions without a
            canned result return ``None``.
        **more: More canned results, by snake_case name.

    Attributes:
        calls: Every call so far, in order, as :class:`Call` tuples.

    >>> log = RecordingHost({"get-config": lambda key: "on" if key == "debug" else None})
    >>> log.get_config("debug"), log.log("hi")
    ('on', None)
    >>> log.calls
    [Call(name='get_config', args=('debug',)), Call(name='log', args=('hi',))]
    """

    def __init__(self, returns: Mapping[str, Any] | None = None, **more: Any) -> None:
        canned = {k.replace("-", "_"): v for k, v in dict(returns or {}, **more).items()}
        self._returns = canned
        self.calls: list[Call] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args: Any) -> Any:
            self.calls.append(Call(name, args))
            result = self._returns.get(name)
            if isinstance(result, BaseException):
                raise result
            return result(*args) if callable(result) else result

        record.__name__ = name
        return record

    def calls_to(self, name: str) -> list[tuple[Any, ...]]:
        """The argument tuples of every call to ``name`` (snake_case or kebab-case)."""
        name = name.replace("-", "_")
        return [c.args for c in self.calls if c.name == name]

    def reset(self) -> None:
        """Forget the recorded calls (canned results stay)."""
        self.calls.clear()


@attrs.define
class FaultInfo:
    """What :func:`assert_faults` caught.

    Attributes:
        value: The exception, once the ``with`` block has exited.
    """

    value: PluginFault | None = None


@contextlib.contextmanager
def assert_faults(
    expected: type[PluginFault] | tuple[type[PluginFault], ...] = PluginFault,
    *,
    match: str | None = None,
    plugin: Plugin | None = None,
    recovers: Callable[[Plugin], object] | None = None,
) -> Iterator[FaultInfo]:
    """Assert that the block raises a plugin fault of type ``expected``.

    Faults are :class:`~wasmplug.PluginFault` subclasses: :class:`~wasmplug.PluginTrapped`,
    :class:`~wasmplug.PluginTimeout`, :class:`~wasmplug.FuelExhausted`,
    :class:`~wasmplug.ResourceLimitExceeded`, :class:`~wasmplug.HostFunctionError`.

    Args:
        expected: The fault class (or classes) the block must raise.
        match: A regular expression that ``str(fault)`` must match (``re.search``).
        plugin: If given, also check that the fault was counted in
            ``plugin.metrics.faults`` and that the plugin is still usable afterwards.
        recovers: Called with ``plugin`` after the fault, to prove it recovers
            (e.g. ``lambda p: p.call("greet", "x")``); it must not raise.

    Yields:
        A :class:`FaultInfo` whose ``value`` is the fault after the block.

    Raises:
        AssertionError: nothing was raised, or a fault of another type (chained),
            or the plugin did not recover.
    """
    before = plugin.metrics().total_faults if plugin is not None else 0
    info = FaultInfo()
    names = (
        ", ".join(e.__name__ for e in expected)
        if isinstance(expected, tuple)
        else expected.__name__
    )
    try:
        yield info
    except PluginFault as e:
        if not isinstance(e, expected):
            raise AssertionError(f"expected {names}, got {type(e).__name__}: {e}") from e
        if match is not None and not re.search(match, str(e)):
            raise AssertionError(f"{type(e).__name__} {str(e)!r} does not match {match!r}") from e
        info.value = e
    else:
        raise AssertionError(f"expected {names}, but the block did not fault")
    if plugin is not None:
        after = plugin.metrics().total_faults
        assert after > before, f"the fault was not counted in plugin.metrics ({before} -> {after})"
        if recovers is not None:
            recovers(plugin)


# -- pytest plugin ------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "wasmplug_project", "plugin project directory for the wasmplug fixtures", default=""
    )


@pytest.fixture
def wasmplug_project(request: pytest.FixtureRequest) -> Path:
    """The plugin project under test (see the module docstring)."""
    configured = str(request.config.getini("wasmplug_project") or "")
    if configured:
        return (request.config.rootpath / configured).resolve()
    try:
        return find_project(request.path.parent)
    except LookupError as e:
        pytest.fail(f"{e}; set the `wasmplug_project` ini option or override the fixture")


_BUILT: dict[Path, Path] = {}


def _build_once(project: Path, tmp_factory: pytest.TempPathFactory) -> Path:
    project = project.resolve()
    out = _BUILT.get(project)
    if out is None:
        out = build_plugin(project, output=tmp_factory.mktemp("wasmplug") / "plugin.wasm")
        _BUILT[project] = out
    return out


@pytest.fixture
def wasmplug_component(wasmplug_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built and packed, unsigned (built once per session)."""
    return _build_once(wasmplug_project, tmp_path_factory)


@pytest.fixture
def wasmplug_host() -> Iterator[PluginHost]:
    """A fresh :class:`~wasmplug.PluginHost` (default compile cache), closed after the test."""
    with PluginHost() as host:
        yield host


@pytest.fixture
def load_plugin(
    wasmplug_host: PluginHost,
    wasmplug_project: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Plugin]]:
    """``load_plugin(project=None, *, grants=None, limits=None, provide=None, **kwargs)``.

    Builds (cached) and loads a project's plugin, unsigned, into ``wasmplug_host``.
    ``provide`` maps interface names to implementations (a :class:`RecordingHost`,
    an object or a dict) given to :meth:`~wasmplug.PluginHost.provide` first,
    with the project's ``wit/`` directory as the interfaces' WIT;
    ``grants`` default to ``Grants()`` (nothing beyond non-sensitive host
    interfaces); other keyword arguments go to :meth:`~wasmplug.PluginHost.load`.
    """
    loaded: list[Plugin] = []

    def load(
        project: str | Path | None = None,
        *,
        grants: Grants | None = None,
        limits: Limits | None = None,
        provide: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Plugin:
        root = Path(project) if project is not None else wasmplug_project
        component = _build_once(root, tmp_path_factory)
        wit = root / "wit" if (root / "wit").is_dir() else None
        for interface, impl in (provide or {}).items():
            # The project's own WIT defines what each interface offers plugins.
            wasmplug_host.provide(interface, impl, wit=wit if "/" in interface else None)
        plugin = wasmplug_host.load(
            component, allow_unsigned=True, grants=grants or Grants(), limits=limits, **kwargs
        )
        loaded.append(plugin)
        return plugin

    yield load
    for plugin in loaded:
        plugin.close()
