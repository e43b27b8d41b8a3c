"""The one registry of field schemas for the kinds netk8s serves: Kubernetes' own OpenAPI definitions.

Source of truth: the JSON schemas shipped by the PyPI package `kubernetes-validate` (generated from
kube-apiserver's OpenAPI document of one release, SCHEMA_VERSION). They carry everything the API layer
needs from the Go struct tags: descriptions (for `kubectl explain`), `x-kubernetes-patch-strategy` and
`x-kubernetes-patch-merge-key` (strategic merge patch), `x-kubernetes-list-type` /
`x-kubernetes-list-map-keys` (server-side apply) and `x-kubernetes-group-version-kind`.

To serve a new kind (Ingress, IngressClass, Secret, NetworkPolicy, ...): add its KindInfo to
netk8s/model/kinds.py. The definition is found here by its group/version/kind, so OpenAPI documents,
strict decoding and patching pick it up with no change in this module. A kind Kubernetes does not have
would add its definition to EXTRA_DEFINITIONS (same shape: JSON schema with `$ref: #/$defs/NAME`).

The data file is read once (package data, not state) and cached; every function here is otherwise pure.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from netk8s.model.kinds import KINDS, kind_info

# The release kubectl v1.34 speaks; the schemas of kubernetes-validate are per minor release.
SCHEMA_VERSION = "v1.34.0"
REF_PREFIX = "#/$defs/"

# Definitions of kinds Kubernetes does not ship (none yet), keyed by definition name.
EXTRA_DEFINITIONS: dict[str, dict[str, Any]] = {}


@cache
def definitions() -> dict[str, dict[str, Any]]:
    """Every definition by name (`io.k8s.api.core.v1.Pod`), as JSON schema."""
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"{SCHEMA_VERSION}-local"
    defs: dict[str, dict[str, Any]] = json.loads((root / "_definitions.json").read_text(encoding="utf-8"))["$defs"]
    return {**defs, **EXTRA_DEFINITIONS}


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> ("apps", "v1"); `v1` -> ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


@cache
def _by_gvk() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, d in definitions().items():
        for gvk in d.get("x-kubernetes-group-version-kind") or []:
            out[gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")] = name
    return out


def definition_for(group: str, version: str, kind: str) -> str | None:
    """The definition name of a group/version/kind, or None."""
    return _by_gvk().get((group, version, kind))


def kind_definition(kind: str) -> str:
    """The definition name of a served kind (`Pod` -> `io.k8s.api.core.v1.Pod`)."""
    info = kind_info(kind)
    group, version = split_api_version(info.api_version)
    name = definition_for(group, version, kind)
    if name is None:
        raise KeyError(f"no schema for {info.api_version} {kind}")
    return name


def served_definitions() -> dict[str, str]:
    """kind -> definition name for every served kind that has a schema."""
    out = {}
    for kind in KINDS:
        try:
            out[kind] = kind_definition(kind)
        except KeyError:
            continue
    return out


# id(raw node) -> (raw node, resolved): the raw nodes live in the cached definitions, so ids are stable
# (the raw node is kept in the value, so its id cannot be reused).
_RESOLVED: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}


def resolve(node: dict[str, Any] | None) -> dict[str, Any]:
    """Follow `$ref` (the schemas keep a description beside a ref; the target's shape wins)."""
    if node is None:
        return {}
    if "$ref" not in node:
        return node
    hit = _RESOLVED.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    raw, seen = node, 0
    while "$ref" in node and seen < 32:
        target = definitions().get(str(node["$ref"]).removeprefix(REF_PREFIX)) or {}
        node = {**target, **{k: v for k, v in node.items() if k != "$ref" and k not in target}}
        seen += 1
    _RESOLVED[id(raw)] = (raw, node)
    return node


def kind_schema(kind: str) -> dict[str, Any]:
    return definitions()[kind_definition(kind)]


def types_of(node: dict[str, Any]) -> set[str]:
    """The JSON types a (resolved) schema allows, `null` dropped; empty for oneOf/any."""
    t = node.get("type")
    if isinstance(t, list):
        return {x for x in t if x != "null"}
    return {t} if isinstance(t, str) else set()


def is_object(node: dict[str, Any]) -> bool:
    return "properties" in node or "object" in types_of(node)


def properties(node: dict[str, Any]) -> dict[str, Any] | None:
    """Declared properties of an object schema, or None when it is a free map (labels) or not an object."""
    props = node.get("properties")
    return props if isinstance(props, dict) else None


def map_values(node: dict[str, Any]) -> dict[str, Any] | None:
    """The value schema of a map (`additionalProperties`), or None."""
    add = node.get("additionalProperties")
    return resolve(add) if isinstance(add, dict) else None


def child(node: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The resolved schema of field `key` of an object node (declared property or map value)."""
    props = properties(node)
    if props is not None and key in props:
        return resolve(props[key])
    return map_values(node)


def items(node: dict[str, Any]) -> dict[str, Any] | None:
    it = node.get("items")
    return resolve(it) if isinstance(it, dict) else None


def patch_strategy(node: dict[str, Any]) -> tuple[set[str], str | None]:
    """(strategies, merge key) of a field schema: `x-kubernetes-patch-strategy` split on ','."""
    strategy = str(node.get("x-kubernetes-patch-strategy") or "")
    return {s for s in strategy.split(",") if s}, node.get("x-kubernetes-patch-merge-key")


def list_type(node: dict[str, Any]) -> tuple[str, list[str]]:
    """Server-side apply's list semantics: (`atomic`|`set`|`map`, map keys).

    Lists without `x-kubernetes-list-type` are atomic, except those with a patch merge key, which
    structured-merge-diff treats as maps keyed by it (and by `x-kubernetes-list-map-keys` when given).
    """
    keys = list(node.get("x-kubernetes-list-map-keys") or [])
    lt = node.get("x-kubernetes-list-type")
    strategies, merge_key = patch_strategy(node)
    if lt == "map" or (lt is None and merge_key):
        return "map", keys or ([merge_key] if merge_key else [])
    if lt == "set" or (lt is None and "merge" in strategies):
        return "set", []
    return "atomic", []


def schema_at(kind: str, path: list[str]) -> dict[str, Any] | None:
    """The resolved schema at a field path of a kind (list indexes as "[]"), or None if unknown."""
    node: dict[str, Any] | None = resolve(kind_schema(kind))
    for part in path:
        if node is None:
            return None
        node = items(node) if part == "[]" else child(node, part)
    return node
