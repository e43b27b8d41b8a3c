"""Gratuitous ARP on an interface of the namespace we run in (arping, else scapy): the kernel side of announcing a LoadBalancer IP."""

from __future__ import annotations

import logging
import shutil
import subprocess

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
