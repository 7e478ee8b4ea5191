"""A minimal, strict reader and writer for the WebAssembly binary section layout.

Both core modules and components share the same outer shape: an 8-byte
header (magic ``\\0asm`` plus a version/layer word) followed by sections,
each ``id:byte size:u32-LEB128 payload:bytes[size]``. A custom section
(id 0) starts its payload with a LEB128-length-prefixed UTF-8 name.

This module only looks at that outer shape; it never decodes section
contents. Anything malformed (bad magic, truncation, an over-long LEB128,
a section running past the end of the file) raises
:class:`~wasmplug.InvalidComponentError`.

Writing always re-encodes sizes (and custom-section name lengths) with the
shortest LEB128 form, which is also the canonical form that wasmsign2
signatures hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

from wasmplug._errors import InvalidComponentError

SIGNATURE_SECTION = "signature"
"""The custom section holding a wasmsign2 signature (see ``signing``)."""
DELIMITER_SECTION = "signature_delimiter"
"""The custom section that ends a signed range (wasmsign2's partial signatures)."""

__all__ = [
    "COMPONENT_HEADER",
    "CUSTOM_SECTION_ID",
    "MODULE_HEADER",
    "ByteReader",
    "Section",
    "build",
    "custom_sections",
    "decode_u32_leb",
    "encode_u32_leb",
    "get_custom_section",
    "is_component",
    "iter_section_spans",
    "iter_sections",
    "parse",
    "parse_header",
    "with_custom_section",
    "without_custom_section",
]

MODULE_HEADER = b"\x00asm\x01\x00\x00\x00"
"""Header of a core WebAssembly module (version 1)."""

COMPONENT_HEADER = b"\x00asm\x0d\x00\x01\x00"
"""Header of a component (version 0x0d, layer 1)."""

CUSTOM_SECTION_ID = 0
_HEADER_SIZE = 8
_U32_MAX = 0xFFFF_FFFF


def encode_u32_leb(value: int) -> bytes:
    """Encode an unsigned 32-bit integer as the shortest unsigned LEB128.

    Args:
        value: The integer, ``0 <= value < 2**32``.

    Returns:
        One to five bytes.

    Raises:
        ValueError: ``value`` is negative or does not fit in 32 bits.
    """
    if not 0 <= value <= _U32_MAX:
        raise ValueError(f"{value} does not fit in an unsigned 32-bit LEB128")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_u32_leb(data: bytes, pos: int, *, what: str = "integer") -> tuple[int, int]:
    """Decode an unsigned 32-bit LEB128 integer at ``data[pos]``.

    Non-minimal encodings are accepted (toolchains pad sizes), but at most
    five bytes are read and unused high bits of the fifth byte must be zero,
    as the WebAssembly spec requires.

    Args:
        data: The buffer.
        pos: Offset of the first byte.
        what: What is being decoded, for error messages.

    Returns:
        ``(value, next_pos)``.

    Raises:
        InvalidComponentError: The buffer ends inside the integer, or the
            integer is longer than five bytes or exceeds 32 bits.
    """
    result = 0
    for i in range(5):
        if pos + i >= len(data):
            raise InvalidComponentError(f"truncated LEB128 {what} at offset {pos}")
        byte = data[pos + i]
        if i == 4 and byte & 0xF0:
            raise InvalidComponentError(f"LEB128 {what} at offset {pos} overflows 32 bits")
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result, pos + i + 1
    raise AssertionError("unreachable")  # pragma: no cover - the i == 4 check returns or raises


class ByteReader:
    """A cursor over a buffer whose reads raise :class:`InvalidComponentError` past the end.

    Every method takes ``what``, a short description used in error messages.
    """

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = bytes(data), 0

    def u32(self, what: str) -> int:
        """Read an unsigned 32-bit LEB128."""
        value, self.pos = decode_u32_leb(self.data, self.pos, what=what)
        return value

    def take(self, n: int, what: str) -> bytes:
        """Read exactly ``n`` bytes."""
        if self.pos + n > len(self.data):
            raise InvalidComponentError(f"truncated {what} at offset {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def slice(self, what: str) -> bytes:
        """Read a LEB128 length, then that many bytes."""
        return self.take(self.u32(f"{what} length"), what)

    def done(self, what: str) -> None:
        """Check that the whole buffer was consumed."""
        if self.pos != len(self.data):
            raise InvalidComponentError(f"{len(self.data) - self.pos} trailing bytes after {what}")


@attrs.frozen
class Section:
    """One section of a module or component.

    Attributes:
        id: The section id byte (0 for custom sections).
        data: For a custom section, the bytes after its name; otherwise the
            whole payload.
        name: The custom section's name, or ``None`` for non-custom sections.
    """

    id: int = attrs.field(
        validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(0x7F))
    )
    data: bytes
    name: str | None = None

    @classmethod
    def custom(cls, name: str, data: bytes) -> Section:
        """Make a custom section named ``name`` holding ``data``."""
        return cls(CUSTOM_SECTION_ID, bytes(data), name)

    @property
    def is_custom(self) -> bool:
        """Whether this is a custom section (id 0)."""
        return self.id == CUSTOM_SECTION_ID

    @property
    def payload(self) -> bytes:
        """The section payload; for custom sections the name is re-encoded minimally."""
        if self.name is None:
            return self.data
        raw_name = self.name.encode("utf-8")
        return encode_u32_leb(len(raw_name)) + raw_name + self.data

    def encode(self) -> bytes:
        """Serialize the section: id byte, minimal LEB128 size, payload."""
        payload = self.payload
        return bytes([self.id]) + encode_u32_leb(len(payload)) + payload


def is_component(data: bytes) -> bool:
    """Whether ``data`` starts with the component header (no validation beyond that)."""
    return data[:_HEADER_SIZE] == COMPONENT_HEADER


def parse_header(data: bytes) -> bytes:
    """Check and return the 8-byte header of a module or component.

    Args:
        data: The binary.

    Returns:
        :data:`MODULE_HEADER` or :data:`COMPONENT_HEADER`.

    Raises:
        InvalidComponentError: The data is shorter than 8 bytes, lacks the
            ``\\0asm`` magic, or has an unsupported version/layer.
    """
    if len(data) < _HEADER_SIZE:
        raise InvalidComponentError(
            f"not a WebAssembly binary: {len(data)} bytes, shorter than the 8-byte header"
        )
    header = bytes(data[:_HEADER_SIZE])
    if header[:4] != MODULE_HEADER[:4]:
        raise InvalidComponentError("not a WebAssembly binary: missing the \\0asm magic")
    if header not in (MODULE_HEADER, COMPONENT_HEADER):
        raise InvalidComponentError(
            f"unsupported WebAssembly version/layer {header[4:].hex(' ')} "
            "(expected a core module 01 00 00 00 or a component 0d 00 01 00)"
        )
    return header


def _parse_section(data: bytes, pos: int) -> tuple[Section, int]:
    start = pos
    section_id = data[pos]
    if section_id > 0x7F:
        raise InvalidComponentError(f"invalid section id 0x{section_id:02x} at offset {start}")
    size, pos = decode_u32_leb(data, pos + 1, what="section size")
    end = pos + size
    if end > len(data):
        raise InvalidComponentError(
            f"section id {section_id} at offset {start} claims {size} bytes, "
            f"but only {len(data) - pos} remain"
        )
    if section_id != CUSTOM_SECTION_ID:
        return Section(section_id, bytes(data[pos:end])), end
    name_len, name_start = decode_u32_leb(data, pos, what="custom section name length")
    name_end = name_start + name_len
    if name_start > end or name_end > end:
        raise InvalidComponentError(
            f"custom section at offset {start}: name runs past the end of the section"
        )
    try:
        name = bytes(data[name_start:name_end]).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidComponentError(
            f"custom section at offset {start}: name is not valid UTF-8"
        ) from None
    return Section(CUSTOM_SECTION_ID, bytes(data[name_end:end]), name), end


def iter_section_spans(data: bytes) -> Iterator[tuple[Section, int, int]]:
    """Like :func:`iter_sections`, with each section's ``(start, end)`` offsets in ``data``.

    Raises:
        InvalidComponentError: The header or a section is malformed.
    """
    parse_header(data)
    pos = _HEADER_SIZE
    while pos < len(data):
        start = pos
        section, pos = _parse_section(data, pos)
        yield section, start, pos


def iter_sections(data: bytes) -> Iterator[Section]:
    """Iterate over the sections of a module or component, checking the header first.

    Args:
        data: The binary.

    Yields:
        Each :class:`Section`, in file order.

    Raises:
        InvalidComponentError: The header or a section is malformed.
    """
    for section, _, _ in iter_section_spans(data):
        yield section


def parse(data: bytes) -> tuple[bytes, list[Section]]:
    """Parse a whole binary into its header and sections.

    Args:
        data: The binary.

    Returns:
        ``(header, sections)``.

    Raises:
        InvalidComponentError: The binary is malformed.
    """
    return parse_header(data), list(iter_sections(data))


def build(header: bytes, sections: Iterable[Section]) -> bytes:
    """Serialize a header and sections, with minimal LEB128 sizes.

    Args:
        header: :data:`MODULE_HEADER` or :data:`COMPONENT_HEADER`.
        sections: The sections, in order.

    Returns:
        The binary.

    Raises:
        InvalidComponentError: ``header`` is not a supported header.
    """
    parse_header(header)
    return bytes(header) + b"".join(section.encode() for section in sections)


def custom_sections(data: bytes) -> list[tuple[str, bytes]]:
    """List the custom sections of a binary as ``(name, data)`` pairs, in file order.

    Raises:
        InvalidComponentError: The binary is malformed.
    """
    return [(s.name, s.data) for s in iter_sections(data) if s.name is not None]


def get_custom_section(data: bytes, name: str) -> bytes | None:
    """Return the data of the first custom section called ``name``, or ``None``.

    Raises:
        InvalidComponentError: The binary is malformed (up to the section found).
    """
    for section in iter_sections(data):
        if section.name == name:
            return section.data
    return None


def with_custom_section(data: bytes, name: str, payload: bytes, *, first: bool = False) -> bytes:
    """Return a copy of the binary holding exactly one custom section ``name``.

    An existing section of that name is replaced in place (later duplicates
    are dropped); otherwise the section is appended. With ``first=True`` it is
    placed right after the header instead. All sections are re-encoded with
    minimal LEB128 sizes.

    Args:
        data: The binary.
        name: The custom section name.
        payload: The section's data (after the name).
        first: Put the section first (the place wasmsign2 requires for
            ``signature``).

    Returns:
        The new binary.

    Raises:
        InvalidComponentError: The binary is malformed.
    """
    header, sections = parse(data)
    new = Section.custom(name, payload)
    out: list[Section] = [new] if first else []
    placed = first
    for section in sections:
        if section.name != name:
            out.append(section)
        elif not placed:
            out.append(new)
            placed = True
    if not placed:
        out.append(new)
    return build(header, out)


def without_custom_section(data: bytes, name: str) -> bytes:
    """Return a copy of the binary with every custom section called ``name`` removed.

    Raises:
        InvalidComponentError: The binary is malformed.
    """
    header, sections = parse(data)
    return build(header, (s for s in sections if s.name != name))
