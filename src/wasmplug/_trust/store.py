"""Trust: which publisher keys may sign which plugins, and what is revoked.

A :class:`TrustStore` lives in ``platformdirs.user_config_dir("wasmplug")/trust.json``
(machine-managed; edit it with ``wasmplug trust ...``). Applications can also
pass keys in code (``PluginHost(trusted_keys=...)``). Each key may be scoped
to plugin-name patterns (``acme:*``, shell-style as in ``fnmatch``), and a
revocation list names keys and component digests (SHA-256).

A revoked key is recognised by *verifying* the file's signatures against its
public key, whatever key id a signature record claims (the id is not signed):
a record with no key id, or another key's id, does not hide it. The public
key of a revoked key is kept in the store when it is known (a trusted key, or
one passed to :meth:`TrustStore.revoke_key`); a key revoked by id alone is
recognised by the ids the records claim.

The name a scope is checked against is the plugin's manifest name. An
embedded manifest (``wasmplug pack``) is covered by the signature, so a
publisher cannot be impersonated by renaming a file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from wasmplug._errors import (
    RevokedError,
    SignatureError,
    SignatureFormatError,
    SignatureInvalidError,
    TrustStoreError,
    UnsignedPluginError,
    UntrustedKeyError,
)
from wasmplug._fsutil import file_lock
from wasmplug._jsonstore import (
    Invalid,
    JsonStore,
    as_dict,
    as_hex,
    as_list,
    as_str,
    as_str_list,
    field,
)

from . import signing as _signing
from .signing import PublicKey

__all__ = ["TrustDecision", "TrustStore", "TrustedKey", "default_trust_path"]


def default_trust_path() -> Path:
    """``platformdirs.user_config_dir("wasmplug")/trust.json``."""
    return Path(platformdirs.user_config_dir("wasmplug")) / "trust.json"


def _scopes(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise TypeError(f"scopes must be a sequence of name patterns, not a string: {value!r}")
    scopes = tuple(value)
    for scope in scopes:
        if not isinstance(scope, str):
            raise TypeError(f"a scope is a name pattern string, got {type(scope).__name__}")
    if not scopes:
        raise ValueError("a trusted key needs at least one scope (use '*' for any plugin)")
    return scopes


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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


@attrs.define
class _TrustDocument:
    """The trust store file, typed."""

    keys: list[TrustedKey] = attrs.Factory(list)
    revoked_keys: set[str] = attrs.Factory(set)
    revoked_digests: set[str] = attrs.Factory(set)
    revoked_public_keys: dict[str, PublicKey] = attrs.Factory(dict)


def _parse_key(value: Any, where: str) -> TrustedKey:
    entry = as_dict(value, where)
    raw = field(entry, "public-key", where, as_hex)
    scopes = field(entry, "scopes", where, as_str_list, ["*"])
    name = field(entry, "name", where, as_str, "")
    field(entry, "key-id", where, as_str, "")  # informational; recomputed from the key
    try:
        return TrustedKey(PublicKey(raw), tuple(scopes), name)
    except (ValueError, SignatureError) as e:
        raise Invalid(f"{where}: {e}") from None


def _parse_trust(data: Any) -> _TrustDocument:
    doc = as_dict(data, "")
    keys = [_parse_key(v, f"keys[{i}]") for i, v in enumerate(field(doc, "keys", "", as_list, []))]
    revoked_public: dict[str, PublicKey] = {}
    table = field(doc, "revoked-public-keys", "", as_dict, {})
    for kid, value in table.items():
        try:
            pk = PublicKey(as_hex(value, f"revoked-public-keys.{kid}"))
        except SignatureError as e:
            raise Invalid(f"revoked-public-keys.{kid}: {e}") from None
        revoked_public[pk.key_id.hex()] = pk
    return _TrustDocument(
        keys,
        {k.lower() for k in field(doc, "revoked-keys", "", as_str_list, [])},
        {d.lower() for d in field(doc, "revoked-digests", "", as_str_list, [])},
        revoked_public,
    )


def _dump_trust(doc: _TrustDocument) -> dict[str, Any]:
    return {
        "keys": [
            {
                "public-key": k.key.raw.hex(),
                "key-id": k.key_id,
                "scopes": list(k.scopes),
                "name": k.name,
            }
            for k in doc.keys
        ],
        "revoked-keys": sorted(doc.revoked_keys),
        "revoked-digests": sorted(doc.revoked_digests),
        "revoked-public-keys": {
            kid: pk.raw.hex() for kid, pk in sorted(doc.revoked_public_keys.items())
        },
    }


class TrustStore:
    """Trusted publisher keys and revocations, persisted as JSON.

    Args:
        path: The store file; defaults to
            ``platformdirs.user_config_dir("wasmplug")/trust.json``. A missing
            file is an empty store.

    Attributes:
        keys: The trusted keys.
        revoked_keys: Revoked key ids (hex).
        revoked_digests: Revoked component digests (hex SHA-256, file or content).
        revoked_public_keys: Key id -> public key, for revoked keys whose key is known.

    Raises:
        TrustStoreError: if the file exists but cannot be read or parsed, or a
            field has the wrong type (the message names the field).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._file = JsonStore(
            path if path is not None else default_trust_path(),
            parse=_parse_trust,
            dump=_dump_trust,
            empty=_TrustDocument,
            error=TrustStoreError,
            what="trust store",
        )
        self.path = self._file.path
        self._doc = _TrustDocument()
        self._stamp: tuple[int, int] | None = None
        self._load()

    @property
    def keys(self) -> list[TrustedKey]:
        return self._doc.keys

    @keys.setter
    def keys(self, value: list[TrustedKey]) -> None:
        self._doc.keys = list(value)

    @property
    def revoked_keys(self) -> set[str]:
        return self._doc.revoked_keys

    @property
    def revoked_digests(self) -> set[str]:
        return self._doc.revoked_digests

    @property
    def revoked_public_keys(self) -> dict[str, PublicKey]:
        return self._doc.revoked_public_keys

    def refresh(self) -> None:
        """Re-read the file if it changed since it was read (one ``stat`` when it did not).

        A long-running host calls this before every trust check, so a key
        revoked with ``wasmplug trust revoke`` takes effect without a restart.
        """
        if self._file.stamp() != self._stamp:
            self._load()

    def _load(self) -> None:
        self._stamp = self._file.stamp()
        self._doc = self._file.read()

    @contextlib.contextmanager
    def modify(self) -> Iterator[TrustStore]:
        """Lock the file, re-read it, let the caller change this store, then save.

        Use it for edits that may race with another process (the CLI does):
        ``with store.modify(): store.add(key)``. Nothing is written if the
        block raises.
        """
        with file_lock(self._file.lock_path):
            self._load()
            yield self
            self.save()

    def save(self) -> None:
        """Write the store atomically (temporary file + ``os.replace``), mode 0o600.

        The last writer wins; prefer :meth:`modify` when several processes may edit.
        """
        self._file.write(self._doc)
        self._stamp = self._file.stamp()

    def add(self, key: TrustedKey) -> None:
        """Trust ``key`` (replacing an entry with the same key id). Call :meth:`save` to persist."""
        self.keys = [k for k in self.keys if k.key_id != key.key_id] + [key]

    def remove(self, key_id: str) -> bool:
        """Stop trusting a key; returns whether it was present."""
        before = len(self.keys)
        self.keys = [k for k in self.keys if k.key_id != key_id.lower()]
        return len(self.keys) != before

    def revoke_key(self, key: str | PublicKey) -> None:
        """Stop accepting signatures by this key, even where it is trusted in code.

        Args:
            key: The key, or its key id (hex). Give the key (or trust it first)
                so that signatures are matched by verification, not only by
                the key id their records claim.

        A file also signed by another trusted, unrevoked key whose scope covers it
        still loads: that publisher vouches for it.
        """
        if isinstance(key, PublicKey):
            kid = key.key_id.hex()
            self.revoked_public_keys[kid] = key
        else:
            kid = key.lower()
            known = next((k.key for k in self.keys if k.key_id == kid), None)
            if known is not None:
                self.revoked_public_keys[kid] = known
        self.revoked_keys.add(kid)

    def revoke_digest(self, sha256: str) -> None:
        """Refuse a component by SHA-256 (hex): either the file's digest, or its
        *content* digest (the file without its signature section, as shown by
        ``wasmplug inspect``). Revoking the content digest also refuses copies
        re-signed with other keys.

        Raises:
            ValueError: ``sha256`` is not 64 hexadecimal digits (a shortened or mistyped
                digest would never match anything, and the revocation would silently not
                apply).
        """
        digest = sha256.strip().lower()
        if _SHA256_HEX.fullmatch(digest) is None:
            raise ValueError(f"{sha256!r} is not a hex SHA-256 (64 digits)")
        self.revoked_digests.add(digest)

    def check(
        self,
        data: bytes,
        plugin_name: str,
        *,
        extra_keys: Iterable[TrustedKey] = (),
        where: str = "component",
        allow_unsigned: bool = False,
    ) -> TrustedKey | None:
        """The one trust decision, used by ``load``, ``install`` and the CLI.

        Returns:
            The trusted key that vouches for ``data`` (see :meth:`verify`); or,
            with ``allow_unsigned``, ``None`` when there is none (unsigned,
            untrusted, or a signature that does not verify), so an unsigned
            load still records only a signer it can prove.

        Raises:
            RevokedError: always, even with ``allow_unsigned``.
            SignatureError: without ``allow_unsigned``, as :meth:`verify`
                (:class:`UnsignedPluginError` is one).
        """
        try:
            return self.verify(data, plugin_name, extra_keys=extra_keys, where=where).key
        except RevokedError:
            raise
        except SignatureError:
            if not allow_unsigned:
                raise
            return None

    def is_revoked(
        self, data: bytes, plugin_name: str, *, extra_keys: Iterable[TrustedKey] = ()
    ) -> str | None:
        """Why ``data`` would be refused as revoked (the :class:`RevokedError` message),
        or ``None``. The same decision as :meth:`check`, for listings."""
        try:
            self.check(data, plugin_name, extra_keys=extra_keys, allow_unsigned=True)
        except RevokedError as e:
            return str(e)
        except SignatureError:  # pragma: no cover - check() only raises RevokedError here
            return None
        return None

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
            RevokedError: the file's digest is revoked; or no trusted, unrevoked key
                vouches for it and a revoked key signed it (found by verifying
                against the revoked keys, whatever key id the record claims) or a
                record claims a revoked key id.
            UnsignedPluginError: the file carries no signature.
            UntrustedKeyError: no signer is trusted, or the signer's scope does not
                cover ``plugin_name`` (the message names the key id and its scopes).
            SignatureInvalidError: a trusted signer's signature does not match the
                content, or the signature section is malformed.
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
            raise SignatureFormatError(f"{where}: unreadable signature section: {e}") from e
        if not present:
            raise UnsignedPluginError(
                f"{where} is not signed; sign it with `wasmplug sign` and trust the key "
                "(PluginHost(trusted_keys=...) or `wasmplug trust add`), or pass "
                "allow_unsigned=True for development"
            )
        signer_ids = {s.key_id.hex() for s in present if s.key_id}
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
        # Nothing trusted vouches for it. Was it signed by a revoked key? Verify
        # against every revoked key we know (the key id in a record is not signed,
        # so it can be missing or false), and also honour claimed revoked ids.
        revoked_keys = dict(self.revoked_public_keys)
        revoked_keys.update((k.key_id, k.key) for k in candidates if k.key_id in self.revoked_keys)
        proven = {pk.key_id.hex() for pk in _signing.signed_by(data, revoked_keys.values())}
        revoked = proven | (signer_ids & self.revoked_keys)
        if revoked:
            raise RevokedError(f"{where}: signed by revoked key(s) {', '.join(sorted(revoked))}")
        if out_of_scope:
            key = out_of_scope[0]
            raise UntrustedKeyError(
                f"{where}: key {key.key_id} ({key.name or 'unnamed publisher'}) is trusted only "
                f"for {', '.join(key.scopes)}, not for plugin {plugin_name!r}"
            )
        if failures:
            raise SignatureInvalidError(f"{where}: {'; '.join(failures)}")
        signers = ", ".join(sorted(signer_ids)) or "(anonymous)"
        raise UntrustedKeyError(f"{where}: signed by key id(s) {signers}, none of which is trusted")
