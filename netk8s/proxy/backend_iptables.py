"""The iptables mode's Backend: netk8s.proxy.render_iptables' text through one iptables-restore per sync.

The kernel is injected: netk8s.dataplane.iptables on a node, netk8s.proxy.testing.fake_iptables.FakeRestore
in tests; both implement IptablesKernel, so a test runs the same backend code as the node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from netk8s.errors import NetK8sError
from netk8s.model import naming
from netk8s.proxy import render_iptables as renderer
from netk8s.proxy.proxier import ChainsBackend, log
from netk8s.proxy.render_iptables import Rendered

TABLES = ("nat", "filter")


class IptablesKernel(Protocol):
    """What the iptables backend needs of the kernel (netk8s.dataplane.iptables' functions)."""

    def restore(self, text: str) -> None: ...

    def chain_exists(self, table: str, chain: str) -> bool: ...

    def list_chains(self, table: str) -> set[str]: ...

    def ensure_rules(self, rules: Mapping[str, Mapping[str, Sequence[str]]]) -> Any: ...

    def save(self, table: str) -> str: ...


class IptablesBackend(ChainsBackend):
    """kube-proxy's iptables proxier, kernel side (pkg/proxy/iptables/proxier.go)."""

    mode = "iptables"
    TABLE = "nat"  # where the service chains are (the canary and read_back look here)
    CANARY_TOP = naming.KUBE_SERVICES
    CANARY_PREFIX = naming.SVC_PREFIX
    renderer = renderer

    def __init__(self, kernel: IptablesKernel) -> None:
        self.kernel = kernel

    def ensure_jumps(self) -> None:
        self.kernel.ensure_rules(renderer.BUILTIN_JUMPS)

    def apply(self, rendered: Rendered) -> None:
        self.kernel.restore(rendered.text)

    def read_back(self) -> set[str]:
        return self.kernel.list_chains(self.TABLE)

    def existing(self, rendered: Rendered | None, unknown: bool) -> set[str]:
        """nat chains a full sync must consider for deletion: what the last sync left, and, when the
        kernel state is unknown, what iptables-save lists (kube-proxy reads iptables-save on every full
        sync for the same reason)."""
        known = set(rendered.chains.get(self.TABLE, ())) if rendered is not None else set()
        if unknown:
            try:
                known |= self.read_back()
            except NetK8sError as exc:
                log.warning("listing existing %s chains: %s", self.TABLE, exc)
        return known

    def after_apply(self, previous: Rendered | None, rendered: Rendered, now: float) -> None:
        """Nothing to keep: iptables-restore deleted the stale chains in the same text."""

    def housekeeping(self, rendered: Rendered | None, now: float) -> None:
        """Nothing is deferred in iptables mode."""

    def cleanup(self) -> None:
        """Every chain this mode programs goes, in one restore; only our jumps leave the built-in chains
        (read with iptables-save first, since `-D` of a missing rule fails)."""
        saved = {t: self.kernel.save(t) for t in TABLES}
        self.kernel.restore(renderer.chains_for_cleanup(saved=saved))
