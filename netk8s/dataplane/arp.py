"""Gratuitous ARP: on an interface of the namespace we run in (arping, else scapy), the kernel side of
announcing a LoadBalancer IP; and from a pod's eth0 when its address appears (`announce`)."""

from __future__ import annotations

import ipaddress
import logging
import shutil
import socket
import subprocess

from netk8s.dataplane import netns
from netk8s.errors import KernelError

log = logging.getLogger("netk8s.dataplane.arp")


def gratuitous_arp(iface: str, ip: str) -> None:
    """Tell the segment on `iface` that `ip` is here now (best effort: ARP requests find it anyway).
    `arping -U` (iputils) when installed, else an unsolicited ARP reply built with scapy."""
    arping = shutil.which("arping")
    if arping is not None:
        try:
            subprocess.run([arping, "-U", "-c", "1", "-I", iface, ip], capture_output=True,
                           timeout=5, check=False)
            return
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.debug("arping %s: %s", ip, exc)
    try:
        _scapy_garp(iface, ip)
    except (ImportError, OSError, KernelError) as exc:
        log.debug("gratuitous ARP for %s: %s", ip, exc)


def _scapy_garp(iface: str, ip: str) -> None:
    """An unsolicited ARP reply `ip is-at <our mac>` broadcast on `iface` (RFC 5227 announcement)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scapy warns about missing routes/IPv6 at import
        from scapy.all import ARP, Ether, get_if_hwaddr, sendp  # type: ignore[attr-defined]

    mac = get_if_hwaddr(iface)
    pkt = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=mac, psrc=ip, hwdst="ff:ff:ff:ff:ff:ff",
                                                         pdst=ip)
    sendp(pkt, iface=iface, verbose=False)


ETH_P_ARP = 0x0806
ARPOP_REQUEST = 1
BROADCAST_MAC = b"\xff" * 6
ETH_ZLEN = 60  # the shortest Ethernet frame without its FCS (linux/if_ether.h); shorter ones are padded


def garp_frame(mac: str, ip: str) -> bytes:
    """An RFC 5227 ARP Announcement from `mac` for `ip`, as an Ethernet frame: a broadcast ARP request
    whose sender and target address are both `ip` (target hardware address zero). Linux updates an
    existing neighbour entry for `ip` from it even with arp_accept=0 (net/ipv4/arp.c arp_process:
    is_garp overrides the locktime), which is what a stale entry needs."""
    hw = bytes.fromhex(mac.replace(":", ""))
    if len(hw) != 6:
        raise ValueError(f"mac: {mac!r} is not a 6-byte MAC address")
    addr = ipaddress.IPv4Address(ip).packed
    arp = (b"\x00\x01" b"\x08\x00" b"\x06\x04" + ARPOP_REQUEST.to_bytes(2, "big")
           + hw + addr + b"\x00" * 6 + addr)
    frame = BROADCAST_MAC + hw + ETH_P_ARP.to_bytes(2, "big") + arp
    return frame.ljust(ETH_ZLEN, b"\x00")


def announce(netns_name: str | None, iface: str, ip: str, mac: str) -> None:
    """Send garp_frame(mac, ip) out of `iface` in the namespace: the segment's hosts (the node's cbr0)
    replace a neighbour entry that still names the MAC of the pod that had `ip` before. What the CNI
    plugins' ipam.ConfigureIface did (containernetworking/plugins pkg/ipam: arping.GratuitousArpOverIface).
    Raises KernelError when the frame cannot be sent."""
    frame = garp_frame(mac, ip)
    try:
        with netns.open_socket(netns_name, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
            sock.bind((iface, ETH_P_ARP))
            sock.send(frame)
    except OSError as exc:
        raise KernelError(f"gratuitous ARP for {ip} on {iface}: {exc.strerror or exc}") from exc
