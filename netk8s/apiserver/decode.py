"""Request bodies to objects: JSON, YAML and protobuf, with kube-apiserver's field validation (Strict or warn).

Pure: `decode_body(body, content_type, kind, strict)` returns (object, warnings) or raises
ValidationError. Unknown and duplicate fields follow netk8s/model/fields.py (`strict decoding error:
unknown field "spec.replica"`); a body that does not parse is an error whatever the validation level.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from netk8s.apiserver import protobuf
from netk8s.errors import ValidationError
from netk8s.model import fields
from netk8s.model.manifest import DupLoader

JSON_TYPES = ("application/json", "application/merge-patch+json", "application/strategic-merge-patch+json",
              "application/json-patch+json")
YAML_TYPES = ("application/yaml", "application/apply-patch+yaml", "application/x-yaml", "text/yaml")


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "application/json").split(";", 1)[0].strip().lower()


def parse_json(text: str) -> Any:
    """JSON with duplicate keys recorded (fields.DupDict) instead of silently dropped."""
    try:
        return json.loads(text, object_pairs_hook=fields.json_object_pairs)
    except ValueError as err:
        raise ValidationError(f"body: invalid JSON: {err}") from None


def parse_yaml(text: str) -> Any:
    """One YAML document, keys kept as text and duplicates recorded, as sigs.k8s.io/yaml reads it."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=DupLoader) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ValidationError(f"body: invalid YAML{where}: {problem}") from None
    if len(docs) > 1:
        raise ValidationError("body: a request body holds one object, got several YAML documents")
    return docs[0] if docs else None


def decode_body(body: bytes, content_type: str, kind: str | None, strict: bool) -> tuple[dict, list[str]]:
    """Decode one object. With `strict` (fieldValidation=Strict) unknown and duplicate fields are
    errors naming their paths; otherwise they come back as warnings for the Warning header."""
    media = media_type(content_type)
    if media == protobuf.MEDIA_TYPE:
        decoded = protobuf.decode_protobuf(bytes(body))
        return fields.check(decoded, kind or decoded.get("kind"), strict)
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else str(body)
    except UnicodeDecodeError:
        raise ValidationError("body: not UTF-8 text") from None
    if media in YAML_TYPES:
        doc = parse_yaml(text)
    elif media in JSON_TYPES or media.endswith("+json"):
        doc = parse_json(text)
    else:
        raise ValidationError(f"body: unsupported media type {media!r} (use application/json or application/yaml)")
    if not isinstance(doc, dict):
        raise ValidationError("body: must be a JSON/YAML object (with apiVersion, kind and metadata)")
    body_kind = doc.get("kind") if isinstance(doc.get("kind"), str) else None
    return fields.check(doc, kind or body_kind, strict)
