"""``wasmplug pack|keygen|sign|verify``: one signed file per plugin.

``keygen``, ``sign`` and ``verify`` take the same flags as the wasmsign2 CLI
(``keygen --public-key P --secret-key S``; ``sign -i IN -o OUT -k SK [-K PK]
[-S SIG]``; ``verify -i IN -K PK [-S SIG]``), so a user who knows one knows
the other, and the files are interchangeable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wasmplug._errors import KeyFormatError, SignatureError
from wasmplug._fsutil import write_atomic
from wasmplug._sandbox.manifest import MANIFEST_SECTION, Manifest
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws

__all__ = ["add_commands"]


def cmd_pack(args: argparse.Namespace) -> int:
    manifest_text = Path(args.manifest).read_text(encoding="utf-8")
    Manifest.from_toml(manifest_text, source=str(args.manifest))  # validate before embedding
    data = Path(args.component).read_bytes()
    if _signing.signatures(data):
        data = _signing.strip_signature(data)
        print("note: the input was signed; its signature was removed (sign the packed file)")
    packed = ws.with_custom_section(data, MANIFEST_SECTION, manifest_text.encode("utf-8"))
    write_atomic(Path(args.output), packed)
    print(f"packed {args.component} + {args.manifest} -> {args.output} ({len(packed)} bytes)")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    pair = _signing.generate_keypair()
    write_atomic(Path(args.secret_key), pair.secret_key.to_wasmsign2_bytes(), mode=0o600)
    write_atomic(Path(args.public_key), pair.public_key.to_wasmsign2_bytes())
    print(f"key id {pair.key_id.hex()}")
    print(f"public key: {args.public_key}\nsecret key: {args.secret_key} (keep it private)")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    sk = _signing.load_secret_key(Path(args.secret_key).read_bytes())
    if args.public_key:
        pk = _signing.load_public_key(Path(args.public_key).read_bytes())
        if pk.raw != sk.public_key.raw:
            raise KeyFormatError("the public key (-K) does not match the secret key (-k)")
    data = Path(args.input).read_bytes()
    if args.signature_file:
        sig_path = Path(args.signature_file)
        previous = sig_path.read_bytes() if sig_path.exists() else None
        detached = _signing.sign(
            data, sk, key_id=sk.key_id, detached=True, detached_signature=previous
        )
        write_atomic(sig_path, detached)
        if args.output and Path(args.output) != Path(args.input):
            write_atomic(Path(args.output), data)
        print(f"signed (detached) with key id {sk.key_id.hex()} -> {sig_path}")
        return 0
    if not args.output:
        raise SignatureError("-o OUT is required for an embedded signature")
    write_atomic(Path(args.output), _signing.sign(data, sk, key_id=sk.key_id))
    print(f"signed with key id {sk.key_id.hex()} -> {args.output}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    pk = _signing.load_public_key(Path(args.public_key).read_bytes())
    detached = Path(args.signature_file).read_bytes() if args.signature_file else None
    data = Path(args.input).read_bytes()
    result = _signing.verify(data, pk, detached_signature=detached)
    form = "detached signature" if result.detached else "signature"
    print(f"{form} verified: key id {pk.key_id.hex()}, content sha256 {result.content_hash.hex()}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the pack/keygen/sign/verify sub-commands."""
    p = sub.add_parser("pack", help="embed a manifest into a component (wasmplug-manifest section)")
    p.add_argument("component")
    p.add_argument("--manifest", "-m", required=True, help="wasmplug.toml to embed")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("keygen", help="create an Ed25519 key pair (wasmsign2 raw files)")
    p.add_argument("-K", "--public-key", required=True, help="public key file to write")
    p.add_argument("-k", "--secret-key", required=True, help="secret key file to write (0600)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="sign a component (wasmsign2 format)")
    p.add_argument("-i", "--input", required=True)
    p.add_argument("-o", "--output", help="signed output (embedded signature)")
    p.add_argument("-k", "--secret-key", required=True, help="wasmsign2 raw, PEM or OpenSSH key")
    p.add_argument("-K", "--public-key", help="check the secret key against this public key")
    p.add_argument("-S", "--signature-file", help="write/extend a detached signature instead")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify a component's signature (exit 3 if it fails)")
    p.add_argument("-i", "--input", required=True)
    p.add_argument("-K", "--public-key", required=True, help="wasmsign2 raw, PEM or OpenSSH key")
    p.add_argument("-S", "--signature-file", help="detached signature to verify against")
    p.set_defaults(func=cmd_verify)
