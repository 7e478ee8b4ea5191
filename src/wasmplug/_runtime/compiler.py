"""Compiling components: from memory, from the on-disk compile cache, or with Cranelift.

A :class:`Compiler` belongs to one engine (a ``PluginHost``'s). Compiled components are
keyed by :func:`~wasmplug._runtime.cache.code_digest`, both in memory and on disk, so a
re-signed or re-packed file with unchanged code is a cache hit; ``wasmplug install``
precompiles into the same cache.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Literal

from wasmtime import Engine, WasmtimeError
from wasmtime.component import Component

from wasmplug._errors import InstantiationError, InvalidComponentError

from .cache import CompileCache, code_digest, default_cache_dir
from .engine import make_engine
from .telemetry import stage

__all__ = ["CompileSource", "Compiler"]

log = logging.getLogger("wasmplug")

CompileSource = Literal["memory", "disk", "miss"]
"""Where :meth:`Compiler.compile_from` found a component: a cache hit in memory or on
disk, or ``"miss"`` (compiled now)."""


class Compiler:
    """The compiled components of one engine, cached in memory and (optionally) on disk.

    Thread-safe: components may be compiled in parallel (``PluginHost.precompile``);
    of two threads asking for the same code at once, one compiles it (or reads it from
    the disk cache) and the other waits for that result (a compile of a large
    component takes seconds: doing it twice was twice the CPU, and which thread read
    the other's disk entry depended on timing).

    Args:
        engine: The engine the components are compiled for.
        cache: The on-disk compile cache (its key includes the engine's settings), or
            ``None`` for none.
    """

    def __init__(self, engine: Engine, cache: CompileCache | None) -> None:
        self.engine = engine
        self.cache = cache
        self._components: dict[str, Component] = {}
        self._compiling: dict[str, threading.Lock] = {}  # code digest -> its compile's lock
        self._lock = threading.Lock()

    @classmethod
    def standalone(cls, cache_dir: str | os.PathLike[str] | None = None) -> Compiler:
        """A compiler with an engine of its own (no fuel), on the shared compile cache.

        For reading a component's types without a ``PluginHost`` (bindgen). The engine
        settings are a host's default ones, so its entries are a host's entries.

        Args:
            cache_dir: The compile cache directory (default: the user cache dir).

        Raises:
            CacheError: the cache directory is unusable (not private or not writable).
        """
        engine, settings = make_engine(consume_fuel=False)
        directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
        return cls(engine, CompileCache(directory, settings))

    def compile(self, data: bytes, name: str) -> Component:
        """The compiled component for ``data`` (``name`` is the plugin's, for logs and spans).

        Raises:
            InvalidComponentError: ``data`` is not a valid component.
            InstantiationError: it needs more than an instance slot of a pooling
                engine holds (``PluginHost(instance_slots=...)``).
        """
        with stage("compile", **{"wasmplug.plugin.name": name}) as span:
            component, source = self.compile_from(data, name)
            if span is not None:
                span.set_attribute("wasmplug.compile.cache", source)
            return component

    def compile_from(self, data: bytes, name: str) -> tuple[Component, CompileSource]:
        """:meth:`compile`, also saying where the component came from."""
        key = code_digest(data)
        with self._lock:
            cached = self._components.get(key)
            if cached is not None:
                return cached, "memory"
            gate = self._compiling.setdefault(key, threading.Lock())
        with gate:  # one compile per component; another caller waits for it here
            with self._lock:
                cached = self._components.get(key)
            if cached is not None:
                return cached, "memory"
            try:
                component, source = self._load(key, data, name)
            except BaseException:
                with self._lock:
                    self._compiling.pop(key, None)
                raise
            with self._lock:  # stored before the gate goes: a newcomer finds it in memory
                component = self._components.setdefault(key, component)
                self._compiling.pop(key, None)
        return component, source

    def _load(self, key: str, data: bytes, name: str) -> tuple[Component, CompileSource]:
        """Deserialize ``data``'s entry from the disk cache, or compile it (and cache it)."""
        component = None
        source: CompileSource = "disk"
        if self.cache is not None:
            payload = self.cache.get(key)
            if payload is not None:
                try:
                    component = Component.deserialize(self.engine, payload)
                except WasmtimeError as e:
                    log.warning("cache entry for %s unusable (%s); recompiling", name, e)
        if component is None:
            source = "miss"
            start = time.perf_counter()
            if len(data) > 1_000_000:
                log.info(
                    "compiling %s (%.1f MB); this takes a few seconds the first time",
                    name,
                    len(data) / 1e6,
                )
            try:
                component = Component(self.engine, data)
            except WasmtimeError as e:
                if "pooling allocator" in str(e):  # only engines with instance_slots say it
                    raise InstantiationError(
                        f"{name}: needs more than one of this host's instance slots holds "
                        f"(PluginHost(instance_slots=...) sizes each by the host's limits): {e}"
                    ) from None
                raise InvalidComponentError(f"{name}: not a valid component: {e}") from None
            log.info("compiled %s in %.2f s", name, time.perf_counter() - start)
            if self.cache is not None:
                self.cache.put(key, bytes(component.serialize()))
        return component, source

    def clear(self) -> None:
        """Forget the components held in memory (the disk cache stays)."""
        with self._lock:
            self._components.clear()
