"""Guest side of the ``greeter`` test plugin, built with componentize-py.

Build: ``componentize-py -d wit -w greeter componentize app -o greeter.wasm``.
componentize-py instantiates ``WitWorld`` for the world's own exports and
``Api`` for the exported ``api`` interface; raising ``Err(value)`` returns the
``err`` case of a ``result``, and any other uncaught exception becomes a trap.
"""

import os
import socket
import sys

import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host


class Api(exports.Api):
    def run(self, n: int) -> int:
        return n * 2 + 1


class WitWorld(wit_world.WitWorld):
    def greet(self, name: str) -> str:
        host.log(f"greeting {name}")
        return f"Hello, {name}!"

    def divide(self, a: int, b: int) -> int:
        if b == 0:
            raise Err("division by zero")
        return a // b

    def config_value(self, key: str) -> str | None:
        return host.get_config(key)

    def read_file(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except Exception as e:
            raise Err(str(e)) from None

    def write_file(self, path: str, contents: str) -> None:
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(contents)
        except Exception as e:
            raise Err(str(e)) from None

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except Exception as e:
            raise Err(str(e)) from None

    def get_env(self, key: str) -> str | None:
        return os.environ.get(key)

    def try_socket(self, port: int) -> str:
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.settimeout(1.0)
                s.connect(("127.0.0.1", port))
            finally:
                s.close()
        except Exception as e:
            raise Err(f"{type(e).__name__}: {e}") from None
        return "connected"

    def spin(self) -> None:
        while True:
            pass

    def panic(self, msg: str) -> None:
        raise RuntimeError(msg)

    def hog(self, megabytes: int) -> int:
        chunks = []
        for _ in range(megabytes):
            chunks.append(bytearray(1024 * 1024))
        return len(chunks)

    def print_stdout(self, msg: str) -> None:
        print(msg, flush=True)
        print(msg, file=sys.stderr, flush=True)

    def argv(self) -> list[str]:
        return list(sys.argv)

    def read_stdin(self) -> str:
        return sys.stdin.read()
