"""Proxy mode switching: remove every OTHER mode's rules from this node's namespace (kube-proxy --cleanup).

kube-proxy cleans up after the modes it is not running in when it starts (cmd/kube-proxy/app/server.go:
`CleanupLeftovers` of the iptables, ipvs and nftables proxiers). The agent does the same at start, for
each mode netk8s has, and touches nothing else:
- iptables: every KUBE-* chain of the nat and filter tables, with the iptables renderer's cleanup text
  (legacy backend), only when one exists;
- nftables: the table `ip kube-proxy` (deleted whole);
- userspace: `netk8s.proxy.userspace.cleanup_rules()` (when that mode is installed);
- ipvs: every virtual server, the KUBE- nat rules, the ipsets and kube-ipvs0 (netk8s.proxy.backend_ipvs),
  only when IPVS mode left something.
Failures are logged, not raised: a node whose leftovers cannot be removed still runs its chosen mode.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from netk8s.errors import NetK8sError
from netk8s.model import naming
from netk8s.model.iptsave import chain_names, table_lines

log = logging.getLogger("netk8s.proxy")

MODES = ("iptables", "nftables", "userspace", "ipvs")


def kernel_proxier(mode: str, node: Any, ipvs_scheduler: str = "rr") -> Any:
    """The Proxier of `mode` over this namespace's kernel (netk8s.dataplane), as the node agent runs it."""
    from netk8s.proxy.proxier import Proxier, SyncConfig

    if mode == "ipvs":
        from netk8s.dataplane import ipvs
        from netk8s.proxy.backend_ipvs import IpvsBackend

        ipvs.require_support()
        return Proxier(node, IpvsBackend(ipvs, ipvs_scheduler))
    if mode == "iptables":
        from netk8s.dataplane import iptables
        from netk8s.proxy.backend_iptables import IptablesBackend

        return Proxier(node, IptablesBackend(iptables))
    if mode == "nftables":
        from netk8s.dataplane import nftables
        from netk8s.proxy.backend_nftables import NftablesBackend

        return Proxier(node, NftablesBackend(nftables))
    if mode == "userspace":
        from netk8s.dataplane import iptables
        from netk8s.proxy.userspace import FULL_SYNC_PERIOD, UserspaceBackend

        # upstream's userspace proxier had no canary: its periodic full sync repairs deleted rules
        return Proxier(node, UserspaceBackend(iptables),
                       SyncConfig(full_sync_period=FULL_SYNC_PERIOD, canary_period=float("inf")))
    raise ValueError(f"proxy mode {mode!r}")


BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})


def iptables_cleanup_text(saved: dict[str, str], keep: frozenset[str] = frozenset()) -> str:
    """Pure: restore text removing the iptables mode's rules from `iptables-save -t TABLE` texts.

    Only what the mode installed goes: the rules of built-in chains that jump to a KUBE- chain are
    deleted one by one (`-D`, so a neighbour's rules in PREROUTING/POSTROUTING, e.g. flannel's
    masquerade jump, stay), then every KUBE- chain is flushed and deleted. `keep` names chains of
    another mode sharing the prefix (the userspace mode's KUBE-PORTALS-*), left alone with their jumps.
    Empty text when there is nothing to remove."""
    out: list[str] = []
    for table, text in sorted(saved.items()):
        lines = table_lines(text, table)
        chains = chain_names(lines)
        ours = [c for c in chains if c.startswith(naming.KUBE_CHAIN_PREFIX) and c not in keep]
        if not ours:
            continue
        jumps = []
        for line in lines:
            words = line.split()
            if len(words) > 2 and words[0] == "-A" and words[1] in BUILTIN_CHAINS:
                target = words[words.index("-j") + 1] if "-j" in words[:-1] else None
                if target in ours:
                    jumps.append("-D" + line[2:])
        out.append(f"*{table}")
        out.extend(jumps)
        out.extend(f"-F {c}" for c in ours)
        out.extend(f"-X {c}" for c in ours)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def cleanup_iptables() -> bool:
    """Remove the iptables mode's KUBE-* chains and the jumps to them; False when there were none."""
    from netk8s.dataplane import iptables as dp

    try:
        from netk8s.proxy.userspace_rules import CHAINS as USERSPACE_CHAINS
    except ModuleNotFoundError:
        USERSPACE_CHAINS = {}
    keep = frozenset(c for chains in USERSPACE_CHAINS.values() for c in chains)
    text = iptables_cleanup_text({table: dp.save(table) for table in ("nat", "filter")}, keep)
    if not text:
        return False
    dp.restore(text)
    return True


def cleanup_nftables() -> bool:
    """Delete `table ip kube-proxy`; False when it was not there."""
    from netk8s.dataplane import nftables as dp

    if not dp.table_exists():
        return False
    dp.delete_table()
    return True


def cleanup_ipvs() -> bool:
    """kube-proxy --cleanup of IPVS mode: virtual servers, KUBE- nat rules, ipsets, kube-ipvs0; False when
    IPVS mode left nothing here."""
    from netk8s.dataplane import ipvs
    from netk8s.proxy.backend_ipvs import IpvsBackend

    if not ipvs.has_leftovers():
        return False
    IpvsBackend(ipvs).cleanup()
    return True


def cleanup_userspace() -> bool:
    """The userspace mode's own cleanup; False when that mode is not installed."""
    try:
        userspace = importlib.import_module("netk8s.proxy.userspace")
    except ModuleNotFoundError:
        return False
    fn = getattr(userspace, "cleanup_rules", None)
    if fn is None:
        return False
    fn()
    return True


CLEANUPS: dict[str, Callable[[], bool]] = {
    "iptables": cleanup_iptables,
    "nftables": cleanup_nftables,
    "userspace": cleanup_userspace,
    "ipvs": cleanup_ipvs,
}


def cleanup_other_modes(mode: str, cleanups: dict[str, Callable[[], bool]] | None = None) -> list[str]:
    """Run the cleanup of every mode but `mode`; returns the modes whose leftovers were removed."""
    done = []
    for other, fn in (cleanups if cleanups is not None else CLEANUPS).items():
        if other == mode:
            continue
        try:
            if fn():
                done.append(other)
                log.info("removed the %s proxy mode's rules (now in %s mode)", other, mode)
        except (NetK8sError, OSError) as exc:
            log.error("removing the %s proxy mode's rules: %s", other, exc)
    return done
