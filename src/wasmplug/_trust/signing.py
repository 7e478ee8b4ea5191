"""Ed25519 signatures in the wasmsign2 format (WebAssembly tool-conventions ``Signatures.md``).

A signed binary starts with a ``signature`` custom section whose payload is::

    01 01 01                  spec version, content type (module), hash function (SHA-256)
    varuint32 n               number of signed-hash sets, then n times:
      varuint32 len, bytes    one set: varuint32 h, h * 32-byte hashes,
                              varuint32 s, s * (varuint32 len, record)
    record = varuint32 key_id_len, key_id, alg_id (0x01 = Ed25519), varuint32 64, signature

Each signature signs ``b"wasmsig" 01 01 01 || hashes``; the (last) hash is the
SHA-256 of every section after the signature section, re-encoded with minimal
LEB128 sizes. A ``signature_delimiter`` section closes a part and adds a
rolling hash, as wasmsign2 does. A *detached* signature is that same payload
kept in a separate file, and the hash then covers every section.

Keys (wasmsign2 raw, PEM/DER or OpenSSH; key ids) are in :mod:`wasmplug._trust.keys`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import attrs

from wasmplug._errors import (
    InvalidComponentError,
    SignatureError,
    SignatureFormatError,
    SignatureInvalidError,
    SignatureMissingError,
)
from wasmplug._trust import wasm_sections as ws

# The key types are part of signing's API (sign with a SecretKey, verify against
# PublicKeys): re-exported from their module, keys.
from .keys import (
    KeyPair,
    PublicKey,
    SecretKey,
    ed25519_sign,
    ed25519_verifies,
    generate_keypair,
    key_id,
    load_public_key,
    load_secret_key,
)

__all__ = [
    "KeyPair",
    "PublicKey",
    "SecretKey",
    "SignatureInfo",
    "VerifiedSignature",
    "detach_signature",
    "generate_keypair",
    "key_id",
    "load_public_key",
    "load_secret_key",
    "sign",
    "signatures",
    "signed_by",
    "strip_signature",
    "verify",
]

# Defined with the section reader, which the compile cache uses without this module.
SIGNATURE_SECTION, DELIMITER_SECTION = ws.SIGNATURE_SECTION, ws.DELIMITER_SECTION
_VERSION, _CONTENT_TYPE, _SHA256 = 0x01, 0x01, 0x01
_ED25519 = 0x01
_DOMAIN = b"wasmsig"
_MAX_HASHES, _MAX_SIGNATURES = 64, 256  # wasmsign2's parse limits


# -- the signature payload ---------------------------------------------------------------


@attrs.frozen
class _Record:
    key_id: bytes  # empty: no key id
    alg_id: int
    signature: bytes  # Ed25519: the 64-byte signature; other algorithms: the opaque rest
    raw: bytes  # the record as stored, re-emitted verbatim when adding signatures


@attrs.frozen
class _SignedHashes:
    hashes: tuple[bytes, ...]
    records: tuple[_Record, ...]

    def message(self) -> bytes:
        return _DOMAIN + bytes([_VERSION, _CONTENT_TYPE, _SHA256]) + b"".join(self.hashes)

    def encode(self) -> bytes:
        out = [ws.encode_u32_leb(len(self.hashes)), *self.hashes]
        out.append(ws.encode_u32_leb(len(self.records)))
        out += [ws.encode_u32_leb(len(r.raw)) + r.raw for r in self.records]
        return b"".join(out)


def _parse_record(raw: bytes) -> _Record:
    r = ws.ByteReader(raw)
    kid = r.slice("key id")
    alg = r.take(1, "algorithm id")[0]
    if alg != _ED25519:  # unknown algorithm: kept opaque, never verified (as wasmsign2 skips it)
        return _Record(kid, alg, raw[r.pos :], raw)
    sig = r.slice("signature")
    r.done("signature record")
    if len(sig) != 64:
        raise InvalidComponentError(f"Ed25519 signature is {len(sig)} bytes, expected 64")
    return _Record(kid, alg, sig, raw)


def _parse_set(data: bytes) -> _SignedHashes:
    r = ws.ByteReader(data)
    count = r.u32("hash count")
    if count > _MAX_HASHES:
        raise InvalidComponentError(f"too many hashes ({count} > {_MAX_HASHES})")
    hashes_ = tuple(r.take(32, "hash") for _ in range(count))
    count = r.u32("signature count")
    if count > _MAX_SIGNATURES:
        raise InvalidComponentError(f"too many signatures ({count} > {_MAX_SIGNATURES})")
    records = tuple(_parse_record(r.slice("signature record")) for _ in range(count))
    r.done("signed hash set")
    return _SignedHashes(hashes_, records)


def _parse_payload(payload: bytes) -> list[_SignedHashes]:
    """Decode a signature payload; raises SignatureFormatError if malformed or unsupported."""
    try:
        r = ws.ByteReader(bytes(payload))
        version, ctype, hfn = r.take(3, "signature header")
        if (version, ctype, hfn) != (_VERSION, _CONTENT_TYPE, _SHA256):
            raise InvalidComponentError(
                f"unsupported version/content type/hash function {version}/{ctype}/{hfn}"
                " (expected 1/1/1: v1, module, SHA-256)"
            )
        count = r.u32("signed hash set count")
        if count > _MAX_HASHES:
            raise InvalidComponentError(f"too many signed hash sets ({count} > {_MAX_HASHES})")
        sets = [_parse_set(r.slice("signed hash set")) for _ in range(count)]
        r.done("signature data")
    except InvalidComponentError as exc:
        raise SignatureFormatError(f"malformed signature data: {exc}") from None
    return sets


def _encode_payload(sets: Iterable[_SignedHashes]) -> bytes:
    sets = list(sets)
    body = [bytes([_VERSION, _CONTENT_TYPE, _SHA256]), ws.encode_u32_leb(len(sets))]
    body += [ws.encode_u32_leb(len(enc)) + enc for enc in (s.encode() for s in sets)]
    return b"".join(body)


def _split(
    data: bytes, detached_signature: bytes | None
) -> tuple[bytes, list[ws.Section], bytes | None]:
    """Return (header, content sections, signature payload or None)."""
    header, sections = ws.parse(bytes(data))
    if detached_signature is not None:
        return header, sections, bytes(detached_signature)
    if sections and sections[0].name == SIGNATURE_SECTION:
        return header, sections[1:], sections[0].data
    return header, sections, None


def _hashes(sections: list[ws.Section]) -> tuple[bytes, ...]:
    """Rolling SHA-256 over the re-encoded sections, one digest per delimiter plus the end."""
    hasher, out, last_was_delimiter = hashlib.sha256(), [], False
    for section in sections:
        hasher.update(section.encode())
        last_was_delimiter = section.name == DELIMITER_SECTION
        if last_was_delimiter:
            out.append(hasher.digest())
    if not last_was_delimiter:
        out.append(hasher.digest())
    return tuple(out)


# -- public API -------------------------------------------------------------------------


@attrs.frozen
class SignatureInfo:
    """One signature record found in a file (not verified).

    Attributes:
        key_id: The key id stored with the signature, or ``None`` if anonymous.
        alg_id: The algorithm id (``1`` = Ed25519).
        hashes: The hashes the signature covers.
    """

    key_id: bytes | None
    alg_id: int
    hashes: tuple[bytes, ...]


@attrs.frozen
class VerifiedSignature:
    """The signature that verified.

    Attributes:
        public_key: The key it verified with.
        key_id: The key id stored with the signature, or ``None`` if anonymous.
        content_hash: SHA-256 of the signed sections (re-encoded).
        detached: Whether it came from a detached signature.
    """

    public_key: PublicKey
    key_id: bytes | None
    content_hash: bytes
    detached: bool


def sign(
    data: bytes,
    sk: SecretKey | KeyPair,
    *,
    key_id: bytes | None = None,
    detached: bool = False,
    detached_signature: bytes | None = None,
) -> bytes:
    """Sign a module or component, adding to any signatures already present.

    Like wasmsign2, the new signature joins the existing set whose hashes are
    the same, or starts a new set. Like wasmsign2's library, no key id is
    written unless one is given; pass ``key_id=sk.key_id`` for the default one
    (what ``wasmsign2 sign -K pk`` writes).

    Args:
        data: The binary (module or component), signed or not.
        sk: The signing key.
        key_id: Key id stored with the signature (``None``: none).
        detached: Return the detached signature instead of the signed binary.
            The hash then covers every section of ``data`` as it is.
        detached_signature: With ``detached``, an existing detached signature
            to add to.

    Returns:
        The signed binary (all sections re-encoded with minimal sizes, the
        ``signature`` section first), or the detached signature payload.

    Raises:
        InvalidComponentError: ``data`` is malformed, or has a ``signature``
            section that is not the first section.
        SignatureFormatError: The existing signature data is malformed.
        SignatureError: This key already signed these exact contents, or a
            limit of 64 sets / 256 signatures would be exceeded.
        ValueError: ``detached_signature`` was given without ``detached``.
    """
    secret = sk.secret_key if isinstance(sk, KeyPair) else sk
    if detached:
        header, content = ws.parse(bytes(data))
        previous = None if detached_signature is None else bytes(detached_signature)
    elif detached_signature is not None:
        raise ValueError("detached_signature is only used with detached=True")
    else:
        header, content, previous = _split(data, None)
        if any(s.name == SIGNATURE_SECTION for s in content):
            raise InvalidComponentError("a 'signature' custom section must be the first section")
    sets = _parse_payload(previous) if previous is not None else []
    hashes_ = _hashes(content)
    message = _SignedHashes(hashes_, ()).message()
    signature = ed25519_sign(secret, message)
    kid = bytes(key_id or b"")
    raw = ws.encode_u32_leb(len(kid)) + kid + bytes([_ED25519])
    record = _Record(kid, _ED25519, signature, raw + ws.encode_u32_leb(64) + signature)
    for i, existing in enumerate(sets):
        if existing.hashes != hashes_:
            continue
        if any(r.signature == signature for r in existing.records):
            raise SignatureError(f"already signed by key {secret.key_id.hex()}")
        if len(existing.records) >= _MAX_SIGNATURES:
            raise SignatureError(f"too many signatures (max {_MAX_SIGNATURES})")
        sets[i] = _SignedHashes(hashes_, (*existing.records, record))
        break
    else:
        if len(sets) >= _MAX_HASHES:
            raise SignatureError(f"too many signed hash sets (max {_MAX_HASHES})")
        sets.append(_SignedHashes(hashes_, (record,)))
    payload = _encode_payload(sets)
    if detached:
        return payload
    return ws.build(header, [ws.Section.custom(SIGNATURE_SECTION, payload), *content])


def verify(
    data: bytes, pk: PublicKey, *, detached_signature: bytes | None = None
) -> VerifiedSignature:
    """Verify that ``pk`` signed the whole binary.

    Records carrying a key id other than ``pk.key_id`` are skipped (as
    wasmsign2 does); anonymous records are tried.

    Args:
        data: The binary.
        pk: The public key.
        detached_signature: A detached signature; then the hash covers every
            section of ``data``.

    Returns:
        The signature that verified.

    Raises:
        InvalidComponentError: ``data`` is not a well-formed module/component.
        SignatureMissingError: There is no signature at all.
        SignatureInvalidError: No signature verifies; the message names the
            key id (hex) and why.
    """
    kid = pk.key_id.hex()
    _, content, payload = _split(data, detached_signature)
    if payload is None:
        raise SignatureMissingError(
            f"not signed: no 'signature' section first in the binary (key {kid})"
        )
    sets = _parse_payload(payload)
    if not any(s.records for s in sets):
        raise SignatureMissingError(f"the signature data holds no signatures (key {kid})")
    computed = _hashes(content)
    others: set[str] = set()
    tried = signed_other_content = False
    for signed in sets:
        message = signed.message()
        for rec in signed.records:
            if rec.alg_id != _ED25519:
                continue
            if rec.key_id and rec.key_id != pk.key_id:
                others.add(rec.key_id.hex())
                continue
            tried = True
            if not ed25519_verifies(pk, rec.signature, message):
                continue
            if signed.hashes == computed:  # every part, as the spec requires (no prefixes)
                return VerifiedSignature(
                    pk, rec.key_id or None, computed[-1], detached_signature is not None
                )
            signed_other_content = True
    if signed_other_content:
        reason = "the content was modified after signing (its hashes differ from the signed ones)"
    elif not tried and others:
        reason = f"signed only by other key ids ({', '.join(sorted(others))})"
    elif not tried:
        reason = "no Ed25519 signature present"
    else:
        reason = "no signature verifies with this key (wrong key, or tampered signature or hashes)"
    raise SignatureInvalidError(f"signature check failed for key {kid}: {reason}")


def signed_by(data: bytes, keys: Iterable[PublicKey]) -> list[PublicKey]:
    """Which of ``keys`` made a valid signature over all of ``data``'s content.

    Unlike :func:`verify`, the key id stored in a record is ignored: every
    Ed25519 record is tried with every key. Revocation uses this, so a file
    signed by a revoked key is found whatever key id its record claims (none,
    or another key's). The content is parsed and hashed once.

    Returns:
        The keys whose signature verifies, in the order given; empty if the
        file is unsigned.

    Raises:
        InvalidComponentError: ``data`` is not a well-formed module/component.
        SignatureFormatError: The signature data is malformed.
    """
    keys = list(keys)
    _, content, payload = _split(data, None)
    if payload is None or not keys:
        return []
    sets = _parse_payload(payload)
    computed = _hashes(content)
    found: list[PublicKey] = []
    for key in keys:
        if any(
            rec.alg_id == _ED25519 and ed25519_verifies(key, rec.signature, signed.message())
            for signed in sets
            if signed.hashes == computed
            for rec in signed.records
        ):
            found.append(key)
    return found


def signatures(data: bytes, *, detached_signature: bytes | None = None) -> list[SignatureInfo]:
    """List the signature records of a binary (or of a detached signature), unverified.

    Returns:
        One entry per record, in file order; empty if the binary is unsigned.

    Raises:
        InvalidComponentError: ``data`` is malformed.
        SignatureFormatError: The signature data is malformed.
    """
    _, _, payload = _split(data, detached_signature)
    if payload is None:
        return []
    return [
        SignatureInfo(r.key_id or None, r.alg_id, s.hashes)
        for s in _parse_payload(payload)
        for r in s.records
    ]


def detach_signature(data: bytes) -> tuple[bytes, bytes]:
    """Split a signed binary into ``(unsigned binary, detached signature)``.

    The remaining sections are kept byte for byte.

    Raises:
        InvalidComponentError: ``data`` is malformed.
        SignatureMissingError: The binary has no embedded signature.
    """
    data = bytes(data)
    spans = list(ws.iter_section_spans(data))  # validates the whole binary
    if not spans or spans[0][0].name != SIGNATURE_SECTION:
        raise SignatureMissingError("not signed: no 'signature' section first in the binary")
    first, _, end = spans[0]
    return data[:8] + data[end:], first.data


def strip_signature(data: bytes) -> bytes:
    """Remove the embedded signature, keeping the other sections byte for byte.

    Returns ``data`` unchanged (after validating it) if it is not signed.

    Raises:
        InvalidComponentError: ``data`` is malformed.
    """
    try:
        return detach_signature(data)[0]
    except SignatureMissingError:
        return bytes(data)
