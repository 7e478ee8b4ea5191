"""``wasmplug pack|keygen|sign|verify``: one signed file per plugin.

``keygen``, ``sign`` and ``verify`` take the same flags as the wasmsign2 CLI
(``keygen --public-key P --secret-key S``; ``sign -i IN -o OUT -k SK [-K PK]
[-S SIG]``; ``verify -i IN -K PK [-S SIG]``), so a user who knows one knows
the other, and the files are interchangeable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wasmplug._errors import SignatureError
from wasmplug._trust import signing as _signing
from wasmplug.authoring import keygen, pack, sign

__all__ = ["add_commands"]


def cmd_pack(args: argparse.Namespace) -> int:
    packed = pack(Path(args.component), Path(args.manifest), output=Path(args.output))
    if packed.removed_signature:
        print("note: the input was signed; its signature was removed (sign the packed file)")
    print(f"packed {args.component} + {args.manifest} -> {args.output} ({packed.size} bytes)")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    keys = keygen(Path(args.public_key), Path(args.secret_key), overwrite=True)
    print(f"key id {keys.key_id}")
    print(f"public key: {args.public_key}\nsecret key: {args.secret_key} (keep it private)")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    if not args.output and not args.signature_file:
        raise SignatureError("-o OUT is required for an embedded signature")
    signed = sign(
        Path(args.input), Path(args.secret_key), output=args.output,
        public_key=args.public_key, signature_file=args.signature_file,
    )  # fmt: skip
    if signed.signature_file is not None:
        print(f"signed (detached) with key id {signed.key_id} -> {signed.signature_file}")
    else:
        print(f"signed with key id {signed.key_id} -> {signed.path}")
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
