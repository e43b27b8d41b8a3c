"""Pure: the proxy's view of the cluster, shared by every mode (iptables, nftables, ipvs, userspace).

Services and EndpointSlices become ServicePort entries, each with its endpoints as this node sees them
(local or not). Renderers take a ProxyState and a NodeContext and return text; they do no I/O.

`build_state` follows kube-proxy's change trackers (pkg/proxy/serviceport.go newBaseServiceInfo,
pkg/proxy/endpointslicecache.go) and `categorize` follows pkg/proxy/topology.go CategorizeEndpoints
(without topology hints, which netk8s nodes do not carry). `StateCache` is build_state kept current one
Service or EndpointSlice at a time, the way kube-proxy's trackers apply each informer event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netk8s import config

# Labels kube-proxy's informers filter on (cmd/kube-proxy/app/server.go: noProxyName, noHeadlessEndpoints).
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_SERVICE_PROXY_NAME = "service.kubernetes.io/service-proxy-name"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"  # discovery.LabelServiceName on EndpointSlices
# core/v1 defaults.go: DefaultClientIPServiceAffinitySeconds = 10800 (3 hours).
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    node: str | None
    ready: bool
    serving: bool
    terminating: bool
    local: bool  # on the node the proxy runs on
    # `ip:port`, computed once: renderers use it for every rule of the endpoint. Slots keep the 50,000
    # endpoints of a 10,000-Service cluster small (no per-object __dict__).
    addr: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "addr", f"{self.ip}:{self.port}")

    @property
    def usable(self) -> bool:
        """kube-proxy sends traffic to ready endpoints, or to serving+terminating ones as a fallback."""
        return self.ready or (self.serving and self.terminating)


@dataclass(frozen=True, slots=True)
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
    # Derived once (renderers read them for every rule); not compared.
    key: str = field(init=False, repr=False, compare=False)  # kube-proxy's ServicePortName `ns/name[:port]`
    proto_lower: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "proto_lower", self.protocol.lower())

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


# What ipaddress.IPv4Address accepts (dotted quad, no leading zeros), without its per-octet Python parsing:
# build_state checks every ClusterIP and endpoint address.
_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}", re.ASCII)


def _is_ipv4(text: str) -> bool:
    return isinstance(text, str) and _IPV4.fullmatch(text) is not None


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


# One EndpointSlice as the proxy needs it: per slice port, (port name, protocol, port number, endpoints).
SlicePorts = tuple[tuple[str, str, int, tuple[Endpoint, ...]], ...]


def slice_ports(sl: Mapping[str, Any], node_name: str) -> SlicePorts:
    """The endpoints of one EndpointSlice, per port (ports without a number are skipped), conditions
    defaulted like kube-proxy's EndpointSliceCache (ready: true, serving: ready, terminating: false).
    Only IPv4 slices and the first address of each endpoint count."""
    if sl.get("addressType", "IPv4") != "IPv4":
        return ()
    parsed: list[tuple[str | None, bool, bool, bool, str]] = []
    for ep in sl.get("endpoints") or ():
        addrs = ep.get("addresses") or ()
        if not addrs or not _is_ipv4(addrs[0]):
            continue
        conds = ep.get("conditions") or {}
        ready = _condition(conds, "ready", True)
        node = ep.get("nodeName")
        serving = _condition(conds, "serving", ready)
        parsed.append((node, ready, serving, _condition(conds, "terminating", False), addrs[0]))
    out = []
    mine = bool(node_name)
    for sp in sl.get("ports") or ():
        port = int(sp.get("port") or 0)
        if port <= 0:
            continue
        eps = tuple(Endpoint(ip, port, node, ready, serving, terminating, mine and node == node_name)
                    for node, ready, serving, terminating, ip in parsed)
        out.append((sp.get("name") or "", (sp.get("protocol") or "TCP").upper(), port, eps))
    return tuple(out)


def merge_endpoints(slices: Iterable[SlicePorts], port_name: str, protocol: str) -> tuple[Endpoint, ...]:
    """Endpoints of one service port from its slices (EndpointSliceCache): port matched by name and
    protocol, deduplicated by ip:port (a local copy wins), sorted by the `ip:port` string."""
    found: dict[str, Endpoint] = {}
    for ports in slices:
        for name, proto, _, eps in ports:
            if name != port_name or proto != protocol:
                continue
            for e in eps:
                if e.local or e.addr not in found:
                    found[e.addr] = e
    return tuple(found[a] for a in sorted(found))


def slice_endpoints(
    slices: Iterable[Mapping[str, Any]], namespace: str, service: str, port_name: str, protocol: str,
    node_name: str,
) -> tuple[Endpoint, ...]:
    """Endpoints of one service port from the slices labelled for that service, like kube-proxy's
    EndpointSliceCache: port matched by name and protocol, deduplicated by ip:port (a local copy wins),
    sorted by the `ip:port` string, conditions defaulted (ready: true, serving: ready, terminating: false)."""
    mine = [sl for sl in slices if ((sl.get("metadata") or {}).get("namespace") or "default") == namespace
            and _labels(sl).get(LABEL_SERVICE_NAME) == service]
    return merge_endpoints((slice_ports(sl, node_name) for sl in mine), port_name, protocol)


ObjKey = tuple[str, str]  # (namespace, name)


def _obj_key(obj: Mapping[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "default", meta.get("name") or "")


class StateCache:
    """The proxy's view, kept current object by object (kube-proxy's ServiceChangeTracker and
    EndpointsChangeTracker apply each informer event to their maps the same way).

    It keeps what the proxy needs of each object, not the objects: the ServicePorts of every Service and
    the parsed ports of every EndpointSlice, indexed by the Service they belong to. `update` turns one
    Service or EndpointSlice (or its deletion) into a new ProxyState in which only that Service's ports
    are recomputed; the previous ProxyState is left as it was (the proxier diffs the two and keeps the one
    it last applied)."""

    __slots__ = ("node_name", "ports", "slice_service", "slices", "state")

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.ports: dict[ObjKey, tuple[ServicePort, ...]] = {}  # Service -> its ports
        self.slices: dict[ObjKey, dict[str, SlicePorts]] = {}  # Service -> slice name -> its ports
        self.slice_service: dict[ObjKey, ObjKey] = {}  # slice -> the Service its label names
        self.state = ProxyState()

    def reset(self, services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]) -> ProxyState:
        """Start over from every object (the first sync)."""
        self.ports, self.slices, self.slice_service = {}, {}, {}
        for sl in slices:
            self._set_slice(sl)
        state = ProxyState()
        for svc in services:
            key = _obj_key(svc)
            ports = tuple(service_ports(svc))
            if ports:
                self.ports[key] = ports
            self._fill(state, key)
        self.state = state
        return state

    def _set_slice(self, sl: Mapping[str, Any]) -> ObjKey | None:
        """Index a slice under its Service; returns the Service it used to belong to, if another."""
        key = _obj_key(sl)
        old = self._drop_slice(key)
        svc_name = _labels(sl).get(LABEL_SERVICE_NAME)
        if svc_name:
            svc = (key[0], svc_name)
            self.slices.setdefault(svc, {})[key[1]] = slice_ports(sl, self.node_name)
            self.slice_service[key] = svc
        return old

    def _drop_slice(self, key: ObjKey) -> ObjKey | None:
        svc = self.slice_service.pop(key, None)
        if svc is not None:
            mine = self.slices.get(svc, {})
            mine.pop(key[1], None)
            if not mine:
                self.slices.pop(svc, None)
        return svc

    def _fill(self, state: ProxyState, svc: ObjKey) -> None:
        """Write a Service's ports and their endpoints into `state`."""
        ports = self.ports.get(svc, ())
        if not ports:
            return
        mine = self.slices.get(svc, {})
        slices = [mine[name] for name in sorted(mine)]  # the order build_state sees them in (by name)
        for sp in ports:
            state.services[sp.key] = sp
            state.endpoints[sp.key] = merge_endpoints(slices, sp.port_name, sp.protocol)

    def update(self, kind: str, obj: Mapping[str, Any], deleted: bool = False) -> set[str]:
        """Apply one Service or EndpointSlice (or its deletion) to a copy of the state, which becomes
        `self.state`. Returns the service port keys whose entries were recomputed or removed (empty:
        nothing the proxy sees changed, and `self.state` is the same object as before)."""
        key = _obj_key(obj)
        touched: set[ObjKey] = set()
        gone: list[str] = []  # port keys that no longer exist
        if kind == "Service":
            ports = () if deleted else tuple(service_ports(obj))
            old = self.ports.get(key, ())
            if ports == old:
                return set()
            if ports:
                self.ports[key] = ports
            else:
                self.ports.pop(key, None)
            keep = {sp.key for sp in ports}
            gone = [sp.key for sp in old if sp.key not in keep]
            touched.add(key)
        elif kind == "EndpointSlice":
            before = self.slice_service.get(key)
            if deleted:
                self._drop_slice(key)
            else:
                self._set_slice(obj)
            after = self.slice_service.get(key)
            touched = {svc for svc in (before, after) if svc is not None and svc in self.ports}
        else:
            return set()
        if not touched:
            return set()
        # Copy on write: a shallow copy of two dicts (fast even at 10,000 Services) keeps the previous
        # state intact for the proxier, which compares it with this one and keeps the one it applied.
        state = ProxyState(dict(self.state.services), dict(self.state.endpoints))
        for k in gone:
            state.services.pop(k, None)
            state.endpoints.pop(k, None)
        for svc in touched:
            self._fill(state, svc)
        self.state = state
        return set(gone) | {sp.key for svc in touched for sp in self.ports.get(svc, ())}


def build_state(services: list[dict], slices: list[dict], node_name: str) -> ProxyState:
    """The proxy's view from every Service and EndpointSlice, as seen from `node_name`."""
    return StateCache(node_name).reset(services, slices)


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


NO_ENDPOINTS = "reject"  # a ServicePlan verdict: no usable endpoint anywhere (ICMP port unreachable)
NO_LOCAL_ENDPOINTS = "drop"  # a ServicePlan verdict: a Local policy and no local endpoint


@dataclass(frozen=True)
class ServicePlan:
    """What one service port's rules do, computed once and written by every renderer (the policy preamble
    of kube-proxy's syncProxyRules per service port; pkg/proxy/iptables and pkg/proxy/nftables share it).

    `cluster`/`local`/`reachable`: categorize(). `internal_local`/`external_local`: internal (ClusterIP)
    or external (NodePort, externalIP, LoadBalancer) traffic goes to the local-endpoints chain rather than
    the cluster one. `has_internal`/`has_external`: that traffic has somewhere to go; when not, the
    `*_verdict` says what happens instead (NO_ENDPOINTS or NO_LOCAL_ENDPOINTS; "" when it has).
    `uses_external_chain`: external destinations go through an external chain that applies the policy
    and masquerades (all of it when `masquerade_external`, else only node-local sources).
    """

    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]
    has_endpoints: bool
    uses_cluster_chain: bool
    uses_local_chain: bool
    internal_local: bool
    has_internal: bool
    internal_verdict: str
    external_local: bool
    has_external: bool
    external_verdict: str
    uses_external_chain: bool
    masquerade_external: bool
    affinity: bool
    needs_local_chain: bool  # a Local policy: the port may use a local-endpoints chain
    needs_external_chain: bool  # NodePort, externalIP or LoadBalancer: the port may use an external chain


def plan_service(sp: ServicePort, eps: Iterable[Endpoint]) -> ServicePlan:
    """The ServicePlan of one service port and its endpoints (pure)."""
    eps = tuple(eps)
    cluster, local, reachable = categorize(sp, eps)
    has_eps = has_usable_endpoints(eps)
    has_internal = has_eps and (bool(local) if sp.internal_policy_local else True)
    has_external = has_eps and (bool(local) if sp.external_policy_local else True)

    def verdict(has: bool) -> str:
        return "" if has else NO_ENDPOINTS if not has_eps else NO_LOCAL_ENDPOINTS

    return ServicePlan(
        cluster=cluster, local=local, reachable=reachable, has_endpoints=has_eps,
        uses_cluster_chain=bool(cluster) and sp.uses_cluster_endpoints,
        uses_local_chain=bool(local) and sp.uses_local_endpoints,
        internal_local=sp.internal_policy_local, has_internal=has_internal, internal_verdict=verdict(has_internal),
        external_local=sp.external_policy_local, has_external=has_external, external_verdict=verdict(has_external),
        uses_external_chain=has_eps and sp.externally_accessible,
        masquerade_external=not sp.external_policy_local, affinity=sp.affinity_timeout is not None,
        needs_local_chain=sp.internal_policy_local or sp.external_policy_local,
        needs_external_chain=sp.externally_accessible,
    )
