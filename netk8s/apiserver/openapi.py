"""/openapi/v2 and /openapi/v3 documents for every served kind, built from the one schema registry.

Pure: the documents are derived from netk8s/model/schema.py (Kubernetes' own definitions, with their
descriptions, `x-kubernetes-*` patch and list extensions and group-version-kind) and from
netk8s/model/kinds.py (which kinds are served, their plural names and scope). Paths and operations
follow kube-apiserver's: operationIds such as `patchAppsV1NamespacedDeployment`,
`x-kubernetes-action`, `x-kubernetes-group-version-kind`, and the query parameters `dryRun`,
`fieldManager`, `fieldValidation` (kubectl looks for the last one on a kind's PATCH operation in the v3
document to decide that the server validates fields itself) and `force` for apply.

To serve a new kind: add its KindInfo to netk8s/model/kinds.py; its schema is found by GVK (see
netk8s/model/schema.py), and its paths and definitions appear here with no change. Subresources beyond
`status` (and `scale` for the workload kinds) go in SUBRESOURCES.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cache
from typing import Any

from netk8s.model import schema as sch
from netk8s.model.kinds import KINDS, KindInfo

INFO = {"title": "Kubernetes", "version": sch.SCHEMA_VERSION}
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
SCALE = "io.k8s.api.autoscaling.v1.Scale"
# kind -> subresources served besides the object itself.
SUBRESOURCES: dict[str, tuple[str, ...]] = {
    "Pod": ("status",), "Service": ("status",), "Namespace": ("status",), "Node": ("status",),
    "Deployment": ("status", "scale"), "ReplicaSet": ("status", "scale"), "StatefulSet": ("status", "scale"),
}
PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json")
MEDIA = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")

_PARAMS = {
    "pretty": "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent "
              "indicates a browser or command-line HTTP tool (curl and wget).",
    "dryRun": "When present, indicates that modifications should not be persisted. An invalid or unrecognized "
              "dryRun directive will result in an error response and no further processing of the request. "
              "Valid values are: - All: all dry run stages will be processed",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these changes. "
                    "The value must be less than or 128 characters long, and only contain printable "
                    "characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    "fieldValidation": "fieldValidation instructs the server on how to handle objects in the request "
                       "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: "
                       "This will ignore any unknown fields that are silently dropped from the object, and will "
                       "ignore all but the last duplicate field that the decoder encounters. - Warn: This will "
                       "send a warning via the standard warning response header for each unknown field that is "
                       "dropped from the object, and for each duplicate field that is encountered. - Strict: "
                       "This will fail the request with a BadRequest error if any unknown fields would be "
                       "dropped from the object, or if any duplicate fields are present. The error returned "
                       "from the server will contain all unknown and duplicate fields encountered.",
    "force": "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields "
             "owned by other people. Force flag must be unset for non-apply patch requests.",
    "labelSelector": "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    "fieldSelector": "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    "limit": "limit is a maximum number of responses to return for a list call.",
    "continue": "The continue option should be set when retrieving more results from the server.",
    "resourceVersion": "resourceVersion sets a constraint on what resource versions a request may be served from.",
    "watch": "Watch for changes to the described resources and return them as a stream of add, update, and "
             "remove notifications. Specify resourceVersion.",
    "gracePeriodSeconds": "The duration in seconds before the object should be deleted.",
    "propagationPolicy": "Whether and how garbage collection will be performed. Acceptable values are: "
                         "'Orphan', 'Background', 'Foreground'.",
}
_INT_PARAMS = {"limit", "gracePeriodSeconds"}
_BOOL_PARAMS = {"force", "watch"}


# ------------------------------------------------------------------------------------------- schemas


def _convert(node: Any, ref_prefix: str, v3: bool) -> Any:
    """A kubernetes-validate JSON-schema node as an OpenAPI schema (v2 or v3)."""
    if isinstance(node, list):
        return [_convert(n, ref_prefix, v3) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if types:
                out["type"] = types[0]
            continue
        if key == "properties" and isinstance(value, dict):
            props = {}
            for name, sub in value.items():
                sub = _convert(sub, ref_prefix, v3)
                if name in ("apiVersion", "kind"):
                    sub.pop("enum", None)  # added by kubernetes-validate; kube-apiserver has none
                props[name] = sub
            out["properties"] = props
            continue
        out[key] = _convert(value, ref_prefix, v3)
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = ref_prefix + ref.removeprefix(sch.REF_PREFIX)
        if v3 and len(out) > 0:
            out = {"allOf": [{"$ref": target}], **out}  # kube-apiserver's v3 form of a ref with a description
        else:
            out = {"$ref": target, **({"description": out["description"]} if "description" in out else {})}
    return out


def _definition(name: str, v3: bool) -> dict:
    d = sch.definitions()[name]
    if name == QUANTITY:
        base = {"description": d.get("description", "Quantity is a fixed-point representation of a number.")}
        return {**base, "oneOf": [{"type": "string"}, {"type": "number"}]} if v3 else {**base, "type": "string"}
    if name == INT_OR_STRING:
        return {"description": d.get("description", "IntOrString is a type that can hold an int32 or a string."),
                "type": "string", "format": "int-or-string",
                **({"x-kubernetes-int-or-string": True} if v3 else {})}
    return _convert(d, "#/components/schemas/" if v3 else "#/definitions/", v3)


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(sch.REF_PREFIX):
            out.add(ref.removeprefix(sch.REF_PREFIX))
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _closure(names: set[str]) -> list[str]:
    defs = sch.definitions()
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        found: set[str] = set()
        _refs(defs[name], found)
        todo.extend(found - seen)
    return sorted(seen)


# -------------------------------------------------------------------------------------------- paths


def group_version_key(api_version: str) -> str:
    """`v1` -> `api/v1`, `apps/v1` -> `apis/apps/v1` (the /openapi/v3 index keys)."""
    return f"apis/{api_version}" if "/" in api_version else f"api/{api_version}"


def _camel_gv(info: KindInfo) -> str:
    group, version = sch.split_api_version(info.api_version)
    name = "".join(p.capitalize() for p in group.split(".")[0].split("-")) if group else "Core"
    return f"{name}{version.capitalize()}"


def _param(name: str, v3: bool, where: str = "query", required: bool = False) -> dict:
    kind = "integer" if name in _INT_PARAMS else "boolean" if name in _BOOL_PARAMS else "string"
    p: dict[str, Any] = {"name": name, "in": where, "description": _PARAMS.get(name, f"name of the {name}")}
    if where == "path":
        p["required"] = True
        p["description"] = {"name": "name of the object", "namespace": "object name and auth scope, such as "
                            "for teams and projects"}.get(name, name)
    elif required:
        p["required"] = True
    typ = {"type": kind, "uniqueItems": True}
    if v3:
        p["schema"] = typ
    else:
        p.update(typ)
    return p


def _ref(name: str, v3: bool) -> dict:
    return {"$ref": ("#/components/schemas/" if v3 else "#/definitions/") + name}


def _operation(action: str, verb_id: str, info: KindInfo, gvk: dict, response: str, v3: bool,
               params: tuple[str, ...], body: str | None = None, patch: bool = False,
               created: bool = False, list_all: bool = False, sub: str = "") -> dict:
    namespaced = info.namespaced and not list_all
    suffix = "ForAllNamespaces" if list_all else ""
    # kube-apiserver's ids: listCoreV1NamespacedPod, deleteCoreV1CollectionNamespacedPod, readAppsV1...Scale
    verb, collection = ("delete", "Collection") if verb_id == "deletecollection" else (verb_id, "")
    op_id = (f"{verb}{_camel_gv(info)}{collection}{'Namespaced' if namespaced else ''}{info.kind}"
             f"{sub.capitalize()}{suffix}")
    op: dict[str, Any] = {
        "description": f"{verb_id} {'status of ' if sub == 'status' else 'scale of ' if sub == 'scale' else ''}"
                       f"the specified {info.kind}",
        "operationId": op_id, "tags": [_camel_gv(info).lower()],
        "parameters": [_param(p, v3) for p in params],
        "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
    }
    ok = {"description": "OK"}
    codes = ["200", "201"] if created else ["200"]
    if v3:
        content = {m: {"schema": _ref(response, True)} for m in MEDIA}
        op["responses"] = {**{c: {"description": "Created" if c == "201" else "OK", "content": content}
                              for c in codes}, "401": {"description": "Unauthorized"}}
        if body is not None:
            types = PATCH_TYPES if patch else ("*/*",)
            op["requestBody"] = {"content": {t: {"schema": _ref(body, True)} for t in types}, "required": True}
    else:
        op["consumes"] = list(PATCH_TYPES) if patch else ["*/*"]
        op["produces"] = list(MEDIA)
        op["schemes"] = ["https"]
        op["responses"] = {**{c: {**ok, "description": "Created" if c == "201" else "OK",
                                  "schema": _ref(response, False)} for c in codes},
                           "401": {"description": "Unauthorized"}}
        if body is not None:
            op["parameters"].insert(0, {"name": "body", "in": "body", "required": True, "schema": _ref(body, False)})
    return op


def _kind_paths(info: KindInfo, v3: bool) -> dict[str, dict]:
    definition = sch.kind_definition(info.kind)
    list_def = sch.definition_for(*sch.split_api_version(info.api_version), info.kind + "List") or definition
    group, version = sch.split_api_version(info.api_version)
    gvk = {"group": group, "kind": info.kind, "version": version}
    root = f"/apis/{info.api_version}" if group else f"/api/{version}"
    coll = f"{root}/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"{root}/{info.plural}"
    item = f"{coll}/{{name}}"
    scope = [_param("namespace", v3, "path")] if info.namespaced else []
    write = ("dryRun", "fieldManager", "fieldValidation")
    listing = ("labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch")
    status_def = META + "Status"
    paths: dict[str, dict] = {
        coll: {
            "get": _operation("list", "list", info, gvk, list_def, v3, listing),
            "post": _operation("post", "create", info, gvk, definition, v3, write, body=definition, created=True),
            "delete": _operation("deletecollection", "deletecollection", info, gvk, status_def, v3,
                                 ("dryRun", "gracePeriodSeconds", "propagationPolicy", "labelSelector",
                                  "fieldSelector"), body=META + "DeleteOptions"),
            "parameters": [*scope, _param("pretty", v3)],
        },
        item: {
            "get": _operation("get", "read", info, gvk, definition, v3, ()),
            "put": _operation("put", "replace", info, gvk, definition, v3, write, body=definition, created=True),
            "patch": _operation("patch", "patch", info, gvk, definition, v3, (*write, "force"),
                                body=META + "Patch", patch=True, created=True),
            "delete": _operation("delete", "delete", info, gvk, status_def, v3,
                                 ("dryRun", "gracePeriodSeconds", "propagationPolicy"), body=META + "DeleteOptions"),
            "parameters": [_param("name", v3, "path"), *scope, _param("pretty", v3)],
        },
    }
    if info.namespaced:
        paths[f"{root}/{info.plural}"] = {
            "get": _operation("list", "list", info, gvk, list_def, v3, listing, list_all=True),
            "parameters": [_param("pretty", v3)]}
    for sub in SUBRESOURCES.get(info.kind, ()):
        target = SCALE if sub == "scale" else definition
        sub_gvk = {"group": "autoscaling", "kind": "Scale", "version": "v1"} if sub == "scale" else gvk
        paths[f"{item}/{sub}"] = {
            "get": _operation("get", "read", info, sub_gvk, target, v3, (), sub=sub),
            "put": _operation("put", "replace", info, sub_gvk, target, v3, write, body=target, created=True, sub=sub),
            "patch": _operation("patch", "patch", info, sub_gvk, target, v3, (*write, "force"),
                                body=META + "Patch", patch=True, created=True, sub=sub),
            "parameters": [_param("name", v3, "path"), *scope, _param("pretty", v3)],
        }
    return paths


def _served(api_version: str | None = None) -> list[KindInfo]:
    out = []
    for info in KINDS.values():
        if api_version is not None and info.api_version != api_version:
            continue
        try:
            sch.kind_definition(info.kind)
        except KeyError:
            continue
        out.append(info)
    return out


def _needed(infos: list[KindInfo]) -> list[str]:
    roots = {META + "Status", META + "DeleteOptions", META + "Patch", META + "WatchEvent"}
    for info in infos:
        roots.add(sch.kind_definition(info.kind))
        list_def = sch.definition_for(*sch.split_api_version(info.api_version), info.kind + "List")
        if list_def:
            roots.add(list_def)
        if "scale" in SUBRESOURCES.get(info.kind, ()):
            roots.add(SCALE)
    return _closure(roots)


# ------------------------------------------------------------------------------------------ documents


@cache
def _v2() -> dict:
    infos = _served()
    paths: dict[str, dict] = {}
    for info in infos:
        paths.update(_kind_paths(info, v3=False))
    return {"swagger": "2.0", "info": INFO, "paths": dict(sorted(paths.items())),
            "definitions": {name: _definition(name, v3=False) for name in _needed(infos)},
            "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication",
                                                    "type": "apiKey", "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}]}


def openapi_v2() -> dict:
    """The Swagger 2.0 document (`/openapi/v2`) of every served kind."""
    return copy.deepcopy(_v2())


@cache
def _v3(group_version: str) -> dict | None:
    api_version = group_version.split("/", 1)[1] if "/" in group_version else group_version
    if not group_version.startswith(("api/", "apis/")):
        return None
    infos = _served(api_version)
    if not infos or group_version_key(api_version) != group_version:
        return None
    paths: dict[str, dict] = {}
    for info in infos:
        paths.update(_kind_paths(info, v3=True))
    return {"openapi": "3.0.0", "info": INFO, "paths": dict(sorted(paths.items())),
            "components": {"schemas": {name: _definition(name, v3=True) for name in _needed(infos)},
                           "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token "
                                                               "authentication", "name": "authorization",
                                                               "in": "header"}}}}


def openapi_v3(group_version: str) -> dict | None:
    """The OpenAPI 3.0 document of one group-version (`api/v1`, `apis/apps/v1`), or None if not served."""
    doc = _v3(group_version.strip("/"))
    return copy.deepcopy(doc) if doc is not None else None


def document_hash(doc: dict) -> str:
    """The hash kube-apiserver puts in serverRelativeURL (content-addressed: clients cache by it)."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha512(text).hexdigest().upper()[:128]


@cache
def _index() -> dict:
    keys = sorted({group_version_key(info.api_version) for info in _served()})
    paths = {}
    for key in keys:
        doc = _v3(key)
        assert doc is not None
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={document_hash(doc)}"}
    return {"paths": paths}


def openapi_v3_index() -> dict:
    """`/openapi/v3`: each served group-version and the URL (with its content hash) of its document."""
    return copy.deepcopy(_index())
