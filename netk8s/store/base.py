"""The Store protocol every backend (SQLite, etcd, in-memory fake) implements, and helpers on top of it.

Objects are plain dicts in Kubernetes' shape (apiVersion, kind, metadata, spec, status). The store owns
metadata.uid, metadata.resourceVersion (the global revision of the object's last write, as a string,
like the API server) and metadata.creationTimestamp. Cluster-scoped kinds use namespace "".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Collection, Literal, Protocol

from netk8s.errors import Conflict

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

    def transaction(self, ops: list[Op]) -> list[dict]:
        """All ops or none (atomic). Returns the stored objects (deleted ones as they were)."""
        ...

    def revision(self) -> int: ...

    def watch(self, since: int, kinds: Collection[str] | None = None, timeout: float = 1.0) -> list[Event]:
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
