"""Trust: which publisher keys may sign which plugins, and what is revoked.

A :class:`TrustStore` lives in ``platformdirs.user_config_dir("wasmplug")/trust.json``
(machine-managed; edit it with ``wasmplug trust ...``). Applications can also
pass keys in code (``PluginHost(trusted_keys=...)``). Each key may be scoped
to plugin-name patterns (``acme:*``, shell-style as in ``fnmatch``), and a
revocation list names keys (by key id) and component digests (SHA-256).

The name a scope is checked against is the plugin's manifest name. An
embedded manifest (``wasmplug pack``) is covered by the signature, so a
publisher cannot be impersonated by renaming a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from wasmplug._errors import (
    RevokedError,
    SignatureError,
    SignatureInvalidError,
    TrustStoreError,
    UnsignedPluginError,
    UntrustedKeyError,
)
from wasmplug._fsutil import write_atomic

from . import signing as _signing
from .signing import PublicKey

__all__ = ["TrustDecision", "TrustStore", "TrustedKey", "default_trust_path"]


def default_trust_path() -> Path:
    """``platformdirs.user_config_dir("wasmplug")/trust.json``."""
    return Path(platformdirs.user_config_dir("wasmplug")) / "trust.json"


def _scopes(value: Iterable[str]) -> tuple[str, ...]:
    scopes = tuple(value)
    if not scopes:
        raise ValueError("a trusted key needs at least one scope (use '*' for any plugin)")
    return scopes


@attrs.frozen
class TrustedKey:
    """A publisher key and the plugin names it may sign.

    Attributes:
        key: The Ed25519 public key.
        scopes: Shell-style patterns over plugin names (``"acme:*"``); ``("*",)`` = any.
        name: The publisher's display name, for listings and prompts.
    """

    key: PublicKey
    scopes: tuple[str, ...] = attrs.field(default=("*",), converter=_scopes)
    name: str = ""

    @property
    def key_id(self) -> str:
        """The key id, hex (wasmsign2's default key id)."""
        return self.key.key_id.hex()

    def covers(self, plugin_name: str) -> bool:
        """Whether this key may sign a plugin called ``plugin_name``."""
        return any(fnmatch.fnmatchcase(plugin_name, pattern) for pattern in self.scopes)


@attrs.frozen
class TrustDecision:
    """The outcome of a successful trust check.

    Attributes:
        key: The trusted key whose signature verified.
        sha256: Hex SHA-256 of the whole component file.
    """

    key: TrustedKey
    sha256: str


def content_sha256(data: bytes) -> str:
    """SHA-256 (hex) of a component without its signature section: the same for
    every signed copy of the same bytes.

    Raises:
        InvalidComponentError: ``data`` is not a well-formed binary.
    """
    return hashlib.sha256(_signing.strip_signature(data)).hexdigest()


def as_trusted(value: TrustedKey | PublicKey | bytes) -> TrustedKey:
    """Accept a :class:`TrustedKey`, a :class:`PublicKey`, or key-file bytes (any scope)."""
    if isinstance(value, TrustedKey):
        return value
    if isinstance(value, PublicKey):
        return TrustedKey(value)
    return TrustedKey(_signing.load_public_key(value))


class TrustStore:
    """Trusted publisher keys and revocations, persisted as JSON.

    Args:
        path: The store file; defaults to
            ``platformdirs.user_config_dir("wasmplug")/trust.json``. A missing
            file is an empty store.

    Raises:
        TrustStoreError: if the file exists but cannot be read or parsed.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_trust_path()
        self.keys: list[TrustedKey] = []
        self.revoked_keys: set[str] = set()
        self.revoked_digests: set[str] = set()
        self._stamp: tuple[int, int] | None = None
        self._load()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> None:
        """Re-read the file if it changed since it was read (one ``stat`` when it did not).

        A long-running host calls this before every trust check, so a key
        revoked with ``wasmplug trust revoke`` takes effect without a restart.
        """
        if self._file_stamp() != self._stamp:
            self._load()

    def _load(self) -> None:
        self._stamp = self._file_stamp()
        keys: list[TrustedKey] = []
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.keys, self.revoked_keys, self.revoked_digests = [], set(), set()
            return
        except OSError as e:
            raise TrustStoreError(f"cannot read trust store {self.path}: {e}") from None
        try:
            data = json.loads(raw)
            for entry in data.get("keys", []):
                keys.append(
                    TrustedKey(
                        PublicKey(bytes.fromhex(entry["public-key"])),
                        tuple(entry.get("scopes", ["*"])),
                        entry.get("name", ""),
                    )
                )
            revoked_keys = set(data.get("revoked-keys", []))
            revoked_digests = set(data.get("revoked-digests", []))
        except (ValueError, KeyError, TypeError, AttributeError, SignatureError) as e:
            raise TrustStoreError(f"trust store {self.path} is malformed: {e}") from None
        self.keys, self.revoked_keys, self.revoked_digests = keys, revoked_keys, revoked_digests

    @contextlib.contextmanager
    def modify(self) -> Iterator[TrustStore]:
        """Lock the file, re-read it, let the caller change this store, then save.

        Use it for edits that may race with another process (the CLI does):
        ``with store.modify(): store.add(key)``. Nothing is written if the
        block raises.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._load()
            yield self
            self.save()

    def save(self) -> None:
        """Write the store atomically (temporary file + ``os.replace``), mode 0o600.

        The last writer wins; prefer :meth:`modify` when several processes may edit.
        """
        data: dict[str, Any] = {
            "keys": [
                {
                    "public-key": k.key.raw.hex(),
                    "key-id": k.key_id,
                    "scopes": list(k.scopes),
                    "name": k.name,
                }
                for k in self.keys
            ],
            "revoked-keys": sorted(self.revoked_keys),
            "revoked-digests": sorted(self.revoked_digests),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, json.dumps(data, indent=2).encode(), mode=0o600)
        self._stamp = self._file_stamp()

    def add(self, key: TrustedKey) -> None:
        """Trust ``key`` (replacing an entry with the same key id). Call :meth:`save` to persist."""
        self.keys = [k for k in self.keys if k.key_id != key.key_id] + [key]

    def remove(self, key_id: str) -> bool:
        """Stop trusting a key; returns whether it was present."""
        before = len(self.keys)
        self.keys = [k for k in self.keys if k.key_id != key_id]
        return len(self.keys) != before

    def revoke_key(self, key_id: str) -> None:
        """Stop accepting signatures by this key id, even where it is trusted in code.

        A file also signed by another trusted, unrevoked key whose scope covers it
        still loads: that publisher vouches for it.
        """
        self.revoked_keys.add(key_id.lower())

    def revoke_digest(self, sha256: str) -> None:
        """Refuse a component by SHA-256 (hex): either the file's digest, or its
        *content* digest (the file without its signature section, as shown by
        ``wasmplug inspect``). Revoking the content digest also refuses copies
        re-signed with other keys."""
        self.revoked_digests.add(sha256.lower())

    def verify(
        self,
        data: bytes,
        plugin_name: str,
        *,
        extra_keys: Iterable[TrustedKey] = (),
        where: str = "component",
    ) -> TrustDecision:
        """Check that ``data`` is signed by a trusted, unrevoked key whose scope covers
        ``plugin_name``.

        Args:
            data: The component file.
            plugin_name: The manifest name the scopes are matched against.
            extra_keys: Keys the application trusts in code, checked with the store's.
            where: How to name the file in messages.

        Raises:
            RevokedError: the file's digest or its signer's key is revoked.
            UnsignedPluginError: the file carries no signature.
            UntrustedKeyError: no signer is trusted, or the signer's scope does not
                cover ``plugin_name`` (the message names the key id and its scopes).
            SignatureInvalidError: a trusted signer's signature does not match the content.
        """
        sha = hashlib.sha256(data).hexdigest()
        if sha in self.revoked_digests:
            raise RevokedError(f"{where}: component sha256 {sha} is revoked")
        if self.revoked_digests:
            content = content_sha256(data)
            if content in self.revoked_digests:
                raise RevokedError(f"{where}: component content sha256 {content} is revoked")
        try:
            present = _signing.signatures(data)
        except SignatureError as e:
            raise SignatureInvalidError(f"{where}: unreadable signature section: {e}") from e
        if not present:
            raise UnsignedPluginError(
                f"{where} is not signed; sign it with `wasmplug sign` and trust the key "
                "(PluginHost(trusted_keys=...) or `wasmplug trust add`), or pass "
                "allow_unsigned=True for development"
            )
        signer_ids = {s.key_id.hex() for s in present if s.key_id}
        revoked = signer_ids & self.revoked_keys
        candidates = [*extra_keys, *self.keys]
        usable = [k for k in candidates if k.key_id not in self.revoked_keys]
        out_of_scope: list[TrustedKey] = []
        failures: list[str] = []
        anonymous = any(s.key_id is None for s in present)
        for key in usable:
            if key.key_id not in signer_ids and not anonymous:
                continue
            try:
                _signing.verify(data, key.key)
            except SignatureError as e:
                if key.key_id in signer_ids:
                    failures.append(str(e))
                continue
            if key.covers(plugin_name):
                return TrustDecision(key, sha)
            out_of_scope.append(key)
        if out_of_scope:
            key = out_of_scope[0]
            raise UntrustedKeyError(
                f"{where}: key {key.key_id} ({key.name or 'unnamed publisher'}) is trusted only "
                f"for {', '.join(key.scopes)}, not for plugin {plugin_name!r}"
            )
        if failures:
            raise SignatureInvalidError(f"{where}: {'; '.join(failures)}")
        if revoked:
            raise RevokedError(f"{where}: signed by revoked key(s) {', '.join(sorted(revoked))}")
        signers = ", ".join(sorted(signer_ids)) or "(anonymous)"
        raise UntrustedKeyError(f"{where}: signed by key id(s) {signers}, none of which is trusted")
