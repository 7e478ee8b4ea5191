"""Guest side of the ``prober`` test plugin (componentize-py).

It does what a hostile plugin with a read-write grant can do to the host
directories it sees: rename, symlink, create, then trap so that the host
creates a fresh instance and preopens its grants again.
"""

import os

import wit_world
from componentize_py_types import Err


def _fail(e: Exception) -> Err:
    return Err(f"{type(e).__name__}: {e}")


class WitWorld(wit_world.WitWorld):
    def read_file(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except Exception as e:
            raise _fail(e) from None

    def write_file(self, path: str, contents: str) -> None:
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(contents)
        except Exception as e:
            raise _fail(e) from None

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except Exception as e:
            raise _fail(e) from None

    def move_path(self, src: str, dst: str) -> None:
        try:
            os.rename(src, dst)
        except Exception as e:
            raise _fail(e) from None

    def make_symlink(self, target: str, link: str) -> None:
        try:
            os.symlink(target, link)
        except Exception as e:
            raise _fail(e) from None

    def make_dir(self, path: str) -> None:
        try:
            os.mkdir(path)
        except Exception as e:
            raise _fail(e) from None

    def panic(self, msg: str) -> None:
        raise RuntimeError(msg)
