"""Pod status as kubelet writes it: what the agent knows of each pod (PodState), turned into phase,
conditions and containerStatuses (pkg/kubelet/kubelet_pods.go generateAPIPodStatus), and written back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from netk8s.store.base import Store, mutate


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerState:
    name: str
    restart_count: int = 0
    started_at: float | None = None
    running: bool = False
    ready: bool = False
    waiting_reason: str | None = None
    waiting_message: str = ""
    last_exit: int | None = None
    terminated_at: float | None = None
    crashes: int = 0
    backoff_until: float = 0.0


@dataclass
class PodState:
    uid: str
    namespace: str
    name: str
    ip: str
    netns: str
    created_at: float
    containers: dict[str, ContainerState] = field(default_factory=dict)
    failed_reason: str | None = None
    failed_message: str = ""
    terminating: threading.Thread | None = None
    last_status: dict | None = None


def _container_state(cs: ContainerState, now: float) -> dict:
    if cs.running:
        return {"running": {"startedAt": rfc3339(cs.started_at or now)}}
    if cs.waiting_reason:
        return {"waiting": {"reason": cs.waiting_reason, "message": cs.waiting_message}}
    if cs.terminated_at is not None:
        code = cs.last_exit if cs.last_exit is not None else 137
        return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                               "finishedAt": rfc3339(cs.terminated_at)}}
    return {"waiting": {"reason": "ContainerCreating"}}


def _phase(st: PodState, states: list[dict], all_running: bool) -> str:
    """Failed / Succeeded once every container terminated (or the sandbox died), Running once one runs."""
    if st.failed_reason:
        return "Failed"
    if states and all("terminated" in s for s in states):
        return "Failed" if any(s["terminated"]["exitCode"] != 0 for s in states) else "Succeeded"
    if any("running" in s for s in states) or all_running:
        return "Running"
    return "Pending"


def pod_status(pod: dict, st: PodState, node_ip: str, now: float) -> dict:
    """The status of `pod` on this node (node_ip), keeping transition times of unchanged conditions."""
    old = pod.get("status") or {}
    statuses = []
    all_running, all_ready = True, True
    for c in pod["spec"]["containers"]:
        cs = st.containers.get(c["name"]) or ContainerState(c["name"])
        all_running = all_running and cs.running
        all_ready = all_ready and cs.running and cs.ready
        statuses.append({
            "name": c["name"], "image": c.get("image", ""), "imageID": "", "containerID":
            f"netk8s://{st.uid[:8]}-{c['name']}", "ready": bool(cs.running and cs.ready),
            "started": cs.running, "restartCount": cs.restart_count, "state": _container_state(cs, now),
        })
    phase = _phase(st, [s["state"] for s in statuses], all_running)
    ready = all_ready and phase == "Running"
    old_conds = {c["type"]: c for c in old.get("conditions") or []}

    def cond(kind: str, value: bool) -> dict:
        text = "True" if value else "False"
        prev = old_conds.get(kind)
        ts = prev["lastTransitionTime"] if prev and prev.get("status") == text else rfc3339(now)
        return {"type": kind, "status": text, "lastProbeTime": None, "lastTransitionTime": ts}

    status = {
        "phase": phase,
        "conditions": [cond("Initialized", True), cond("Ready", ready), cond("ContainersReady", all_ready),
                       cond("PodScheduled", True)],
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "podIP": st.ip,
        "podIPs": [{"ip": st.ip}],
        "startTime": old.get("startTime") or rfc3339(st.created_at),
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    }
    if st.failed_reason:
        status["reason"], status["message"] = st.failed_reason, st.failed_message
    return status


def write_status(store: Store, pod: dict, st: PodState, node_ip: str, now: float) -> None:
    """Write the pod's status when it changed since the last write (of the same pod uid only)."""
    status = pod_status(pod, st, node_ip, now)
    if status == st.last_status:
        return
    uid = st.uid

    def upd(cur: dict) -> dict | None:
        if cur["metadata"]["uid"] != uid:
            return None
        cur["status"] = status
        return cur

    mutate(store, "Pod", st.namespace, st.name, upd)
    st.last_status = status
