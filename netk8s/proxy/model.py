"""Pure: the proxy's view of the cluster, shared by every mode (iptables, nftables, ipvs, userspace).

Services and EndpointSlices become ServicePort entries, each with its endpoints as this node sees them
(local or not). Renderers take a ProxyState and a NodeContext and return text; they do no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netk8s import config


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str | None
    ready: bool
    serving: bool
    terminating: bool
    local: bool  # on the node the proxy runs on

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"


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

    @property
    def key(self) -> str:
        """kube-proxy's ServicePortName: `ns/name:port` (`ns/name` for an unnamed port)."""
        return f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)


@dataclass(frozen=True)
class NodeContext:
    node_name: str
    node_ips: tuple[str, ...]
    cluster_cidr: str = str(config.CLUSTER_CIDR)
    masquerade_bit: int = 14  # mark 0x4000


@dataclass
class ProxyState:
    """Every proxied service port with its endpoints (all endpoints, ready or not: renderers filter)."""

    services: dict[str, ServicePort] = field(default_factory=dict)
    endpoints: dict[str, tuple[Endpoint, ...]] = field(default_factory=dict)
