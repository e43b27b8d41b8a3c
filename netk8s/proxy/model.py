"""Pure: the proxy's view of the cluster, shared by every mode (iptables, nftables, ipvs, userspace).

Services and EndpointSlices become ServicePort entries, each with its endpoints as this node sees them
(local or not). Renderers take a ProxyState and a NodeContext and return text; they do no I/O.

`build_state` follows kube-proxy's change trackers (pkg/proxy/serviceport.go newBaseServiceInfo,
pkg/proxy/endpointslicecache.go) and `categorize` follows pkg/proxy/topology.go CategorizeEndpoints
(without topology hints, which netk8s nodes do not carry).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from netk8s import config

# Labels kube-proxy's informers filter on (cmd/kube-proxy/app/server.go: noProxyName, noHeadlessEndpoints).
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_SERVICE_PROXY_NAME = "service.kubernetes.io/service-proxy-name"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"  # discovery.LabelServiceName on EndpointSlices
# core/v1 defaults.go: DefaultClientIPServiceAffinitySeconds = 10800 (3 hours).
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str | None
    ready: bool
    serving: bool
    terminating: bool
    local: bool  # on the node the proxy runs on

    @cached_property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def usable(self) -> bool:
        """kube-proxy sends traffic to ready endpoints, or to serving+terminating ones as a fallback."""
        return self.ready or (self.serving and self.terminating)


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str  # "" for an unnamed port
    protocol: str  # TCP | UDP | SCTP
    cluster_ip: str | None  # None for headless / ExternalName (the proxy skips those)
    port: int
    target_port: int | str
    node_port: int | None = None
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    affinity_timeout: int | None = None  # ClientIP session affinity timeout in seconds, None = no affinity
    external_policy_local: bool = False  # externalTrafficPolicy: Local
    internal_policy_local: bool = False  # internalTrafficPolicy: Local
    health_check_node_port: int | None = None

    @cached_property
    def key(self) -> str:
        """kube-proxy's ServicePortName: `ns/name:port` (`ns/name` for an unnamed port)."""
        return f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")

    @property
    def service_key(self) -> str:
        """`ns/name` of the Service this port belongs to."""
        return f"{self.namespace}/{self.name}"

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)

    @property
    def externally_accessible(self) -> bool:
        """kube-proxy's ExternallyAccessible: a NodePort, an external IP or a LoadBalancer IP."""
        return self.has_external

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Cluster endpoints are needed for Cluster internal policy, or for any external traffic
        (even with externalTrafficPolicy Local: pod and host traffic to external IPs is short-circuited
        to the cluster-wide chain; serviceport.go UsesClusterEndpoints)."""
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)

    @cached_property
    def proto_lower(self) -> str:
        return self.protocol.lower()


@dataclass(frozen=True)
class NodeContext:
    node_name: str
    node_ips: tuple[str, ...]
    cluster_cidr: str = str(config.CLUSTER_CIDR)
    masquerade_bit: int = 14  # mark 0x4000

    @property
    def masquerade_mark(self) -> str:
        """The mark as iptables-save prints it (`0x4000` for bit 14)."""
        return hex(1 << self.masquerade_bit)


@dataclass
class ProxyState:
    """Every proxied service port with its endpoints (all endpoints, ready or not: renderers filter)."""

    services: dict[str, ServicePort] = field(default_factory=dict)
    endpoints: dict[str, tuple[Endpoint, ...]] = field(default_factory=dict)

    def endpoints_of(self, key: str) -> tuple[Endpoint, ...]:
        return self.endpoints.get(key, ())


# ---------------------------------------------------------------------------------------------------------
# Services


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def is_proxied(svc: Mapping[str, Any]) -> bool:
    """False for the Services kube-proxy skips: ExternalName, headless, and the two opt-out labels."""
    spec = svc.get("spec") or {}
    labels = _labels(svc)
    if LABEL_HEADLESS in labels or LABEL_SERVICE_PROXY_NAME in labels:
        return False
    if spec.get("type") == "ExternalName":
        return False
    cluster_ip = spec.get("clusterIP")
    return bool(cluster_ip) and cluster_ip != "None"


def service_ports(svc: Mapping[str, Any]) -> list[ServicePort]:
    """One ServicePort per `spec.ports` entry of a proxied Service ([] for the others)."""
    if not is_proxied(svc):
        return []
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    status = svc.get("status") or {}
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ip = str(spec["clusterIP"])
    if not _is_ipv4(cluster_ip):
        return []  # netk8s is single-stack IPv4, like an IPv4 kube-proxy skipping other families
    affinity: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    # apiservice.ExternalPolicyLocal: only NodePort and LoadBalancer Services have an external policy.
    ext_local = svc_type in ("NodePort", "LoadBalancer") and spec.get("externalTrafficPolicy") == "Local"
    int_local = spec.get("internalTrafficPolicy") == "Local"
    external_ips = tuple(ip for ip in spec.get("externalIPs") or () if _is_ipv4(ip))
    # serviceport.go: every ingress IP of the status counts (no type check), except ipMode Proxy.
    lb_ips = tuple(
        ing["ip"] for ing in (status.get("loadBalancer") or {}).get("ingress") or ()
        if ing.get("ip") and ing.get("ipMode", "VIP") == "VIP" and _is_ipv4(ing["ip"])
    )
    # apiservice.NeedsHealthCheck: LoadBalancer with externalTrafficPolicy Local.
    hc_port = int(spec.get("healthCheckNodePort") or 0) if svc_type == "LoadBalancer" and ext_local else 0
    out = []
    for p in spec.get("ports") or ():
        node_port = int(p.get("nodePort") or 0) if svc_type in ("NodePort", "LoadBalancer") else 0
        # Validation allows a Local external policy only on externally accessible types; keep the flag
        # only where this port really has an external destination (kube-proxy: ExternallyAccessible).
        port_ext_local = ext_local and bool(node_port or external_ips or lb_ips)
        out.append(ServicePort(
            namespace=meta.get("namespace") or "default",
            name=meta["name"],
            port_name=p.get("name") or "",
            protocol=(p.get("protocol") or "TCP").upper(),
            cluster_ip=cluster_ip,
            port=int(p["port"]),
            target_port=p.get("targetPort", p["port"]),
            node_port=node_port or None,
            external_ips=external_ips,
            load_balancer_ips=lb_ips,
            affinity_timeout=affinity,
            external_policy_local=port_ext_local,
            internal_policy_local=int_local,
            health_check_node_port=(hc_port or None) if port_ext_local else None,
        ))
    return out


# ---------------------------------------------------------------------------------------------------------
# Endpoints


def _condition(conds: Mapping[str, Any], name: str, default: bool) -> bool:
    value = conds.get(name)
    return default if value is None else bool(value)


def slice_endpoints(
    slices: Iterable[Mapping[str, Any]], namespace: str, service: str, port_name: str, protocol: str,
    node_name: str,
) -> tuple[Endpoint, ...]:
    """Endpoints of one service port from the slices labelled for that service, like kube-proxy's
    EndpointSliceCache: port matched by name and protocol, deduplicated by ip:port (a local copy wins),
    sorted by the `ip:port` string, conditions defaulted (ready: true, serving: ready, terminating: false)."""
    found: dict[str, Endpoint] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        if (meta.get("namespace") or "default") != namespace:
            continue
        if _labels(sl).get(LABEL_SERVICE_NAME) != service:
            continue
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        for sp in sl.get("ports") or ():
            if (sp.get("name") or "") != port_name or (sp.get("protocol") or "TCP").upper() != protocol:
                continue
            port = int(sp.get("port") or 0)
            if port <= 0:
                continue
            for ep in sl.get("endpoints") or ():
                addrs = ep.get("addresses") or ()
                if not addrs or not _is_ipv4(addrs[0]):
                    continue
                conds = ep.get("conditions") or {}
                ready = _condition(conds, "ready", True)
                serving = _condition(conds, "serving", ready)
                terminating = _condition(conds, "terminating", False)
                node = ep.get("nodeName")
                local = bool(node_name) and node == node_name
                e = Endpoint(ip=addrs[0], port=port, node=node, ready=ready, serving=serving,
                             terminating=terminating, local=local)
                if e.addr not in found or local:
                    found[e.addr] = e
    return tuple(found[a] for a in sorted(found))


def build_state(services: list[dict], slices: list[dict], node_name: str) -> ProxyState:
    """The proxy's view from every Service and EndpointSlice, as seen from `node_name`."""
    by_service: dict[tuple[str, str], list[dict]] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc_name = _labels(sl).get(LABEL_SERVICE_NAME)
        if svc_name:
            by_service.setdefault((meta.get("namespace") or "default", svc_name), []).append(sl)
    state = ProxyState()
    for svc in services:
        for sp in service_ports(svc):
            state.services[sp.key] = sp
            mine = by_service.get((sp.namespace, sp.name), [])
            state.endpoints[sp.key] = slice_endpoints(
                mine, sp.namespace, sp.name, sp.port_name, sp.protocol, node_name)
    return state


# ---------------------------------------------------------------------------------------------------------
# Categorize (pkg/proxy/topology.go CategorizeEndpoints, no topology hints)


def has_usable_endpoints(endpoints: Iterable[Endpoint]) -> bool:
    """kube-proxy's hasAnyEndpoints: some endpoint anywhere is ready, or serving and terminating."""
    return any(e.usable for e in endpoints)


def categorize(
    sp: ServicePort, endpoints: Iterable[Endpoint],
) -> tuple[tuple[Endpoint, ...], tuple[Endpoint, ...], tuple[Endpoint, ...]]:
    """(cluster endpoints, local endpoints, all locally reachable endpoints) for one service port.

    Cluster: the ready endpoints, or if none is ready anywhere, the serving+terminating ones (empty when
    the port does not use Cluster policy). Local: the same rule applied to this node's endpoints (empty
    when the port uses no Local policy). All reachable: the union, each endpoint once, sorted by ip:port;
    these get a KUBE-SEP chain.
    """
    eps = tuple(endpoints)
    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    if sp.uses_cluster_endpoints:
        cluster = tuple(e for e in eps if e.ready)
        if not cluster:
            cluster = tuple(e for e in eps if e.serving and e.terminating)
    if not sp.uses_local_endpoints:
        return cluster, local, cluster
    local_ready = tuple(e for e in eps if e.local and e.ready)
    local = local_ready or tuple(e for e in eps if e.local and e.serving and e.terminating)
    if not sp.uses_cluster_endpoints:
        return cluster, local, local
    if cluster and cluster[0].ready and all(e.ready for e in local):
        return cluster, local, cluster  # cluster holds every ready endpoint, local ones included
    # Cluster may hold remote endpoints, local may hold terminating ones cluster lacks: merge.
    merged = {e.addr: e for e in cluster}
    merged.update((e.addr, e) for e in local)
    return cluster, local, tuple(merged[a] for a in sorted(merged))
