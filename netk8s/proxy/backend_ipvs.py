"""The IPVS mode's Backend: read the kernel back, diff against netk8s.proxy.render_ipvs' desired state, apply.

The kernel is injected: netk8s.dataplane.ipvs on a node (whose kernel has IP_VS: a VM node), or
netk8s.proxy.testing.fake_ipvs.FakeIpvs in tests; both implement IpvsKernel. An apply goes in the order
that keeps traffic flowing: the device and its new addresses, the ipsets, the virtual/real servers, the
iptables rules, and only then the addresses no Service uses any more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from netk8s.errors import NetK8sError
from netk8s.model import naming
from netk8s.model.iptsave import table_lines
from netk8s.proxy import render_ipvs as renderer
from netk8s.proxy.model import NodeContext, ProxyState
from netk8s.proxy.modes import iptables_cleanup_text
from netk8s.proxy.proxier import log, stale_udp_ops
from netk8s.proxy.render_ipvs import IpvsKernelState, IpvsRendered

GRACE_CHECK_PERIOD = 1.0  # s between connection-count checks of real servers at weight 0


class IpvsKernel(Protocol):
    """What the IPVS backend needs of the kernel (netk8s.dataplane.ipvs' functions)."""

    def ipvsadm_list(self) -> str: ...

    def ipset_save(self) -> str: ...

    def device_addresses(self) -> set[str] | None: ...

    def ensure_device(self) -> None: ...

    def set_addresses(self, add: list[str], delete: list[str]) -> None: ...

    def ipvsadm_restore(self, text: str) -> None: ...

    def ipset_restore(self, text: str) -> None: ...

    def delete_device(self) -> None: ...

    def restore(self, text: str) -> None: ...

    def save(self, table: str) -> str: ...

    def ensure_rules(self, rules: Mapping[str, Mapping[str, Sequence[str]]]) -> Any: ...

    def chain_exists(self, table: str, chain: str) -> bool: ...


class IpvsBackend:
    """kube-proxy's ipvs proxier, kernel side (pkg/proxy/ipvs/proxier.go)."""

    mode = "ipvs"

    def __init__(self, kernel: IpvsKernel, scheduler: str = renderer.DEFAULT_SCHEDULER) -> None:
        if scheduler not in renderer.SCHEDULERS:
            raise ValueError(f"--ipvs-scheduler: {scheduler!r} is not one of {', '.join(renderer.SCHEDULERS)}")
        self.kernel = kernel
        self.scheduler = scheduler
        self.applied_iptables: str | None = None
        self.last_grace_check = float("-inf")

    def kernel_state(self) -> IpvsKernelState:
        addresses = self.kernel.device_addresses()
        return IpvsKernelState(addresses=addresses or set(),
                               services=renderer.parse_ipvsadm_list(self.kernel.ipvsadm_list()),
                               ipsets=renderer.parse_ipset_save(self.kernel.ipset_save()),
                               device=addresses is not None)

    def render_full(self, state: ProxyState, node: NodeContext, existing: set[str]) -> IpvsRendered:
        desired = renderer.render_desired(state, node, self.scheduler)
        return renderer.diff(desired, self.kernel_state(), full=True)

    def render_partial(self, state: ProxyState, node: NodeContext, changed: set[str],
                       previous: IpvsRendered) -> IpvsRendered:
        """As kube-proxy's ipvs proxier: the whole desired state against the kernel's (the diff is small)."""
        desired = renderer.render_desired(state, node, self.scheduler)
        return renderer.diff(desired, self.kernel_state(), previous_iptables=self.applied_iptables, full=False)

    def ensure_jumps(self) -> None:
        self.kernel.ensure_rules(renderer.BUILTIN_JUMPS)

    def apply(self, rendered: IpvsRendered) -> None:
        self.kernel.ensure_device()
        self.kernel.set_addresses(rendered.add_addresses, [])
        self.kernel.ipset_restore(rendered.ipset)
        self.kernel.ipvsadm_restore(rendered.ipvsadm)
        if rendered.iptables:
            self.kernel.restore(rendered.iptables)
        self.kernel.set_addresses([], rendered.del_addresses)

    def probe(self, rendered: IpvsRendered, index: int) -> list[str]:
        """The top-level chain, and the kube-ipvs0 device (its addresses are what IPVS sees)."""
        missing = [] if self.kernel.chain_exists("nat", naming.KUBE_SERVICES) else [f"nat/{naming.KUBE_SERVICES}"]
        if self.kernel.device_addresses() is None:
            missing.append(naming.KUBE_IPVS_DEVICE)
        return missing

    def read_back(self) -> set[str]:
        """`proto/ip:port` of every virtual server the kernel holds."""
        return {f"{p}/{ip}:{port}" for p, ip, port in self.kernel_state().services}

    def existing(self, rendered: IpvsRendered | None, unknown: bool) -> set[str]:
        """Nothing: every render reads the kernel back itself (kernel_state)."""
        return set()

    def after_apply(self, previous: IpvsRendered | None, rendered: IpvsRendered, now: float) -> None:
        self.applied_iptables = rendered.desired.iptables

    def housekeeping(self, rendered: IpvsRendered | None, now: float) -> None:
        """Finish graceful removals: every GRACE_CHECK_PERIOD s while real servers sit at weight 0, delete
        those whose connections have ended (kube-proxy's gracefulTerminationManager does the same)."""
        if rendered is None or not rendered.terminating or now - self.last_grace_check < GRACE_CHECK_PERIOD:
            return
        self.last_grace_check = now
        try:
            kernel = self.kernel_state()
            drained = renderer.drained(rendered.terminating, kernel)
            self.kernel.ipvsadm_restore(renderer.delete_reals_text(drained, kernel))
        except NetK8sError as exc:
            log.warning("graceful removal of real servers (will retry): %s", exc)
            return
        rendered.terminating = [t for t in rendered.terminating if t not in drained]

    def stale_udp(self, old: ProxyState, new: ProxyState, keys: Iterable[str], previous: IpvsRendered | None,
                  rendered: IpvsRendered) -> list[tuple]:
        return stale_udp_ops(old, new, keys)

    def cleanup(self) -> None:
        """kube-proxy --cleanup in IPVS mode: every virtual server, the KUBE- rules and jumps, the ipsets
        (once no rule uses them), kube-ipvs0."""
        self.kernel.ipvsadm_restore(renderer.cleanup_ipvsadm(self.kernel_state()))
        saved = {"nat": self.kernel.save("nat")}
        text = iptables_cleanup_text(saved) if table_lines(saved["nat"], "nat") else ""
        if text:
            self.kernel.restore(text)
        self.kernel.ipset_restore(renderer.cleanup_ipset(self.kernel_state()))
        self.kernel.delete_device()
        self.applied_iptables = None

    def close(self) -> None:
        """Nothing is held in this process: the rules live in the kernel."""
