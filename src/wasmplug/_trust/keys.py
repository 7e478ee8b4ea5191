"""Ed25519 keys for wasmsign2 signatures: the key types, key ids, key files.

:class:`PublicKey` and :class:`SecretKey` load every key file format wasmsign2 and
the usual tools write: wasmsign2 raw (``01 || pk``, ``81 || seed || pk``), PEM/DER
(SubjectPublicKeyInfo, PKCS#8) and OpenSSH. A key's id is wasmsign2's default
(:func:`key_id`). ``signing`` signs and verifies with them (:func:`ed25519_sign`,
:func:`ed25519_verifies`). All cryptography is done by the ``cryptography`` package.
"""

from __future__ import annotations

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wasmplug._errors import KeyFormatError

__all__ = [
    "KeyPair",
    "PublicKey",
    "SecretKey",
    "ed25519_sign",
    "ed25519_verifies",
    "generate_keypair",
    "key_id",
    "load_public_key",
    "load_secret_key",
]

_PK_TAG, _SK_TAG = 0x01, 0x81


def key_id(public_key: PublicKey | bytes) -> bytes:
    """wasmsign2's default key id: ``HMAC-SHA256(key=pk, msg=b"key_id")[:12]``.

    Args:
        public_key: A :class:`PublicKey` or the 32 raw public key bytes.

    Returns:
        12 bytes.
    """
    raw = public_key.raw if isinstance(public_key, PublicKey) else bytes(public_key)
    mac = hmac.HMAC(raw, hashes.SHA256())
    mac.update(b"key_id")
    return mac.finalize()[:12]


def _default_key_id(pk: PublicKey) -> bytes:
    return key_id(pk.raw)


@attrs.frozen
class PublicKey:
    """An Ed25519 public key.

    Attributes:
        raw: The 32 raw key bytes.
        key_id: The id matched against signature records (default: :func:`key_id`).
    """

    raw: bytes = attrs.field(converter=bytes, repr=bytes.hex)
    key_id: bytes = attrs.field(
        default=attrs.Factory(_default_key_id, takes_self=True), converter=bytes, repr=bytes.hex
    )

    def __attrs_post_init__(self) -> None:
        if len(self.raw) != 32:
            raise KeyFormatError(f"an Ed25519 public key is 32 bytes, got {len(self.raw)}")

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        """Load a key file's bytes: wasmsign2 raw, PEM/DER or OpenSSH.

        Raises:
            KeyFormatError: the bytes are none of these, or not Ed25519.
        """
        return load_public_key(data)

    def to_wasmsign2_bytes(self) -> bytes:
        """The wasmsign2 raw encoding, ``0x01 || pk``."""
        return bytes([_PK_TAG]) + self.raw

    def _key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)

    def _verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            self._key().verify(signature, message)
        except InvalidSignature:
            return False
        return True


@attrs.frozen
class SecretKey:
    """An Ed25519 secret key (its seed); ``repr`` never shows the seed.

    Attributes:
        seed: The 32-byte seed.
        public_key: The matching public key.
    """

    seed: bytes = attrs.field(converter=bytes, repr=False)
    public_key: PublicKey = attrs.field(init=False)

    @public_key.default
    def _derive_public(self) -> PublicKey:
        if len(self.seed) != 32:
            raise KeyFormatError(f"an Ed25519 seed is 32 bytes, got {len(self.seed)}")
        return PublicKey(self._key().public_key().public_bytes_raw())

    @property
    def key_id(self) -> bytes:
        """The default key id of the public key."""
        return self.public_key.key_id

    @classmethod
    def from_bytes(cls, data: bytes, *, password: bytes | None = None) -> SecretKey:
        """Load a key file's bytes: wasmsign2 raw, PEM/DER (PKCS#8) or OpenSSH.

        Args:
            data: The file's bytes.
            password: For an encrypted PEM or OpenSSH key.

        Raises:
            KeyFormatError: the bytes are none of these, not Ed25519, or the password
                is wrong or missing.
        """
        return load_secret_key(data, password=password)

    def to_wasmsign2_bytes(self) -> bytes:
        """The wasmsign2 raw encoding, ``0x81 || seed || pk``."""
        return bytes([_SK_TAG]) + self.seed + self.public_key.raw

    def _key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)


@attrs.frozen
class KeyPair:
    """A secret key with its public key."""

    secret_key: SecretKey
    public_key: PublicKey

    @property
    def key_id(self) -> bytes:
        """The default key id of the public key."""
        return self.public_key.key_id


def generate_keypair() -> KeyPair:
    """Generate a fresh Ed25519 key pair from the OS random source."""
    sk = SecretKey(Ed25519PrivateKey.generate().private_bytes_raw())
    return KeyPair(sk, sk.public_key)


def load_public_key(data: bytes) -> PublicKey:
    """Load a public key: wasmsign2 raw, PEM or DER SubjectPublicKeyInfo, or OpenSSH.

    Raises:
        KeyFormatError: The bytes are none of these, or not an Ed25519 key.
    """
    data = bytes(data)
    if len(data) == 33 and data[0] == _PK_TAG:
        return PublicKey(data[1:])
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key: object = serialization.load_pem_public_key(text)
        elif b"ssh-ed25519 " in text:
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(b"ssh-ed25519 "))
            key = serialization.load_ssh_public_key(line.strip())
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm, StopIteration) as exc:
        raise KeyFormatError(f"not a wasmsign2, PEM, DER or OpenSSH public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError(f"not an Ed25519 public key: {type(key).__name__}")
    return PublicKey(key.public_bytes_raw())


def load_secret_key(data: bytes, *, password: bytes | None = None) -> SecretKey:
    """Load a secret key: wasmsign2 raw, PEM or DER PKCS#8, or OpenSSH.

    Args:
        data: The key file's bytes.
        password: Passphrase for an encrypted PEM/OpenSSH key.

    Raises:
        KeyFormatError: The bytes are none of these, not an Ed25519 key, or a
            raw key whose public half does not match its seed.
    """
    data = bytes(data)
    if len(data) == 65 and data[0] == _SK_TAG:
        sk = SecretKey(data[1:33])
        if sk.public_key.raw != data[33:]:
            raise KeyFormatError("wasmsign2 secret key: public half does not match the seed")
        return sk
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key: object = serialization.load_ssh_private_key(text, password)
        elif text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(text, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not a wasmsign2, PEM, DER or OpenSSH secret key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"not an Ed25519 secret key: {type(key).__name__}")
    return SecretKey(key.private_bytes_raw())


def ed25519_sign(secret: SecretKey, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message``."""
    return secret._key().sign(message)


def ed25519_verifies(public: PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public``'s valid Ed25519 signature of ``message``."""
    return public._verifies(signature, message)
