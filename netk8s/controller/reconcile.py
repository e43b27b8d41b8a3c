"""Shared shape of every controller: the Snapshot and Reconciler protocols and pure helpers on objects.

A reconciler reads a snapshot of the store (the informer's cache, or a dict-backed fake in tests) and a
time `now` (epoch seconds) and returns the writes that move the store towards the desired state, as
`netk8s.store.base.Op`s. It does no I/O, reads no clock and draws no random numbers, and it returns no
ops when nothing needs to change (level-triggered, idempotent).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from netk8s.errors import NotFound
from netk8s.model.status import condition, parse_time, rfc3339
from netk8s.model.status import is_ready as is_pod_ready
from netk8s.store.base import Op

NODE_READY_TIMEOUT = 40.0  # seconds without a heartbeat before a node counts as not Ready
DEFAULT_GRACE_PERIOD = 30
TERMINAL_PHASES = ("Failed", "Succeeded")


class Snapshot(Protocol):
    """A read-only view of the store. `get` returns None (or raises NotFound) when absent."""

    def list(self, kind: str, namespace: str | None = None) -> list[dict]: ...

    def get(self, kind: str, namespace: str, name: str) -> dict | None: ...


class Reconciler(Protocol):
    """One controller: a name (for logs) and a pure reconcile function."""

    @property
    def name(self) -> str: ...

    def reconcile(self, snapshot: Snapshot, now: float) -> list[Op]: ...


@dataclass(frozen=True)
class FuncReconciler:
    """Adapts a plain function `fn(snapshot, now) -> list[Op]` to the Reconciler protocol."""

    name: str
    fn: Callable[[Snapshot, float], list[Op]]

    def reconcile(self, snapshot: Snapshot, now: float) -> list[Op]:
        return self.fn(snapshot, now)


# ---- snapshot access -------------------------------------------------------------------------------


def get_obj(snapshot: Snapshot, kind: str, namespace: str, name: str) -> dict | None:
    """snapshot.get that returns None for a missing object whichever way the snapshot reports it."""
    try:
        return snapshot.get(kind, namespace, name)
    except NotFound:
        return None


__all__ = ["condition", "is_pod_ready", "parse_time", "rfc3339"]  # re-exported for the controllers


# ---- time ------------------------------------------------------------------------------------------


# ---- metadata --------------------------------------------------------------------------------------


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def name_of(obj: dict) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: dict) -> str:
    return str(meta(obj).get("namespace") or "")


def uid_of(obj: dict) -> str:
    return str(meta(obj).get("uid") or "")


def labels_of(obj: dict) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def generation_of(obj: dict) -> int:
    return int(meta(obj).get("generation") or 1)


def creation_key(obj: dict) -> tuple[float, str]:
    """Sort key: oldest first (creationTimestamp, then name)."""
    ts = parse_time(meta(obj).get("creationTimestamp"))
    return (ts if ts is not None else 0.0, name_of(obj))


def controller_ref(obj: dict) -> dict | None:
    """The ownerReference with controller: true, if any."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: dict, owner: dict) -> bool:
    ref = controller_ref(obj)
    return ref is not None and bool(uid_of(owner)) and ref.get("uid") == uid_of(owner)


def owner_reference(owner: dict) -> dict:
    """The controller ownerReference a dependent carries, as the API server expects it."""
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controlled(snapshot: Snapshot, kind: str, owner: dict) -> list[dict]:
    """Objects of `kind` in the owner's namespace whose controller is `owner` (sorted by name)."""
    items = [o for o in snapshot.list(kind, namespace_of(owner)) if is_controlled_by(o, owner)]
    return sorted(items, key=name_of)


def is_deleting(obj: dict) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


# ---- pods and nodes --------------------------------------------------------------------------------


def pod_phase(pod: dict) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_terminal(pod: dict) -> bool:
    return pod_phase(pod) in TERMINAL_PHASES


def is_active(pod: dict) -> bool:
    """Counts towards a controller's replicas: not being deleted, not Failed/Succeeded."""
    return not is_deleting(pod) and not is_terminal(pod)


def is_pod_available(pod: dict, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least minReadySeconds (measured from the Ready condition's lastTransitionTime)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def is_running_and_ready(pod: dict) -> bool:
    return is_active(pod) and pod_phase(pod) == "Running" and is_pod_ready(pod)


def node_heartbeat(node: dict) -> float | None:
    cond = condition(node, "Ready")
    return parse_time((cond or {}).get("lastHeartbeatTime"))


def node_heartbeat_fresh(node: dict, now: float) -> bool:
    """The node agent reported within NODE_READY_TIMEOUT seconds (a later clock counts as fresh)."""
    hb = node_heartbeat(node)
    return hb is not None and now - hb <= NODE_READY_TIMEOUT


def is_node_ready(node: dict, now: float) -> bool:
    """Ready condition "True" with a heartbeat no older than NODE_READY_TIMEOUT seconds."""
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True" and node_heartbeat_fresh(node, now)


# ---- building ops ----------------------------------------------------------------------------------


def update_op(obj: dict) -> Op:
    """An update that fails with Conflict if the object changed since the snapshot (rv is kept)."""
    return Op("update", obj)


def delete_op(obj: dict) -> Op:
    """A direct delete of exactly this version of the object (Conflict if it changed meanwhile)."""
    m = meta(obj)
    md: dict = {"name": m.get("name"), "namespace": m.get("namespace", "")}
    if m.get("resourceVersion"):
        md["resourceVersion"] = m["resourceVersion"]
    return Op("delete", {"apiVersion": obj.get("apiVersion", ""), "kind": obj["kind"], "metadata": md})


def graceful_delete_op(pod: dict, now: float) -> Op | None:
    """Mark a pod for deletion (deletionTimestamp + grace period); the node agent kills and removes it.

    None if it is already marked.
    """
    if is_deleting(pod):
        return None
    new = copy.deepcopy(pod)
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    new["metadata"]["deletionTimestamp"] = rfc3339(now)
    new["metadata"]["deletionGracePeriodSeconds"] = int(DEFAULT_GRACE_PERIOD if grace is None else grace)
    return update_op(new)


def delete_dependent_op(obj: dict, now: float) -> Op | None:
    """Delete as the garbage collector does: pods gracefully, everything else directly."""
    if obj.get("kind") == "Pod":
        return graceful_delete_op(obj, now)
    return delete_op(obj)


def status_op(obj: dict, status: dict) -> Op | None:
    """An update that sets the given status fields, or None if they already have these values."""
    cur = obj.get("status") or {}
    if all(cur.get(k) == v for k, v in status.items()):
        return None
    new = copy.deepcopy(obj)
    new.setdefault("status", {})
    new["status"] = {**(new.get("status") or {}), **status}
    return update_op(new)


def merge_condition(conditions: list[dict], new: dict, now: float) -> list[dict]:
    """Conditions with `new` set; lastTransitionTime only moves when the status changes, and an
    unchanged condition is returned as it was (so a second pass writes nothing)."""
    out: list[dict] = []
    found = False
    for cond in conditions:
        if cond.get("type") != new["type"]:
            out.append(cond)
            continue
        found = True
        same = all(cond.get(k) == v for k, v in new.items())
        if same:
            out.append(cond)
            continue
        merged = dict(new)
        if cond.get("status") == new.get("status") and cond.get("lastTransitionTime"):
            merged["lastTransitionTime"] = cond["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = rfc3339(now)
        out.append(merged)
    if not found:
        out.append({**new, "lastTransitionTime": rfc3339(now)})
    return out
