"""One JSON document in one file: parsed into typed records, locked while changed,
replaced atomically. The trust store, the grant store and the registry index use it.

- :meth:`JsonStore.read` turns *every* failure (unreadable file, bad UTF-8, bad
  JSON, nesting deep enough to hit Python's recursion limit, a field of the
  wrong type) into the store's own :class:`~wasmplug.WasmplugError`, whose
  message names the file and the field. A missing file is the empty document.
- :meth:`JsonStore.edit` holds the store's lock (:func:`~wasmplug._fsutil.file_lock`),
  re-reads, yields the document to change in place, and writes it back
  atomically if it changed.
- The ``field``/``as_*`` helpers read a parsed JSON value with type checks:
  ``"scopes": "acme:*"`` is an error, never six one-character scopes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from ._fsutil import file_lock, write_atomic

__all__ = [
    "Invalid",
    "JsonStore",
    "as_bool",
    "as_dict",
    "as_float",
    "as_hex",
    "as_list",
    "as_opt_str",
    "as_str",
    "as_str_list",
    "encode",
    "field",
]

T = TypeVar("T")
_REQUIRED: Any = object()


class Invalid(ValueError):
    """A field of a JSON document has the wrong type or value."""


def as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{where or 'the document'}: expected an object, got {_kind(value)}")
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise Invalid(f"{where}: expected an array, got {_kind(value)}")
    return value


def as_hex(value: Any, where: str) -> bytes:
    text = as_str(value, where)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise Invalid(f"{where}: expected hexadecimal digits, got {text[:80]!r}") from None


def as_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where}: expected a string, got {_kind(value)}")
    return value


def as_opt_str(value: Any, where: str) -> str | None:
    return None if value is None else as_str(value, where)


def as_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{where}: expected true or false, got {_kind(value)}")
    return value


def as_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{where}: expected a number, got {_kind(value)}")
    return float(value)


def as_str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise Invalid(f"{where}: expected an array of strings, got {_kind(value)}")
    return [as_str(item, f"{where}[{i}]") for i, item in enumerate(value)]


def field(
    obj: Mapping[str, Any],
    key: str,
    where: str,
    convert: Callable[[Any, str], T],
    default: Any = _REQUIRED,
) -> T:
    """``convert(obj[key])``; ``convert(default)`` if the key is absent (required
    without a default)."""
    path = f"{where}.{key}" if where else key
    if key not in obj:
        if default is _REQUIRED:
            raise Invalid(f"{path}: missing")
        return convert(default, path)
    return convert(obj[key], path)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def encode(document: Any) -> bytes:
    """The canonical bytes of a JSON document (sorted keys, indented, final newline)."""
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


class JsonStore(Generic[T]):
    """A typed JSON document in ``path``.

    Args:
        path: The file.
        parse: Parsed JSON -> the document; raises :class:`Invalid` (or any
            ``ValueError``/``TypeError``/``KeyError``) on bad input.
        dump: The document -> JSON-able data.
        empty: The document of a missing file.
        error: Builds the store's exception from a message.
        what: How messages name the file (``"trust store"``).
        mode: Permission bits of the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        parse: Callable[[Any], T],
        dump: Callable[[T], Any],
        empty: Callable[[], T],
        error: Callable[[str], Exception],
        what: str,
        mode: int = 0o600,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._parse = parse
        self._dump = dump
        self._empty = empty
        self._error = error
        self._what = what
        self._mode = mode

    def stamp(self) -> tuple[int, int] | None:
        """``(mtime_ns, size)`` of the file, or ``None`` if it does not exist."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def read(self) -> T:
        """The document (the empty one if the file does not exist).

        Raises:
            The store's error: the file cannot be read, is not JSON, or does not parse.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return self._empty()
        except OSError as e:
            raise self._error(f"cannot read {self._what} {self.path}: {e}") from None
        return self.parse_bytes(raw)

    def parse_bytes(self, raw: bytes) -> T:
        """Parse the file's bytes (see :meth:`read`)."""
        try:
            return self._parse(json.loads(raw))
        except RecursionError:
            raise self._error(f"{self._what} {self.path} is malformed: nested too deeply") from None
        except (ValueError, TypeError, KeyError) as e:  # JSON, UTF-8 and field errors
            raise self._error(f"{self._what} {self.path} is malformed: {e}") from None

    def write(self, document: T, *, tmp_dir: Path | None = None) -> None:
        """Replace the file with ``document``, atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, encode(self._dump(document)), mode=self._mode, tmp_dir=tmp_dir)

    @contextlib.contextmanager
    def edit(self) -> Iterator[T]:
        """Lock, re-read, yield the document to change in place, write it if it changed.

        Nothing is written if the block raises.
        """
        with file_lock(self.lock_path):
            document = self.read()
            before = encode(self._dump(document))
            yield document
            if encode(self._dump(document)) != before:
                self.write(document)
