"""Node pod-CIDR allocation, pod scheduling and pod IP allocation (pure reconcilers)."""

from __future__ import annotations

import copy

from netk8s.controller.reconcile import (
    FuncReconciler,
    Snapshot,
    condition,
    is_deleting,
    is_node_ready,
    is_terminal,
    merge_condition,
    meta,
    name_of,
    namespace_of,
    pod_phase,
    update_op,
)
from netk8s.errors import NetK8sError
from netk8s.model.ipam import POD_IP_ANNOTATION, allocate_node_cidr, allocate_pod_ip
from netk8s.store.base import Op


def node_pod_cidr(node: dict) -> str | None:
    spec = node.get("spec") or {}
    cidr = spec.get("podCIDR") or next(iter(spec.get("podCIDRs") or []), None)
    return str(cidr) if cidr else None


def pod_ip(pod: dict) -> str | None:
    ip = (meta(pod).get("annotations") or {}).get(POD_IP_ANNOTATION)
    return str(ip) if ip else None


# ---- node CIDRs ------------------------------------------------------------------------------------


def reconcile_node_cidrs(snapshot: Snapshot, now: float) -> list[Op]:
    """Give every node lacking spec.podCIDR the lowest free /24 (from 10.244.1.0/24 up)."""
    nodes = sorted(snapshot.list("Node"), key=name_of)
    used: set[str] = set()
    for node in nodes:
        spec = node.get("spec") or {}
        used.update(c for c in [spec.get("podCIDR"), *(spec.get("podCIDRs") or [])] if c)
    ops: list[Op] = []
    for node in nodes:
        if node_pod_cidr(node) or is_deleting(node):
            continue
        try:
            cidr = allocate_node_cidr(used)
        except NetK8sError:
            break
        used.add(cidr)
        new = copy.deepcopy(node)
        new.setdefault("spec", {})
        new["spec"] = {**(new.get("spec") or {}), "podCIDR": cidr, "podCIDRs": [cidr]}
        ops.append(update_op(new))
    return ops


# ---- scheduling + pod IPs --------------------------------------------------------------------------


def _tolerates(pod: dict, taint: dict) -> bool:
    for tol in (pod.get("spec") or {}).get("tolerations") or []:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol.get("key") == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _fit_failure(pod: dict, node: dict, now: float) -> str | None:
    """Why the pod cannot go to this node (a kube-scheduler-like reason), or None if it fits."""
    if not is_node_ready(node, now) or is_deleting(node):
        return "node(s) were not ready"
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return "node(s) were unschedulable"
    labels = meta(node).get("labels") or {}
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return "node(s) didn't match Pod's node affinity/selector"
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod, taint):
            return "node(s) had untolerated taint"
    return None


def _unschedulable_message(reasons: list[str], total: int) -> str:
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    detail = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
    msg = f"0/{total} nodes are available"
    return f"{msg}: {detail}." if detail else f"{msg}."


def _set_pod_scheduled(pod: dict, status: str, reason: str, message: str, now: float,
                       pending: bool) -> None:
    st = dict(pod.get("status") or {})
    pod["status"] = st
    cond: dict = {"type": "PodScheduled", "status": status}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    old = condition(pod, "PodScheduled")
    if old is not None and status == "True" and old.get("status") == "True":
        return
    st["conditions"] = merge_condition(list(st.get("conditions") or []), cond, now)
    if pending:
        st["phase"] = "Pending"


def _wants_ip(pod: dict) -> bool:
    return not pod_ip(pod) and not (pod.get("spec") or {}).get("hostNetwork")


def reconcile_scheduling(snapshot: Snapshot, now: float) -> list[Op]:
    """Bind unscheduled pods to the least loaded Ready node and give scheduled pods their IP.

    One update per pod: nodeName and the IP annotation go in the same write.
    """
    nodes = {name_of(n): n for n in snapshot.list("Node")}
    pods = sorted(snapshot.list("Pod"), key=lambda p: (namespace_of(p), name_of(p)))
    used_ips = {ip for p in pods if (ip := pod_ip(p))}
    load: dict[str, int] = {name: 0 for name in nodes}
    for p in pods:
        node_name = (p.get("spec") or {}).get("nodeName")
        if node_name in load and not is_terminal(p):
            load[node_name] += 1

    def try_ip(node: dict) -> str | None:
        cidr = node_pod_cidr(node)
        if not cidr:
            return None
        try:
            return allocate_pod_ip(cidr, used_ips, node=name_of(node))
        except NetK8sError:
            return None

    ops: list[Op] = []
    for pod in pods:
        if is_deleting(pod) or is_terminal(pod):
            continue
        new = copy.deepcopy(pod)
        new["spec"] = dict(new.get("spec") or {})
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            reasons: list[str] = []
            fits: list[str] = []
            for name in sorted(nodes):
                node = nodes[name]
                why = _fit_failure(pod, node, now)
                if why is None and _wants_ip(pod) and node_pod_cidr(node) and try_ip(node) is None:
                    why = "node(s) had no free pod IP"
                if why is None:
                    fits.append(name)
                else:
                    reasons.append(why)
            if not fits:
                msg = _unschedulable_message(reasons, len(nodes))
                _set_pod_scheduled(new, "False", "Unschedulable", msg, now, pending=True)
            else:
                chosen = min(fits, key=lambda n: (load[n], n))
                load[chosen] += 1
                new["spec"]["nodeName"] = chosen
                _set_pod_scheduled(new, "True", "", "", now, pending=True)
                node_name = chosen
        if node_name:
            bound = nodes.get(node_name)
            if bound is None:
                if pod_phase(pod) != "Pending":
                    continue  # it ran on a node since deleted; only never-started pods wait for theirs
                _set_pod_scheduled(new, "False", "Unschedulable", f'node "{node_name}" not found', now,
                                   pending=True)
            else:
                old = condition(new, "PodScheduled")
                if old is not None and old.get("status") == "False":
                    _set_pod_scheduled(new, "True", "", "", now, pending=False)
                if _wants_ip(new):
                    ip = try_ip(bound)
                    if ip is not None:
                        used_ips.add(ip)
                        annotations = dict(new["metadata"].get("annotations") or {})
                        annotations[POD_IP_ANNOTATION] = ip
                        new["metadata"]["annotations"] = annotations
        if new != pod:
            ops.append(update_op(new))
    return ops


NODE_CIDRS = FuncReconciler("node-ipam", reconcile_node_cidrs)
SCHEDULER = FuncReconciler("scheduler", reconcile_scheduling)
