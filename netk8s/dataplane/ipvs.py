"""IPVS on the kernel: the support probe, kube-ipvs0, `ipvsadm --restore`, `ipset restore`, and reading it all back.

Applier choice. A sync's IPVS changes go to ONE `ipvsadm --restore` process (and the ipset changes to ONE
`ipset restore`), the way iptables mode sends one iptables-restore: the cost per sync is one fork+exec
plus one netlink request per changed object inside ipvsadm, whatever the number of changes, and the text
is what golden files and logs show. pyroute2's IPVS support (pyroute2.ipvs, 0.9.x) talks generic netlink
from this process with no fork, but sends and waits for one request per object from Python; kube-proxy
uses per-object netlink calls too (its libipvs), and a full sync of 10,000 Services is ~60,000 objects.
This kernel has no ip_vs, so neither could be measured here: the comparison belongs to the VM-node
benchmarks (BENCHMARKS.md, issue 12), and this choice is the one to revisit with those numbers.
Reading back returns `ipvsadm -L -n` (weights and connection counts, which graceful removal needs) and
`ipset save` as text (netk8s.proxy.render_ipvs parses them). kube-ipvs0 itself goes through pyroute2
(netk8s.dataplane.links); its addresses are read with ONE `ip -o -4 address show` and changed with ONE
`ip -batch -` (netk8s.model.iproute says why: pyroute2's per-address Python cost in a TCG guest).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from netk8s.dataplane import iptables as _iptables
from netk8s.dataplane import links, sysctl, timeouts
from netk8s.errors import KernelError
from netk8s.model import iproute, naming
from netk8s.model.naming import (
    IPSET_CLUSTER_IP,
    IPSET_EXTERNAL_IP,
    IPSET_LOAD_BALANCER,
    IPSET_LOAD_BALANCER_LOCAL,
    IPSET_LOOP_BACK,
    IPSET_NODE_PORT_LOCAL_TCP,
    IPSET_NODE_PORT_LOCAL_UDP,
    IPSET_NODE_PORT_TCP,
    IPSET_NODE_PORT_UDP,
)

IPVSADM = "ipvsadm"
IPSET = "ipset"
IP = "ip"
TIMEOUT = 120.0
PROC_IP_VS = Path("/proc/net/ip_vs")
SYS_DUMMY = Path("/sys/module/dummy")
IPSET_NAMES = (IPSET_LOOP_BACK, IPSET_CLUSTER_IP, IPSET_EXTERNAL_IP, IPSET_LOAD_BALANCER, IPSET_LOAD_BALANCER_LOCAL,
               IPSET_NODE_PORT_TCP, IPSET_NODE_PORT_LOCAL_TCP, IPSET_NODE_PORT_UDP, IPSET_NODE_PORT_LOCAL_UDP)
VM_HINT = "use VM nodes (`netk8s lab up --node-runtime vm --proxy-mode ipvs`), whose guest kernel has IP_VS"

# the iptables functions IPVS mode shares with iptables mode (same legacy backend)
restore = _iptables.restore
save = _iptables.save
ensure_rules = _iptables.ensure_rules
chain_exists = _iptables.chain_exists


def missing_support(proc_ip_vs: Path | None = None, sys_dummy: Path | None = None) -> list[str]:
    """What this kernel lacks for IPVS mode (empty: nothing), by probing: /proc/net/ip_vs exists once the
    ip_vs module is in (kube-proxy's CanUseIPVSProxier checks the loaded modules the same way), and the
    dummy netdev driver shows under /sys/module. Nothing is loaded or changed."""
    missing = []
    if not (proc_ip_vs or PROC_IP_VS).exists():
        missing.append("IP_VS (no /proc/net/ip_vs)")
    if not (sys_dummy or SYS_DUMMY).exists():
        missing.append("the dummy netdev (no /sys/module/dummy)")
    return missing


def require_support() -> None:
    """Raise KernelError (with the hint to use VM nodes) when this kernel cannot run IPVS mode."""
    missing = missing_support()
    if missing:
        raise KernelError(f"--proxy-mode ipvs: this kernel has no {' and no '.join(missing)}", hint=VM_HINT)


def _exec(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    rate = timeouts.IPSET_BYTES_PER_SECOND if argv[0] == IPSET else timeouts.BYTES_PER_SECOND
    tool = shutil.which(argv[0], path="/usr/sbin:/sbin:/usr/bin:/bin")
    if tool is None:
        raise KernelError(f"{argv[0]} is not installed", hint="run scripts/install-deps.sh (apt: ipvsadm ipset)")
    try:
        return subprocess.run([tool, *argv[1:]], input=stdin, capture_output=True, text=True,
                              timeout=timeouts.for_text(TIMEOUT, stdin or "", rate), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelError(f"{' '.join(argv)}: {exc}") from exc


def _run(argv: list[str], stdin: str | None = None) -> str:
    p = _exec(argv, stdin)
    if p.returncode != 0:
        raise KernelError(f"{' '.join(argv)} failed: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def ipvsadm_restore(text: str) -> None:
    if text:
        _run([IPVSADM, "--restore"], text)


def ipset_restore(text: str) -> None:
    if text:
        _run([IPSET, "restore"], text)


def ipvsadm_list() -> str:
    """`ipvsadm -L -n`: virtual and real servers with weights and connection counts ("" on a kernel
    without IP_VS, which can hold none)."""
    if not PROC_IP_VS.exists():
        return ""
    return _run([IPVSADM, "-L", "-n"])


def ipset_save() -> str:
    return _run([IPSET, "save"])


def device_addresses() -> set[str] | None:
    """The addresses of kube-ipvs0, or None when it does not exist: ONE `ip -o -4 address show` (parsed by
    netk8s.model.iproute.parse_addresses, which says why not pyroute2). Every sync reads them (the diff)."""
    if not links.link_exists(None, naming.KUBE_IPVS_DEVICE):
        return None
    p = _exec([IP, "-o", "-4", "address", "show", "dev", naming.KUBE_IPVS_DEVICE])
    if p.returncode != 0:
        if not links.link_exists(None, naming.KUBE_IPVS_DEVICE):  # deleted in between
            return None
        raise KernelError(f"ip -o -4 address show dev {naming.KUBE_IPVS_DEVICE} failed: {p.stderr.strip()}")
    return iproute.parse_addresses(p.stdout)


# kube-proxy's IPVS proxier sets these at start (pkg/proxy/ipvs/proxier.go, NewProxier): conntrack=1 keeps
# conntrack entries for IPVS connections, without which the MASQUERADE of KUBE-POSTROUTING (NodePort from
# outside, hairpin) never applies to them and replies leave with the wrong source; the expire_* ones drop
# connections and persistence templates to a removed/zero-weight real server. All per network namespace.
IPVS_SYSCTLS = {"net.ipv4.vs.conntrack": "1", "net.ipv4.vs.expire_nodest_conn": "1",
                "net.ipv4.vs.expire_quiescent_template": "1"}


def ensure_sysctls() -> None:
    """IPVS_SYSCTLS in this network namespace (the node's own: in a VM node, the guest's kernel)."""
    for key, value in IPVS_SYSCTLS.items():
        if sysctl.sysctl_exists(None, key) and sysctl.get_sysctl(None, key).strip() != value:
            sysctl.set_sysctl(None, key, value)


def ensure_device() -> None:
    """kube-ipvs0, a dummy device that is down (kube-proxy's EnsureDummyDevice: addresses on a down
    dummy are still local, and it never answers ARP for them), and the IPVS sysctls it needs."""
    links.ensure_dummy(None, naming.KUBE_IPVS_DEVICE)
    ensure_sysctls()


def set_addresses(add: list[str], delete: list[str]) -> None:
    """Put `add` on kube-ipvs0 and take `delete` off it with ONE `ip -batch -` (netk8s.model.iproute says
    why). Idempotent: present addresses are replaced in place, absent ones are not deleted."""
    if not add and not delete:
        return
    present = (device_addresses() or set()) if delete else None
    text = iproute.address_batch(naming.KUBE_IPVS_DEVICE, add, delete, present)
    if text:
        _run([IP, "-batch", "-"], text)


def has_leftovers() -> bool:
    """True when IPVS mode left something here: kube-ipvs0, one of its ipsets, or a virtual server."""
    if links.link_exists(None, naming.KUBE_IPVS_DEVICE):
        return True
    if shutil.which(IPSET, path="/usr/sbin:/sbin:/usr/bin:/bin") is not None:
        names = set(_run([IPSET, "list", "-n"]).split())
        if names & set(IPSET_NAMES):
            return True
    return PROC_IP_VS.exists() and lists_virtual_servers(ipvsadm_list())


def lists_virtual_servers(listing: str) -> bool:
    """True when an `ipvsadm -L -n` listing holds a virtual server. Its header always has a `->` line
    ("  -> RemoteAddress:Port Forward Weight ..."), so only the service lines count (TCP/UDP/SCTP/FWM),
    with or without real servers."""
    return any(line.split(maxsplit=1)[0] in ("TCP", "UDP", "SCTP", "FWM")
               for line in listing.splitlines() if line.strip())


def delete_device() -> None:
    if links.link_exists(None, naming.KUBE_IPVS_DEVICE):
        links.delete_link(None, naming.KUBE_IPVS_DEVICE)
