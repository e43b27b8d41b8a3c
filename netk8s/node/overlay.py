"""The overlay between nodes: flannel's `vxlan` and `host-gw` backends.

`desired_overlay` is pure: from the list of nodes it computes the routes, neighbour and FDB entries one
node needs. For vxlan it is exactly flannel's scheme (pkg/backend/vxlan/vxlan_network.go): for every
other node with subnet S = a.b.c.0/24 and VTEP MAC M on underlay IP N,
    route  S via a.b.c.0 dev flannel.1 onlink
    neigh  a.b.c.0 lladdr M dev flannel.1 nud permanent
    fdb    M dev flannel.1 dst N self permanent
so no ARP or learning ever happens on the overlay. host-gw is one route per node: S via N dev eth0.
`apply_overlay` makes the kernel match, removing stale entries it finds in the kernel (routes with a
gateway inside the cluster CIDR, neighbours/FDB on flannel.1), not only the ones `previous` knew.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from netk8s import config
from netk8s.dataplane import links
from netk8s.errors import KernelError, ValidationError
from netk8s.model import naming

OverlayMode = Literal["vxlan", "host-gw"]
MODES: tuple[str, ...] = ("vxlan", "host-gw")


@dataclass(frozen=True)
class NodeInfo:
    """What the overlay needs to know about one node (from its Node object)."""

    name: str
    ip: str
    pod_cidr: str | None
    vtep_mac: str | None = None


@dataclass(frozen=True, order=True)
class RouteEntry:
    dst: str
    gateway: str
    dev: str
    onlink: bool = False


@dataclass(frozen=True, order=True)
class NeighEntry:
    ip: str
    mac: str


@dataclass(frozen=True, order=True)
class FdbEntry:
    mac: str
    dst: str


@dataclass(frozen=True)
class OverlayState:
    """Everything one node programs for the overlay; tuples sorted, so equal states compare equal."""

    mode: str
    routes: tuple[RouteEntry, ...] = field(default_factory=tuple)
    neighbours: tuple[NeighEntry, ...] = field(default_factory=tuple)
    fdb: tuple[FdbEntry, ...] = field(default_factory=tuple)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValidationError(f"--overlay: {mode!r} must be one of {', '.join(MODES)}")
    return mode


def overlay_mtu(mode: str, underlay_mtu: int = config.UNDERLAY_MTU) -> int:
    """Pod/bridge MTU for a mode: VXLAN costs 50 bytes of headers, host-gw none."""
    return underlay_mtu - config.VXLAN_OVERHEAD if check_mode(mode) == "vxlan" else underlay_mtu


def desired_overlay(self_name: str, nodes: list[NodeInfo], mode: str,
                    uplink: str = naming.NODE_UPLINK) -> OverlayState:
    """The routes/neighbours/FDB entries node `self_name` needs to reach every other node's pod CIDR.

    Nodes without a pod CIDR are skipped; in vxlan mode so are nodes that have not published their
    VTEP MAC yet (flannel waits for the lease's VtepMAC the same way). host-gw routes leave through
    `uplink`, the node's underlay interface (eth0 in a lab node or a QEMU guest, eth1 on a Vagrant VM).
    """
    check_mode(mode)
    routes: list[RouteEntry] = []
    neighbours: list[NeighEntry] = []
    fdb: list[FdbEntry] = []
    for node in nodes:
        if node.name == self_name or not node.pod_cidr:
            continue
        try:
            cidr = ipaddress.IPv4Network(node.pod_cidr, strict=False)
            node_ip = ipaddress.IPv4Address(node.ip)
        except ValueError as exc:
            raise ValidationError(f"node {node.name}: {exc}") from None
        if mode == "vxlan":
            if not node.vtep_mac:
                continue
            gateway = str(cidr.network_address)
            mac = node.vtep_mac.lower()
            routes.append(RouteEntry(str(cidr), gateway, config.VXLAN_DEV, onlink=True))
            neighbours.append(NeighEntry(gateway, mac))
            fdb.append(FdbEntry(mac, str(node_ip)))
        else:
            routes.append(RouteEntry(str(cidr), str(node_ip), uplink))
    return OverlayState(mode, tuple(sorted(routes)), tuple(sorted(neighbours)), tuple(sorted(fdb)))


def ensure_overlay_device(
    node_netns: str | None, mode: str, local_ip: str, pod_cidr: str | None = None, uplink: str = naming.NODE_UPLINK
) -> str | None:
    """vxlan: make `flannel.1` and return its VTEP MAC; host-gw: remove `flannel.1` if left over, None.

    With `pod_cidr`, flannel.1 gets the subnet's network address /32 (as flannel does), so traffic the
    node itself sends over the overlay has a source address the other side routes back through it.
    """
    check_mode(mode)
    if mode != "vxlan":
        links.delete_link(node_netns, config.VXLAN_DEV)
        return None
    mac = links.ensure_vxlan(
        node_netns,
        config.VXLAN_DEV,
        config.VXLAN_VNI,
        local_ip,
        uplink,
        config.VXLAN_PORT,
        config.UNDERLAY_MTU - config.VXLAN_OVERHEAD,
    )
    if pod_cidr:
        net = ipaddress.IPv4Network(pod_cidr, strict=False)
        links.ensure_address(node_netns, config.VXLAN_DEV, f"{net.network_address}/32")
    return mac


def _in_cluster(cidr: str) -> bool:
    return ipaddress.ip_network(cidr, strict=False).subnet_of(config.CLUSTER_CIDR)  # type: ignore[arg-type]


def apply_overlay(node_netns: str | None, state: OverlayState, previous: OverlayState | None = None) -> None:
    """Make the kernel match `state`: add what is missing, remove what is stale. Idempotent.

    Order matters for traffic in flight: FDB and neighbour first, then the route that uses them; on
    removal the route goes first.
    """
    check_mode(state.mode)
    have_vxlan = links.link_exists(node_netns, config.VXLAN_DEV)

    # stale routes: every route to a cluster subnet that has a gateway (ours), not only previous ones
    want_routes = {r.dst: r for r in state.routes}
    for route in links.list_routes(node_netns):
        dst = route["dst"]
        if route["gateway"] is None or dst == "0.0.0.0/0" or not _in_cluster(dst):
            continue
        want = want_routes.get(dst)
        if want is None:
            links.delete_route(node_netns, dst)

    if have_vxlan:
        want_fdb = set(state.fdb)
        want_neigh = set(state.neighbours)
        stale_fdb = {FdbEntry(m, d) for m, d in links.fdb_list(node_netns, config.VXLAN_DEV)} - want_fdb
        stale_neigh = {
            NeighEntry(ip, m)
            for ip, m in links.neigh_list(node_netns, config.VXLAN_DEV)
            if ipaddress.ip_address(ip) in config.CLUSTER_CIDR
        } - want_neigh
        if previous is not None:
            stale_fdb |= set(previous.fdb) - want_fdb
            stale_neigh |= set(previous.neighbours) - want_neigh
        want_neigh_ips = {n.ip for n in want_neigh}
        for neigh in sorted(stale_neigh):
            if neigh.ip not in want_neigh_ips:  # a changed MAC is handled by replace below
                links.neigh_delete(node_netns, config.VXLAN_DEV, neigh.ip)
        for entry in sorted(stale_fdb):
            links.fdb_delete(node_netns, config.VXLAN_DEV, entry.mac, entry.dst)
        have_fdb = {FdbEntry(m, d) for m, d in links.fdb_list(node_netns, config.VXLAN_DEV)}
        for entry in state.fdb:
            if entry not in have_fdb:
                links.fdb_replace(node_netns, config.VXLAN_DEV, entry.mac, entry.dst)
        have_neigh = {NeighEntry(ip, m) for ip, m in links.neigh_list(node_netns, config.VXLAN_DEV)}
        for neigh in state.neighbours:
            if neigh not in have_neigh:
                links.neigh_replace(node_netns, config.VXLAN_DEV, neigh.ip, neigh.mac)
    elif state.mode == "vxlan" and state.routes:
        raise KernelError(
            f"apply_overlay: {config.VXLAN_DEV} does not exist", hint="call ensure_overlay_device first"
        )

    have_routes = {
        (r["dst"], r["gateway"], r["dev"], r["onlink"]) for r in links.list_routes(node_netns)
    }
    for want in state.routes:
        if (want.dst, want.gateway, want.dev, want.onlink) not in have_routes:
            links.ensure_route(node_netns, want.dst, gateway=want.gateway, dev=want.dev, onlink=want.onlink)


# ---------------------------------------------------------------------------------------------------------
# flannel's ip-masq: pods reach addresses outside the cluster with the node's address

MASQ_TABLE = "flannel"
MASQ_CHAIN = "postrtg"


def ip_masq_rules(cluster_cidr: str = str(config.CLUSTER_CIDR)) -> str:
    """`nft -f` text for flannel's `--ip-masq` (flannel's nftables mode, pkg/trafficmngr/nftables): pod
    to pod traffic keeps its source, pod traffic leaving the cluster CIDR (except multicast) is
    masqueraded, so a pod's packets to the underlay (the lab's upstream DNS server, an external host)
    come back to the node.

    It lives in a table of its own (`ip flannel`) rather than in iptables' nat POSTROUTING, which the
    iptables proxy mode rewrites on every full sync; the kernel runs both NAT hooks, and the first that
    sets up a mapping wins (kube-proxy's KUBE-POSTROUTING masquerade of marked Service traffic and this
    rule never match the same packet: that traffic goes to a pod IP). Re-applying replaces the table."""
    return "\n".join([
        f"table ip {MASQ_TABLE} {{}}",
        f"delete table ip {MASQ_TABLE}",
        f"table ip {MASQ_TABLE} {{",
        f"  chain {MASQ_CHAIN} {{",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f"    ip saddr {cluster_cidr} ip daddr {cluster_cidr} return",
        f"    ip saddr {cluster_cidr} ip daddr != 224.0.0.0/4 masquerade fully-random",
        "  }",
        "}",
        "",
    ])


def ensure_ip_masq(cluster_cidr: str = str(config.CLUSTER_CIDR)) -> None:
    """Program flannel's masquerade rules in the current namespace (one nft transaction). Idempotent."""
    from netk8s.dataplane import nftables

    nftables.apply(ip_masq_rules(cluster_cidr))
