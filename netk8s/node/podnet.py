"""The pod network, CNI-style (containernetworking/plugins `bridge`): add / delete / check a pod's netns.

The caller decides the IP (IPAM lives in the controller); this module wires it: a pod namespace with
`lo` up, a veth pair whose node end `naming.host_veth(uid)` sits on the node bridge `cbr0` with hairpin
mode on, the pod end `eth0` carrying the IP and a default route via the bridge gateway.
Configuration is validated before any side effect; a failed add rolls back what it created; delete
succeeds when things are already gone.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from netk8s.dataplane import arp, links, netns, sysctl
from netk8s.errors import KernelError, ValidationError
from netk8s.model import naming

BR_NETFILTER_KEY = "net.bridge.bridge-nf-call-iptables"

log = logging.getLogger("netk8s.node.podnet")


@dataclass(frozen=True)
class PodNetConfig:
    """What `add` needs to wire one pod: its netns name, uid (for the veth name) and addressing."""

    pod_netns: str
    pod_uid: str
    ip: str
    prefix_len: int
    gateway: str
    mtu: int
    bridge: str = naming.BRIDGE

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix_len}"

    @property
    def host_veth(self) -> str:
        return naming.host_veth(self.pod_uid)


def validate(cfg: PodNetConfig) -> None:
    """Raise ValidationError naming the field when the config cannot work."""
    if not cfg.pod_netns.startswith(naming.NETNS_PREFIX) or "/" in cfg.pod_netns:
        raise ValidationError(f"pod_netns: {cfg.pod_netns!r} must start with {naming.NETNS_PREFIX!r}")
    if not cfg.pod_uid:
        raise ValidationError("pod_uid: must not be empty")
    if not 1 <= cfg.prefix_len <= 30:
        raise ValidationError(f"prefix_len: {cfg.prefix_len} must be between 1 and 30")
    try:
        ip = ipaddress.IPv4Address(cfg.ip)
        gw = ipaddress.IPv4Address(cfg.gateway)
    except ValueError as exc:
        raise ValidationError(f"ip/gateway: {exc}") from None
    net = ipaddress.IPv4Network(f"{ip}/{cfg.prefix_len}", strict=False)
    if gw not in net:
        raise ValidationError(f"gateway: {gw} is not in {net}")
    if ip == gw or ip in (net.network_address, net.broadcast_address):
        raise ValidationError(f"ip: {ip} cannot be the gateway, network or broadcast address of {net}")
    if not 68 <= cfg.mtu <= 65535:
        raise ValidationError(f"mtu: {cfg.mtu} must be between 68 and 65535")
    if not cfg.bridge or len(cfg.bridge) > naming.IFNAMSIZ:
        raise ValidationError(f"bridge: {cfg.bridge!r} is not a valid interface name")


def ensure_node_bridge(node_netns: str | None, gateway_cidr: str, mtu: int) -> None:
    """`cbr0` up with the gateway address; ip_forward=1 and bridge-nf-call-iptables=1 in the node.

    bridge-nf-call-iptables makes bridged pod-to-pod traffic on the same node pass through iptables,
    so a Service reached from a pod on the same node is DNATed (Kubernetes' network-plugin requirement).
    It only exists once br_netfilter is loaded; we try `modprobe br_netfilter` once and skip it otherwise.
    """
    try:
        ipaddress.IPv4Interface(gateway_cidr)
    except ValueError as exc:
        raise ValidationError(f"gateway_cidr: {exc}") from None
    links.ensure_bridge(node_netns, naming.BRIDGE, mtu)
    links.ensure_address(node_netns, naming.BRIDGE, gateway_cidr)
    sysctl.set_sysctl(node_netns, "net.ipv4.ip_forward", 1)
    sysctl.load_module("br_netfilter")
    if sysctl.sysctl_exists(node_netns, BR_NETFILTER_KEY):
        sysctl.set_sysctl(node_netns, BR_NETFILTER_KEY, 1)


def add(node_netns: str | None, cfg: PodNetConfig) -> dict[str, str]:
    """Wire the pod; returns {"ip", "mac" (of the pod's eth0), "host_veth"}. Idempotent.

    On failure everything this call created is removed again (the veth, a netns it made), then the
    error is raised.
    """
    validate(cfg)
    created_netns = not netns.netns_exists(cfg.pod_netns)
    created_veth = created_netns
    try:
        # one netlink socket per namespace (node, pod) for the whole add: opening one costs more than
        # most of the requests made on it
        with links.shared_sockets():
            # in a namespace we just made no veth end can exist yet: the pod end would be in it, and
            # a host end cannot outlive its peer (deleting a veth deletes the pair)
            created_veth = created_netns or not links.link_exists(node_netns, cfg.host_veth)
            netns.create_netns(cfg.pod_netns)
            links.ensure_loopback_up(cfg.pod_netns)
            links.ensure_veth(
                node_netns,
                cfg.host_veth,
                cfg.pod_netns,
                naming.POD_IFNAME,
                cfg.mtu,
                master=cfg.bridge,
                hairpin=True,
            )
            mac = links.ensure_sole_address(cfg.pod_netns, naming.POD_IFNAME, cfg.cidr, gateway=cfg.gateway)
            # IPAM hands out the lowest free address, so a new pod often gets the address of one just
            # deleted, with a new MAC; the node's neighbour entry for it still names the old MAC (REACHABLE
            # for up to 45 s, then probed before it is replaced) and the node's traffic to the new pod
            # goes nowhere until then. A gratuitous ARP replaces it now (docs/reliability.md).
            # Best effort like the CNI plugins: without it the old entry still fails over, only later.
            try:
                arp.announce(cfg.pod_netns, naming.POD_IFNAME, cfg.ip, mac)
            except KernelError as exc:
                log.warning("%s", exc)
    except Exception:
        # after the block: its sockets are closed, so they no longer pin the pod namespace
        _rollback(node_netns, cfg, created_netns, created_veth)
        raise
    return {"ip": cfg.ip, "mac": mac, "host_veth": cfg.host_veth}


def _rollback(node_netns: str | None, cfg: PodNetConfig, created_netns: bool, created_veth: bool) -> None:
    # best effort: the original error is what the caller needs to see
    try:
        if created_veth:
            links.delete_link(node_netns, cfg.host_veth)
        if created_netns:
            netns.delete_netns(cfg.pod_netns)
    except KernelError:
        pass


def delete(node_netns: str | None, pod_netns: str, pod_uid: str) -> None:
    """Remove the pod's veth and its netns; succeeds when either is already gone."""
    links.delete_link(node_netns, naming.host_veth(pod_uid))
    netns.delete_netns(pod_netns)


def check(node_netns: str | None, cfg: PodNetConfig) -> list[str]:
    """Problems with the pod's wiring, one line each; an empty list means healthy."""
    validate(cfg)
    with links.shared_sockets():
        return _check(node_netns, cfg)


def _check(node_netns: str | None, cfg: PodNetConfig) -> list[str]:
    problems: list[str] = []
    host = links.link_info(node_netns, cfg.host_veth)
    if host is None:
        problems.append(f"host veth {cfg.host_veth} is missing")
    else:
        if host["kind"] != "veth":
            problems.append(f"host veth {cfg.host_veth} is a {host['kind']}, not a veth")
        if host["master"] != cfg.bridge:
            problems.append(f"host veth {cfg.host_veth} is attached to {host['master']}, not {cfg.bridge}")
        if not host["up"]:
            problems.append(f"host veth {cfg.host_veth} is down")
        if host["mtu"] != cfg.mtu:
            problems.append(f"host veth {cfg.host_veth} has mtu {host['mtu']}, want {cfg.mtu}")
    if not netns.netns_exists(cfg.pod_netns):
        problems.append(f"pod netns {cfg.pod_netns} is missing")
        return problems
    pod = links.link_info(cfg.pod_netns, naming.POD_IFNAME)
    if pod is None:
        problems.append(f"{naming.POD_IFNAME} is missing in {cfg.pod_netns}")
        return problems
    if not pod["up"]:
        problems.append(f"{naming.POD_IFNAME} is down in {cfg.pod_netns}")
    if pod["mtu"] != cfg.mtu:
        problems.append(f"{naming.POD_IFNAME} has mtu {pod['mtu']}, want {cfg.mtu}")
    addrs = links.list_addresses(cfg.pod_netns, naming.POD_IFNAME)
    if cfg.cidr not in addrs:
        problems.append(f"{naming.POD_IFNAME} has addresses {addrs}, want {cfg.cidr}")
    lo = links.link_info(cfg.pod_netns, "lo")
    if lo is None or not lo["up"]:
        problems.append(f"lo is down in {cfg.pod_netns}")
    default = [r for r in links.list_routes(cfg.pod_netns) if r["dst"] == "0.0.0.0/0"]
    if not any(r["gateway"] == cfg.gateway and r["dev"] == naming.POD_IFNAME for r in default):
        problems.append(f"no default route via {cfg.gateway} dev {naming.POD_IFNAME} in {cfg.pod_netns}")
    return problems
