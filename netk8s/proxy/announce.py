"""LoadBalancer IPs on the underlay: which node announces each one (pure), and the announcer (kernel).

Like MetalLB's layer-2 mode, exactly ONE node owns each LoadBalancer IP: it holds the address (so it
answers ARP for it) and its kube-proxy rules DNAT the traffic. The owner is the node whose name sorts
first by sha256(node + ip) among the candidates (MetalLB's speaker election: stable while the set
of nodes does not change, and spreads IPs over nodes). Candidates are the Ready nodes for
`externalTrafficPolicy: Cluster`, and the Ready nodes with a ready local endpoint for `Local` (MetalLB
does the same, so the client's source IP can be kept).

The Announcer runs in the node agent, in the node's namespace (netns None): it adds `ip/32` to the
uplink, sends a gratuitous ARP (netk8s.dataplane.arp) so the switch and the clients learn the new owner at once, and removes
the LoadBalancer-pool /32s it no longer owns.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping

from netk8s import config
from netk8s.model import naming
from netk8s.proxy.model import Endpoint, ServicePort

log = logging.getLogger("netk8s.proxy.announce")


def _order(node: str, ip: str) -> str:
    return hashlib.sha256((node + ip).encode()).hexdigest()


def announcer_for(lb_ip: str, sp: ServicePort, endpoints: Iterable[Endpoint],
                  ready_nodes: Iterable[str]) -> str | None:
    """The node that announces `lb_ip` of `sp`, or None when no node may (no candidate)."""
    candidates = set(ready_nodes)
    if sp.external_policy_local:
        with_local = {ep.node for ep in endpoints if ep.ready and ep.node}
        candidates &= with_local  # type: ignore[arg-type]
    if not candidates:
        return None
    return min(candidates, key=lambda node: (_order(node, lb_ip), node))


def lb_assignments(services: Iterable[ServicePort], endpoints: Mapping[str, tuple[Endpoint, ...]],
                   ready_nodes: Iterable[str]) -> dict[str, str | None]:
    """{lb_ip: announcing node or None} for every LoadBalancer IP of every service port.

    An IP shared by several ports of one Service is announced when any port has a candidate.
    """
    ready = sorted(set(ready_nodes))
    out: dict[str, str | None] = {}
    for sp in services:
        for ip in sp.load_balancer_ips:
            node = announcer_for(ip, sp, endpoints.get(sp.key, ()), ready)
            if out.get(ip) is None:
                out[ip] = node
    return out


def in_lb_pool(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    lo, hi = config.LB_POOL
    return addr.version == 4 and int(lo) <= int(addr) <= int(hi)  # type: ignore[operator]


class Announcer:
    """Holds the LoadBalancer IPs this node owns as /32s on its uplink (inside the node namespace)."""

    def __init__(self, node_name: str, uplink: str = naming.NODE_UPLINK, netns: str | None = None,
                 node_ips: tuple[str, ...] = ()) -> None:
        self.node_name = node_name
        self.uplink = uplink  # "": the interface holding one of node_ips, found at the first sync
        self.netns = netns  # None: the namespace we run in (the agent runs in the node's)
        self.node_ips = node_ips
        self.announced: set[str] = set()

    def link(self) -> str:
        """The uplink: given, or the interface holding a node IP (eth1 on a Vagrant VM), else eth0."""
        if not self.uplink:
            from netk8s.dataplane import links

            found = (links.link_with_address(self.netns, ip) for ip in self.node_ips)
            self.uplink = next((name for name in found if name), naming.NODE_UPLINK)
        return self.uplink

    def desired(self, lb_map: Mapping[str, str | None]) -> set[str]:
        return {ip for ip, node in lb_map.items() if node == self.node_name and in_lb_pool(ip)}

    def sync(self, lb_map: Mapping[str, str | None]) -> set[str]:
        """Make the uplink hold exactly the pool /32s assigned to this node; returns them."""
        from netk8s.dataplane import links

        want = self.desired(lb_map)
        present = set()
        for cidr in links.list_addresses(self.netns, self.link()):
            ip, _, plen = cidr.partition("/")
            if plen == "32" and in_lb_pool(ip):
                present.add(ip)
        for ip in sorted(present - want):
            links.delete_address(self.netns, self.link(), f"{ip}/32")
            log.info("stopped announcing %s", ip)
        for ip in sorted(want - present):
            links.ensure_address(self.netns, self.link(), f"{ip}/32")
            log.info("announcing %s on %s", ip, self.link())
            self.gratuitous_arp(ip)
        self.announced = want
        return want

    def gratuitous_arp(self, ip: str) -> None:
        """Tell the underlay that `ip` moved here (best effort; netk8s.dataplane.arp)."""
        if self.netns is not None:
            return  # the ARP goes out of our own namespace only
        from netk8s.dataplane import arp

        arp.gratuitous_arp(self.link(), ip)

    def release_all(self) -> None:
        """Drop every pool /32 from the uplink (agent shutdown or proxy-mode change)."""
        self.sync({})

