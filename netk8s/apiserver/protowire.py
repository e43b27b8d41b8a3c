"""Protocol buffers wire format: the few primitives the Kubernetes protobuf decoder needs.

Pure. Follows https://protobuf.dev/programming-guides/encoding/: a message is a run of (tag, value)
with tag = field_number << 3 | wire_type; wire types 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
(3 and 4, groups, are not used by Kubernetes and are refused).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at `pos`."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint too long")


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field: ints for varint/fixed, bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        tag, pos = read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == FIXED64:
            if pos + 8 > len(data):
                raise WireError("truncated fixed64")
            value = struct.unpack_from("<Q", data, pos)[0]
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > len(data):
                raise WireError("truncated fixed32")
            value = struct.unpack_from("<I", data, pos)[0]
            pos += 4
        elif wire == LENGTH:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise WireError("truncated length-delimited field")
            value = data[pos:pos + size]
            pos += size
        else:
            raise WireError(f"unsupported wire type {wire}")
        yield number, wire, value


def signed(value: int, bits: int) -> int:
    """A varint read as two's complement int32/int64 (negative ints are sent as 10-byte varints)."""
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if bits == 32:
        value = ((value + (1 << 31)) % (1 << 32)) - (1 << 31)
    return value


def zigzag(value: int) -> int:
    """sint32/sint64 decoding."""
    return (value >> 1) ^ -(value & 1)


def packed_varints(data: bytes) -> list[int]:
    out = []
    pos = 0
    while pos < len(data):
        v, pos = read_varint(data, pos)
        out.append(v)
    return out
