"""The public API: one name per line in wasmplug/__init__.py, all of it in __all__."""

from __future__ import annotations

import types

import wasmplug

PUBLIC_SUBPACKAGES = {"authoring", "testing"}


def test_all_matches_public_names() -> None:
    # The public subpackages become attributes of ``wasmplug`` once imported (pytest
    # imports ``wasmplug.testing`` through the pytest11 entry point); they are not names
    # of the facade and stay out of ``__all__``.
    public = {
        name
        for name in dir(wasmplug)
        if not name.startswith("_") and not isinstance(getattr(wasmplug, name), types.ModuleType)
    }
    modules = {n for n in dir(wasmplug) if isinstance(getattr(wasmplug, n), types.ModuleType)}
    assert modules - {n for n in modules if n.startswith("_")} <= PUBLIC_SUBPACKAGES
    assert set(wasmplug.__all__) - {"__version__"} == public
    assert len(set(wasmplug.__all__)) == len(wasmplug.__all__)  # ruff (RUF022) keeps it sorted


def test_public_classes_claim_the_package_module() -> None:
    for name in wasmplug.__all__:
        obj = getattr(wasmplug, name)
        if isinstance(obj, type):
            assert obj.__module__ == "wasmplug", name


def test_every_exception_derives_from_the_root() -> None:
    for name in wasmplug.__all__:
        obj = getattr(wasmplug, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj is not wasmplug.Err:
            assert issubclass(obj, wasmplug.WasmplugError), name


def test_version_is_a_string() -> None:
    assert isinstance(wasmplug.__version__, str)
