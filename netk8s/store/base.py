"""The Store protocol every backend (SQLite, etcd, in-memory fake) implements, and helpers on top of it.

Objects are plain dicts in Kubernetes' shape (apiVersion, kind, metadata, spec, status). The store owns
metadata.uid, metadata.resourceVersion (the global revision of the object's last write, as a string,
like the API server) and metadata.creationTimestamp. Cluster-scoped kinds use namespace "".
"""

from __future__ import annotations

import builtins
import copy
import json
import secrets
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal, Protocol

from netk8s.errors import AlreadyExists, Conflict, Expired, NotFound, ValidationError
from netk8s.model.kinds import kind_info, object_key
from netk8s.model.status import rfc3339

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
OpType = Literal["create", "update", "put", "delete"]


@dataclass(frozen=True)
class Event:
    revision: int
    type: EventType
    object: dict  # for DELETED: the object as it was last stored


@dataclass(frozen=True)
class Op:
    """One write inside a transaction.

    create: fails with AlreadyExists if present. update: fails with NotFound if absent, and with
    Conflict if obj.metadata.resourceVersion is set and differs. put: create or replace (keeps uid and
    creationTimestamp of an existing object). delete: obj needs only kind/metadata.name/namespace;
    NotFound if absent.
    """

    type: OpType
    obj: dict


class Store(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict:
        """The object, or NotFound."""
        ...

    def try_get(self, kind: str, namespace: str, name: str) -> dict | None: ...

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[dict], int]:
        """Objects of a kind (in one namespace, or all when None), sorted by (namespace, name),
        with the store revision they were read at."""
        ...

    def create(self, obj: dict) -> dict: ...

    def update(self, obj: dict) -> dict: ...

    def put(self, obj: dict) -> dict: ...

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> dict:
        """Removes the object and returns it as it was; NotFound if absent; Conflict on a stale rv."""
        ...

    def transaction(self, ops: builtins.list[Op]) -> builtins.list[dict]:
        """All ops or none (atomic). Returns the stored objects (deleted ones as they were)."""
        ...

    def revision(self) -> int: ...

    def watch(self, since: int, kinds: Collection[str] | None = None,
              timeout: float = 1.0) -> builtins.list[Event]:
        """Events with revision > since (of the given kinds), waiting up to `timeout` seconds for the
        first one; [] on timeout. Raises Expired if `since` is older than the kept history."""
        ...

    def close(self) -> None: ...


def mutate(store: Store, kind: str, namespace: str, name: str, fn: Callable[[dict], dict | None],
           retries: int = 20) -> dict | None:
    """Read-modify-write with optimistic concurrency: fn gets a copy, returns the new object (or None to
    leave it alone). Retries on Conflict. Returns the stored object, or None if fn declined or it is gone."""
    for _ in range(retries):
        cur = store.try_get(kind, namespace, name)
        if cur is None:
            return None
        new = fn(copy.deepcopy(cur))
        if new is None or new == cur:
            return None
        try:
            return store.update(new)
        except Conflict:
            continue
    raise Conflict(f"{kind.lower()}/{name}: too many concurrent updates")


# ---------------------------------------------------------------------------------------------------
# Write semantics shared by every backend. A backend opens its own transaction and hands apply_op() a
# TxnView over it; apply_op() decides what to write (uid, timestamps, resourceVersion, generation,
# no-op detection, Conflict/NotFound/AlreadyExists) so that SQLite, memory and a future etcd backend
# behave the same. Nothing here touches a file or reads the clock: the caller passes `now`.
# ---------------------------------------------------------------------------------------------------

Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" for cluster-scoped kinds

GENERATE_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
GENERATE_NAME_SUFFIX_LEN = 5


class TxnView(Protocol):
    """What apply_op() needs from a backend inside one open write transaction."""

    def read(self, key: Key) -> dict | None:
        """The object as stored (including earlier writes of this transaction), or None."""
        ...

    def bump(self) -> int:
        """Allocate the next global revision."""
        ...

    def write(self, rev: int, etype: EventType, key: Key, obj: dict) -> None:
        """Store obj under key (DELETED: remove key) and append the event (rev, etype, obj)."""
        ...


def normalize_key(kind: str, namespace: str | None, name: str) -> Key:
    """The storage key: cluster-scoped kinds always use namespace "", namespaced ones default to
    "default" when the namespace is empty (as kubectl does)."""
    if kind_info(kind).namespaced:
        return kind, namespace or "default", name
    return kind, "", name


def to_json(obj: object) -> str:
    """Canonical JSON text of an object (what the stores keep); ValidationError if not JSON-able."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        where = _ref(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValidationError(f"{where}: object is not JSON-serialisable: {e}") from None


def from_json(text: str) -> dict:
    data: dict = json.loads(text)
    return data


def clone(obj: dict) -> dict:
    """A private copy (JSON round trip), so callers never share dicts with the store."""
    return from_json(to_json(obj))


def utc_timestamp(seconds: float) -> str:
    """RFC 3339 UTC with seconds precision and a 'Z', like the API server's creationTimestamp."""
    return rfc3339(int(seconds))


def _ref(obj: dict) -> str:
    """`kind/name` for messages, tolerant of malformed objects."""
    kind = obj.get("kind", "?") if isinstance(obj, dict) else "?"
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{str(kind).lower()}/{name or '?'}"


def _plural(kind: str) -> str:
    return kind_info(kind).plural


def not_found(key: Key) -> NotFound:
    kind, ns, name = key
    where = f' in namespace "{ns}"' if ns else ""
    return NotFound(f'{_plural(kind)} "{name}" not found{where}',
                    hint=f"list what exists with: netk8s get {_plural(kind)}" + (f" -n {ns}" if ns else ""))


def _checked(obj: dict) -> dict:
    """A private copy of obj after checking the fields the store relies on."""
    if not isinstance(obj, dict):
        raise ValidationError(f"object must be a mapping, not {type(obj).__name__}")
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValidationError(f"{_ref(obj)}: kind: required")
    kind_info(kind)  # ValidationError on an unknown kind
    o = clone(obj)
    meta = o.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise ValidationError(f"{_ref(obj)}: metadata: must be a mapping")
    for field in ("name", "namespace", "generateName"):
        if meta.get(field) is not None and not isinstance(meta[field], str):
            raise ValidationError(f"{_ref(obj)}: metadata.{field}: must be a string")
    return o


def _key(o: dict) -> Key:
    if not o["metadata"].get("name"):
        raise ValidationError(f"{_ref(o)}: metadata.name: required",
                              hint="set metadata.name (or metadata.generateName on create)")
    return normalize_key(*object_key(o))


def key_of(obj: dict) -> Key:
    """The storage key of an object (checks kind and metadata.name)."""
    return _key(_checked(obj))


def _set_scope(o: dict, key: Key) -> None:
    meta = o["metadata"]
    meta["name"] = key[2]
    if key[1]:
        meta["namespace"] = key[1]
    else:
        meta.pop("namespace", None)


def _random_suffix() -> str:
    return "".join(secrets.choice(GENERATE_NAME_ALPHABET) for _ in range(GENERATE_NAME_SUFFIX_LEN))


def _create(view: TxnView, o: dict, now: str) -> dict:
    meta = o["metadata"]
    if not meta.get("name"):
        prefix = meta.get("generateName") or ""
        if not prefix:
            raise ValidationError(f"{_ref(o)}: metadata.name: required",
                                  hint="set metadata.name or metadata.generateName")
        for _ in range(100):
            meta["name"] = prefix + _random_suffix()
            if view.read(_key(o)) is None:
                break
        else:
            raise AlreadyExists(f"{_ref(o)}: no free name with generateName {prefix!r}")
    key = _key(o)
    if view.read(key) is not None:
        raise AlreadyExists(f'{_plural(key[0])} "{key[2]}" already exists',
                            hint="use `netk8s apply` to change an existing object")
    rev = view.bump()
    _set_scope(o, key)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now
    meta["resourceVersion"] = str(rev)
    meta["generation"] = 1
    view.write(rev, "ADDED", key, o)
    return o


def _replace(view: TxnView, o: dict, cur: dict, key: Key, check_rv: bool) -> dict:
    meta = o["metadata"]
    cur_meta = cur["metadata"]
    given_rv = meta.get("resourceVersion")
    if check_rv and given_rv not in (None, "") and str(given_rv) != cur_meta["resourceVersion"]:
        raise Conflict(
            f'Operation cannot be fulfilled on {_plural(key[0])} "{key[2]}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            hint="read the object again and retry")
    _set_scope(o, key)
    for field in ("uid", "creationTimestamp"):
        if field in cur_meta:
            meta[field] = cur_meta[field]
        else:
            meta.pop(field, None)
    generation = int(cur_meta.get("generation") or 1)
    # Kubernetes bumps metadata.generation only when the spec changes (status/metadata writes don't).
    meta["generation"] = generation + 1 if o.get("spec") != cur.get("spec") else generation
    meta["resourceVersion"] = cur_meta["resourceVersion"]
    if o == cur:
        return cur  # nothing changed: no revision, no event
    rev = view.bump()
    meta["resourceVersion"] = str(rev)
    view.write(rev, "MODIFIED", key, o)
    return o


def _delete(view: TxnView, key: Key, resource_version: str | None) -> dict:
    cur = view.read(key)
    if cur is None:
        raise not_found(key)
    if resource_version not in (None, "") and str(resource_version) != cur["metadata"]["resourceVersion"]:
        raise Conflict(
            f'Operation cannot be fulfilled on {_plural(key[0])} "{key[2]}": the object has been '
            "modified (resourceVersion precondition failed)",
            hint="read the object again and retry")
    rev = view.bump()
    view.write(rev, "DELETED", key, cur)
    return cur


def apply_op(view: TxnView, op: Op, now: str) -> dict:
    """Perform one write against an open transaction; returns the stored object (a delete returns the
    object as it was). `now` is the creationTimestamp for creates (see utc_timestamp)."""
    if op.type == "delete":
        o = _checked(op.obj)
        return _delete(view, _key(o), o["metadata"].get("resourceVersion"))
    o = _checked(op.obj)
    if op.type == "create":
        return _create(view, o, now)
    if op.type == "put" and not o["metadata"].get("name") and o["metadata"].get("generateName"):
        return _create(view, o, now)
    key = _key(o)
    cur = view.read(key)
    if op.type == "update":
        if cur is None:
            raise not_found(key)
        return _replace(view, o, cur, key, check_rv=True)
    if op.type == "put":
        if cur is None:
            return _create(view, o, now)
        return _replace(view, o, cur, key, check_rv=False)
    raise ValidationError(f"store: unknown operation {op.type!r}")


def check_since(since: int, compacted: int) -> None:
    """Raise Expired when events after `since` were already compacted away."""
    if since < compacted:
        raise Expired(f"watch from revision {since} is too old: history starts after revision {compacted}",
                      hint="list again and watch from the list's revision")


class WriteVerbs:
    """create/update/put/delete/transaction for a backend that implements one atomic `_write(ops)`,
    and get() over the backend's try_get()."""

    def _write(self, ops: list[Op]) -> list[dict]:
        raise NotImplementedError

    def try_get(self, kind: str, namespace: str, name: str) -> dict | None:
        raise NotImplementedError

    def get(self, kind: str, namespace: str, name: str) -> dict:
        obj = self.try_get(kind, namespace, name)
        if obj is None:
            raise not_found(normalize_key(kind, namespace, name))
        return obj

    def create(self, obj: dict) -> dict:
        return self._write([Op("create", obj)])[0]

    def update(self, obj: dict) -> dict:
        return self._write([Op("update", obj)])[0]

    def put(self, obj: dict) -> dict:
        return self._write([Op("put", obj)])[0]

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> dict:
        key = normalize_key(kind, namespace, name)
        meta: dict = {"name": key[2]}
        if key[1]:
            meta["namespace"] = key[1]
        if resource_version not in (None, ""):
            meta["resourceVersion"] = resource_version
        return self._write([Op("delete", {"kind": kind, "metadata": meta})])[0]

    def transaction(self, ops: list[Op]) -> list[dict]:
        return self._write(list(ops))


def watch_kinds(store: Store, cursors: dict[str, int], timeout: float) -> tuple[list[Event], dict[str, int]]:
    """Events of each kind after that kind's cursor, and the cursors to pass next time.

    A store with one global, ordered event history (SQLite, memory, etcd) is watched once from the
    oldest cursor, and every cursor then moves to the last event seen, even of a kind nobody asked
    for, so a quiet kind never falls behind the compaction window. A store whose kinds come on
    separate streams (the API client: one watch per resource, as kube-apiserver serves them) offers
    its own `watch_kinds` with the same contract. Expired as from Store.watch."""
    native = getattr(store, "watch_kinds", None)
    if native is not None:
        result: tuple[list[Event], dict[str, int]] = native(cursors, timeout)
        return result
    since = min(cursors.values()) if cursors else store.revision()
    events = store.watch(since, None, timeout)
    top = events[-1].revision if events else since
    out = [ev for ev in events
           if ev.object.get("kind") in cursors and ev.revision > cursors[ev.object.get("kind", "")]]
    return out, {kind: max(cur, top) for kind, cur in cursors.items()}
