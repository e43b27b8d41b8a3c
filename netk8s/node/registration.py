"""Node registration: the Node object this agent posts, its Ready heartbeat, and its overlay annotations.

Field names and annotations follow kubelet (pkg/kubelet/kubelet_node_status.go) and flannel
(flannel.alpha.coreos.com/*, read by every node's overlay role to reach this one).
"""

from __future__ import annotations

import json
import platform

from netk8s import config
from netk8s.errors import NetK8sError
from netk8s.model.status import condition
from netk8s.node.status import rfc3339
from netk8s.store.base import Store, mutate

KUBELET_VERSION = "v1.30.0-netk8s"
HEARTBEAT_SECONDS = 10.0
KUBELET_PORT = 10250  # kubelet's --port default
VTEP_ANNOTATION = "flannel.alpha.coreos.com/backend-data"
PUBLIC_IP_ANNOTATION = "flannel.alpha.coreos.com/public-ip"


def ready_condition(now: float) -> dict:
    """The node's Ready condition as kubelet posts it while it runs."""
    return {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": rfc3339(now),
        "lastTransitionTime": rfc3339(now),
    }


def node_object(node: str, node_ip: str, pod_cidr: str | None, now: float) -> dict:
    """The Node this agent registers: name, addresses, labels, Ready, and (lab) its pod CIDR."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node,
            "labels": {
                "kubernetes.io/hostname": node,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
            "annotations": {PUBLIC_IP_ANNOTATION: node_ip},
        },
        "spec": ({"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}),
        "status": {
            # where the API server reaches this node's kubelet API (pods/exec, pods/log)
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "addresses": [
                {"type": "InternalIP", "address": node_ip},
                {"type": "Hostname", "address": node},
            ],
            "conditions": [ready_condition(now)],
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "osImage": "netk8s node (network namespace)",
                "kernelVersion": platform.release(),
                "containerRuntimeVersion": "netk8s://0.1",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def register(store: Store, node: str, node_ip: str, pod_cidr: str | None, now: float) -> None:
    """Create the Node, or update the one that exists (labels, annotations, status; podCIDR only if unset)."""
    obj = node_object(node, node_ip, pod_cidr, now)
    if store.try_get("Node", "", node) is None:
        try:
            store.create(obj)
            return
        except NetK8sError:
            pass  # created meanwhile (a second agent, or a restart race): update it below

    def upd(cur: dict) -> dict:
        cur.setdefault("metadata", {}).setdefault("annotations", {}).update(obj["metadata"]["annotations"])
        cur["metadata"].setdefault("labels", {}).update(obj["metadata"]["labels"])
        if pod_cidr and not (cur.get("spec") or {}).get("podCIDR"):
            cur.setdefault("spec", {}).update(obj["spec"])
        cur["status"] = obj["status"]
        return cur

    mutate(store, "Node", "", node, upd)


def heartbeat(store: Store, node: str, node_ip: str, pod_cidr: str | None, now: float) -> None:
    """Refresh the Ready condition (keeping its transition time); register again if the Node vanished."""

    def upd(cur: dict) -> dict:
        conds = (cur.get("status") or {}).get("conditions") or []
        old = condition(cur, "Ready")
        cond = ready_condition(now)
        if old and old.get("status") == "True":
            cond["lastTransitionTime"] = old.get("lastTransitionTime", cond["lastTransitionTime"])
        cur.setdefault("status", {})["conditions"] = [c for c in conds if c.get("type") != "Ready"] + [cond]
        return cur

    if mutate(store, "Node", "", node, upd) is None and store.try_get("Node", "", node) is None:
        register(store, node, node_ip, pod_cidr, now)


def publish_vtep(store: Store, node: str, vtep_mac: str) -> None:
    """Annotate the Node with its VXLAN endpoint, as flanneld does, so other nodes can reach its pods."""
    data = json.dumps({"VNI": config.VXLAN_VNI, "VtepMAC": vtep_mac})

    def upd(cur: dict) -> dict:
        cur.setdefault("metadata", {}).setdefault("annotations", {})[VTEP_ANNOTATION] = data
        return cur

    mutate(store, "Node", "", node, upd)


def vtep_mac_of(node_obj: dict) -> str | None:
    """The VtepMAC another node published (None when absent or unreadable)."""
    raw = ((node_obj.get("metadata") or {}).get("annotations") or {}).get(VTEP_ANNOTATION)
    if not raw:
        return None
    try:
        mac = json.loads(raw).get("VtepMAC")
    except (ValueError, AttributeError):
        return None
    return mac if isinstance(mac, str) else None
