"""Workload controllers (pure): Deployment -> ReplicaSets, ReplicaSet -> Pods, StatefulSet -> ordered Pods.

They follow the upstream controllers in kubernetes/kubernetes pkg/controller/{deployment,replicaset,
statefulset}: same naming, same rolling-update arithmetic, same deletion preferences.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re

from netk8s.controller.reconcile import (
    FuncReconciler,
    Snapshot,
    controlled,
    creation_key,
    delete_op,
    generation_of,
    graceful_delete_op,
    is_active,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    is_running_and_ready,
    is_terminal,
    merge_condition,
    meta,
    name_of,
    namespace_of,
    owner_reference,
    status_op,
    update_op,
)
from netk8s.store.base import Op

POD_TEMPLATE_HASH = "pod-template-hash"
STS_POD_NAME = "statefulset.kubernetes.io/pod-name"
STS_POD_INDEX = "apps.kubernetes.io/pod-index"
REVISION_HASH = "controller-revision-hash"
HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's SafeEncodeString alphabet (no vowels)
HASH_LEN = 10
DEFAULT_REVISION_HISTORY = 10


def template_hash(template: dict) -> str:
    """A stable 10-character hash of a pod template (same template -> same ReplicaSet name)."""
    data = json.dumps(template or {}, sort_keys=True, separators=(",", ":")).encode()
    n = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    out = []
    for _ in range(HASH_LEN):
        n, r = divmod(n, len(HASH_ALPHABET))
        out.append(HASH_ALPHABET[r])
    return "".join(out)


def _replicas(obj: dict) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _min_ready(obj: dict) -> int:
    return int((obj.get("spec") or {}).get("minReadySeconds") or 0)


def _template(obj: dict) -> dict:
    return copy.deepcopy((obj.get("spec") or {}).get("template") or {})


def _template_labels(obj: dict) -> dict[str, str]:
    return dict((_template(obj).get("metadata") or {}).get("labels") or {})


def _new_pod(owner: dict, template: dict, extra_labels: dict[str, str]) -> dict:
    """A pod from a template, owned by `owner` (name or generateName set by the caller)."""
    tmeta = template.get("metadata") or {}
    md: dict = {
        "namespace": namespace_of(owner),
        "labels": {**(tmeta.get("labels") or {}), **extra_labels},
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": copy.deepcopy(template.get("spec") or {})}


def _pod_counts(pods: list[dict], min_ready: int, now: float) -> tuple[int, int, int]:
    """(active, ready, available) among pods."""
    active = [p for p in pods if is_active(p)]
    ready = sum(1 for p in active if is_pod_ready(p))
    available = sum(1 for p in active if is_pod_available(p, min_ready, now))
    return len(active), ready, available


# ---- ReplicaSet ------------------------------------------------------------------------------------


def _deletion_rank(pod: dict) -> tuple[bool, bool]:
    """Lower goes first: unscheduled before scheduled, not Ready before Ready."""
    return (bool((pod.get("spec") or {}).get("nodeName")), is_pod_ready(pod))


def pods_to_delete(pods: list[dict], count: int) -> list[dict]:
    """The `count` pods a scale-down removes: unscheduled, then not Ready, then newest."""
    newest_first = sorted(pods, key=creation_key, reverse=True)
    return sorted(newest_first, key=_deletion_rank)[:count]


def reconcile_replicaset(rs: dict, snapshot: Snapshot, now: float) -> list[Op]:
    if is_deleting(rs):
        return []
    pods = controlled(snapshot, "Pod", rs)
    ops: list[Op] = []
    for pod in pods:
        if is_terminal(pod) and (op := graceful_delete_op(pod, now)) is not None:
            ops.append(op)  # replaced by a pod with a new name, as upstream does
    active = [p for p in pods if is_active(p)]
    diff = _replicas(rs) - len(active)
    if diff > 0:
        template = _template(rs)
        for _ in range(diff):
            pod = _new_pod(rs, template, {})
            pod["metadata"]["generateName"] = f"{name_of(rs)}-"
            ops.append(Op("create", pod))
    elif diff < 0:
        for pod in pods_to_delete(active, -diff):
            if (op := graceful_delete_op(pod, now)) is not None:
                ops.append(op)
    n_active, ready, available = _pod_counts(pods, _min_ready(rs), now)
    tlabels = _template_labels(rs)
    labeled = sum(1 for p in pods if is_active(p)
                  and all((meta(p).get("labels") or {}).get(k) == v for k, v in tlabels.items()))
    status = {"replicas": n_active, "fullyLabeledReplicas": labeled, "readyReplicas": ready,
              "availableReplicas": available, "observedGeneration": generation_of(rs)}
    if (op := status_op(rs, status)) is not None:
        ops.append(op)
    return ops


def reconcile_replicasets(snapshot: Snapshot, now: float) -> list[Op]:
    """Keep spec.replicas active pods for every ReplicaSet; report their status."""
    ops: list[Op] = []
    for rs in snapshot.list("ReplicaSet"):
        ops.extend(reconcile_replicaset(rs, snapshot, now))
    return ops


# ---- Deployment ------------------------------------------------------------------------------------


def _int_or_percent(value: object, total: int, round_up: bool, default: str) -> int:
    """Resolve maxSurge/maxUnavailable like upstream's intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        value = default
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1])
        scaled = pct * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)  # type: ignore[call-overload]


def surge_and_unavailable(deploy: dict) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate deployment, 25%/25% by default."""
    strategy = (deploy.get("spec") or {}).get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    replicas = _replicas(deploy)
    surge = _int_or_percent(rolling.get("maxSurge"), replicas, True, "25%")
    unavailable = _int_or_percent(rolling.get("maxUnavailable"), replicas, False, "25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1  # upstream: both zero would deadlock the rollout
    return surge, min(unavailable, replicas)


def new_replicaset(deploy: dict, template_hash_value: str, replicas: int) -> dict:
    """The ReplicaSet `<deploy>-<hash>` for the deployment's current template."""
    spec = deploy.get("spec") or {}
    template = _template(deploy)
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), POD_TEMPLATE_HASH: template_hash_value}
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH: template_hash_value}
    rs_spec: dict = {"replicas": replicas, "selector": selector, "template": template}
    if spec.get("minReadySeconds"):
        rs_spec["minReadySeconds"] = spec["minReadySeconds"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name_of(deploy)}-{template_hash_value}",
            "namespace": namespace_of(deploy),
            "labels": dict(tmeta["labels"]),
            "ownerReferences": [owner_reference(deploy)],
        },
        "spec": rs_spec,
    }


def _plan_rolling(deploy: dict, new_name: str, want: dict[str, int], avail: dict[str, int],
                  old_names: list[str]) -> None:
    """Upstream's rolloutRolling arithmetic on `want` (RS name -> spec.replicas), in place.

    avail[name] = available pods of that RS; an RS's availability is min(want, avail) because the
    ReplicaSet controller removes not-Ready pods first when it scales down.
    """
    replicas = _replicas(deploy)
    surge, max_unavailable = surge_and_unavailable(deploy)
    # reconcileNewReplicaSet / NewRSNewReplicas
    if want[new_name] > replicas:
        want[new_name] = replicas
    elif want[new_name] < replicas:
        current = sum(want.values())
        max_total = replicas + surge
        if current < max_total:
            want[new_name] += min(max_total - current, replicas - want[new_name])
    # reconcileOldReplicaSets
    if sum(want[n] for n in old_names) == 0:
        return
    min_available = replicas - max_unavailable

    def available(name: str) -> int:
        return min(want[name], avail.get(name, 0))

    new_unavailable = want[new_name] - available(new_name)
    max_scaled_down = sum(want.values()) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return
    cleaned = 0  # cleanupUnhealthyReplicas: drop old pods that are not available anyway
    for name in old_names:
        if cleaned >= max_scaled_down:
            break
        unhealthy = want[name] - available(name)
        if want[name] == 0 or unhealthy == 0:
            continue
        step = min(max_scaled_down - cleaned, unhealthy)
        want[name] -= step
        cleaned += step
    total_available = sum(available(n) for n in want)  # scaleDownOldReplicaSetsForRollingUpdate
    if total_available <= min_available:
        return
    budget = total_available - min_available
    for name in old_names:
        if budget <= 0:
            break
        step = min(want[name], budget)
        want[name] -= step
        budget -= step


def _deployment_conditions(deploy: dict, new_name: str, want_total: int, updated: int, available: int,
                           total_pods: int, now: float) -> list[dict]:
    replicas = _replicas(deploy)
    _, max_unavailable = surge_and_unavailable(deploy)
    conditions = list((deploy.get("status") or {}).get("conditions") or [])
    if available >= replicas - max_unavailable:
        avail_cond = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                      "message": "Deployment has minimum availability."}
    else:
        avail_cond = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                      "message": "Deployment does not have minimum availability."}
    conditions = merge_condition(conditions, avail_cond, now)
    complete = updated == replicas and available >= replicas and total_pods == updated and want_total == replicas
    progress = {"type": "Progressing", "status": "True",
                "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                "message": f'ReplicaSet "{new_name}" has successfully progressed.' if complete
                else f'ReplicaSet "{new_name}" is progressing.'}
    return merge_condition(conditions, progress, now)


def reconcile_deployment(deploy: dict, snapshot: Snapshot, now: float) -> list[Op]:
    if is_deleting(deploy):
        return []
    spec = deploy.get("spec") or {}
    replicas = _replicas(deploy)
    h = template_hash(spec.get("template") or {})
    rss = controlled(snapshot, "ReplicaSet", deploy)
    new_rs = next((rs for rs in rss if _template_labels(rs).get(POD_TEMPLATE_HASH) == h), None)
    new_name = name_of(new_rs) if new_rs else f"{name_of(deploy)}-{h}"
    old_rss = sorted((rs for rs in rss if rs is not new_rs), key=creation_key)
    old_names = [name_of(rs) for rs in old_rss]
    pods = {name_of(rs): controlled(snapshot, "Pod", rs) for rs in rss}
    min_ready = _min_ready(deploy)
    want = {name_of(rs): _replicas(rs) for rs in rss}
    want.setdefault(new_name, 0)
    avail = {n: _pod_counts(ps, min_ready, now)[2] for n, ps in pods.items()}

    if (spec.get("strategy") or {}).get("type") == "Recreate":
        for n in old_names:
            want[n] = 0
        old_pods_left = any(not is_terminal(p) for n in old_names for p in pods.get(n, []))
        if not old_pods_left:
            want[new_name] = replicas
    else:
        _plan_rolling(deploy, new_name, want, avail, old_names)

    ops: list[Op] = []
    if new_rs is None and (want[new_name] > 0 or not old_names):
        ops.append(Op("create", new_replicaset(deploy, h, want[new_name])))
    for rs in rss:
        if want[name_of(rs)] != _replicas(rs):
            new = copy.deepcopy(rs)
            new["spec"]["replicas"] = want[name_of(rs)]
            ops.append(update_op(new))
    # revisionHistoryLimit: drop the oldest empty old ReplicaSets beyond the limit
    limit = spec.get("revisionHistoryLimit")
    limit = DEFAULT_REVISION_HISTORY if limit is None else int(limit)
    empty = [rs for rs in old_rss if _replicas(rs) == 0 and want[name_of(rs)] == 0 and not pods[name_of(rs)]]
    for rs in empty[:max(0, len(empty) - limit)]:
        ops.append(delete_op(rs))

    all_pods = [p for ps in pods.values() for p in ps]
    total, ready, available = _pod_counts(all_pods, min_ready, now)
    updated = _pod_counts(pods.get(new_name, []), min_ready, now)[0]
    status = {
        "observedGeneration": generation_of(deploy),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(replicas - available, 0),
        "conditions": _deployment_conditions(deploy, new_name, sum(want.values()), updated, available,
                                             total, now),
    }
    if (op := status_op(deploy, status)) is not None:
        ops.append(op)
    return ops


def reconcile_deployments(snapshot: Snapshot, now: float) -> list[Op]:
    """Keep one ReplicaSet per template; roll from old to new within maxSurge/maxUnavailable."""
    ops: list[Op] = []
    for deploy in snapshot.list("Deployment"):
        ops.extend(reconcile_deployment(deploy, snapshot, now))
    return ops


# ---- StatefulSet -----------------------------------------------------------------------------------


def statefulset_pod(sts: dict, ordinal: int, revision: str) -> dict:
    """Pod `<sts>-<ordinal>` with its stable hostname/subdomain and identity labels."""
    name = f"{name_of(sts)}-{ordinal}"
    pod = _new_pod(sts, _template(sts), {STS_POD_NAME: name, STS_POD_INDEX: str(ordinal),
                                         REVISION_HASH: revision})
    pod["metadata"]["name"] = name
    pod["spec"]["hostname"] = name
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        pod["spec"]["subdomain"] = service
    return pod


def _ordinals(sts: dict, snapshot: Snapshot) -> tuple[dict[int, dict], set[int]]:
    """({ordinal: pod controlled by sts}, ordinals held by a pod of that name that it does not own)."""
    pattern = re.compile(rf"^{re.escape(name_of(sts))}-(0|[1-9][0-9]*)$")
    owned: dict[int, dict] = {}
    foreign: set[int] = set()
    for pod in snapshot.list("Pod", namespace_of(sts)):
        m = pattern.match(name_of(pod))
        if m is None:
            continue
        refs = meta(pod).get("ownerReferences") or []
        ours = any(r.get("controller") and r.get("uid") == meta(sts).get("uid") for r in refs)
        if ours:
            owned[int(m.group(1))] = pod
        else:
            foreign.add(int(m.group(1)))
    return owned, foreign


def reconcile_statefulset(sts: dict, snapshot: Snapshot, now: float) -> list[Op]:
    if is_deleting(sts):
        return []
    spec = sts.get("spec") or {}
    replicas = _replicas(sts)
    parallel = spec.get("podManagementPolicy") == "Parallel"
    revision = f"{name_of(sts)}-{template_hash(spec.get('template') or {})}"
    pods, foreign = _ordinals(sts, snapshot)
    ops: list[Op] = []

    def delete(pod: dict) -> None:
        if (op := graceful_delete_op(pod, now)) is not None:
            ops.append(op)

    # Failed/Succeeded pods are deleted and, once gone, created again with the same name.
    failed = {i for i, p in pods.items() if is_terminal(p)}
    for i in sorted(failed):
        delete(pods[i])
    busy = bool(failed) or any(is_deleting(p) for p in pods.values())
    # Scale up: Parallel creates every missing ordinal; OrderedReady creates ordinal i only once
    # 0..i-1 are Running and Ready (upstream's monotonic "OrderedReady" policy).
    for i in range(replicas):
        if i in foreign:
            if parallel:
                continue
            break
        pod = pods.get(i)
        if pod is None:
            ops.append(Op("create", statefulset_pod(sts, i, revision)))
            if not parallel:
                break
        elif not parallel and not is_running_and_ready(pod):
            break
    # Scale down: highest ordinal first; OrderedReady one at a time, waiting until it is gone.
    condemned = sorted((i for i in pods if i >= replicas), reverse=True)
    if parallel:
        for i in condemned:
            delete(pods[i])
    elif condemned and not any(is_deleting(pods[i]) for i in condemned):
        delete(pods[condemned[0]])
    # Rolling update: once every pod is Running and Ready, replace the highest outdated one.
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and not condemned and not busy:
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        healthy = all(i in pods and is_running_and_ready(pods[i]) for i in range(replicas))
        outdated = [i for i in range(partition, replicas)
                    if i in pods and (meta(pods[i]).get("labels") or {}).get(REVISION_HASH) != revision]
        if healthy and outdated:
            delete(pods[max(outdated)])

    active = [p for p in pods.values() if is_active(p)]
    updated = sum(1 for p in active if (meta(p).get("labels") or {}).get(REVISION_HASH) == revision)
    current_revision = (sts.get("status") or {}).get("currentRevision") or revision
    if updated == len(active) == replicas:
        current_revision = revision
    current = sum(1 for p in active if (meta(p).get("labels") or {}).get(REVISION_HASH) == current_revision)
    _, ready, available = _pod_counts(list(pods.values()), _min_ready(sts), now)
    status = {"observedGeneration": generation_of(sts), "replicas": len(active), "readyReplicas": ready,
              "availableReplicas": available, "currentReplicas": current, "updatedReplicas": updated,
              "currentRevision": current_revision, "updateRevision": revision}
    if (op := status_op(sts, status)) is not None:
        ops.append(op)
    return ops


def reconcile_statefulsets(snapshot: Snapshot, now: float) -> list[Op]:
    """Keep pods `<sts>-0..N-1` with stable names, in order unless podManagementPolicy is Parallel."""
    ops: list[Op] = []
    for sts in snapshot.list("StatefulSet"):
        ops.extend(reconcile_statefulset(sts, snapshot, now))
    return ops


DEPLOYMENTS = FuncReconciler("deployment", reconcile_deployments)
REPLICASETS = FuncReconciler("replicaset", reconcile_replicasets)
STATEFULSETS = FuncReconciler("statefulset", reconcile_statefulsets)
