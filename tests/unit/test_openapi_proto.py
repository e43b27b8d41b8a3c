"""/openapi/v2 in protobuf: the gnostic Document kubectl's client-side validation reads, decoded back here."""

from __future__ import annotations

import json

from netk8s.apiserver import openapi_proto as op
from netk8s.apiserver import protowire as pw
from netk8s.apiserver.openapi import openapi_v2


def message(data: bytes) -> dict[int, list]:
    out: dict[int, list] = {}
    for num, _, value in pw.fields(data):
        out.setdefault(num, []).append(value)
    return out


def named(data: bytes) -> dict[str, bytes]:
    """A gnostic Named* list (name = 1, value = 2) as a dict."""
    out = {}
    for item in message(data).get(1, []):
        m = message(bytes(item))
        out[bytes(m[1][0]).decode()] = bytes(m.get(2, [b""])[0])
    return out


def test_the_document_carries_every_definition_with_its_group_version_kind() -> None:
    swagger = openapi_v2()
    doc = message(op.openapi_v2_protobuf())
    assert bytes(doc[1][0]) == b"2.0"
    definitions = named(bytes(doc[9][0]))
    assert set(definitions) == set(swagger["definitions"])
    deployment = message(definitions["io.k8s.api.apps.v1.Deployment"])
    extensions = {}
    for raw in deployment[31]:
        ext = message(bytes(raw))
        extensions[bytes(ext[1][0]).decode()] = json.loads(bytes(message(bytes(ext[2][0]))[2][0]))
    assert extensions["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    props = named(bytes(deployment[25][0]))
    assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(props)


def test_schema_fields() -> None:
    raw = op.schema({"type": "object", "required": ["name"], "description": "d",
                     "properties": {"name": {"type": "string"}, "n": {"type": "integer", "format": "int32"}},
                     "additionalProperties": {"type": "string"}, "items": {"$ref": "#/definitions/X"},
                     "enum": ["A", "B"]})
    m = message(raw)
    assert bytes(m[4][0]) == b"d"
    assert [bytes(v) for v in m[19]] == [b"name"]
    assert [bytes(v) for v in message(bytes(m[22][0]))[1]] == [b"object"]
    assert set(named(bytes(m[25][0]))) == {"name", "n"}
    assert message(bytes(message(bytes(m[21][0]))[1][0]))[22]  # additionalProperties: a schema
    assert bytes(message(bytes(message(bytes(m[23][0]))[1][0]))[1][0]) == b"#/definitions/X"
    assert [json.loads(bytes(message(bytes(v))[2][0])) for v in m[20]] == ["A", "B"]
