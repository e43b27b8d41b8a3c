"""PATCH bodies applied to an object: JSON patch, merge patch, strategic merge patch, server-side apply.

Pure: `apply_patch(patch_type, current, body, kind)` returns the patched object (a new dict) or raises
ValidationError (`patch: ...`, the field path first). Strategic merge patch follows
k8s.io/apimachinery/pkg/util/strategicpatch (patch.go, server options MergeParallelList and
IgnoreUnmatchedNulls): list merge keys and patch strategies come from the served kinds' OpenAPI
schemas (netk8s/model/schema.py), as kube-apiserver takes them from the Go struct tags. Server-side
apply lives in netk8s/apiserver/ssa.py and is re-exported here.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer

from netk8s.apiserver.ssa import server_side_apply, track_update
from netk8s.errors import ValidationError
from netk8s.model import schema as sch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"

__all__ = ["PATCH_TYPES", "apply_patch", "json_patch", "merge_patch", "server_side_apply",
           "strategic_merge_patch", "track_update"]

Schema = dict[str, Any]


def _load(body: bytes, what: str) -> Any:
    try:
        return json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (UnicodeDecodeError, ValueError) as err:
        raise ValidationError(f"patch: {what} is not valid JSON: {err}") from None


def apply_patch(patch_type: str, current: dict, body: bytes, kind: str) -> dict:
    """`current` patched by `body` of the given Content-Type (without parameters); a new dict."""
    media = patch_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        return json_patch(current, _load(body, "the JSON patch"))
    if media == MERGE_PATCH:
        patch = _load(body, "the merge patch")
        if not isinstance(patch, dict):
            raise ValidationError("patch: a merge patch must be a JSON object")
        out = merge_patch(current, patch)
        return out
    if media == STRATEGIC_MERGE_PATCH:
        patch = _load(body, "the strategic merge patch")
        if not isinstance(patch, dict):
            raise ValidationError("patch: a strategic merge patch must be a JSON object")
        return strategic_merge_patch(current, patch, kind)
    raise ValidationError(f"patch: unsupported patch type {patch_type!r} (known: {', '.join(PATCH_TYPES)})")


# --------------------------------------------------------------------------------- RFC 6902, RFC 7386


def json_patch(current: dict, ops: Any) -> dict:
    """RFC 6902 (the `jsonpatch` package); errors word the failing operation."""
    if not isinstance(ops, list):
        raise ValidationError("patch: a JSON patch must be a list of operations")
    try:
        out = jsonpatch.JsonPatch(ops).apply(current, in_place=False)
    except jsonpatch.JsonPatchTestFailed as err:
        raise ValidationError(f"patch: testing value failed: {err}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as err:
        raise ValidationError(f"patch: the JSON patch cannot be applied: {err}") from None
    if not isinstance(out, dict):
        raise ValidationError("patch: the JSON patch must leave an object")
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# ---------------------------------------------------------------------------------- strategic merge


def strategic_merge_patch(current: dict, patch: dict, kind: str) -> dict:
    """apimachinery StrategicMergeMapPatch(current, patch) with the kind's patch metadata."""
    try:
        node: Schema | None = sch.resolve(sch.kind_schema(kind))
    except KeyError:
        node = None
    return _merge_map(copy.deepcopy(current), copy.deepcopy(patch), node, "")


def _fail(path: str, problem: str) -> ValidationError:
    return ValidationError(f"patch: {path.lstrip('.') or '<root>'}: {problem}")


def _child(node: Schema | None, key: str) -> Schema | None:
    return sch.child(node, key) if node is not None else None


def _strategy(node: Schema | None) -> tuple[str, str | None]:
    """(merge|replace|"", merge key) of a field; retainKeys is handled by its directive."""
    if node is None:
        return "", None
    strategies, key = sch.patch_strategy(node)
    if "replace" in strategies:
        return "replace", key
    return ("merge" if "merge" in strategies else ""), key


def _merge_map(original: dict, patch: dict, node: Schema | None, path: str) -> dict:
    directive = patch.pop(DIRECTIVE, None)
    if directive is not None:
        if directive == "replace":
            return _clean(patch, node, path)
        if directive == "delete":
            return {}
        raise _fail(path, f"Unknown patch type: {directive!r} in map")
    if RETAIN_KEYS in patch:
        keep = patch.pop(RETAIN_KEYS)
        if not isinstance(keep, list):
            raise _fail(path, "$retainKeys must be a list of field names")
        for key, value in patch.items():
            if not key.startswith("$") and value is not None and key not in keep:
                raise _fail(path, f"the patch has key {key!r} that is not in $retainKeys {keep}")
        for key in [k for k in original if k not in keep]:
            del original[key]
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        _merge_ordered(original, patch, key, node, path)
    for key, value in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            field = key[len(DELETE_FROM_PRIMITIVE_LIST):]
            if isinstance(original.get(field), list) and isinstance(value, list):
                original[field] = [v for v in original[field] if v not in value]
            continue
        sub = _child(node, key)
        sub_path = f"{path}.{key}"
        if value is None:
            original.pop(key, None)
        elif key not in original or type(original[key]) is not type(value):
            original[key] = _clean(value, sub, sub_path)
        elif isinstance(value, dict):
            strategy, _ = _strategy(sub)
            original[key] = _clean(value, sub, sub_path) if strategy == "replace" else \
                _merge_map(original[key], value, sub, sub_path)
        elif isinstance(value, list):
            original[key] = _merge_list_field(original[key], value, sub, sub_path)
        else:
            original[key] = value
    return original


def _clean(value: Any, node: Schema | None, path: str) -> Any:
    """A patch value for a field the original lacks: directives applied to nothing, nulls dropped."""
    if isinstance(value, dict):
        return _merge_map({}, value, node, path)
    if isinstance(value, list):
        return _merge_list_field([], value, node, path)
    return value


def _merge_list_field(original: list, patch: list, node: Schema | None, path: str) -> list:
    strategy, merge_key = _strategy(node)
    if strategy != "merge":
        item_node = sch.items(node) if node is not None else None
        return [_clean(v, item_node, f"{path}[{i}]") for i, v in enumerate(patch)
                if not (isinstance(v, dict) and v.get(DIRECTIVE) is not None)]
    return _merge_slice(original, patch, node, merge_key, path)


def _merge_slice(original: list, patch: list, node: Schema | None, merge_key: str | None, path: str) -> list:
    if not original and not patch:
        return original
    maps = any(isinstance(v, dict) for v in original + patch)
    item_node = sch.items(node) if node is not None else None
    if not maps:
        merged = _dedupe(original + patch)
        return _normalize_order(*_partition(merged, patch, None), patch, original, None)
    if not merge_key:
        raise _fail(path, "cannot merge lists without merge key")
    original, patch = _special_elements(original, patch, merge_key, path)
    merged = copy.copy(original)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise _fail(path, f"map: {json.dumps(item)} does not contain declared merge key: {merge_key}")
        at = _find(merged, item[merge_key], merge_key)
        if at is None:
            merged.append(_clean(item, item_node, f"{path}[{merge_key}={item[merge_key]}]"))
        else:
            merged[at] = _merge_map(merged[at], item, item_node, f"{path}[{merge_key}={item[merge_key]}]")
    return _normalize_order(*_partition(merged, patch, merge_key), patch, original, merge_key)


def _special_elements(original: list, patch: list, merge_key: str, path: str) -> tuple[list, list]:
    """mergeSliceWithSpecialElements: `$patch: replace` and `$patch: delete` items of a patch list."""
    rest = []
    deleted = []
    for item in patch:
        directive = item.get(DIRECTIVE) if isinstance(item, dict) else None
        if directive is None:
            rest.append(item)
        elif directive == "replace":
            return [], [i for i in patch if not (isinstance(i, dict) and DIRECTIVE in i)]
        elif directive == "delete":
            if merge_key not in item:
                raise _fail(path, f"delete directive {json.dumps(item)} does not contain merge key {merge_key}")
            deleted.append(item[merge_key])
        elif directive != "merge":
            raise _fail(path, f"Unknown patch type: {directive!r} in list")
    kept = [o for o in original if not (isinstance(o, dict) and o.get(merge_key) in deleted)]
    return kept, rest


def _find(items: list, value: Any, merge_key: str | None) -> int | None:
    for i, item in enumerate(items):
        if merge_key is None:
            if item == value:
                return i
        elif isinstance(item, dict) and item.get(merge_key) == value:
            return i
    return None


def _key_of(item: Any, merge_key: str | None) -> Any:
    return item.get(merge_key) if merge_key is not None and isinstance(item, dict) else item


def _dedupe(values: list) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _partition(merged: list, order: list, merge_key: str | None) -> tuple[list, list]:
    """(items present in `order` by merge key, server-only items)."""
    keys = [_key_of(i, merge_key) for i in order]
    present = [m for m in merged if _key_of(m, merge_key) in keys]
    server_only = [m for m in merged if _key_of(m, merge_key) not in keys]
    return present, server_only


def _index(order: list, item: Any, merge_key: str | None) -> int:
    found = _find(order, _key_of(item, merge_key), merge_key)
    return -1 if found is None else found


def _normalize_order(patch_items: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str | None) -> list:
    """normalizeElementOrder: patch items in patch order, server-only ones in live order, interleaved
    by mergeSortedSlice (a server-only item goes first only when both are in the live list before)."""
    left = sorted(server_only, key=lambda i: _index(server_order, i, merge_key))
    right = sorted(patch_items, key=lambda i: _index(patch_order, i, merge_key))
    out: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
        elif i >= len(left):
            out.append(right[j])
            j += 1
        else:
            li, ri = _index(server_order, left[i], merge_key), _index(server_order, right[j], merge_key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _merge_ordered(original: dict, patch: dict, directive_key: str, node: Schema | None, path: str) -> None:
    """mergePatchIntoOriginal: a `$setElementOrder/<field>` list with the field's patch list."""
    order = patch.pop(directive_key)
    field = directive_key[len(SET_ELEMENT_ORDER):]
    sub = _child(node, field)
    _, merge_key = _strategy(sub)
    sub_path = f"{path}.{field}"
    if not isinstance(order, list):
        raise _fail(sub_path, "$setElementOrder must be a list")
    found_original, found_patch = isinstance(original.get(field), list), field in patch
    patch_list = patch.pop(field) if found_patch else []
    if patch_list is None:
        original.pop(field, None)
        return
    if not isinstance(patch_list, list):
        raise _fail(sub_path, "must be a list to go with $setElementOrder")
    order_keys = [_key_of(i, merge_key) for i in order]
    for item in patch_list:
        if not (isinstance(item, dict) and item.get(DIRECTIVE) is not None) and \
                _key_of(item, merge_key) not in order_keys:
            raise _fail(sub_path, f"element {json.dumps(item)} of the patch is not in $setElementOrder")
    live = original[field] if found_original else []
    if found_original and not found_patch:
        merged = live
    elif not found_original:
        merged = _merge_list_field([], patch_list, sub, sub_path)
    else:
        merged = _merge_list_field(live, patch_list, sub, sub_path)
    if not found_original and not found_patch:
        return
    original[field] = _normalize_order(*_partition(merged, order, merge_key), order, live, merge_key)
