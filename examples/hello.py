"""A first wasmplug application: load a Python-written plugin and survive it.

Run from the repository root::

    python examples/hello.py

It builds ``tests/plugins/greeter`` with componentize-py (first run ~10 s,
then cached), compiles it (first run ~9 s, then cached), and shows typed
calls, a host import implemented in Python, a sandboxed directory grant, and
three faults (a panic, an infinite loop, a memory bomb) that each cost the
plugin one instance while the application carries on.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.plugins import GREETER_DIR  # noqa: E402
from wasmplug import (  # noqa: E402
    ErrorResult,
    FilesystemRequest,
    Grants,
    Limits,
    Manifest,
    PluginFault,
    PluginHost,
)
from wasmplug.authoring import ProgressBoard, build_python  # noqa: E402


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  [%(name)s] %(message)s")
    logging.getLogger("wasmplug.plugin").setLevel(logging.ERROR)  # keep guest tracebacks quiet
    print("1. building the plugin (componentize-py; cached after the first run)")
    with ProgressBoard() as board:  # live on a terminal, plain lines otherwise
        built = build_python(GREETER_DIR, wit=GREETER_DIR / "wit", world="greeter", progress=board)
    how = "cached" if built.cached else f"built in {built.seconds:.1f} s"
    print(f"   {built.world}: {built.size / 1e6:.1f} MB ({how}), sha256 {built.sha256[:16]}")
    wasm = built.path
    data_dir = Path(tempfile.mkdtemp(prefix="wasmplug-demo-"))
    (data_dir / "motd.txt").write_text("Only this directory is visible to the plugin.\n")

    with PluginHost(limits=Limits(timeout_ms=500, memory_bytes=64 * 2**20)) as host:
        host.provide(
            "demo:plugin/host@0.1.0",
            {
                "log": lambda msg: print(f"  host.log <- {msg!r}"),
                "get-config": lambda key: {"greeting": "Hello"}.get(key),
            },
            wit=GREETER_DIR / "wit",  # plugins reach exactly what this WIT defines
        )
        manifest = Manifest(
            name="greeter",
            version="0.1.0",
            host_interfaces=("demo:plugin/host@0.1.0",),
            filesystem=(FilesystemRequest("/data", "ro", "files to greet with"),),
        )
        print("2. loading (compiles once, then served from the cache)")
        start = time.perf_counter()
        with ProgressBoard() as board, board.task("greeter", "compiling (first time ~10 s)..."):
            plugin = host.load(
                wasm,
                allow_unsigned=True,  # see docs/tutorial.md for signed plugins
                manifest=manifest,
                grants=Grants(filesystem={"/data": data_dir}),
            )
        print(f"   loaded in {time.perf_counter() - start:.2f} s")

        print("3. typed calls")
        print(f"   greet('world')        -> {plugin.call('greet', 'world')!r}")
        print(f"   api.run(20)           -> {plugin.exports.api.run(20)!r}")
        print(f"   divide(84, 2)         -> {plugin.call('divide', 84, 2)!r}")
        try:
            plugin.call("divide", 1, 0)
        except ErrorResult as e:
            print(f"   divide(1, 0)          -> err({e.value!r})  (a result, not a fault)")
        print(f"   read-file motd        -> {plugin.call('read-file', '/data/motd.txt')!r}")
        for path in ("/etc/passwd", "/data/../etc/passwd"):
            try:
                plugin.call("read-file", path)
            except ErrorResult as e:
                print(f"   read-file {path:<20}-> denied: {e.value}")
        try:
            plugin.call("try-socket", 80)
        except ErrorResult as e:
            print(f"   try-socket            -> denied: {e.value}")
        try:
            plugin.call("greet", 42)
        except Exception as e:
            print(f"   bad call              -> {type(e).__name__}: {e}")

        print("4. faults are contained")
        for export, args in (("panic", ("boom",)), ("spin", ()), ("hog", (1024,))):
            start = time.perf_counter()
            try:
                plugin.call(export, *args)
            except PluginFault as e:
                took = (time.perf_counter() - start) * 1000
                print(f"   {export:<6} -> {type(e).__name__} after {took:.0f} ms: {e}")
            print(f"   {'':<6}    next call still works: {plugin.call('greet', 'again')!r}")

        m = plugin.metrics()
        print(f"5. metrics: calls={m.calls} faults={dict(m.faults)} restarts={m.restarts}")


if __name__ == "__main__":
    main()
