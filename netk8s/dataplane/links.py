"""Links, addresses, routes, neighbours and FDB entries over netlink (pyroute2), in a given namespace.

Every function takes `netns` first: the name of a named namespace, or None for the namespace this
process runs in (the node agent). Sockets are opened with `IPRoute(netns=NAME, flags=0)`, which opens
the socket inside the namespace without switching our threads, and never creates a missing namespace.
NetlinkError is translated by errno into KernelError at one boundary (`_netlink`). `ensure_*` verbs
tolerate "already exists" and then verify; deletes tolerate "already gone".
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NTF_SELF, NUD_PERMANENT
from pyroute2.netlink.rtnl.rtmsg import RTNH_F_ONLINK

from netk8s.errors import KernelError

MAIN_TABLE = 254
_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)


def _where(netns: str | None) -> str:
    return netns if netns is not None else "<own netns>"


@contextmanager
def _netlink(netns: str | None, what: str) -> Iterator[IPRoute]:
    """Open a netlink socket in `netns`; turn NetlinkError/OSError into KernelError naming `what`."""
    try:
        ipr = IPRoute(netns=netns, flags=0) if netns is not None else IPRoute()
    except OSError as exc:
        raise KernelError(
            f"{what}: cannot open netns {_where(netns)}: {exc.strerror or exc}",
            hint="does the namespace exist? (ip netns list)",
        ) from exc
    try:
        yield ipr
    except NetlinkError as exc:
        raise KernelError(f"{what}: {os.strerror(exc.code)}") from exc
    except OSError as exc:
        raise KernelError(f"{what}: {exc.strerror or exc}") from exc
    finally:
        ipr.close()


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
        idx = _index(ipr, ifname)
        if idx is None:
            return None
        msg = _link_msg(ipr, idx)
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
        idx = _require_index(ipr, netns, ifname)
        return str(_link_msg(ipr, idx).get_attr("IFLA_ADDRESS")).lower()


def set_up(netns: str | None, ifname: str) -> None:
    """Bring a link up."""
    with _netlink(netns, f"set_up {ifname} in {_where(netns)}") as ipr:
        ipr.link("set", index=_require_index(ipr, netns, ifname), state="up")


def set_mtu(netns: str | None, ifname: str, mtu: int) -> None:
    """Set a link's MTU."""
    with _netlink(netns, f"set_mtu {ifname} {mtu} in {_where(netns)}") as ipr:
        ipr.link("set", index=_require_index(ipr, netns, ifname), mtu=mtu)


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


def ensure_bridge(netns: str | None, name: str, mtu: int | None = None) -> int:
    """A Linux bridge `name`, up (MTU set when given). Returns its ifindex."""
    with _netlink(netns, f"ensure_bridge {name} in {_where(netns)}") as ipr:
        idx = _index(ipr, name)
        if idx is None:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as exc:
                _ignore_exists(exc)
            idx = _require_index(ipr, netns, name)
        kind = _kind(_link_msg(ipr, idx))
        if kind != "bridge":
            raise KernelError(f"ensure_bridge {name} in {_where(netns)}: link exists but is a {kind}")
        if mtu is not None:
            ipr.link("set", index=idx, mtu=mtu)
        ipr.link("set", index=idx, state="up")
        return idx


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
    """
    what = f"ensure_veth {host_if} -> {_where(peer_netns)}:{peer_if}"
    host_ok = _veth_end_ok(netns, host_if)
    peer_ok = _veth_end_ok(peer_netns, peer_if)
    if host_ok is False or (host_ok and not peer_ok):
        delete_link(netns, host_if)
        host_ok = None
    if peer_ok is False or (peer_ok and host_ok is None):
        delete_link(peer_netns, peer_if)
    with _netlink(netns, what) as ipr:
        if _index(ipr, host_if) is None:
            peer: dict[str, Any] = {"ifname": peer_if}
            if peer_netns != netns:
                with _open_netns_fd(peer_netns) as fd:
                    peer["net_ns_fd"] = fd
                    ipr.link("add", ifname=host_if, kind="veth", peer=peer)
            else:
                ipr.link("add", ifname=host_if, kind="veth", peer=peer)
        idx = _require_index(ipr, netns, host_if)
        ipr.link("set", index=idx, mtu=mtu)
        if master is not None:
            master_idx = _require_index(ipr, netns, master)
            ipr.link("set", index=idx, master=master_idx)
            # IFLA_BRPORT_MODE is the hairpin flag (bridge link set dev X hairpin on)
            ipr.brport("set", index=idx, mode=1 if hairpin else 0)
        ipr.link("set", index=idx, state="up")
    with _netlink(peer_netns, what) as ipr:
        pidx = _require_index(ipr, peer_netns, peer_if)
        ipr.link("set", index=pidx, mtu=mtu)
        ipr.link("set", index=pidx, state="up")


def _veth_end_ok(netns: str | None, ifname: str) -> bool | None:
    """None: absent; True: a veth; False: something else with that name (or a namespace problem)."""
    info = link_info(netns, ifname)
    if info is None:
        return None
    return info["kind"] == "veth"


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
