"""The OpenAPI v2 document in protobuf (gnostic openapi.v2.Document), as kubectl fetches /openapi/v2.

kubectl validates a manifest on the client when the server's OpenAPI v3 does not list its group/version
(a `List`, a kind of a group the server does not serve): it then reads /openapi/v2 with
`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (k8s.io/client-go/openapi v2) and
looks the kind up by its x-kubernetes-group-version-kind. A kind it does not find is left to the REST
mapping, which says `no matches for kind`, as against any cluster. Field numbers are gnostic's
(github.com/google/gnostic openapiv2/OpenAPIv2.proto): Document, Info, Paths, Definitions, NamedSchema,
Schema (_ref, format, description, default, required, enum, additionalProperties, type, items,
allOf, properties, vendor extensions), with values of `Any` as their YAML text, as gnostic writes them.
Pure: a JSON-shaped Swagger 2.0 dict in, bytes out.
"""

from __future__ import annotations

import json
import struct
from functools import cache
from typing import Any

MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
# what it is answered with: `@` is not allowed in a media type token (Go's mime.ParseMediaType refuses
# it), so kube-openapi's handler labels the bytes as an octet stream
RESPONSE_TYPE = "application/octet-stream"


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode()) if text else b""


def _bool(field: int, value: bool) -> bytes:
    return _varint(field << 3) + b"\x01" if value else b""


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value) if value else b""


def _double(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", float(value))


def _any(field: int, value: Any) -> bytes:
    """gnostic Any: the value as YAML (JSON is YAML), field 2."""
    return _bytes(field, _str(2, json.dumps(value)))


def _named_any(field: int, name: str, value: Any) -> bytes:
    return _bytes(field, _str(1, name) + _any(2, value))


def schema(node: dict) -> bytes:
    out = bytearray()
    out += _str(1, node.get("$ref", ""))
    out += _str(2, node.get("format", ""))
    out += _str(3, node.get("title", ""))
    out += _str(4, node.get("description", ""))
    if "default" in node:
        out += _any(5, node["default"])
    for key, num in (("maximum", 7), ("minimum", 9)):
        if isinstance(node.get(key), (int, float)):
            out += _double(num, node[key])
    for key, num in (("maxLength", 11), ("minLength", 12), ("maxItems", 14), ("minItems", 15)):
        if isinstance(node.get(key), int):
            out += _int(num, node[key])
    out += _str(13, node.get("pattern", ""))
    out += _bool(16, bool(node.get("uniqueItems")))
    for name in node.get("required") or []:
        out += _str(19, str(name))
    for value in node.get("enum") or []:
        out += _any(20, value)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out += _bytes(21, _bytes(1, schema(extra)))
    elif isinstance(extra, bool):
        out += _bytes(21, _varint(2 << 3) + (b"\x01" if extra else b"\x00"))
    types = node.get("type")
    if types:
        out += _bytes(22, b"".join(_str(1, t) for t in ([types] if isinstance(types, str) else types)))
    items = node.get("items")
    if isinstance(items, dict):
        out += _bytes(23, _bytes(1, schema(items)))
    for sub in node.get("allOf") or []:
        out += _bytes(24, schema(sub))
    props = node.get("properties")
    if isinstance(props, dict):
        out += _bytes(25, b"".join(_bytes(1, _str(1, k) + _bytes(2, schema(v))) for k, v in props.items()))
    out += _bool(27, bool(node.get("readOnly")))
    for key, value in node.items():
        if key.startswith("x-"):
            out += _named_any(31, key, value)
    return bytes(out)


def document(doc: dict) -> bytes:
    """A Swagger 2.0 document (openapi.openapi_v2()) as gnostic's protobuf. Paths carry only their
    names: kubectl's v2 validation reads definitions, and the JSON form has the operations."""
    info = doc.get("info") or {}
    out = bytearray()
    out += _str(1, doc.get("swagger", "2.0"))
    out += _bytes(2, _str(1, info.get("title", "")) + _str(2, info.get("version", "")))
    paths = b"".join(_bytes(2, _str(1, p) + _bytes(2, b"")) for p in (doc.get("paths") or {}))
    out += _bytes(8, paths)
    defs = doc.get("definitions") or {}
    out += _bytes(9, b"".join(_bytes(1, _str(1, k) + _bytes(2, schema(v))) for k, v in defs.items()))
    return bytes(out)


@cache
def openapi_v2_protobuf() -> bytes:
    from netk8s.apiserver.openapi import openapi_v2

    return document(openapi_v2())
