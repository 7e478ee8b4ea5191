"""Run the Python code blocks of the user guides as tests (Sybil), so the docs cannot drift.

Each page runs in a fresh namespace, in a temporary working directory that holds what the
examples open by name: ``greeter.wasm`` (the real componentize-py test plugin) and copies
of it under ``plugins/``, a signed ``greeter.signed.wasm`` with its publisher key
``acme.pub``, the directories the grant examples name, and ``tests`` (a link to the
repository's tests, for the WIT paths the quickstart uses). Names that a block uses
without defining them (``host``, ``plugin``, ``path``, ``grants``...) are set up here the way
the surrounding prose describes them.

A block that cannot run as written (a fragment with ``...``, top-level ``await``) is preceded
in the page by a MyST comment ``% skip: next "why"``; Sybil reports it as skipped, and the CI
skip policy (``tests/support/skip_policy.py``) allow-lists those by reason.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["quickstart.md", "host-guide.md", "security.md"]
HOST_WIT = """\
package demo:plugin@0.1.0;

interface host {
    log: func(msg: string);
    get-config: func(key: string) -> option<string>;
}
"""
TINY = """
(component
  (core module $m (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
"""


def _greeter_wasm() -> Path:
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from support.plugins import build_greeter
    finally:
        sys.path.remove(str(ROOT / "tests"))
    return build_greeter()


def _manifest(name: str, version: str = "1.2.0") -> str:
    return f'[plugin]\nname = "{name}"\nversion = "{version}"\n'


def _packed_and_signed(d: Path, component: bytes, toml: str, output: Path) -> None:
    from wasmplug.authoring import pack, sign

    manifest = d / "wasmplug.toml.tmp"
    manifest.write_text(toml)
    pack(component, manifest, output=d / "packed.tmp")
    sign(d / "packed.tmp", d / "acme.key", output=output)
    manifest.unlink()
    (d / "packed.tmp").unlink()


@functools.cache
def _docs_files() -> Path:
    """The files the examples name, made once per session (the greeter build is cached).

    Sybil runs a page's setup before pytest fixtures exist, so this is a cached function
    over a temporary directory removed at exit, not a fixture.
    """
    import wasmtime

    from wasmplug.authoring import keygen

    d = Path(tempfile.mkdtemp(prefix="wasmplug-docs-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    greeter = _greeter_wasm()
    shutil.copy(greeter, d / "greeter.wasm")
    keygen(d / "acme.pub", d / "acme.key")
    for sub in ("plugins", "downloads", "shared", "results", "wit"):
        (d / sub).mkdir()
    # Plugins by Acme (name scope acme:*), signed, that import nothing (the examples that
    # load them by path do not provide host interfaces): tiny components.
    tiny = wasmtime.wat2wasm(TINY)
    for name, out in [
        ("acme:greeter", d / "plugins" / "greeter.wasm"),
        ("acme:tool", d / "plugins" / "tool.wasm"),
        ("acme:tool", d / "downloads" / "acme-tool-1.2.0.wasm"),
        ("acme:greeter", d / "greeter.signed.wasm"),
    ]:
        _packed_and_signed(d, tiny, _manifest(name), out)
    (d / "wit" / "host.wit").write_text(HOST_WIT)
    (d / "tests").symlink_to(ROOT / "tests")
    return d


def _setup(namespace: dict[str, Any]) -> None:
    """Names the prose introduces before the blocks use them."""
    import wasmplug
    from wasmplug import Grants, PluginHost, PublicKey, TrustedKey, TrustStore

    files = _docs_files()
    namespace["_cwd"] = os.getcwd()
    namespace["_env"] = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    os.chdir(files)
    # The examples' TrustStore(), registry and grant decisions are the user's: keep them here.
    os.environ["XDG_CONFIG_HOME"] = str(files / "config")
    os.environ["XDG_DATA_HOME"] = str(files / "data")
    shutil.rmtree(files / "config", ignore_errors=True)  # each page starts from a fresh user
    shutil.rmtree(files / "data", ignore_errors=True)
    # The user trusts Acme's key for acme:* (`wasmplug trust add acme.pub --scope 'acme:*'`).
    acme = PublicKey.from_bytes((files / "acme.pub").read_bytes())
    store = TrustStore()
    store.add(TrustedKey(acme, scopes=("acme:*",), name="Acme Corp"))
    store.save()
    host = PluginHost(trusted_keys=[(files / "acme.pub").read_bytes()])
    host.provide(
        "demo:plugin/host@0.1.0",
        {"log": lambda msg: None, "get-config": lambda key: None},
        wit="wit",
    )
    namespace.update({name: getattr(wasmplug, name) for name in wasmplug.__all__})
    namespace.update(
        host=host,
        plugin=host.load("plugins/greeter.wasm"),
        path="plugins/greeter.wasm",
        grants=Grants(),
        logger=logging.getLogger("docs"),
        config={},
        raw_32_bytes=acme.raw,
        _closers=[host.close],
    )


def _teardown(namespace: dict[str, Any]) -> None:
    for close in namespace.get("_closers", []):
        close()
    for key, value in namespace.get("_env", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if "_cwd" in namespace:
        os.chdir(namespace["_cwd"])


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=PAGES,
    setup=_setup,
    teardown=_teardown,
).pytest()
