"""kube-proxy's syncer, the node side, for every proxy mode: track changes, render once, apply per sync.

The proxier is an AgentPlugin: the node agent (running in the node's namespace) calls
`sync(informer, events, now)` every ~0.2 s and on every batch of store events. It works the way
kube-proxy's pkg/proxy/iptables/proxier.go does, and is the same code for every mode: what differs per
mode is a `Backend` (netk8s.proxy.backend_iptables, backend_nftables, netk8s.proxy.userspace; fakes of
the kernels they drive live in netk8s.proxy.testing, as kube-proxy keeps its fakes in `testing`
packages that implement the real interfaces).

* Change tracking. A ServiceChangeTracker and an EndpointsChangeTracker keep, per ServicePort.key,
  (previous, current) since the last successful sync; a key whose current equals its previous again is
  dropped (a no-op: A -> B -> A). Only Service and EndpointSlice events matter for the rules. The state
  is built from every object once (the first sync); after that each event updates it (model.StateCache):
  only the Services the events name are recomputed, the informer's list is not walked (at 10,000
  Services a rebuild costs ~1 s, an event well under a millisecond). A relist's events (the informer's
  diff between its old and new cache) are applied the same way.
* Coalescing. Many events -> one sync, at most one per `min_sync_period`.
* Partial syncs. Only the changed service ports are re-rendered (Backend.render_partial); a full render
  happens on the first sync, after any failed apply, every `full_sync_period`, and when the canary
  finds rules missing. On full syncs the backend first ensures its jumps from the built-in hooks
  (kube-proxy's iptablesJumpChains + EnsureRule), so rules of others there survive.
* One apply (Backend.apply): one `iptables-legacy-restore --noflush`, or nftables' transactions in
  order. On failure the error (with the failing line) is logged, the next sync is a full one, and
  retries back off (BACKOFF_START doubling up to BACKOFF_MAX). Once applied, the rendered text is
  dropped (the next sync needs only its names).
* Canary. Every `canary_period` s the backend probes the top-level chain and one of its service chains
  (a different one each time); if one is missing, someone deleted rules behind our back: full sync.
* After a successful apply: stale UDP conntrack entries are deleted (the backend decides which), the
  healthCheckNodePort servers are updated, and the LoadBalancer IPs this node owns are announced.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from netk8s.errors import KernelError, NetK8sError
from netk8s.model.status import is_ready
from netk8s.proxy.announce import Announcer, lb_assignments
from netk8s.proxy.healthcheck import HealthCheckServer
from netk8s.proxy.model import Endpoint, NodeContext, ProxyState, ServicePort, StateCache

log = logging.getLogger("netk8s.proxy")

RULE_KINDS = frozenset({"Service", "EndpointSlice"})
CANARY_PERIOD = 2.0
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
ANNOUNCE_RETRY = 5.0

V = TypeVar("V")


class ChangeTracker(Generic[V]):
    """(previous, current) per key since the last sync; no-op changes are dropped (kube-proxy's
    ServiceChangeTracker / EndpointsChangeTracker)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[V | None, V | None]] = {}

    def update(self, key: str, previous: V | None, current: V | None) -> None:
        if key in self.items:
            previous = self.items[key][0]  # the value the last sync applied
        if previous == current:
            self.items.pop(key, None)
        else:
            self.items[key] = (previous, current)

    def keys(self) -> set[str]:
        return set(self.items)

    def clear(self) -> None:
        self.items.clear()

    def __len__(self) -> int:
        return len(self.items)


class ServiceChangeTracker(ChangeTracker[ServicePort]):
    """Changes of ServicePorts, keyed by ServicePort.key."""


class EndpointsChangeTracker(ChangeTracker[tuple[Endpoint, ...]]):
    """Changes of a service port's endpoints, keyed by ServicePort.key."""


class Conntrack(Protocol):
    def delete_udp_to_service(self, ip: str, port: int) -> int: ...

    def delete_udp_endpoint(self, vip: str, port: int, ep_ip: str) -> int: ...

    def delete_udp_nodeport(self, port: int, ep_ip: str) -> int: ...

    def delete_udp_to_port(self, port: int) -> int: ...


class Informerish(Protocol):
    @property
    def revision(self) -> int: ...

    def list(self, kind: str, namespace: str | None = None) -> list[dict]: ...


@dataclass(frozen=True)
class SyncStats:
    mode: str  # "full" | "partial"
    rules: int
    seconds: float
    changed: int
    ok: bool
    error: str = ""


class Rendered(Protocol):
    """What a backend's render returns: its size, and a way to drop the text once applied."""

    rule_count: int

    def release(self) -> None: ...


R = TypeVar("R", bound=Rendered)


class Backend(Protocol[R]):
    """One proxy mode's kernel side, driven by the Proxier. The kernel it talks to is injected into the
    implementation (the real dataplane module, or a fake from netk8s.proxy.testing)."""

    mode: str

    def render_full(self, state: ProxyState, node: NodeContext, existing: set[str]) -> R:
        """Everything, replacing what `existing` (names this mode owns in the kernel) holds."""
        ...

    def render_partial(self, state: ProxyState, node: NodeContext, changed: set[str], previous: R) -> R:
        """Only the service ports in `changed`, on top of what `previous` left programmed."""
        ...

    def ensure_jumps(self) -> None:
        """Before a full apply: the jumps from the kernel's built-in hooks into this mode's entry points."""
        ...

    def apply(self, rendered: R) -> None:
        """Program `rendered` (raises NetK8sError, e.g. KernelError naming the failing line)."""
        ...

    def probe(self, rendered: R, index: int) -> list[str]:
        """The canary: names of the top-level entry and of the `index`-th service object (round robin)
        that are missing in the kernel (empty: all there)."""
        ...

    def read_back(self) -> set[str]:
        """The names of this mode's objects the kernel holds now."""
        ...

    def existing(self, rendered: R | None, unknown: bool) -> set[str]:
        """What a full render must consider for deletion: the kernel's (read_back) when its state is
        `unknown` (first sync, after a failure), else what `rendered` left."""
        ...

    def after_apply(self, previous: R | None, rendered: R, now: float) -> None:
        """Bookkeeping once `rendered` is programmed (e.g. chains to delete later)."""
        ...

    def housekeeping(self, rendered: R | None, now: float) -> None:
        """Work due on every sync call, whether or not the rules change (e.g. delayed deletions)."""
        ...

    def stale_udp(self, old: ProxyState, new: ProxyState, keys: Iterable[str], previous: R | None,
                  rendered: R) -> list[tuple]:
        """The conntrack deletions this sync calls for (see stale_udp_ops and run_conntrack_ops)."""
        ...

    def cleanup(self) -> None:
        """Remove everything this mode programs (kube-proxy --cleanup)."""
        ...

    def close(self) -> None:
        """Release what the backend holds in this process (sockets); the kernel's rules stay."""
        ...


@dataclass(frozen=True)
class SyncConfig:
    """The syncer's periods (kube-proxy's --iptables-min-sync-period, --iptables-sync-period)."""

    min_sync_period: float = 0.0
    full_sync_period: float = 60.0
    canary_period: float = CANARY_PERIOD


def service_name(key: str) -> str:
    """`ns/name` of a ServicePort key `ns/name[:port]`."""
    return key.split(":", 1)[0]


def ready_nodes(nodes: Iterable[dict]) -> list[str]:
    """Names of the Nodes whose Ready condition is True."""
    return sorted(n["metadata"]["name"] for n in nodes if is_ready(n))


def health_checks(state: ProxyState) -> list[tuple[str, int, int]]:
    """(ns/name, healthCheckNodePort, local ready endpoints) per `externalTrafficPolicy: Local`
    Service. kube-proxy keys health checks by Service, so ports of one Service share one entry."""
    out: dict[str, tuple[int, int]] = {}
    for key, sp in state.services.items():
        if not (sp.external_policy_local and sp.health_check_node_port):
            continue
        local = len({ep.ip for ep in state.endpoints.get(key, ()) if ep.local and ep.ready})
        name = service_name(key)
        prev = out.get(name)
        out[name] = (sp.health_check_node_port, max(local, prev[1] if prev else 0))
    return [(name, port, local) for name, (port, local) in sorted(out.items())]


def run_conntrack_ops(conntrack: Any, ops: list[tuple]) -> None:
    """Carry out the stale-UDP deletions a proxier decided on: ("endpoint", vip, port, ep_ip),
    ("nodeport", port, ep_ip), ("service", vip, port) or ("port", port); failures are only logged."""
    for op in ops:
        try:
            if op[0] == "endpoint":
                conntrack.delete_udp_endpoint(op[1], op[2], op[3])
            elif op[0] == "nodeport":
                conntrack.delete_udp_nodeport(op[1], op[2])
            elif op[0] == "service":
                conntrack.delete_udp_to_service(op[1], op[2])
            else:
                conntrack.delete_udp_to_port(op[1])
        except NetK8sError as exc:
            log.warning("conntrack cleanup %s: %s", op, exc)


def stale_udp_ops(old: ProxyState, new: ProxyState, keys: Iterable[str]) -> list[tuple]:
    """Conntrack entries of UDP flows that would keep going to a removed endpoint, and of flows REJECTed
    while a Service had no endpoints (kube-proxy's detectStaleConntrackEntries), as run_conntrack_ops
    takes them."""
    done: list[tuple] = []
    for key in sorted(keys):
        sp = new.services.get(key) or old.services.get(key)
        if sp is None or sp.protocol != "UDP" or not sp.cluster_ip:
            continue
        before = {ep.addr: ep for ep in old.endpoints.get(key, ()) if ep.usable}
        after = {ep.addr for ep in new.endpoints.get(key, ()) if ep.usable}
        old_sp = old.services.get(key) or sp
        for addr, ep in sorted(before.items()):
            if addr in after:
                continue
            for vip in (old_sp.cluster_ip, *old_sp.external_ips, *old_sp.load_balancer_ips):
                if vip:
                    done.append(("endpoint", vip, old_sp.port, ep.ip))
            if old_sp.node_port:
                done.append(("nodeport", old_sp.node_port, ep.ip))
        if after and not before and key in new.services:
            for vip in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips):
                done.append(("service", vip, sp.port))
            if sp.node_port:
                done.append(("port", sp.node_port))
    return done


class ChainsBackend:
    """What the iptables and nftables backends share: a pure renderer module (render_full/render_partial,
    Rendered.chains by table) and a kernel that can tell whether a chain exists. Subclasses set TABLE (where
    the service chains are), CANARY_TOP (the top-level chain) and CANARY_PREFIX (service chains)."""

    TABLE: str
    CANARY_TOP: str
    CANARY_PREFIX: str
    renderer: Any
    kernel: Any

    def render_full(self, state: ProxyState, node: NodeContext, existing: set[str]) -> Any:
        return self.renderer.render_full(state, node, existing=existing)

    def render_partial(self, state: ProxyState, node: NodeContext, changed: set[str], previous: Any) -> Any:
        return self.renderer.render_partial(state, node, changed, previous)

    def probe(self, rendered: Any, index: int) -> list[str]:
        chains = sorted(c for c in rendered.chains.get(self.TABLE, ()) if c.startswith(self.CANARY_PREFIX))
        probes = [self.CANARY_TOP] + ([chains[index % len(chains)]] if chains else [])
        return [f"{self.TABLE}/{c}" for c in probes if not self.kernel.chain_exists(self.TABLE, c)]

    def stale_udp(self, old: ProxyState, new: ProxyState, keys: Iterable[str], previous: Any,
                  rendered: Any) -> list[tuple]:
        return stale_udp_ops(old, new, keys)

    def close(self) -> None:
        """Nothing is held in this process: the rules live in the kernel."""


def _kernel_conntrack() -> Conntrack:
    from netk8s.dataplane import conntrack

    return conntrack  # type: ignore[return-value]


class Proxier(Generic[R]):
    """The proxy role of a node agent (an AgentPlugin), for the mode of its `backend`."""

    def __init__(self, node: NodeContext, backend: Backend[R], config: SyncConfig = SyncConfig(), *,
                 conntrack: Conntrack | None = None, healthcheck: HealthCheckServer | None = None,
                 announcer: Announcer | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.backend = backend
        self.config = config
        self.conntrack = conntrack if conntrack is not None else _kernel_conntrack()
        self.healthcheck = healthcheck if healthcheck is not None else HealthCheckServer()
        self.announcer = announcer if announcer is not None else Announcer(node.node_name, uplink="", node_ips=tuple(node.node_ips))
        self.monotonic = monotonic
        self.cache = StateCache(node.node_name)  # the informer's objects as the proxy sees them

        self.service_changes = ServiceChangeTracker()
        self.endpoints_changes = EndpointsChangeTracker()
        self.seen: ProxyState | None = None  # the newest state built from the informer
        self.seen_revision = 0
        self.applied: ProxyState = ProxyState()  # the state the kernel holds (last successful sync)
        self.rendered: R | None = None  # the last successful render (None: nothing applied yet)
        self.need_full = True
        self.failures = 0
        self.retry_at = 0.0
        self.last_sync = float("-inf")
        self.last_full = float("-inf")
        self.last_canary = float("-inf")
        self.canary_index = 0
        self.last_sync_stats: SyncStats | None = None
        self.synced_revision = 0
        self.sync_count = 0
        self.lb_map: dict[str, str | None] | None = None  # what the announcer last applied
        self.ready_nodes: list[str] = []
        self.announce_failed_at: float | None = None

    @property
    def mode(self) -> str:
        return self.backend.mode

    # ----- change tracking ---------------------------------------------------------------------
    def refresh_state(self, informer: Informerish, events: list | None) -> None:
        """Bring `seen` up to date: from every object when `events` is None (first sync) or when an event
        does not carry its object; else event by event."""
        if events is None or not all(_named(e) for e in events):
            state = self.cache.reset(informer.list("Service"), informer.list("EndpointSlice"))
            self.record(state, informer.revision)
            return
        old = self.seen if self.seen is not None else ProxyState()
        keys: set[str] = set()
        for e in events:
            keys |= self.cache.update(e.object.get("kind"), e.object, getattr(e, "type", "") == "DELETED")
        self.record(self.cache.state, informer.revision, old=old, keys=keys)

    def record(self, state: ProxyState, revision: int, *, old: ProxyState | None = None,
               keys: Iterable[str] | None = None) -> None:
        """Feed a new state into the trackers (the event handlers' job in kube-proxy): every key of both
        states, or only `keys` when the caller knows which ones can differ."""
        if old is None:
            old = self.seen if self.seen is not None else ProxyState()
        if keys is None:
            keys = set(old.services) | set(state.services) | set(old.endpoints) | set(state.endpoints)
        for key in keys:
            self.service_changes.update(key, old.services.get(key), state.services.get(key))
            self.endpoints_changes.update(key, _norm(old.endpoints.get(key)), _norm(state.endpoints.get(key)))
        self.seen, self.seen_revision = state, revision

    def pending(self) -> set[str]:
        return self.service_changes.keys() | self.endpoints_changes.keys()

    # ----- the plugin entry point --------------------------------------------------------------
    def sync(self, informer: Informerish, events: list, now: float) -> None:
        """Record what the events changed; sync the rules when needed (see the module docstring)."""
        with _gc_paused():
            self.backend.housekeeping(self.rendered, now)
            self._sync(informer, events, now)

    def _sync(self, informer: Informerish, events: list, now: float) -> None:
        kinds = {getattr(e, "object", {}).get("kind") for e in events}
        if self.seen is None:
            self.refresh_state(informer, None)
        elif kinds & RULE_KINDS:
            rule_events = [e for e in events if getattr(e, "object", {}).get("kind") in RULE_KINDS]
            self.refresh_state(informer, rule_events)
        if "Node" in kinds or self.seen is not None and not self.ready_nodes:
            self.ready_nodes = ready_nodes(informer.list("Node"))
        if self.rendered is not None and not self.need_full and now - self.last_canary >= self.config.canary_period:
            self.last_canary = now
            self.canary()
        full = self.need_full or self.rendered is None or now - self.last_full >= self.config.full_sync_period
        if not full and not self.pending():
            # the rules reflect everything the informer has seen (events of other kinds included)
            self.synced_revision = max(self.synced_revision, informer.revision)
            self.announce(self.applied, now)
            return
        if now < self.retry_at or now - self.last_sync < self.config.min_sync_period:
            return
        self.sync_rules(now, full)

    def canary(self) -> bool:
        """True when the rules we programmed are still there; else schedule a full sync."""
        assert self.rendered is not None
        try:
            missing = self.backend.probe(self.rendered, self.canary_index)
        except NetK8sError as exc:
            log.warning("canary check failed: %s", exc)
            return True
        self.canary_index += 1
        if missing:
            log.warning("rules deleted behind our back (missing %s): full sync", ", ".join(missing))
            self.need_full = True
            return False
        return True

    def sync_rules(self, now: float, full: bool) -> bool:
        """Render (full or partial) and apply. True on success."""
        assert self.seen is not None
        state = self.seen
        changed = self.pending()
        mode = "full" if full or self.rendered is None else "partial"
        started = self.monotonic()
        try:
            if mode == "full":
                existing = self.backend.existing(self.rendered, self.rendered is None or self.failures > 0)
                rendered = self.backend.render_full(state, self.node, existing)
                # kube-proxy ensures its jumps before the restore, on full syncs only (syncProxyRules).
                self.backend.ensure_jumps()
            else:
                assert self.rendered is not None
                rendered = self.backend.render_partial(state, self.node, set(changed), self.rendered)
            self.backend.apply(rendered)
        except NetK8sError as exc:
            self.failures += 1
            self.need_full = True
            delay = min(BACKOFF_START * 2 ** (self.failures - 1), BACKOFF_MAX)
            self.retry_at = now + delay
            self.last_sync = now
            log.error("%s sync failed (attempt %d, retry in %.1fs): %s", mode, self.failures, delay, exc)
            self.last_sync_stats = SyncStats(mode, 0, self.monotonic() - started, len(changed), False,
                                             str(exc))
            return False
        seconds = self.monotonic() - started
        previous_state, previous = self.applied, self.rendered
        keys = self.service_changes.keys() | self.endpoints_changes.keys()
        self.service_changes.clear()
        self.endpoints_changes.clear()
        # What was applied is in the kernel now; keep only the names the next sync diffs against (the
        # text of 10,000 Services is ~20 MB).
        rendered.release()
        self.applied, self.rendered = state, rendered
        self.need_full, self.failures, self.retry_at = False, 0, 0.0
        self.last_sync = self.last_canary = now  # the rules were just written: no need to probe them
        if mode == "full":
            self.last_full = now
        self.synced_revision = self.seen_revision
        self.sync_count += 1
        self.last_sync_stats = SyncStats(mode, int(rendered.rule_count), seconds, len(changed), True)
        log.info("%s %s sync: %d rules, %d changed service ports, %.3fs", self.mode, mode,
                 rendered.rule_count, len(changed), seconds)
        self.backend.after_apply(previous, rendered, now)
        run_conntrack_ops(self.conntrack, self.backend.stale_udp(previous_state, state, keys, previous, rendered))
        self.update_health_checks(state)
        self.announce(state, now, force=mode == "full")
        return True

    # ----- after a successful apply --------------------------------------------------------------
    def update_health_checks(self, state: ProxyState) -> None:
        try:
            self.healthcheck.update(health_checks(state))
        except OSError as exc:
            log.error("health check servers: %s", exc)

    def announce(self, state: ProxyState, now: float, force: bool = False) -> None:
        """Hold the LoadBalancer IPs this node owns; touches the kernel only when the map changed (or
        on a full sync), and after a failure retries every ANNOUNCE_RETRY s (not on every call)."""
        lb_map = lb_assignments(state.services.values(), state.endpoints, self.ready_nodes)
        if self.announce_failed_at is not None:
            if now - self.announce_failed_at < ANNOUNCE_RETRY and lb_map == self.lb_map:
                return
        elif not force and lb_map == self.lb_map:
            return
        self.lb_map = lb_map
        try:
            self.announcer.sync(lb_map)
            self.announce_failed_at = None
        except KernelError as exc:
            log.error("announcing LoadBalancer IPs: %s", exc)
            self.announce_failed_at = now

    # ----- mode change / shutdown ----------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove everything this mode programs (switching proxy mode)."""
        self.backend.cleanup()
        self.rendered = None
        self.applied = ProxyState()
        self.need_full = True

    def close(self) -> None:
        """Stop the health check listeners and the backend's own sockets (the rules and LB addresses stay:
        a restarted agent keeps traffic flowing and converges to the same rules)."""
        self.backend.close()
        self.healthcheck.close()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a sync. A full sync allocates ~10^5 small objects (endpoints,
    rule lines), which triggers collections that walk every object the agent holds (the informer's
    objects): 0.1-0.4 s of a 10,000-Service sync, measured. Nothing a sync allocates is cyclic, so the
    collections simply wait until it ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _named(event: Any) -> bool:
    """True for an event carrying its object (kind and name), which can be applied on its own."""
    obj = getattr(event, "object", None)
    return isinstance(obj, dict) and bool((obj.get("metadata") or {}).get("name"))


def _norm(eps: tuple[Endpoint, ...] | None) -> tuple[Endpoint, ...] | None:
    """Endpoints in a canonical order, so a reordered EndpointSlice is not a change."""
    if not eps:
        return None
    return tuple(sorted(eps, key=lambda e: (e.ip, e.port, e.node or "")))
