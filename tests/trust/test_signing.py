"""Tests for wasmplug._trust.signing: wasmsign2-format Ed25519 signatures."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import wasmtime
import wasmtime.component
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmplug._errors import (
    InvalidComponentError,
    KeyFormatError,
    SignatureError,
    SignatureFormatError,
    SignatureInvalidError,
    SignatureMissingError,
)
from wasmplug._trust.signing import (
    KeyPair,
    PublicKey,
    SecretKey,
    detach_signature,
    generate_keypair,
    key_id,
    load_public_key,
    load_secret_key,
    sign,
    signatures,
    signed_by,
    strip_signature,
    verify,
)
from wasmplug._trust.wasm_sections import (
    Section,
    build,
    encode_u32_leb,
    get_custom_section,
    iter_section_spans,
    parse,
    with_custom_section,
)

MODULE = bytes(wasmtime.wat2wasm('(module (func (export "f") (result i32) i32.const 7))'))
COMPONENT = bytes(
    wasmtime.wat2wasm(
        '(component (core module $m (func (export "f"))) (core instance (instantiate $m)))'
    )
)
MANIFEST = "wasmplug-manifest"
KP1, KP2, KP3 = generate_keypair(), generate_keypair(), generate_keypair()
FAILS = (SignatureError, InvalidComponentError)


def _signed_component() -> bytes:
    return sign(with_custom_section(COMPONENT, MANIFEST, b'name = "demo"'), KP1.secret_key)


SIGNED = _signed_component()


@pytest.mark.parametrize("binary", [MODULE, COMPONENT], ids=["module", "component"])
def test_sign_verify_roundtrip(binary: bytes) -> None:
    signed = sign(binary, KP1.secret_key)
    assert signed[:8] == binary[:8]
    assert next(iter_section_spans(signed))[0].name == "signature"
    ok = verify(signed, KP1.public_key)
    assert ok.public_key == KP1.public_key
    assert ok.key_id is None
    assert not ok.detached
    assert strip_signature(signed) == binary
    if binary is COMPONENT:
        wasmtime.component.Component(wasmtime.Engine(), signed)
    else:
        wasmtime.Module(wasmtime.Engine(), signed)


def test_exact_wasmsign2_layout() -> None:
    """Byte layout rebuilt independently from wasmsign2's serializer (sig_sections.rs)."""
    seed = bytes(range(32))
    sk = SecretKey(seed)
    signed = sign(MODULE, sk, key_id=sk.key_id)
    # wasmsign2's simple verifier hashes the raw bytes after the signature section
    rest = MODULE[8:]
    digest = hashlib.sha256(rest).digest()
    sig = Ed25519PrivateKey.from_private_bytes(seed).sign(b"wasmsig\x01\x01\x01" + digest)
    kid = sk.key_id
    record = bytes([len(kid)]) + kid + b"\x01" + bytes([64]) + sig
    signed_hashes = b"\x01" + digest + b"\x01" + bytes([len(record)]) + record
    payload = b"\x01\x01\x01" + b"\x01" + bytes([len(signed_hashes)]) + signed_hashes
    section = b"\x09signature" + payload
    expected = MODULE[:8] + b"\x00" + encode_u32_leb(len(section)) + section + rest
    assert signed == expected
    verified = verify(signed, sk.public_key)
    assert (verified.key_id, verified.content_hash, verified.detached) == (kid, digest, False)


def test_an_empty_binary_is_signed_over_the_hash_of_nothing() -> None:
    empty = MODULE[:8]  # the header alone: no sections
    signed = sign(empty, KP1)
    assert [i.hashes for i in signatures(signed)] == [(hashlib.sha256(b"").digest(),)]
    verify(signed, KP1.public_key)


def test_key_id_is_hmac_of_public_key() -> None:
    pk = KP1.public_key
    expected = hmac.new(pk.raw, b"key_id", hashlib.sha256).digest()[:12]
    assert key_id(pk) == key_id(pk.raw) == pk.key_id == KP1.key_id == expected
    assert KP1.secret_key.key_id == expected
    assert len(pk.key_id) == 12


def test_manifest_is_covered() -> None:
    assert get_custom_section(SIGNED, MANIFEST) == b'name = "demo"'
    verify(SIGNED, KP1.public_key)
    tampered = with_custom_section(SIGNED, MANIFEST, b'name = "evil"')
    with pytest.raises(SignatureInvalidError, match=r"modified after signing"):
        verify(tampered, KP1.public_key)
    moved = with_custom_section(SIGNED, "extra", b"")
    with pytest.raises(SignatureInvalidError, match=KP1.public_key.key_id.hex()):
        verify(moved, KP1.public_key)


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_any_single_byte_flip_fails(data: st.DataObject) -> None:
    pos = data.draw(st.integers(min_value=8, max_value=len(SIGNED) - 1))
    mask = data.draw(st.integers(min_value=1, max_value=255))
    flipped = bytearray(SIGNED)
    flipped[pos] ^= mask
    with pytest.raises(FAILS):
        verify(bytes(flipped), KP1.public_key)


def test_every_position_flip_and_truncation_fails() -> None:
    signed = sign(MODULE, KP1.secret_key)
    for pos in range(8, len(signed)):
        for mask in (0x01, 0x80):
            flipped = bytearray(signed)
            flipped[pos] ^= mask
            with pytest.raises(FAILS):
                verify(bytes(flipped), KP1.public_key)
    for cut in range(len(signed)):
        with pytest.raises(FAILS):
            verify(signed[:cut], KP1.public_key)
    with pytest.raises(SignatureMissingError):
        verify(signed[:8], KP1.public_key)


@given(st.integers(min_value=0, max_value=len(SIGNED) - 1))
@settings(max_examples=100, deadline=None)
def test_truncation_fails(cut: int) -> None:
    with pytest.raises(FAILS):
        verify(SIGNED[:cut], KP1.public_key)


def test_multi_signature() -> None:
    once = sign(MODULE, KP1.secret_key)
    twice = sign(once, KP2.secret_key, key_id=KP2.key_id)
    assert verify(twice, KP1.public_key).key_id is None
    assert verify(twice, KP2.public_key).key_id == KP2.key_id
    with pytest.raises(SignatureInvalidError, match=KP3.key_id.hex()):
        verify(twice, KP3.public_key)
    infos = signatures(twice)
    assert [i.key_id for i in infos] == [None, KP2.key_id]
    assert infos[0].hashes == infos[1].hashes  # one set, two signatures
    assert parse(twice)[1][1:] == parse(MODULE)[1]
    with pytest.raises(SignatureError, match="already signed"):
        sign(twice, KP2.secret_key, key_id=KP2.key_id)
    with pytest.raises(SignatureError, match="already signed"):
        sign(twice, KP1.secret_key, key_id=KP1.key_id)  # same key, other key id


def test_signed_only_by_other_key_ids() -> None:
    signed = sign(sign(MODULE, KP1, key_id=KP1.key_id), KP2, key_id=KP2.key_id)
    with pytest.raises(SignatureInvalidError) as info:
        verify(signed, KP3.public_key)
    message = str(info.value)
    assert KP3.key_id.hex() in message
    assert f"other key ids ({', '.join(sorted([KP1.key_id.hex(), KP2.key_id.hex()]))})" in message


def test_new_content_starts_a_new_set() -> None:
    signed = sign(MODULE, KP1.secret_key)
    edited = with_custom_section(signed, "late", b"x")
    resigned = sign(edited, KP2.secret_key)
    assert len({i.hashes for i in signatures(resigned)}) == 2
    verify(resigned, KP2.public_key)
    with pytest.raises(SignatureInvalidError, match="modified after signing"):
        verify(resigned, KP1.public_key)


def test_wrong_key_and_unsigned() -> None:
    with pytest.raises(SignatureInvalidError, match=f"key {KP2.key_id.hex()}.*wrong key"):
        verify(SIGNED, KP2.public_key)
    with pytest.raises(SignatureMissingError, match=KP1.key_id.hex()):
        verify(MODULE, KP1.public_key)
    assert signatures(MODULE) == []
    assert strip_signature(MODULE) == MODULE
    with pytest.raises(SignatureMissingError, match="not signed"):
        detach_signature(MODULE)
    with pytest.raises(InvalidComponentError):
        verify(b"not wasm", KP1.public_key)


def test_detached() -> None:
    sig = sign(COMPONENT, KP1.secret_key, detached=True)
    assert sig.startswith(b"\x01\x01\x01\x01")
    ok = verify(COMPONENT, KP1.public_key, detached_signature=sig)
    assert ok.detached
    with pytest.raises(SignatureMissingError):
        verify(COMPONENT, KP1.public_key)
    both = sign(COMPONENT, KP2.secret_key, detached=True, detached_signature=sig)
    verify(COMPONENT, KP1.public_key, detached_signature=both)
    verify(COMPONENT, KP2.public_key, detached_signature=both)
    assert len(signatures(COMPONENT, detached_signature=both)) == 2
    # embedded and detached forms are equivalent
    embedded = sign(COMPONENT, KP1.secret_key)
    unsigned, detached = detach_signature(embedded)
    assert (unsigned, detached) == (COMPONENT, sig)
    with pytest.raises(SignatureInvalidError):
        verify(MODULE, KP1.public_key, detached_signature=sig)
    with pytest.raises(ValueError, match="detached=True"):
        sign(COMPONENT, KP1.secret_key, detached_signature=sig)


def test_signed_by_finds_exactly_the_keys_whose_signature_covers_the_content() -> None:
    """Revocation's check: every Ed25519 record is tried with every key, key ids ignored."""
    signed = sign(sign(MODULE, KP1, key_id=KP3.key_id), KP2)  # one false key id, one none
    keys = [KP3.public_key, KP2.public_key, KP1.public_key]
    assert signed_by(signed, iter(keys)) == [KP2.public_key, KP1.public_key]  # order given
    assert signed_by(signed, []) == []
    assert signed_by(MODULE, keys) == []
    # a signature over other content (here: a section added after signing) does not count
    assert signed_by(with_custom_section(signed, "late", b"x"), keys) == []


def _unknown_record_payload(hash_sets: list[tuple[bytes, ...]], records: int) -> bytes:
    """A signature payload: one set per hash tuple, each with ``records`` records of an
    unknown algorithm (kept and skipped, never verified)."""
    record = b"\x00\x02opaque"  # no key id, algorithm 2, opaque bytes
    body = b"\x01\x01\x01" + encode_u32_leb(len(hash_sets))
    for hashes in hash_sets:
        one = encode_u32_leb(len(hashes)) + b"".join(hashes) + encode_u32_leb(records)
        one += (encode_u32_leb(len(record)) + record) * records
        body += encode_u32_leb(len(one)) + one
    return body


def test_signing_never_writes_more_than_the_parse_limits() -> None:
    """256 signatures per set and 64 sets: what wasmsign2 (and verify) accept, not one more."""
    content = (hashlib.sha256(COMPONENT[8:]).digest(),)
    almost = _unknown_record_payload([content], 255)
    full = sign(COMPONENT, KP1, detached=True, detached_signature=almost)
    assert len(signatures(COMPONENT, detached_signature=full)) == 256
    verify(COMPONENT, KP1.public_key, detached_signature=full)
    with pytest.raises(SignatureError, match="too many signatures"):
        sign(COMPONENT, KP2, detached=True, detached_signature=full)

    others = [(bytes([i]) * 32,) for i in range(63)]  # sets over other content
    sixty_four = sign(
        COMPONENT, KP1, detached=True, detached_signature=_unknown_record_payload(others, 1)
    )
    assert len({i.hashes for i in signatures(COMPONENT, detached_signature=sixty_four)}) == 64
    verify(COMPONENT, KP1.public_key, detached_signature=sixty_four)
    with pytest.raises(SignatureError, match="too many signed hash sets"):
        sign(MODULE, KP1, detached=True, detached_signature=sixty_four)


def test_delimiters_give_rolling_hashes() -> None:
    header, sections = parse(MODULE)
    delim = Section.custom("signature_delimiter", bytes(16))
    split = build(header, [*sections, delim, Section.custom("debug", b"d"), delim])
    signed = sign(split, KP1.secret_key)
    (info,) = signatures(signed)
    body = split[8:]
    cut = len(body) - 2 * (len(delim.encode())) - len(Section.custom("debug", b"d").encode())
    first_part = body[: cut + len(delim.encode())]
    assert info.hashes == (hashlib.sha256(first_part).digest(), hashlib.sha256(body).digest())
    verify(signed, KP1.public_key)
    # the signature covers wasmsign2's message: domain, header, then every hash, concatenated
    record = get_custom_section(signed, "signature")[-64:]  # (the only record comes last)
    public = Ed25519PublicKey.from_public_bytes(KP1.public_key.raw)
    public.verify(record, b"wasmsig\x01\x01\x01" + b"".join(info.hashes))  # raises if not
    # dropping the trailing part leaves a prefix whose hash is h1: still rejected
    prefix = signed[: len(signed) - (len(body) - len(first_part))]
    with pytest.raises(SignatureInvalidError, match="modified after signing"):
        verify(prefix, KP1.public_key)


def test_misplaced_or_malformed_signature_section() -> None:
    late = with_custom_section(MODULE, "signature", b"\x01\x01\x01\x00")
    with pytest.raises(InvalidComponentError, match="first section"):
        sign(late, KP1.secret_key)
    for payload, match in [
        (b"\x01\x01\x02\x00", "unsupported"),
        (b"\x01\x01\x01\x01\x05\x00", "truncated"),
        (b"\x01\x01\x01\x00\x00", "trailing"),
        (b"", "truncated"),
    ]:
        bad = with_custom_section(MODULE, "signature", payload, first=True)
        with pytest.raises(SignatureInvalidError, match=match):
            verify(bad, KP1.public_key)
        with pytest.raises(SignatureInvalidError, match="malformed"):
            signatures(bad)
    empty = with_custom_section(MODULE, "signature", b"\x01\x01\x01\x00", first=True)
    with pytest.raises(SignatureMissingError, match="no signatures"):
        verify(empty, KP1.public_key)


def _one_set(signed_set: bytes) -> bytes:
    """A signature payload holding one signed-hash set."""
    return b"\x01\x01\x01\x01" + encode_u32_leb(len(signed_set)) + signed_set


def _one_record(record: bytes) -> bytes:
    """A signature payload with one set: no hashes and one signature record."""
    return _one_set(b"\x00\x01" + encode_u32_leb(len(record)) + record)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x01", "truncated signature header at offset 0"),
        (b"\x01\x01\x02\x00", "unsupported version/content type/hash function 1/1/2 "
                             r"\(expected 1/1/1: v1, module, SHA-256\)"),
        (b"\x01\x01\x01", "truncated LEB128 signed hash set count at offset 3"),
        (b"\x01\x01\x01\x41", r"too many signed hash sets \(65 > 64\)"),
        (b"\x01\x01\x01\x01\x05\x00", "truncated signed hash set at offset 5"),
        (b"\x01\x01\x01\x00\x00", "1 trailing bytes after signature data"),
        (_one_set(b""), "truncated LEB128 hash count at offset 0"),
        (_one_set(b"\x41"), r"too many hashes \(65 > 64\)"),
        (_one_set(b"\x01" + bytes(10)), "truncated hash at offset 1"),
        (_one_set(b"\x00"), "truncated LEB128 signature count at offset 1"),
        (_one_set(b"\x00\x81\x02"), r"too many signatures \(257 > 256\)"),
        (_one_set(b"\x00\x01\x05ab"), "truncated signature record at offset 3"),
        (_one_set(b"\x00\x00x"), "1 trailing bytes after signed hash set"),
        (_one_record(b"\x05ab"), "truncated key id at offset 1"),
        (_one_record(b"\x02ab"), "truncated algorithm id at offset 3"),
        (_one_record(b"\x00\x01\x40" + bytes(10)), "truncated signature at offset 3"),
        (_one_record(b"\x00\x01\x40" + bytes(65)), "1 trailing bytes after signature record"),
        (_one_record(b"\x00\x01\x0a" + bytes(10)), "Ed25519 signature is 10 bytes, expected 64"),
    ],
    ids=[
        "header", "version", "set-count", "set-limit", "set", "trailing",
        "hash-count", "hash-limit", "hash", "signature-count", "signature-limit", "record",
        "set-trailing", "key-id", "algorithm", "signature", "record-trailing", "signature-size",
    ],
)  # fmt: skip
def test_malformed_signature_data_is_refused_naming_the_broken_part(
    payload: bytes, message: str
) -> None:
    bad = with_custom_section(MODULE, "signature", payload, first=True)
    with pytest.raises(SignatureFormatError, match=f"^malformed signature data: {message}$"):
        signatures(bad)
    with pytest.raises(SignatureFormatError, match=f"^malformed signature data: {message}$"):
        signatures(MODULE, detached_signature=payload)


def test_the_parse_limits_are_inclusive() -> None:
    """64 hashes in a set and 256 records in a set are wasmsign2's limits, not errors."""
    hashes = tuple(bytes([i]) * 32 for i in range(64))
    payload = _unknown_record_payload([hashes], 256)
    info = signatures(MODULE, detached_signature=payload)
    assert len(info) == 256
    assert info[0].hashes == hashes


def test_unknown_algorithm_records_are_kept_and_skipped() -> None:
    other = b"\x03kid" + b"\x02" + b"opaque"  # key id "kid", algorithm 2
    digest = hashlib.sha256(MODULE[8:]).digest()
    signed_hashes = b"\x01" + digest + b"\x01" + bytes([len(other)]) + other
    payload = b"\x01\x01\x01\x01" + bytes([len(signed_hashes)]) + signed_hashes
    pre = with_custom_section(MODULE, "signature", payload, first=True)
    with pytest.raises(SignatureInvalidError, match="no Ed25519 signature"):
        verify(pre, KP1.public_key)
    signed = sign(pre, KP1.secret_key)
    assert [(i.key_id, i.alg_id) for i in signatures(signed)] == [(b"kid", 2), (None, 1)]
    assert bytes([len(other)]) + other in signed  # kept byte for byte
    verify(signed, KP1.public_key)


# -- keys --------------------------------------------------------------------------------


def test_raw_key_roundtrip() -> None:
    sk, pk = KP1.secret_key, KP1.public_key
    raw_sk, raw_pk = sk.to_wasmsign2_bytes(), pk.to_wasmsign2_bytes()
    assert raw_pk == b"\x01" + pk.raw
    assert len(raw_pk) == 33
    assert raw_sk == b"\x81" + sk.seed + pk.raw
    assert len(raw_sk) == 65
    assert load_public_key(raw_pk) == pk
    assert load_secret_key(raw_sk) == sk
    assert sk.seed.hex() not in repr(sk)
    assert isinstance(KP1, KeyPair)


def test_pem_der_and_openssh_keys() -> None:
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    expected = SecretKey(seed)
    enc, pub = serialization.Encoding, serialization.PublicFormat
    none = serialization.NoEncryption()
    pk8 = serialization.PrivateFormat.PKCS8
    ossh = serialization.PrivateFormat.OpenSSH
    public = private.public_key()
    assert load_secret_key(private.private_bytes(enc.PEM, pk8, none)) == expected
    assert load_secret_key(private.private_bytes(enc.DER, pk8, none)) == expected
    assert load_secret_key(private.private_bytes(enc.PEM, ossh, none)) == expected
    encrypted = private.private_bytes(enc.PEM, pk8, serialization.BestAvailableEncryption(b"pw"))
    assert load_secret_key(encrypted, password=b"pw") == expected
    with pytest.raises(KeyFormatError):
        load_secret_key(encrypted)
    pk = expected.public_key
    assert load_public_key(public.public_bytes(enc.PEM, pub.SubjectPublicKeyInfo)) == pk
    assert load_public_key(public.public_bytes(enc.DER, pub.SubjectPublicKeyInfo)) == pk
    line = public.public_bytes(enc.OpenSSH, pub.OpenSSH) + b" me@host\n"
    assert load_public_key(line) == pk
    assert load_public_key(b"# keys\n" + line) == pk
    signed = sign(MODULE, load_secret_key(private.private_bytes(enc.PEM, ossh, none)))
    verify(signed, load_public_key(line))


def test_encrypted_keys_need_their_password() -> None:
    private = Ed25519PrivateKey.generate()
    expected = SecretKey(private.private_bytes_raw())
    enc, fmt = serialization.Encoding, serialization.PrivateFormat
    cheap_bcrypt = fmt.OpenSSH.encryption_builder().kdf_rounds(2).build(b"pw")  # fast test
    pkcs8 = serialization.BestAvailableEncryption(b"pw")
    for encrypted in (
        private.private_bytes(enc.PEM, fmt.OpenSSH, cheap_bcrypt),
        private.private_bytes(enc.DER, fmt.PKCS8, pkcs8),
        private.private_bytes(enc.PEM, fmt.PKCS8, pkcs8),
    ):
        assert load_secret_key(encrypted, password=b"pw") == expected
        assert SecretKey.from_bytes(encrypted, password=b"pw") == expected
        for wrong in (None, b"not-pw"):
            with pytest.raises(KeyFormatError):
                load_secret_key(encrypted, password=wrong)


def test_key_classes_read_key_files() -> None:
    pk, sk = KP1.public_key, KP1.secret_key
    assert PublicKey.from_bytes(pk.to_wasmsign2_bytes()) == pk
    assert SecretKey.from_bytes(sk.to_wasmsign2_bytes()) == sk
    with pytest.raises(KeyFormatError):
        PublicKey.from_bytes(b"junk")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x01" + bytes(31),
        b"\x02" + bytes(32),
        b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
        b"ssh-ed25519 AAAA",
    ],
)
def test_bad_public_keys(data: bytes) -> None:
    with pytest.raises(KeyFormatError):
        load_public_key(data)


def test_bad_secret_keys() -> None:
    mismatched = b"\x81" + KP1.secret_key.seed + KP2.public_key.raw
    with pytest.raises(KeyFormatError, match="does not match"):
        load_secret_key(mismatched)
    with pytest.raises(ValueError, match="secret key"):  # KeyFormatError is a ValueError
        load_secret_key(b"junk")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyFormatError, match="not an Ed25519 secret key: ECPrivateKey"):
        load_secret_key(pem)
    spki = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyFormatError, match="not an Ed25519 public key: ECPublicKey"):
        load_public_key(spki)
    with pytest.raises(KeyFormatError, match="not a wasmsign2, PEM, DER or OpenSSH public key"):
        load_public_key(b"junk")
    with pytest.raises(KeyFormatError, match="public key is 32 bytes, got 5"):
        PublicKey(b"short")
    with pytest.raises(KeyFormatError):
        SecretKey(b"short")


def test_a_malformed_signature_section_is_a_signature_format_error() -> None:
    from wasmplug import SignatureFormatError

    pair = generate_keypair()
    data = sign(wasmtime.wat2wasm("(component)"), pair.secret_key)
    header, sections = parse(data)
    broken = build(header, [Section.custom("signature", b"\x01\x01\x01\x05"), *sections[1:]])
    with pytest.raises(SignatureFormatError, match="malformed"):
        signatures(broken)
    with pytest.raises(SignatureInvalidError):  # still one, for existing handlers
        verify(broken, pair.public_key)
