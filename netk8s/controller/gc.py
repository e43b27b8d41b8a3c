"""Garbage collection (pure): orphans of deleted owners, stuck terminating pods, namespace deletion."""

from __future__ import annotations

from netk8s.controller.reconcile import (
    NODE_READY_TIMEOUT,
    FuncReconciler,
    Snapshot,
    condition,
    controller_ref,
    delete_dependent_op,
    delete_op,
    get_obj,
    is_deleting,
    name_of,
    namespace_of,
    node_heartbeat_fresh,
    parse_time,
    status_op,
    uid_of,
)
from netk8s.model.kinds import KINDS
from netk8s.store.base import Op

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _namespaced_kinds() -> list[str]:
    return [k for k, info in KINDS.items() if info.namespaced]


def _owner_gone(snapshot: Snapshot, obj: dict, deleted: set[str]) -> bool:
    ref = controller_ref(obj)
    if ref is None or ref.get("kind") not in KINDS:
        return False
    ns = namespace_of(obj) if KINDS[ref["kind"]].namespaced else ""
    owner = get_obj(snapshot, ref["kind"], ns, str(ref.get("name", "")))
    return owner is None or uid_of(owner) != ref.get("uid") or uid_of(owner) in deleted


def node_lost(node: dict | None, now: float) -> bool:
    """The node cannot finish a pod's teardown: it is gone, its heartbeat is older than 40 s, or it has
    reported not Ready for more than 40 s."""
    if node is None or not node_heartbeat_fresh(node, now):
        return True
    cond = condition(node, "Ready")
    if cond is None or cond.get("status") == "True":
        return False
    since = parse_time(cond.get("lastTransitionTime"))
    return since is not None and now - since > NODE_READY_TIMEOUT


def reconcile_garbage(snapshot: Snapshot, now: float) -> list[Op]:
    """Delete dependents whose controller owner is gone; force-delete terminating pods nobody will remove."""
    ops: list[Op] = []
    objects = [obj for kind in _namespaced_kinds() for obj in snapshot.list(kind)]
    deleted: set[str] = set()  # uids deleted in this pass: their dependents go too (whole chain at once)
    changed = True
    while changed:
        changed = False
        for obj in objects:
            if uid_of(obj) in deleted or not _owner_gone(snapshot, obj, deleted):
                continue
            deleted.add(uid_of(obj))
            changed = True
            if (op := delete_dependent_op(obj, now)) is not None:
                ops.append(op)
    for pod in snapshot.list("Pod"):
        if not is_deleting(pod):
            continue
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or node_lost(get_obj(snapshot, "Node", "", node_name), now):
            ops.append(delete_op(pod))
    return ops


def reconcile_namespaces(snapshot: Snapshot, now: float) -> list[Op]:
    """Namespaces are Active until deleted; a deleted (or missing) namespace loses everything in it, and a
    terminating Namespace object is removed once it is empty."""
    namespaces = {name_of(ns): ns for ns in snapshot.list("Namespace")}
    doomed = {name for name, ns in namespaces.items() if is_deleting(ns)}
    ops: list[Op] = []
    remaining: dict[str, int] = {}
    for kind in _namespaced_kinds():
        for obj in snapshot.list(kind):
            ns_name = namespace_of(obj) or "default"
            if ns_name in namespaces and ns_name not in doomed:
                continue
            remaining[ns_name] = remaining.get(ns_name, 0) + 1
            if (op := delete_dependent_op(obj, now)) is not None:
                ops.append(op)
    for name, ns in sorted(namespaces.items()):
        if name in doomed and not remaining.get(name):
            ops.append(delete_op(ns))
            continue
        phase = "Terminating" if name in doomed else "Active"
        if (op := status_op(ns, {"phase": phase})) is not None:
            ops.append(op)
    return ops


GARBAGE_COLLECTOR = FuncReconciler("garbage-collector", reconcile_garbage)
NAMESPACES = FuncReconciler("namespace", reconcile_namespaces)
