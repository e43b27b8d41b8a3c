"""The nftables mode's Backend: netk8s.proxy.render_nftables' transactions through `nft -f`, one by one.

The kernel is injected: netk8s.dataplane.nftables on a node, netk8s.proxy.testing.fake_nft.FakeNft in tests.
"""

from __future__ import annotations

from typing import Protocol

from netk8s.errors import NetK8sError
from netk8s.model import naming
from netk8s.proxy import render_nftables as renderer
from netk8s.proxy.proxier import ChainsBackend, log
from netk8s.proxy.render_nftables import Rendered

# kube-proxy deletes chains flushed more than a second ago (syncProxyRules, staleChains).
STALE_CHAIN_DELAY = 1.0


class NftKernel(Protocol):
    """What the nftables backend needs of the kernel (netk8s.dataplane.nftables' functions)."""

    def apply(self, text: str) -> None: ...

    def chain_exists(self, table: str, chain: str) -> bool: ...

    def list_names(self, table: str) -> set[str]: ...


class NftablesBackend(ChainsBackend):
    """kube-proxy's nftables proxier, kernel side: `table ip kube-proxy` (pkg/proxy/nftables/proxier.go)."""

    mode = "nftables"
    TABLE = naming.KUBE_PROXY_TABLE
    CANARY_TOP = renderer.SERVICES
    CANARY_PREFIX = renderer.SERVICE_PREFIX
    renderer = renderer

    def __init__(self, kernel: NftKernel) -> None:
        self.kernel = kernel
        self.stale_since: dict[str, float] = {}  # chain flushed by a sync -> when

    def ensure_jumps(self) -> None:
        """Nothing: the table's base chains hook themselves in (no shared built-in chains)."""

    def apply(self, rendered: Rendered) -> None:
        for text in rendered.batches:
            self.kernel.apply(text)

    def read_back(self) -> set[str]:
        """Chains AND sets of the table: a full sync deletes stale affinity sets too."""
        return self.kernel.list_names(self.TABLE)

    def existing(self, rendered: Rendered | None, unknown: bool) -> set[str]:
        """Chains and affinity sets a full sync must consider stale: the kernel's when its state is unknown
        (first sync, after a failure), else what the last sync left."""
        if unknown:
            try:
                return self.read_back()
            except NetK8sError as exc:
                log.warning("listing the kube-proxy table: %s", exc)
        if rendered is None:
            return set()
        return set(rendered.chains.get(self.TABLE, ())) | set(rendered.sets)

    def after_apply(self, previous: Rendered | None, rendered: Rendered, now: float) -> None:
        self.stale_since = {c: self.stale_since.get(c, now) for c in rendered.stale_chains}

    def housekeeping(self, rendered: Rendered | None, now: float) -> None:
        """Delete the chains a sync flushed at least STALE_CHAIN_DELAY s ago, in a transaction of their
        own (kube-proxy's syncProxyRules does the same: the kernel frees references to them late)."""
        due = sorted(c for c, since in self.stale_since.items() if now - since >= STALE_CHAIN_DELAY)
        if not due or rendered is None:
            return
        try:
            self.kernel.apply(renderer.delete_chains_text(due))
        except NetK8sError as exc:
            log.warning("deleting %d stale chains (will retry): %s", len(due), exc)
            for c in due:
                self.stale_since[c] = now
            return
        for c in due:
            self.stale_since.pop(c, None)
            rendered.chains.get(self.TABLE, set()).discard(c)

    def cleanup(self) -> None:
        """Delete the table (kube-proxy --cleanup in nftables mode): one transaction."""
        self.kernel.apply(renderer.chains_for_cleanup())
        self.stale_since.clear()
