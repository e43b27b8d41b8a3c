"""Service controllers (pure): the `kubernetes` Service in `default`, and LoadBalancer IPs from the pool.

KUBERNETES_SERVICE does what the API server's master-service controller does
(pkg/controlplane/controller/kubernetesservice and the endpoint reconciler): keep default/kubernetes
(10.96.0.1, https 443 -> 6443/TCP, no selector) and its Endpoints/EndpointSlice pointing at the API
server, here the InternalIP of the lexically first node (nothing has to listen there).

LOADBALANCER is a layer-2 load-balancer controller in the manner of MetalLB: a type LoadBalancer
Service gets the lowest free address of config.LB_POOL (or spec.loadBalancerIP when it is in the pool
and free) in status.loadBalancer.ingress; the address is released when the type changes away from
LoadBalancer; no two Services ever share one; with the pool exhausted the Service stays <pending>.
"""

from __future__ import annotations

import copy
import ipaddress

from netk8s import config
from netk8s.controller.endpoints import DISCOVERY_API, LABEL_SERVICE_NAME, LABEL_SKIP_MIRROR
from netk8s.controller.reconcile import (
    FuncReconciler,
    Snapshot,
    creation_key,
    get_obj,
    is_deleting,
    labels_of,
    name_of,
    namespace_of,
    status_op,
    update_op,
)
from netk8s.store.base import Op

KUBERNETES = "kubernetes"
DEFAULT_NAMESPACE = "default"
APISERVER_PORT = 6443
KUBERNETES_LABELS = {"component": "apiserver", "provider": "kubernetes"}
KUBERNETES_PORTS = [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": APISERVER_PORT}]
ENDPOINT_PORTS = [{"name": "https", "port": APISERVER_PORT, "protocol": "TCP"}]
IP_MODE = "VIP"


# ---- the kubernetes Service ------------------------------------------------------------------------


def kubernetes_service() -> dict:
    """default/kubernetes as the API server creates it."""
    ip = str(config.KUBERNETES_SERVICE_IP)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": KUBERNETES, "namespace": DEFAULT_NAMESPACE, "labels": dict(KUBERNETES_LABELS)},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                 "ipFamilyPolicy": "SingleStack", "ports": copy.deepcopy(KUBERNETES_PORTS),
                 "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}},
    }


def node_internal_ip(node: dict) -> str:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP" and addr.get("address"):
            return str(addr["address"])
    return ""


def apiserver_ip(snapshot: Snapshot) -> str:
    """The InternalIP of the lexically first node that has one ("" when there is none)."""
    for node in sorted(snapshot.list("Node"), key=name_of):
        if not is_deleting(node) and (ip := node_internal_ip(node)):
            return ip
    return ""


def _service_ops(current: dict | None) -> list[Op]:
    if current is None:
        return [Op("create", kubernetes_service())]
    spec = current.get("spec") or {}
    # getMasterServiceUpdateIfNeeded: only the ports and the type are put back.
    if spec.get("ports") == KUBERNETES_PORTS and spec.get("type") == "ClusterIP":
        return []
    new = copy.deepcopy(current)
    new["spec"]["ports"] = copy.deepcopy(KUBERNETES_PORTS)
    new["spec"]["type"] = "ClusterIP"
    return [update_op(new)]


def _endpoints_ops(current: dict | None, ip: str) -> list[Op]:
    subsets = [{"addresses": [{"ip": ip}], "ports": copy.deepcopy(ENDPOINT_PORTS)}] if ip else []
    labels = {LABEL_SKIP_MIRROR: "true"}
    if current is None:
        return [Op("create", {"apiVersion": "v1", "kind": "Endpoints",
                              "metadata": {"name": KUBERNETES, "namespace": DEFAULT_NAMESPACE, "labels": labels},
                              "subsets": subsets})]
    if current.get("subsets") == subsets and labels_of(current) == labels:
        return []
    new = copy.deepcopy(current)
    new["metadata"]["labels"] = labels
    new["subsets"] = subsets
    return [update_op(new)]


def _slice_ops(current: dict | None, ip: str) -> list[Op]:
    endpoints = [{"addresses": [ip], "conditions": {"ready": True}}] if ip else []
    labels = {LABEL_SERVICE_NAME: KUBERNETES}
    ports = copy.deepcopy(ENDPOINT_PORTS)
    if current is None:
        return [Op("create", {"apiVersion": DISCOVERY_API, "kind": "EndpointSlice",
                              "metadata": {"name": KUBERNETES, "namespace": DEFAULT_NAMESPACE, "labels": labels},
                              "addressType": "IPv4", "endpoints": endpoints, "ports": ports})]
    if (current.get("endpoints") == endpoints and current.get("ports") == ports and labels_of(current) == labels
            and current.get("addressType") == "IPv4"):
        return []
    new = copy.deepcopy(current)
    new["metadata"]["labels"] = labels
    new.update({"addressType": "IPv4", "endpoints": endpoints, "ports": ports})
    return [update_op(new)]


def reconcile_kubernetes_service(snapshot: Snapshot, now: float) -> list[Op]:
    """Keep default/kubernetes, its Endpoints and its EndpointSlice (once the default namespace exists)."""
    ns = get_obj(snapshot, "Namespace", "", DEFAULT_NAMESPACE)
    if ns is None or is_deleting(ns):
        return []
    ip = apiserver_ip(snapshot)
    return (_service_ops(get_obj(snapshot, "Service", DEFAULT_NAMESPACE, KUBERNETES))
            + _endpoints_ops(get_obj(snapshot, "Endpoints", DEFAULT_NAMESPACE, KUBERNETES), ip)
            + _slice_ops(get_obj(snapshot, "EndpointSlice", DEFAULT_NAMESPACE, KUBERNETES), ip))


# ---- LoadBalancer IPs ------------------------------------------------------------------------------


def pool_addresses() -> list[str]:
    """Every address of config.LB_POOL, lowest first."""
    lo, hi = (int(a) for a in config.LB_POOL)
    return [str(ipaddress.ip_address(i)) for i in range(lo, hi + 1)]


def ingress_ips(svc: dict) -> list[str]:
    lb = (svc.get("status") or {}).get("loadBalancer") or {}
    return [str(i["ip"]) for i in lb.get("ingress") or [] if isinstance(i, dict) and i.get("ip")]


def _is_lb(svc: dict) -> bool:
    return (svc.get("spec") or {}).get("type") == "LoadBalancer"


def _requested(svc: dict) -> str:
    return str((svc.get("spec") or {}).get("loadBalancerIP") or "")


def _key(svc: dict) -> tuple:
    return (creation_key(svc), namespace_of(svc), name_of(svc))


def _lb_status(ip: str | None) -> dict:
    return {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": IP_MODE}]} if ip else {}}


def assign_load_balancer_ips(services: list[dict]) -> dict[tuple[str, str], str | None]:
    """(namespace, name) -> the pool address each LoadBalancer Service should hold (None = pending).

    Services that hold a pool address keep it (the oldest wins a duplicate; a Service whose
    spec.loadBalancerIP names another address gives its own up); pending ones then get
    spec.loadBalancerIP if it is in the pool and free, else the lowest free address.
    """
    pool = pool_addresses()
    pool_set = set(pool)
    lbs = sorted((s for s in services if _is_lb(s) and not is_deleting(s)), key=_key)
    used: set[str] = set()
    # Addresses outside the pool were not given by us: leave them, but never hand them out twice.
    # An address being released this pass (type changed away) is handed out again only next pass.
    for svc in services:
        used.update(ip for ip in ingress_ips(svc) if ip not in pool_set or not _is_lb(svc))
    result: dict[tuple[str, str], str | None] = {}
    pending: list[dict] = []
    for svc in lbs:
        ident = (namespace_of(svc), name_of(svc))
        held = [ip for ip in ingress_ips(svc) if ip in pool_set]
        want = _requested(svc)
        ip = held[0] if held else None
        if ip is not None and (ip in used or (want and want != ip)):
            ip = None
        if ip is None:
            pending.append(svc)
            continue
        used.add(ip)
        result[ident] = ip
    for svc in pending:
        ident = (namespace_of(svc), name_of(svc))
        want = _requested(svc)
        if want:
            ip = want if want in pool_set and want not in used else None
        else:
            ip = next((a for a in pool if a not in used), None)
        if ip is not None:
            used.add(ip)
        result[ident] = ip
    return result


def reconcile_load_balancers(snapshot: Snapshot, now: float) -> list[Op]:
    """Give LoadBalancer Services an ingress IP from the pool; take it back from the others."""
    services = snapshot.list("Service")
    plan = assign_load_balancer_ips(services)
    pool_set = set(pool_addresses())
    ops: list[Op] = []
    for svc in services:
        if is_deleting(svc):
            continue
        ident = (namespace_of(svc), name_of(svc))
        if ident in plan:
            ip = plan[ident]
            if ip is None and not ingress_ips(svc):
                continue  # stays <pending>
            op = status_op(svc, _lb_status(ip))
        elif any(ip in pool_set for ip in ingress_ips(svc)):
            op = status_op(svc, _lb_status(None))  # no longer a LoadBalancer: release the address
        else:
            op = None
        if op is not None:
            ops.append(op)
    return ops


KUBERNETES_SERVICE = FuncReconciler("kubernetes-service", reconcile_kubernetes_service)
LOADBALANCER = FuncReconciler("loadbalancer", reconcile_load_balancers)
