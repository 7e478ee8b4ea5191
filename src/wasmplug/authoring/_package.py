"""Pack, sign and keygen: turn a built component into one signed, self-describing file.

``pack`` embeds a manifest as the ``wasmplug-manifest`` custom section, ``sign`` adds a
wasmsign2 signature (Ed25519) that covers every byte after it, the manifest included,
and ``keygen`` writes a wasmsign2 key pair. They are what ``wasmplug pack``, ``wasmplug
sign`` and ``wasmplug keygen`` run, and what a publisher's build script calls.

Every file is written atomically (a temporary file, ``fsync``, ``os.replace``) and only
when its bytes change, so repeated runs leave modification times alone: packing and
Ed25519 signing are deterministic.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import attrs

from wasmplug._errors import KeyFormatError
from wasmplug._fsutil import write_atomic
from wasmplug._sandbox.manifest import MANIFEST_SECTION, Manifest
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.keys import PublicKey, SecretKey

from ._build import BuiltComponent

__all__ = ["KeyFiles", "PackedComponent", "SignedComponent", "keygen", "pack", "sign"]

Source = str | os.PathLike[str] | bytes
"""A component: a path to a ``.wasm`` file, or its bytes."""


@attrs.frozen
class PackedComponent:
    """A component with its manifest embedded (the ``wasmplug-manifest`` section).

    Attributes:
        path: The file written.
        sha256: SHA-256 of the file, 64 lowercase hex digits.
        size: Its size in bytes.
        manifest: The embedded manifest, parsed.
        removed_signature: True if the input was signed and its signature was removed
            (a signature covers the manifest, so sign the packed file again).
        built: The build it was packed from (:func:`build_project`), else ``None``.
    """

    path: Path
    sha256: str
    size: int
    manifest: Manifest
    removed_signature: bool = False
    built: BuiltComponent | None = None


@attrs.frozen
class SignedComponent:
    """The result of :func:`sign`.

    Attributes:
        path: The signed component (embedded signature), or ``None`` when only a
            detached signature was written.
        signature_file: The detached signature written, or ``None``.
        key_id: The signing key's wasmsign2 key id, lowercase hex (24 digits).
        sha256: SHA-256 of the signed component (or, for a detached signature, of the
            unchanged component), 64 lowercase hex digits.
        size: Size of the signed component (or detached signature) in bytes.
    """

    path: Path | None
    signature_file: Path | None
    key_id: str
    sha256: str
    size: int


@attrs.frozen
class KeyFiles:
    """A key pair written by :func:`keygen`.

    Attributes:
        public_key: The public key, to hand to users (``wasmplug trust add``) or to
            :class:`~wasmplug.TrustedKey`.
        public_key_path: The public key file (wasmsign2 raw: ``0x01`` + 32 bytes).
        secret_key_path: The secret key file (wasmsign2 raw, mode 0600).
        key_id: The wasmsign2 key id, lowercase hex (24 digits).
    """

    public_key: PublicKey
    public_key_path: Path
    secret_key_path: Path
    key_id: str


def _read(source: Source) -> bytes:
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    return Path(source).read_bytes()


def _write_if_changed(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_bytes() != data:
        write_atomic(path, data, mode=mode)


def pack_bytes(
    component: bytes, manifest_text: str, *, source: str = "manifest"
) -> tuple[bytes, Manifest, bool]:
    """Embed ``manifest_text`` into ``component`` (in memory).

    Returns:
        The packed bytes, the parsed manifest, and whether a signature was removed.

    Raises:
        ManifestError: the manifest is invalid (nothing is embedded).
        InvalidComponentError: ``component`` is not a well-formed component.
    """
    manifest = Manifest.from_toml(manifest_text, source=source)  # validate before embedding
    removed = bool(_signing.signatures(component))
    if removed:
        component = _signing.strip_signature(component)
    packed = ws.with_custom_section(component, MANIFEST_SECTION, manifest_text.encode("utf-8"))
    return packed, manifest, removed


def pack(
    component: Source,
    manifest: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str],
) -> PackedComponent:
    """Embed a manifest into a component, as ``wasmplug pack`` does.

    A ``wasmplug-manifest`` section already present is replaced. A signature is
    removed (it would no longer verify): sign the packed file.

    Args:
        component: The component, a path or its bytes.
        manifest: The ``wasmplug.toml`` to embed (validated first; its text is
            embedded verbatim).
        output: Where to write the packed component.

    Returns:
        What was written.

    Raises:
        ManifestError: the manifest is invalid.
        InvalidComponentError: the component is not well-formed.
        OSError: a file cannot be read or written.
    """
    manifest_path = Path(manifest)
    text = manifest_path.read_text(encoding="utf-8")
    packed, parsed, removed = pack_bytes(_read(component), text, source=str(manifest_path))
    out = Path(output)
    _write_if_changed(out, packed)
    return PackedComponent(out, hashlib.sha256(packed).hexdigest(), len(packed), parsed, removed)


def _secret_key(key: SecretKey | str | os.PathLike[str], password: bytes | None) -> SecretKey:
    if isinstance(key, SecretKey):
        return key
    return _signing.load_secret_key(Path(key).read_bytes(), password=password)


def sign(
    component: Source,
    secret_key: SecretKey | str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    public_key: PublicKey | str | os.PathLike[str] | None = None,
    signature_file: str | os.PathLike[str] | None = None,
    password: bytes | None = None,
) -> SignedComponent:
    """Sign a component (wasmsign2 format, Ed25519), as ``wasmplug sign`` does.

    The signature carries the key's default key id, like ``wasmsign2 sign -K``.
    Signing adds to signatures already present (by other keys).

    Args:
        component: The component (normally packed), a path or its bytes.
        secret_key: The key, or a key file (wasmsign2 raw, PEM or OpenSSH).
        output: Where to write the signed component (embedded signature). Required
            unless ``signature_file`` is given.
        public_key: If given (a key or a key file), it must match ``secret_key``: a
            check against signing with the wrong key.
        signature_file: Write (or add to) a detached signature here instead of
            embedding one; with ``output`` too, the unchanged component is copied there.
        password: Password of an encrypted PEM or OpenSSH secret key.

    Returns:
        What was written.

    Raises:
        KeyFormatError: a key file cannot be read, or the public key does not match.
        SignatureError: this key already signed these exact contents.
        InvalidComponentError: the component is not well-formed.
        ValueError: neither ``output`` nor ``signature_file`` was given.
        OSError: a file cannot be read or written.
    """
    if output is None and signature_file is None:
        raise ValueError("give output= (embedded signature) or signature_file= (detached)")
    sk = _secret_key(secret_key, password)
    if public_key is not None:
        pk = (
            public_key
            if isinstance(public_key, PublicKey)
            else _signing.load_public_key(Path(public_key).read_bytes())
        )
        if pk.raw != sk.public_key.raw:
            raise KeyFormatError("the public key does not match the secret key")
    data = _read(component)
    key_id = sk.key_id.hex()
    if signature_file is not None:
        sig_path = Path(signature_file)
        previous = sig_path.read_bytes() if sig_path.exists() else None
        detached = _signing.sign(
            data, sk, key_id=sk.key_id, detached=True, detached_signature=previous
        )
        _write_if_changed(sig_path, detached)
        out = None if output is None else Path(output)
        if out is not None:
            _write_if_changed(out, data)
        sha = hashlib.sha256(data).hexdigest()
        return SignedComponent(out, sig_path, key_id, sha, len(detached))
    assert output is not None
    signed = _signing.sign(data, sk, key_id=sk.key_id)
    out = Path(output)
    _write_if_changed(out, signed)
    return SignedComponent(out, None, key_id, hashlib.sha256(signed).hexdigest(), len(signed))


def keygen(
    public_key: str | os.PathLike[str],
    secret_key: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> KeyFiles:
    """Create an Ed25519 key pair and write it in wasmsign2's raw format.

    The secret key file gets mode 0600. Without ``overwrite`` the secret key is
    created exclusively: if two processes race, one wins and the other gets
    :class:`FileExistsError`, so a key that is in use is never replaced.

    Args:
        public_key: The public key file to write.
        secret_key: The secret key file to write (keep it private).
        overwrite: Replace existing files.

    Returns:
        The key files and the public key.

    Raises:
        FileExistsError: ``secret_key`` exists and ``overwrite`` is false.
        OSError: a file cannot be written.
    """
    pub_path, sec_path = Path(public_key), Path(secret_key)
    if not overwrite and sec_path.exists():
        raise FileExistsError(f"{sec_path} exists; pass overwrite=True to replace it")
    pair = _signing.generate_keypair()
    sec_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = pair.secret_key.to_wasmsign2_bytes()
    if overwrite:
        write_atomic(sec_path, secret, mode=0o600)
    else:
        # Written aside, then hard-linked into place: link() fails if the name exists.
        tmp = sec_path.with_name(f".{sec_path.name}.{os.getpid()}.{threading.get_ident()}")
        write_atomic(tmp, secret, mode=0o600)
        try:
            os.link(tmp, sec_path)
        finally:
            tmp.unlink(missing_ok=True)
    pub_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(pub_path, pair.public_key.to_wasmsign2_bytes())
    return KeyFiles(pair.public_key, pub_path, sec_path, pair.key_id.hex())
