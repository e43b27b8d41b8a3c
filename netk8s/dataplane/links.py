"""Links, addresses, routes, neighbours and FDB entries over netlink (pyroute2), in a given namespace.

Every function takes `netns` first: the name of a named namespace, or None for the namespace this
process runs in (the node agent). The netlink socket is created inside the namespace by a short-lived
thread (netns.open_socket: setns(2) affects that thread only) and handed to pyroute2's IPRoute; a
missing namespace is never created. Inside `shared_sockets()` one socket per namespace serves every
call (opening one costs more than most requests), e.g. for a whole pod network add.
NetlinkError is translated by errno into KernelError at one boundary (`_netlink`). `ensure_*` verbs
tolerate "already exists" and then verify; deletes tolerate "already gone".
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NTF_SELF, NUD_PERMANENT
from pyroute2.netlink.rtnl.rtmsg import RTNH_F_ONLINK

from netk8s.dataplane import netns as _netns
from netk8s.errors import KernelError

MAIN_TABLE = 254
NETLINK_ROUTE = 0
_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)

# per thread: (depth of nested shared_sockets() blocks, {netns: IPRoute}) while inside one
_shared = threading.local()


def _where(netns: str | None) -> str:
    return netns if netns is not None else "<own netns>"


def _open(netns: str | None, what: str) -> IPRoute:
    try:
        sock = _netns.open_socket(netns, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    except KernelError as exc:
        raise KernelError(f"{what}: {exc.message}", hint=exc.hint) from exc
    try:
        # pyroute2 wraps the fd and does its usual set-up (buffers, bind); the socket stays in `netns`
        return IPRoute(fileno=sock.detach())
    except OSError as exc:
        raise KernelError(f"{what}: cannot open netlink in {_where(netns)}: {exc.strerror or exc}") from exc


@contextmanager
def shared_sockets() -> Iterator[None]:
    """Within this block (this thread), links.* calls reuse one netlink socket per namespace.

    Sockets are opened on first use and closed when the outermost block ends. A socket pins its
    namespace: do not expect a namespace deleted inside the block to be gone before the block ends.
    """
    depth = getattr(_shared, "depth", 0)
    if depth == 0:
        _shared.sockets = {}
    _shared.depth = depth + 1
    try:
        yield
    finally:
        _shared.depth = depth
        if depth == 0:
            sockets, _shared.sockets = _shared.sockets, {}
            for ipr in sockets.values():
                ipr.close()


@contextmanager
def _netlink(netns: str | None, what: str) -> Iterator[IPRoute]:
    """A netlink socket in `netns`; turn NetlinkError/OSError into KernelError naming `what`."""
    shared: dict[str | None, IPRoute] | None = _shared.sockets if getattr(_shared, "depth", 0) else None
    ipr = shared.get(netns) if shared is not None else None
    if ipr is None:
        ipr = _open(netns, what)
        if shared is not None:
            shared[netns] = ipr
    try:
        yield ipr
    except NetlinkError as exc:
        raise KernelError(f"{what}: {os.strerror(exc.code)}") from exc
    except OSError as exc:
        raise KernelError(f"{what}: {exc.strerror or exc}") from exc
    finally:
        if shared is None:
            ipr.close()


def _get_link(ipr: IPRoute, ifname: str) -> Any | None:
    """The link's message, by name, in one request; None when there is no such link."""
    try:
        return ipr.link("get", ifname=ifname)[0]
    except NetlinkError as exc:
        if exc.code in _GONE:
            return None
        raise


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _require_index(ipr: IPRoute, netns: str | None, ifname: str) -> int:
    idx = _index(ipr, ifname)
    if idx is None:
        raise KernelError(f"link {ifname} not found in {_where(netns)}")
    return idx


def _link_msg(ipr: IPRoute, idx: int) -> Any:
    return ipr.get_links(idx)[0]


def _kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _info_data(msg: Any) -> Any:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_DATA") if info is not None else None


def _is_up(msg: Any) -> bool:
    return bool(msg["flags"] & 1)  # IFF_UP


def _ignore_exists(exc: NetlinkError) -> None:
    if exc.code != errno.EEXIST:
        raise exc


@contextmanager
def _open_netns_fd(netns: str | None) -> Iterator[int]:
    path = f"/run/netns/{netns}" if netns is not None else "/proc/self/ns/net"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KernelError(f"netns {netns} does not exist: {exc.strerror}") from exc
    try:
        yield fd
    finally:
        os.close(fd)


# ---------------------------------------------------------------- links


def link_exists(netns: str | None, ifname: str) -> bool:
    """True when the link exists there (False when the namespace itself is gone)."""
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        return False
    with _netlink(netns, f"link_exists {ifname}") as ipr:
        return _index(ipr, ifname) is not None


def list_links(netns: str | None) -> list[str]:
    """Names of every link in the namespace."""
    with _netlink(netns, "list_links") as ipr:
        return sorted(str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links())


def link_info(netns: str | None, ifname: str) -> dict[str, Any] | None:
    """kind, mtu, up, mac, master (name or None), ifindex of a link; None when it does not exist."""
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        return None
    with _netlink(netns, f"link_info {ifname}") as ipr:
        msg = _get_link(ipr, ifname)
        if msg is None:
            return None
        idx = int(msg["index"])
        master_idx = msg.get_attr("IFLA_MASTER")
        master = None
        if master_idx:
            master = str(_link_msg(ipr, master_idx).get_attr("IFLA_IFNAME"))
        return {
            "ifindex": idx,
            "kind": _kind(msg),
            "mtu": int(msg.get_attr("IFLA_MTU")),
            "up": _is_up(msg),
            "mac": str(msg.get_attr("IFLA_ADDRESS")),
            "master": master,
        }


def get_mac(netns: str | None, ifname: str) -> str:
    """MAC address of a link, lower case with colons."""
    with _netlink(netns, f"get_mac {ifname}") as ipr:
        msg = _get_link(ipr, ifname)
        if msg is None:
            raise KernelError(f"link {ifname} not found in {_where(netns)}")
        return str(msg.get_attr("IFLA_ADDRESS")).lower()


def _set_by_name(ipr: IPRoute, netns: str | None, ifname: str, **attrs: Any) -> None:
    """RTM_NEWLINK addressed by IFLA_IFNAME (ifindex 0): the kernel finds the link, one request."""
    try:
        ipr.link("set", ifname=ifname, **attrs)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            raise KernelError(f"link {ifname} not found in {_where(netns)}") from None
        raise


def set_up(netns: str | None, ifname: str) -> None:
    """Bring a link up."""
    with _netlink(netns, f"set_up {ifname} in {_where(netns)}") as ipr:
        _set_by_name(ipr, netns, ifname, state="up")


def set_mtu(netns: str | None, ifname: str, mtu: int) -> None:
    """Set a link's MTU."""
    with _netlink(netns, f"set_mtu {ifname} {mtu} in {_where(netns)}") as ipr:
        _set_by_name(ipr, netns, ifname, mtu=mtu)


def ensure_loopback_up(netns: str | None) -> None:
    """`lo` up (a new namespace starts with it down)."""
    set_up(netns, "lo")


def delete_link(netns: str | None, ifname: str) -> None:
    """Delete a link (a veth takes its peer with it). Ok if it, or its namespace, is already gone."""
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        return
    with _netlink(netns, f"delete_link {ifname} in {_where(netns)}") as ipr:
        idx = _index(ipr, ifname)
        if idx is None:
            return
        try:
            ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


def _ensure_kind(ipr: IPRoute, netns: str | None, name: str, kind: str) -> int:
    """The ifindex of link `name` of `kind`, added when missing (KernelError when it is another kind)."""
    idx = _index(ipr, name)
    if idx is None:
        try:
            ipr.link("add", ifname=name, kind=kind)
        except NetlinkError as exc:
            _ignore_exists(exc)
        idx = _require_index(ipr, netns, name)
    found = _kind(_link_msg(ipr, idx))
    if found != kind:
        raise KernelError(f"ensure_{kind} {name} in {_where(netns)}: link exists but is a {found}")
    return idx


def ensure_bridge(netns: str | None, name: str, mtu: int | None = None) -> int:
    """A Linux bridge `name`, up (MTU set when given), with a MAC address of its own. Returns its ifindex.

    A bridge whose address was never set takes the lowest MAC of its ports and changes it whenever a
    port with a lower one joins or that port leaves (net/bridge/br_stp_if.c br_stp_recalculate_bridge_id).
    Hosts on the bridge keep the old address of the gateway in their neighbour tables; once the port that
    owned it is gone their frames to it go nowhere until the entry is probed and replaced (tens of
    seconds), and each change flushes the bridge's own neighbour table. Setting the address (to the one
    it has) marks it NET_ADDR_SET, which pins it, as kubenet does for its cbr0 ("Set the bridge's MAC to
    itself. Otherwise, the bridge will take the lowest-numbered mac on the bridge, and will change as
    ifs churn", kubernetes pkg/kubelet/network/kubenet). See docs/reliability.md."""
    with _netlink(netns, f"ensure_bridge {name} in {_where(netns)}") as ipr:
        idx = _ensure_kind(ipr, netns, name, "bridge")
        ipr.link("set", index=idx, address=str(_link_msg(ipr, idx).get_attr("IFLA_ADDRESS")))
        if mtu is not None:
            ipr.link("set", index=idx, mtu=mtu)
        ipr.link("set", index=idx, state="up")
        return idx


def ensure_dummy(netns: str | None, name: str) -> int:
    """A dummy device `name`, left down (kube-ipvs0: its addresses are local, it never answers ARP).
    Returns its ifindex."""
    with _netlink(netns, f"ensure_dummy {name} in {_where(netns)}") as ipr:
        return _ensure_kind(ipr, netns, name, "dummy")


def ensure_veth(
    netns: str | None,
    host_if: str,
    peer_netns: str | None,
    peer_if: str,
    mtu: int,
    master: str | None = None,
    hairpin: bool = False,
) -> None:
    """A veth pair: `host_if` in `netns`, `peer_if` created directly in `peer_netns` (IFLA_NET_NS_FD).

    The peer is born in its namespace, so it never shows up in ours (or the host's), and nothing is
    renamed afterwards. Sets the MTU on both ends, enslaves `host_if` to the bridge `master`, sets
    hairpin mode on that bridge port (like the CNI bridge plugin's hairpinMode), brings both ends up.
    An existing pair whose other end is missing is deleted and made again.
    A new pair is made by one RTM_NEWLINK carrying both MTUs, the master and IFF_UP for `host_if`
    (rtnl_newlink applies IFLA_MASTER and the flags at creation); hairpin and the peer's IFF_UP are one
    request each, addressed by name.
    """
    what = f"ensure_veth {host_if} -> {_where(peer_netns)}:{peer_if}"
    with _netlink(netns, what) as ipr, _netlink(peer_netns, what) as pipr:
        host = _get_link(ipr, host_if)
        peer = _get_link(pipr, peer_if)
        host_ok = None if host is None else _kind(host) == "veth"
        peer_ok = None if peer is None else _kind(peer) == "veth"
        if host is not None and (host_ok is False or not peer_ok):
            _delete_index(ipr, int(host["index"]))  # takes a veth peer with it
            host = host_ok = None
        if peer is not None and (peer_ok is False or host_ok is None):
            _delete_index(pipr, int(peer["index"]))  # already gone with its host end: tolerated
        master_idx = _require_index(ipr, netns, master) if master is not None else None
        settings: dict[str, Any] = {"mtu": mtu, "state": "up"}
        if master_idx is not None:
            settings["master"] = master_idx
        if host is None:
            peer_spec: dict[str, Any] = {"ifname": peer_if, "mtu": mtu}
            if peer_netns != netns:
                with _open_netns_fd(peer_netns) as fd:
                    peer_spec["net_ns_fd"] = fd
                    ipr.link("add", ifname=host_if, kind="veth", peer=peer_spec, **settings)
            else:
                ipr.link("add", ifname=host_if, kind="veth", peer=peer_spec, **settings)
        else:
            ipr.link("set", index=int(host["index"]), **settings)
        if master_idx is not None:
            # IFLA_BRPORT_MODE is the hairpin flag (bridge link set dev X hairpin on). Sent as bridge
            # slave data in RTM_NEWLINK (`ip link set X type bridge_slave hairpin on`), which names
            # the port by IFLA_IFNAME, so the new veth needs no lookup; the port must already be
            # enslaved (rtnl_newlink hands slave data to the current master's slave_changelink)
            _set_by_name(
                ipr,
                netns,
                host_if,
                IFLA_LINKINFO={
                    "attrs": [
                        ["IFLA_INFO_SLAVE_KIND", "bridge"],
                        ["IFLA_INFO_SLAVE_DATA", {"attrs": [["IFLA_BRPORT_MODE", 1 if hairpin else 0]]}],
                    ]
                },
            )
        _set_by_name(pipr, peer_netns, peer_if, mtu=mtu, state="up")


def _delete_index(ipr: IPRoute, idx: int) -> None:
    try:
        ipr.link("del", index=idx)
    except NetlinkError as exc:
        if exc.code not in _GONE:
            raise


def get_hairpin(netns: str | None, ifname: str) -> bool:
    """True when hairpin mode is on for this bridge port."""
    with _netlink(netns, f"get_hairpin {ifname}") as ipr:
        idx = _require_index(ipr, netns, ifname)
        for msg in ipr.brport("show", index=idx):
            protinfo = msg.get_attr("IFLA_PROTINFO")
            if protinfo is not None:
                return bool(protinfo.get_attr("IFLA_BRPORT_MODE"))
        return False


# ---------------------------------------------------------------- addresses


def list_addresses(netns: str | None, ifname: str) -> list[str]:
    """IPv4 addresses on a link as CIDR strings ("10.244.1.5/24")."""
    with _netlink(netns, f"list_addresses {ifname}") as ipr:
        idx = _require_index(ipr, netns, ifname)
        return [
            f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
            for m in ipr.get_addr(family=socket.AF_INET, index=idx)
        ]


def link_with_address(netns: str | None, ip: str) -> str | None:
    """The name of the link holding address `ip`, or None (the node's underlay interface: eth0 in a lab
    node or a QEMU guest, eth1 on a Vagrant VM whose eth0 is the provider's NAT)."""
    with _netlink(netns, f"link_with_address {ip} in {_where(netns)}") as ipr:
        for msg in ipr.get_addr():
            if msg.get_attr("IFA_ADDRESS") == ip or msg.get_attr("IFA_LOCAL") == ip:
                link = _link_msg(ipr, msg["index"])
                return str(link.get_attr("IFLA_IFNAME"))
    return None


def ensure_address(netns: str | None, ifname: str, cidr: str) -> None:
    """Add an IPv4 address ("10.244.1.1/24") to a link; ok if it is already there."""
    iface = ipaddress.ip_interface(cidr)
    with _netlink(netns, f"ensure_address {cidr} on {ifname} in {_where(netns)}") as ipr:
        idx = _require_index(ipr, netns, ifname)
        try:
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            _ignore_exists(exc)


def delete_address(netns: str | None, ifname: str, cidr: str) -> None:
    """Remove an address from a link; ok if it is not there."""
    iface = ipaddress.ip_interface(cidr)
    with _netlink(netns, f"delete_address {cidr} on {ifname} in {_where(netns)}") as ipr:
        idx = _index(ipr, ifname)
        if idx is None:
            return
        try:
            ipr.addr("del", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


def ensure_sole_address(netns: str | None, ifname: str, cidr: str, gateway: str | None = None) -> str:
    """`cidr` the link's only IPv4 address (others removed), a default route via `gateway` if given.

    What a CNI plugin does to the pod's interface, on one socket with one link lookup: the same as
    list_addresses + delete_address (stale ones) + ensure_address + ensure_route("0.0.0.0/0", gateway,
    dev=ifname). Returns the link's MAC address (lower case).
    """
    iface = ipaddress.ip_interface(cidr)
    with _netlink(netns, f"ensure_sole_address {cidr} on {ifname} in {_where(netns)}") as ipr:
        msg = _get_link(ipr, ifname)
        if msg is None:
            raise KernelError(f"link {ifname} not found in {_where(netns)}")
        idx = int(msg["index"])
        have = [
            f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
            for m in ipr.get_addr(family=socket.AF_INET, index=idx)
        ]
        for stale in have:
            if stale != cidr:
                stale_iface = ipaddress.ip_interface(stale)
                try:
                    ipr.addr(
                        "del", index=idx, address=str(stale_iface.ip), prefixlen=stale_iface.network.prefixlen
                    )
                except NetlinkError as exc:
                    if exc.code not in _GONE:
                        raise
        if cidr not in have:
            try:
                ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            except NetlinkError as exc:
                _ignore_exists(exc)
        if gateway is not None:
            ipr.route("replace", table=MAIN_TABLE, gateway=gateway, oif=idx, **_dst_kwargs("0.0.0.0/0"))
        return str(msg.get_attr("IFLA_ADDRESS")).lower()


# ---------------------------------------------------------------- routes


def _dst_kwargs(dst_cidr: str) -> dict[str, Any]:
    net = ipaddress.ip_network("0.0.0.0/0" if dst_cidr == "default" else dst_cidr, strict=False)
    if net.prefixlen == 0:
        return {"dst": "0.0.0.0", "dst_len": 0}
    return {"dst": str(net.network_address), "dst_len": net.prefixlen}


def ensure_route(
    netns: str | None,
    dst_cidr: str,
    gateway: str | None = None,
    dev: str | None = None,
    onlink: bool = False,
    src: str | None = None,
) -> None:
    """Install a main-table IPv4 route with replace semantics (`ip route replace`)."""
    what = f"ensure_route {dst_cidr} via {gateway} dev {dev} in {_where(netns)}"
    with _netlink(netns, what) as ipr:
        kwargs: dict[str, Any] = {"table": MAIN_TABLE, **_dst_kwargs(dst_cidr)}
        if gateway is not None:
            kwargs["gateway"] = gateway
        if dev is not None:
            kwargs["oif"] = _require_index(ipr, netns, dev)
        if onlink:
            kwargs["flags"] = RTNH_F_ONLINK
        if src is not None:
            kwargs["prefsrc"] = src
        ipr.route("replace", **kwargs)


def delete_route(netns: str | None, dst_cidr: str) -> None:
    """Delete the main-table route to `dst_cidr`; ok if it is not there."""
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        return
    with _netlink(netns, f"delete_route {dst_cidr} in {_where(netns)}") as ipr:
        try:
            ipr.route("del", table=MAIN_TABLE, **_dst_kwargs(dst_cidr))
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


def list_routes(netns: str | None, dev: str | None = None) -> list[dict[str, Any]]:
    """Main-table IPv4 unicast routes: dicts with dst ("10.244.2.0/24", "0.0.0.0/0"), gateway, dev, onlink."""
    with _netlink(netns, f"list_routes in {_where(netns)}") as ipr:
        names = {int(m["index"]): str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links()}
        out: list[dict[str, Any]] = []
        for msg in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            if msg["type"] != 1:  # RTN_UNICAST only: skip local/broadcast
                continue
            oif = msg.get_attr("RTA_OIF")
            name = names.get(int(oif)) if oif is not None else None
            if dev is not None and name != dev:
                continue
            dst = msg.get_attr("RTA_DST") or "0.0.0.0"
            out.append(
                {
                    "dst": f"{dst}/{msg['dst_len']}",
                    "gateway": msg.get_attr("RTA_GATEWAY"),
                    "dev": name,
                    "onlink": bool(msg["flags"] & RTNH_F_ONLINK),
                }
            )
        return out


# ---------------------------------------------------------------- vxlan, fdb, neighbours


def ensure_vxlan(netns: str | None, name: str, vni: int, local_ip: str, dev: str, port: int, mtu: int) -> str:
    """A VXLAN device like flannel's (`nolearning`, fixed VNI/port/local/underlay dev), up. Returns its MAC.

    An existing device with other parameters is deleted and recreated, as flannel does
    (flannel pkg/backend/vxlan/device.go ensureLink: "incompatible, deleting").
    """
    what = f"ensure_vxlan {name} vni {vni} local {local_ip} dev {dev} in {_where(netns)}"
    with _netlink(netns, what) as ipr:
        dev_idx = _require_index(ipr, netns, dev)
        idx = _index(ipr, name)
        if idx is not None and not _vxlan_compatible(_link_msg(ipr, idx), vni, local_ip, dev_idx, port):
            ipr.link("del", index=idx)
            idx = None
        if idx is None:
            try:
                ipr.link(
                    "add",
                    ifname=name,
                    kind="vxlan",
                    vxlan_id=vni,
                    vxlan_local=local_ip,
                    vxlan_link=dev_idx,
                    vxlan_port=port,
                    vxlan_learning=0,
                )
            except NetlinkError as exc:
                _ignore_exists(exc)
            idx = _require_index(ipr, netns, name)
        ipr.link("set", index=idx, mtu=mtu)
        ipr.link("set", index=idx, state="up")
        return str(_link_msg(ipr, idx).get_attr("IFLA_ADDRESS")).lower()


def _vxlan_compatible(msg: Any, vni: int, local_ip: str, dev_idx: int, port: int) -> bool:
    if _kind(msg) != "vxlan":
        return False
    data = _info_data(msg)
    if data is None:
        return False
    return (
        data.get_attr("IFLA_VXLAN_ID") == vni
        and data.get_attr("IFLA_VXLAN_LOCAL") == local_ip
        and data.get_attr("IFLA_VXLAN_LINK") == dev_idx
        and data.get_attr("IFLA_VXLAN_PORT") == port
        and not data.get_attr("IFLA_VXLAN_LEARNING")
    )


def fdb_replace(netns: str | None, dev: str, mac: str, dst_ip: str) -> None:
    """`bridge fdb replace MAC dev DEV dst IP self permanent` (where a VTEP MAC lives)."""
    with _netlink(netns, f"fdb_replace {mac} dst {dst_ip} dev {dev} in {_where(netns)}") as ipr:
        ipr.fdb(
            "replace",
            ifindex=_require_index(ipr, netns, dev),
            lladdr=mac,
            dst=dst_ip,
            state=NUD_PERMANENT,
            flags=NTF_SELF,
        )


def fdb_delete(netns: str | None, dev: str, mac: str, dst_ip: str | None = None) -> None:
    """Remove an FDB entry; ok if it (or the device) is gone."""
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        return
    with _netlink(netns, f"fdb_delete {mac} dev {dev} in {_where(netns)}") as ipr:
        idx = _index(ipr, dev)
        if idx is None:
            return
        kwargs: dict[str, Any] = {"ifindex": idx, "lladdr": mac, "flags": NTF_SELF}
        if dst_ip is not None:
            kwargs["dst"] = dst_ip
        try:
            ipr.fdb("del", **kwargs)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


def fdb_list(netns: str | None, dev: str) -> list[tuple[str, str]]:
    """(mac, dst_ip) of the FDB entries with a remote destination on a VXLAN device."""
    with _netlink(netns, f"fdb_list dev {dev} in {_where(netns)}") as ipr:
        idx = _index(ipr, dev)
        if idx is None:
            return []
        out: list[tuple[str, str]] = []
        for msg in ipr.fdb("dump", ifindex=idx):
            if msg["ifindex"] != idx:
                continue
            mac, dst = msg.get_attr("NDA_LLADDR"), msg.get_attr("NDA_DST")
            if mac and dst:
                out.append((str(mac).lower(), str(dst)))
        return sorted(out)


def neigh_replace(netns: str | None, dev: str, ip: str, mac: str) -> None:
    """`ip neigh replace IP lladdr MAC dev DEV nud permanent`."""
    with _netlink(netns, f"neigh_replace {ip} lladdr {mac} dev {dev} in {_where(netns)}") as ipr:
        ipr.neigh(
            "replace",
            ifindex=_require_index(ipr, netns, dev),
            dst=ip,
            lladdr=mac,
            state=NUD_PERMANENT,
            family=socket.AF_INET,
        )


def neigh_delete(netns: str | None, dev: str, ip: str) -> None:
    """Remove a neighbour entry; ok if it (or the device) is gone."""
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        return
    with _netlink(netns, f"neigh_delete {ip} dev {dev} in {_where(netns)}") as ipr:
        idx = _index(ipr, dev)
        if idx is None:
            return
        try:
            ipr.neigh("del", ifindex=idx, dst=ip, family=socket.AF_INET)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


def neigh_list(netns: str | None, dev: str) -> list[tuple[str, str]]:
    """(ip, mac) of the IPv4 neighbour entries with a link-layer address on `dev`."""
    with _netlink(netns, f"neigh_list dev {dev} in {_where(netns)}") as ipr:
        idx = _index(ipr, dev)
        if idx is None:
            return []
        out: list[tuple[str, str]] = []
        for msg in ipr.get_neighbours(family=socket.AF_INET, ifindex=idx):
            if msg["ifindex"] != idx:
                continue
            ip, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
            if ip and mac:
                out.append((str(ip), str(mac).lower()))
        return sorted(out)
