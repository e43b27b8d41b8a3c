"""Pod and node IP address management: pure allocation of pod IPs inside a node's /24 and node pod CIDRs."""

from __future__ import annotations

import ipaddress

from netk8s import config
from netk8s.errors import NetK8sError, ValidationError

# The pod's IP, chosen by the controller and written on the pod; the node agent configures exactly it.
POD_IP_ANNOTATION = "netk8s.io/pod-ip"
NODE_CIDR_PREFIX = 24


def _network(cidr: str, what: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise ValidationError(f"{what}: {cidr!r} is not a valid CIDR") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValidationError(f"{what}: {cidr!r} is not an IPv4 CIDR")
    return net


def pod_ip_candidates(pod_cidr: str) -> list[str]:
    """Addresses a pod may get in a node CIDR, lowest first: not the network, not .1 (cbr0), not broadcast."""
    net = _network(pod_cidr, "podCIDR")
    gateway = net.network_address + 1
    return [str(ip) for ip in net.hosts() if ip != gateway]


def gateway_ip(pod_cidr: str) -> str:
    """The node's bridge (cbr0) address in its pod CIDR: the first host address (.1)."""
    return str(_network(pod_cidr, "podCIDR").network_address + 1)


def allocate_pod_ip(pod_cidr: str, used: set[str], node: str = "") -> str:
    """The lowest free pod address of `pod_cidr`; `used` holds addresses already taken (others ignored).

    Raises NetK8sError when every address is taken.
    """
    for ip in pod_ip_candidates(pod_cidr):
        if ip not in used:
            return ip
    where = f"node {node}: " if node else ""
    raise NetK8sError(
        f"{where}pod CIDR {pod_cidr} is exhausted",
        hint="delete pods on that node, or add a node",
    )


def allocate_node_cidr(used: set[str]) -> str:
    """The lowest free /24 of the cluster CIDR for a new node, never the first one (10.244.0.0/24).

    A candidate is taken if it overlaps any CIDR in `used`.
    """
    taken: list[ipaddress.IPv4Network] = [_network(c, "podCIDR") for c in used]
    cluster = _network(str(config.CLUSTER_CIDR), "cluster CIDR")
    for index, subnet in enumerate(cluster.subnets(new_prefix=NODE_CIDR_PREFIX)):
        if index == 0:
            continue
        if not any(subnet.overlaps(t) for t in taken):
            return str(subnet)
    raise NetK8sError(
        f"cluster CIDR {config.CLUSTER_CIDR} has no free /{NODE_CIDR_PREFIX} for another node",
        hint="delete unused Node objects",
    )


def ip_in_cidr(ip: str, cidr: str) -> bool:
    """True if `ip` is a valid address inside `cidr` (invalid input is simply False)."""
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
