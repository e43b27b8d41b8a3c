"""Server-side apply and metadata.managedFields (FieldsV1), after sigs.k8s.io/structured-merge-diff.

A field set is a Python set of paths; a path is a tuple of elements `("f", name)` (a field),
`("k", '{"name":"web"}')` (an item of an associative list, by its list-map keys as sorted compact
JSON), `("v", '"x"')` (an item of a set list) or `("i", 3)` (an item of an atomic list, never tracked
on its own). FieldsV1 is the same set as nested `{"f:spec": {"f:replicas": {}}}` with `"."` marking a
path that is itself a member and has children, as kube-apiserver writes it.

List semantics come from the schemas (netk8s/model/schema.py: `x-kubernetes-list-type`,
`x-kubernetes-list-map-keys`, patch merge keys). Identity and server-owned fields (apiVersion, kind,
metadata.name/namespace/uid/resourceVersion/..., status) are not tracked, as fieldmanager strips them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from netk8s.errors import Conflict, ValidationError
from netk8s.model import schema as sch

Element = tuple[str, Any]
Path = tuple[Element, ...]
Schema = dict[str, Any]

APPLY = "Apply"
UPDATE = "Update"

# fieldmanager's stripped fields (pkg/endpoints/handlers/fieldmanager: stripMeta) plus status, reset on
# the main resource for the kinds netk8s serves (their strategies' GetResetFields).
_UNTRACKED_TOP = {"apiVersion", "kind", "status"}
_UNTRACKED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                   "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}


def _kind_node(kind: str) -> Schema | None:
    try:
        return sch.resolve(sch.kind_schema(kind))
    except KeyError:
        return None


# Defaults of list-map key fields: structured-merge-diff fills a missing key from the schema's default
# (kube-apiserver's OpenAPI v3 has `default: TCP` for the ports' protocol; the v2-era schemas lack it).
KEY_DEFAULTS = {"protocol": "TCP"}


def _key_json(item: dict, keys: list[str]) -> str:
    pairs = {k: item[k] if k in item else KEY_DEFAULTS[k] for k in keys if k in item or k in KEY_DEFAULTS}
    return json.dumps(pairs, separators=(",", ":"), sort_keys=True)


def _value_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _list_info(node: Schema | None) -> tuple[str, list[str]]:
    return sch.list_type(node) if node is not None else ("atomic", [])


def _item_element(item: Any, lt: str, keys: list[str], index: int) -> Element:
    if lt == "map" and isinstance(item, dict):
        return ("k", _key_json(item, keys))
    if lt == "set":
        return ("v", _value_json(item))
    return ("i", index)


# ------------------------------------------------------------------------------------------ field sets


def _walk(value: Any, node: Schema | None, prefix: Path, out: set[Path]) -> None:
    """Insert the paths of `value`: leaves, list items (`k:`/`v:`) and empty maps, not filled maps."""
    if isinstance(value, dict):
        if not value and prefix:
            out.add(prefix)
        for key, sub in value.items():
            _walk(sub, sch.child(node, key) if node is not None else None, (*prefix, ("f", key)), out)
        return
    if isinstance(value, list):
        lt, keys = _list_info(node)
        if lt == "atomic":
            out.add(prefix)
            return
        item_node = sch.items(node) if node is not None else None
        for i, item in enumerate(value):
            path = (*prefix, _item_element(item, lt, keys, i))
            out.add(path)
            if lt == "map" and isinstance(item, dict):
                _walk(item, item_node, path, out)
        return
    out.add(prefix)


def _tracked(obj: dict) -> dict:
    out = {k: v for k, v in obj.items() if k not in _UNTRACKED_TOP}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _UNTRACKED_META}
    if meta:
        out["metadata"] = meta
    else:
        out.pop("metadata", None)
    return out


def field_set(obj: dict, kind: str) -> set[Path]:
    """The set of fields an object (or an apply configuration) sets."""
    out: set[Path] = set()
    _walk(_tracked(obj), _kind_node(kind), (), out)
    out.discard(())
    return out


def to_fields_v1(paths: set[Path]) -> dict:
    """A field set as FieldsV1 JSON."""
    root: dict = {}
    for path in sorted(paths, key=len):
        node = root
        for el in path:
            node = node.setdefault(_encode(el), {})
    # A member with children carries ".": add it where a path is both.
    for path in paths:
        node = root
        for el in path:
            node = node[_encode(el)]
        if node and "." not in node:
            node["."] = {}
    return _sorted(root)


def _sorted(d: dict) -> dict:
    return {k: _sorted(d[k]) for k in sorted(d, key=lambda k: (k != ".", k))}


def _encode(el: Element) -> str:
    kind, v = el
    return f"{kind}:{v}"


def from_fields_v1(fields: dict, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in (fields or {}).items():
        if key == ".":
            out.add(prefix)
            continue
        kind, _, rest = key.partition(":")
        el: Element = (kind, int(rest) if kind == "i" else rest)
        path = (*prefix, el)
        if not sub:
            out.add(path)
        else:
            out |= from_fields_v1(sub, path)
    return out


def path_string(path: Path) -> str:
    """structured-merge-diff's fieldpath String(): `.spec.containers[name="web"].image`."""
    out = []
    for kind, v in path:
        if kind == "f":
            out.append(f".{v}")
        elif kind == "k":
            pairs = json.loads(v)
            out.append("[" + ",".join(f"{k}={json.dumps(pairs[k])}" for k in sorted(pairs)) + "]")
        elif kind == "v":
            out.append(f"[={v}]")
        else:
            out.append(f"[{v}]")
    return "".join(out)


# --------------------------------------------------------------------------------------- value access

_MISSING = object()


def _lookup(obj: Any, path: Path, node: Schema | None) -> Any:
    """The value at a path, or _MISSING."""
    cur = obj
    for kind, v in path:
        if kind == "f":
            if not isinstance(cur, dict) or v not in cur:
                return _MISSING
            cur = cur[v]
            node = sch.child(node, v) if node is not None else None
            continue
        if not isinstance(cur, list):
            return _MISSING
        lt, keys = _list_info(node)
        found = _MISSING
        for i, item in enumerate(cur):
            if _item_element(item, lt, keys, i) == (kind, v):
                found = item
                break
        if found is _MISSING:
            return _MISSING
        cur = found
        node = sch.items(node) if node is not None else None
    return cur


def _remove(obj: Any, path: Path, node: Schema | None) -> None:
    """Delete the field or list item at a path (no-op if absent); empty parents are left in place."""
    if not path:
        return
    parent_path, last = path[:-1], path[-1]
    parent_node = node
    for kind, v in parent_path:
        parent_node = (sch.child(parent_node, v) if kind == "f" else sch.items(parent_node)) \
            if parent_node is not None else None
    parent = _lookup(obj, parent_path, node) if parent_path else obj
    if last[0] == "f":
        if isinstance(parent, dict):
            parent.pop(last[1], None)
    elif isinstance(parent, list):
        lt, keys = _list_info(parent_node)
        parent[:] = [item for i, item in enumerate(parent) if _item_element(item, lt, keys, i) != last]
    if parent_path and parent in ({}, []):
        # Go's omitempty drops the emptied list or map when the object is stored.
        _remove(obj, parent_path, node)


# ------------------------------------------------------------------------------------------- merging


def _merge(live: Any, applied: Any, node: Schema | None) -> Any:
    """The applied configuration merged over the live object, by the schema's list semantics.

    `live` must be the caller's own copy: unchanged parts of it are reused, not copied again."""
    if isinstance(live, dict) and isinstance(applied, dict):
        out = dict(live)
        for key, value in applied.items():
            sub = sch.child(node, key) if node is not None else None
            out[key] = _merge(live[key], value, sub) if key in live else copy.deepcopy(value)
        return out
    if isinstance(live, list) and isinstance(applied, list):
        lt, keys = _list_info(node)
        if lt == "atomic":
            return copy.deepcopy(applied)
        item_node = sch.items(node) if node is not None else None
        live_items = {_item_element(item, lt, keys, i): item for i, item in enumerate(live)}
        applied_els = [_item_element(item, lt, keys, i) for i, item in enumerate(applied)]
        merged = []
        for el, item in zip(applied_els, applied):
            merged.append(_merge(live_items[el], item, item_node) if el in live_items else copy.deepcopy(item))
        # Items only the live object has keep their place after the applied ones (SMD keeps live order
        # for them; applied order wins for the applier's items).
        merged += [item for el, item in live_items.items() if el not in applied_els]
        return merged
    return copy.deepcopy(applied)


# ---------------------------------------------------------------------------------------- managers


def _entries(obj: dict | None) -> list[dict]:
    return [dict(e) for e in ((obj or {}).get("metadata") or {}).get("managedFields") or []]


def _entry_set(entry: dict) -> set[Path]:
    return from_fields_v1(entry.get("fieldsV1") or {})


def _entry(manager: str, operation: str, api_version: str, now: str, paths: set[Path],
           subresource: str = "") -> dict:
    out = {"apiVersion": api_version, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(paths),
           "manager": manager, "operation": operation, "time": now}
    if subresource:
        out["subresource"] = subresource
    return out


def _leaves(paths: set[Path]) -> list[Path]:
    return sorted(paths, key=path_string)


def conflict_error(conflicts: list[tuple[str, str, Path]]) -> Conflict:
    """kube-apiserver's wording (fieldmanager/internal/conflict.go) with the causes it attaches."""
    by_manager: dict[tuple[str, str], list[Path]] = {}
    for manager, api_version, path in conflicts:
        by_manager.setdefault((manager, api_version), []).append(path)
    n = len(conflicts)
    head = f"Apply failed with {n} conflict{'s' if n != 1 else ''}: "
    if n == 1:
        (manager, api_version), paths = next(iter(by_manager.items()))
        message = f'{head}conflict with "{manager}" using {api_version}: {path_string(paths[0])}'
    else:
        parts = []
        for (manager, api_version), paths in sorted(by_manager.items()):
            word = "conflicts" if len(paths) > 1 else "conflict"
            lines = "".join(f"\n- {path_string(p)}" for p in sorted(paths, key=path_string))
            parts.append(f'{word} with "{manager}" using {api_version}:{lines}')
        message = head + "\n".join(parts)
    err = Conflict(message, hint="use --force-conflicts to take over the fields, or drop them from your "
                                 "configuration")
    err.causes = [{"reason": "FieldManagerConflict",  # type: ignore[attr-defined]
                   "message": f'conflict with "{manager}" using {api_version}', "field": path_string(path)}
                  for manager, api_version, path in sorted(conflicts, key=lambda c: (c[0], path_string(c[2])))]
    return err


def server_side_apply(current: dict | None, applied: dict, manager: str, force: bool, kind: str,
                      now: str) -> dict:
    """The object after `manager` applies `applied` (an apply configuration) over `current`.

    Fields the configuration sets with a value other than the live one, owned by another manager,
    are conflicts (Conflict, 409) unless `force`, which takes them over. Fields this manager applied
    before and no longer applies are removed unless another manager owns them too.
    """
    if not isinstance(applied, dict):
        raise ValidationError("body: the apply configuration must be an object")
    if not manager:
        raise ValidationError("fieldManager: is required for apply patch")
    node = _kind_node(kind)
    api_version = str(applied.get("apiVersion") or (current or {}).get("apiVersion") or "")
    applied_set = field_set(applied, kind)
    entries = _entries(current)
    live = copy.deepcopy(current) if current is not None else {}
    mine = next((e for e in entries if e.get("manager") == manager and e.get("operation") == APPLY
                 and not e.get("subresource")), None)
    others = [e for e in entries if e is not mine]
    tracked_applied = _tracked(applied)

    conflicts: list[tuple[str, str, Path]] = []
    other_sets = [(_entry_set(e), e) for e in others]
    for path in _leaves(applied_set):
        live_value = _lookup(live, path, node)
        if live_value is _MISSING:
            continue
        new_value = _lookup(tracked_applied, path, node)
        if path[-1][0] in ("k", "v") and isinstance(live_value, dict):
            continue  # an item's own membership: its fields are compared one by one
        if live_value == new_value:
            continue
        for paths, entry in other_sets:
            if path in paths:
                conflicts.append((str(entry.get("manager", "")), str(entry.get("apiVersion", "")), path))
    if conflicts and not force:
        raise conflict_error(conflicts)

    merged = _merge(live, applied, node) if current is not None else copy.deepcopy(applied)
    taken = {p for _, _, p in conflicts}
    new_others = []
    for paths, entry in other_sets:
        left = paths - taken
        if left:
            new_others.append({**entry, "fieldsV1": to_fields_v1(left)} if left != paths else entry)
    owned_by_others: set[Path] = set().union(*(_entry_set(e) for e in new_others)) if new_others else set()
    previous = _entry_set(mine) if mine is not None else set()
    kept = applied_set | owned_by_others
    removed: list[Path] = []
    for path in sorted(previous - kept, key=len):
        if any(path[:len(r)] == r for r in removed) or any(k[:len(path)] == path for k in kept):
            continue  # inside an item already removed, or holds fields still owned
        _remove(merged, path, node)
        removed.append(path)
    meta = merged.setdefault("metadata", {})
    meta["managedFields"] = [*new_others, _entry(manager, APPLY, api_version, now, applied_set)]
    if current is not None:
        for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp"):
            if key in (current.get("metadata") or {}):
                meta[key] = current["metadata"][key]
    return merged


def _changed(old: Any, new: Any, node: Schema | None, prefix: Path, out: set[Path]) -> None:
    """Paths added or modified from `old` to `new` (maps created on the way are members too)."""
    if isinstance(new, dict):
        if not isinstance(old, dict):
            # A created free map (labels, selector) is a member itself; a struct (spec) is not.
            if prefix and (node is None or sch.properties(node) is None):
                out.add(prefix)
            old = {}
        for key, value in new.items():
            sub = sch.child(node, key) if node is not None else None
            _changed(old.get(key, _MISSING), value, sub, (*prefix, ("f", key)), out)
        return
    if isinstance(new, list) and isinstance(old, list) and _list_info(node)[0] != "atomic":
        lt, keys = _list_info(node)
        item_node = sch.items(node) if node is not None else None
        old_items = {_item_element(item, lt, keys, i): item for i, item in enumerate(old)}
        for i, item in enumerate(new):
            el = _item_element(item, lt, keys, i)
            if lt == "map" and isinstance(item, dict):
                _changed(old_items.get(el, _MISSING), item, item_node, (*prefix, el), out)
            elif el not in old_items:
                out.add((*prefix, el))
        return
    if isinstance(new, list) and _list_info(node)[0] != "atomic":
        _changed([], new, node, prefix, out)  # a new non-atomic list: tracked by its items
        return
    if old is _MISSING or old != new:
        out.add(prefix)


def track_update(old: dict | None, new: dict, manager: str, kind: str, now: str, subresource: str = "") -> dict:
    """managedFields after a non-apply write (create, update, patch) by `manager` (operation Update):
    the fields it added or changed become its own and leave other managers' sets, as fieldmanager does."""
    node = _kind_node(kind)
    changed: set[Path] = set()
    _changed(_tracked(old) if old is not None else _MISSING, _tracked(new), node, (), changed)
    changed.discard(())
    entries = _entries(old) if old is not None else []
    given = (new.get("metadata") or {}).get("managedFields")
    if old is not None and isinstance(given, list) and given != (old.get("metadata") or {}).get("managedFields"):
        # the client rewrote managedFields (kubectl's client-side to server-side apply upgrade, a reset
        # to []): fieldmanager takes the request's as the new base (managedfields.go "decodeManagedFields")
        entries = [e for e in given if isinstance(e, dict)]
    out = copy.deepcopy(new)
    if not changed:
        if entries:
            out.setdefault("metadata", {})["managedFields"] = entries
        return out
    kept = []
    mine: set[Path] = set()
    for entry in entries:
        paths = _entry_set(entry)
        if entry.get("manager") == manager and entry.get("operation") == UPDATE and \
                entry.get("subresource", "") == subresource:
            mine = paths
            continue
        left = paths - changed
        if left:
            kept.append({**entry, "fieldsV1": to_fields_v1(left)} if left != paths else entry)
    api_version = str(new.get("apiVersion") or "")
    out.setdefault("metadata", {})["managedFields"] = [
        *kept, _entry(manager, UPDATE, api_version, now, mine | changed, subresource)]
    return out
