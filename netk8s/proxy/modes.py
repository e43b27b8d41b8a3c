"""Proxy mode switching: remove every OTHER mode's rules from this node's namespace (kube-proxy --cleanup).

kube-proxy cleans up after the modes it is not running in when it starts (cmd/kube-proxy/app/server.go:
`CleanupLeftovers` of the iptables, ipvs and nftables proxiers). The agent does the same at start, for
each mode netk8s has, and touches nothing else:
- iptables: every KUBE-* chain of the nat and filter tables, with the iptables renderer's cleanup text
  (legacy backend), only when one exists;
- nftables: the table `ip kube-proxy` (deleted whole);
- userspace: `netk8s.proxy.userspace.cleanup_rules()` (when that mode is installed).
Failures are logged, not raised: a node whose leftovers cannot be removed still runs its chosen mode.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from netk8s.errors import NetK8sError

log = logging.getLogger("netk8s.proxy")

MODES = ("iptables", "nftables", "userspace")


def cleanup_iptables() -> bool:
    """Remove the iptables mode's KUBE-* chains; False when there were none."""
    from netk8s.dataplane import iptables as dp
    from netk8s.proxy.iptables import chains_for_cleanup

    existing = {table: dp.list_chains(table) for table in ("nat", "filter")}
    if not any(c.startswith("KUBE-") for chains in existing.values() for c in chains):
        return False
    dp.restore(chains_for_cleanup(existing))
    return True


def cleanup_nftables() -> bool:
    """Delete `table ip kube-proxy`; False when it was not there."""
    from netk8s.dataplane import nftables as dp

    if not dp.table_exists():
        return False
    dp.delete_table()
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
