"""A recording Backend for the syncer's tests: renders name the service ports they cover, applies are
recorded (and can be made to fail), probes report the objects a test marked missing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from netk8s.errors import KernelError
from netk8s.proxy.model import NodeContext, ProxyState
from netk8s.proxy.proxier import stale_udp_ops


@dataclass
class FakeRendered:
    text: str
    chains: set[str]
    rule_count: int
    full: bool

    def release(self) -> None:
        """Kept: tests read what was applied from FakeBackend.applied."""


@dataclass
class FakeBackend:
    """netk8s.proxy.proxier.Backend, with what each call did in lists."""

    mode: str = "fake"
    calls: list[tuple[str, set[str]]] = field(default_factory=list)  # ("full"|"partial", keys rendered)
    applied: list[str] = field(default_factory=list)  # texts of every apply, failed ones included
    fail_next: int = 0  # the next N applies raise KernelError
    missing: set[str] = field(default_factory=set)  # names probe() reports missing
    probes: list[str] = field(default_factory=list)
    jumps_ensured: int = 0
    cleanups: int = 0
    kernel: set[str] = field(default_factory=set)  # what read_back() returns

    @staticmethod
    def names(state: ProxyState) -> set[str]:
        return {"top"} | {f"svc-{k}" for k in state.services}

    def render_full(self, state: ProxyState, node: NodeContext, existing: set[str]) -> FakeRendered:
        self.calls.append(("full", set(state.services)))
        return FakeRendered("full:" + ",".join(sorted(state.services)), self.names(state), len(state.services),
                            True)

    def render_partial(self, state: ProxyState, node: NodeContext, changed: set[str],
                       previous: FakeRendered) -> FakeRendered:
        self.calls.append(("partial", set(changed)))
        return FakeRendered("partial:" + ",".join(sorted(changed)), self.names(state), len(state.services),
                            False)

    def ensure_jumps(self) -> None:
        self.jumps_ensured += 1

    def apply(self, rendered: FakeRendered) -> None:
        self.applied.append(rendered.text)
        if self.fail_next:
            self.fail_next -= 1
            raise KernelError("fake apply failed at line 3: '-A KUBE-SVC-X -j KUBE-SEP-GONE'")

    def probe(self, rendered: FakeRendered, index: int) -> list[str]:
        services = sorted(c for c in rendered.chains if c != "top")
        probes = ["top"] + ([services[index % len(services)]] if services else [])
        self.probes.extend(probes)
        return [p for p in probes if p in self.missing]

    def read_back(self) -> set[str]:
        return set(self.kernel)

    def existing(self, rendered: FakeRendered | None, unknown: bool) -> set[str]:
        return self.read_back() if unknown or rendered is None else set(rendered.chains)

    def after_apply(self, previous: FakeRendered | None, rendered: FakeRendered, now: float) -> None:
        self.kernel = set(rendered.chains)

    def housekeeping(self, rendered: FakeRendered | None, now: float) -> None:
        """Nothing deferred."""

    def stale_udp(self, old: ProxyState, new: ProxyState, keys: Iterable[str], previous: FakeRendered | None,
                  rendered: FakeRendered) -> list[tuple]:
        return stale_udp_ops(old, new, keys)

    def cleanup(self) -> None:
        self.cleanups += 1
        self.kernel = set()

    def close(self) -> None:
        """Nothing held."""
