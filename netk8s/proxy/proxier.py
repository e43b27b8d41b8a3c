"""kube-proxy's iptables and nftables modes, the node side: track changes, render once, apply per sync.

The proxier is an AgentPlugin: the node agent (running in the node's namespace) calls
`sync(informer, events, now)` every ~0.2 s and on every batch of store events. It works the way
kube-proxy's pkg/proxy/iptables/proxier.go does:

* Change tracking. A ServiceChangeTracker and an EndpointsChangeTracker keep, per ServicePort.key,
  (previous, current) since the last successful sync; a key whose current equals its previous again is
  dropped (a no-op: A -> B -> A). Only Service and EndpointSlice events matter for the rules. The state
  is built from every object once (the first sync); after that each event updates it (model.StateCache):
  only the Services the events name are recomputed, the informer's list is not walked (at 10,000
  Services a rebuild costs ~1 s, an event well under a millisecond). A relist's events (the informer's
  diff between its old and new cache) are applied the same way.
* Coalescing. Many events -> one sync, at most one per `min_sync_period`.
* Partial syncs. Only the changed service ports are re-rendered (render_partial); a full render happens
  on the first sync, after any failed restore, every `full_sync_period`, and when the canary finds
  rules missing.
* One apply. The rendered text goes to ONE `iptables-legacy-restore --noflush` call (the legacy
  backend: see netk8s.dataplane.iptables). On failure the error (with the failing line) is logged, the
  next sync is a full one, and retries back off a little. The text never touches the built-in chains:
  on full syncs, before the restore, the jumps into the KUBE- chains are ensured one by one
  (kube-proxy's iptablesJumpChains + EnsureRule; netk8s.dataplane.iptables.ensure_rules), so other
  rules in PREROUTING, POSTROUTING... survive. Once applied, the Rendered's text is dropped (the next
  sync needs only its chain names).
* Canary. Every `canary_period` s the proxier checks that KUBE-SERVICES and one of its service chains
  (a different one each time) still exist; if not, someone deleted rules behind its back: full sync.
* After a successful apply: stale UDP conntrack entries are deleted, the healthCheckNodePort servers
  are updated, and the LoadBalancer IPs this node owns are announced on the underlay.

NftablesProxier is the same syncer with the nftables renderer and `nft -f` as the applier: a Rendered
with `batches` is applied one transaction at a time (netk8s.proxy.render_nftables explains the batches), the
canary probes the table's `services` chain and one `service-` chain, and cleanup deletes the table.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, Protocol, TypeVar

from netk8s.errors import KernelError, NetK8sError
from netk8s.model import naming
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


class Renderer(Protocol):
    def render_full(self, state: ProxyState, node: NodeContext, *, existing: Iterable[str] = ()) -> Any: ...

    def render_partial(self, state: ProxyState, node: NodeContext, changed: set[str],
                       previous: Any) -> Any: ...

    def chains_for_cleanup(self, existing: Any = ()) -> str: ...


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


def _default_restore(text: str) -> None:
    from netk8s.dataplane import iptables

    iptables.restore(text)


def _default_check(table: str, chain: str) -> bool:
    from netk8s.dataplane import iptables

    return iptables.chain_exists(table, chain)


def _default_list_chains(table: str) -> set[str]:
    from netk8s.dataplane import iptables

    return iptables.list_chains(table)


def _default_ensure_rules(rules: Mapping[str, Mapping[str, tuple[str, ...]]]) -> Any:
    from netk8s.dataplane import iptables

    return iptables.ensure_rules(rules)


def _default_save(table: str) -> str:
    from netk8s.dataplane import iptables

    return iptables.save(table)


def _default_conntrack() -> ModuleType:
    from netk8s.dataplane import conntrack

    return conntrack


def _default_renderer() -> ModuleType:
    from netk8s.proxy import render_iptables as renderer

    return renderer


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


class NodeServiceDuties:
    """What every proxy mode does after programming its rules: the healthCheckNodePort servers and the
    LoadBalancer IPs this node announces (a mixin: the proxier provides healthcheck, announcer,
    ready_nodes, lb_map and announce_failed_at)."""

    healthcheck: HealthCheckServer
    announcer: Announcer
    ready_nodes: list[str]
    lb_map: dict[str, str | None] | None
    announce_failed_at: float | None

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


class IptablesProxier(NodeServiceDuties):
    """The proxy role of a node agent, iptables mode (an AgentPlugin); the base of the other modes."""

    mode = "iptables"
    # The canary's probes: the top-level chain, and one service chain (by prefix) of CHAIN_TABLE.
    CHAIN_TABLE = "nat"
    CANARY_TOP = naming.KUBE_SERVICES
    CANARY_PREFIX = naming.SVC_PREFIX

    def __init__(
        self,
        node: NodeContext,
        restore_fn: Callable[[str], None] = _default_restore,
        check_fn: Callable[[str, str], bool] = _default_check,
        conntrack: Conntrack | ModuleType | None = None,
        min_sync_period: float = 0.0,
        full_sync_period: float = 60.0,
        *,
        renderer: Renderer | ModuleType | None = None,
        build_state: Callable[[list[dict], list[dict], str], ProxyState] | None = None,
        healthcheck: HealthCheckServer | None = None,
        announcer: Announcer | None = None,
        canary_period: float = CANARY_PERIOD,
        list_chains_fn: Callable[[str], set[str]] = _default_list_chains,
        monotonic: Callable[[], float] = time.monotonic,
        ensure_rules_fn: Callable[[Mapping[str, Mapping[str, tuple[str, ...]]]], Any] | None = None,
        save_fn: Callable[[str], str] | None = None,
    ) -> None:
        self.node = node
        self.restore_fn = restore_fn
        self.check_fn = check_fn
        self._conntrack = conntrack
        self.min_sync_period = min_sync_period
        self.full_sync_period = full_sync_period
        self._renderer = renderer
        self._build_state = build_state
        self.healthcheck = healthcheck if healthcheck is not None else HealthCheckServer()
        self.announcer = announcer if announcer is not None else Announcer(node.node_name)
        self.canary_period = canary_period
        self.list_chains_fn = list_chains_fn
        self.monotonic = monotonic
        # The built-in chains' jumps (renderers with BUILTIN_JUMPS: iptables). They default to the kernel
        # only with the kernel's restore: a caller with a fake restore has a fake kernel, and passes the
        # fake's ensure/save (or none: then jumps are not ensured, and cleanup assumes them present).
        kernel = restore_fn is _default_restore
        if kernel:
            ensure_rules_fn = ensure_rules_fn or _default_ensure_rules
            save_fn = save_fn or _default_save
        self.ensure_rules_fn = ensure_rules_fn
        self.save_fn = save_fn
        self.cache = StateCache(node.node_name)  # the informer's objects as the proxy sees them

        self.service_changes = ServiceChangeTracker()
        self.endpoints_changes = EndpointsChangeTracker()
        self.seen: ProxyState | None = None  # the newest state built from the informer
        self.seen_revision = 0
        self.applied: ProxyState = ProxyState()  # the state the kernel holds (last successful sync)
        self.rendered: Any = None  # the last successful Rendered (None: nothing applied yet)
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

    # ----- collaborators (resolved lazily so tests can inject fakes) ---------------------------
    @property
    def renderer(self) -> Any:
        if self._renderer is None:
            self._renderer = _default_renderer()
        return self._renderer

    @property
    def conntrack(self) -> Any:
        if self._conntrack is None:
            self._conntrack = _default_conntrack()
        return self._conntrack

    def build(self, informer: Informerish) -> ProxyState:
        """The state from every object of the informer (the first sync; or, with an injected
        build_state, every change)."""
        services, slices = informer.list("Service"), informer.list("EndpointSlice")
        if self._build_state is not None:
            return self._build_state(services, slices, self.node.node_name)
        return self.cache.reset(services, slices)

    # ----- change tracking ---------------------------------------------------------------------
    def refresh_state(self, informer: Informerish, events: list | None) -> None:
        """Bring `seen` up to date: from every object when `events` is None (first sync), when
        build_state was injected, or when an event does not carry its object; else event by event."""
        if events is None or self._build_state is not None or not all(_named(e) for e in events):
            self.record(self.build(informer), informer.revision)
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
        if self.rendered is not None and not self.need_full and now - self.last_canary >= self.canary_period:
            self.last_canary = now
            self.canary()
        full = self.need_full or self.rendered is None or now - self.last_full >= self.full_sync_period
        if not full and not self.pending():
            # the rules reflect everything the informer has seen (events of other kinds included)
            self.synced_revision = max(self.synced_revision, informer.revision)
            self.announce(self.applied, now)
            return
        if now < self.retry_at or now - self.last_sync < self.min_sync_period:
            return
        self.sync_rules(now, full)

    def canary(self) -> bool:
        """True when the rules we programmed are still there; else schedule a full sync."""
        table = self.CHAIN_TABLE
        known = (self.rendered.chains or {}).get(table, set())
        chains = sorted(c for c in known if c.startswith(self.CANARY_PREFIX))
        probes = [(table, self.CANARY_TOP)]
        if chains:
            probes.append((table, chains[self.canary_index % len(chains)]))
            self.canary_index += 1
        try:
            missing = [f"{t}/{c}" for t, c in probes if not self.check_fn(t, c)]
        except NetK8sError as exc:
            log.warning("canary check failed: %s", exc)
            return True
        if missing:
            log.warning("rules deleted behind our back (missing %s): full sync", ", ".join(missing))
            self.need_full = True
            return False
        return True

    def sync_rules(self, now: float, full: bool) -> bool:
        """Render (full or partial) and apply with ONE restore. True on success."""
        assert self.seen is not None
        state = self.seen
        changed = self.pending()
        mode = "full" if full else "partial"
        started = self.monotonic()
        try:
            if full:
                rendered = self.renderer.render_full(state, self.node, existing=self.existing_chains())
                jumps = getattr(self.renderer, "BUILTIN_JUMPS", None)
                if jumps and self.ensure_rules_fn is not None:
                    # kube-proxy ensures its jumps before the restore, on full syncs only (syncProxyRules).
                    self.ensure_rules_fn(jumps)
            else:
                rendered = self.renderer.render_partial(state, self.node, set(changed), self.rendered)
            # One restore text (iptables), or nftables' transactions in order.
            batches = getattr(rendered, "batches", None)
            for text in batches or [rendered.text]:
                self.restore_fn(text)
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
        previous = self.applied
        svc_changes = dict(self.service_changes.items)
        ep_changes = dict(self.endpoints_changes.items)
        self.service_changes.clear()
        self.endpoints_changes.clear()
        # What was applied is in the kernel now; keep only the names the next sync diffs against (the
        # text of 10,000 Services is ~20 MB).
        release = getattr(rendered, "release", None)
        if release is not None:
            release()
        self.applied, self.rendered = state, rendered
        self.need_full, self.failures, self.retry_at = False, 0, 0.0
        self.last_sync = self.last_canary = now  # the rules were just written: no need to probe them
        if full:
            self.last_full = now
        self.synced_revision = self.seen_revision
        self.sync_count += 1
        self.last_sync_stats = SyncStats(mode, int(rendered.rule_count), seconds, len(changed), True)
        log.info("%s sync: %d rules, %d changed service ports, %.3fs", mode, rendered.rule_count,
                 len(changed), seconds)
        self.clear_stale_udp(previous, state, set(svc_changes) | set(ep_changes))
        self.update_health_checks(state)
        self.announce(state, now, force=full)
        return True

    def existing_chains(self) -> set[str]:
        """nat chains a full sync must consider for deletion: what the last sync left, and, when the
        kernel state is unknown (first sync, e.g. after an agent restart, or after a failure), what
        iptables-save lists (kube-proxy reads iptables-save on every full sync for the same reason)."""
        table = self.CHAIN_TABLE
        known = set((self.rendered.chains or {}).get(table, ())) if self.rendered is not None else set()
        if self.rendered is None or self.failures:
            try:
                known |= self.list_chains_fn(table)
            except NetK8sError as exc:
                log.warning("listing existing %s chains: %s", table, exc)
        return known

    # ----- after a successful apply --------------------------------------------------------------
    def clear_stale_udp(self, old: ProxyState, new: ProxyState, keys: Iterable[str]) -> list[tuple]:
        """Delete conntrack entries of UDP flows that would keep going to a removed endpoint, and of
        flows REJECTed while a Service had no endpoints (kube-proxy's detectStaleConntrackEntries).
        Returns the deletions done (for tests)."""
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
        run_conntrack_ops(self.conntrack, done)
        return done

    # ----- mode change / shutdown ----------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove every chain this mode programs (switching proxy mode): one restore. Only our jumps leave
        the built-in chains (read with iptables-save first, since `-D` of a missing rule fails)."""
        if getattr(self.renderer, "BUILTIN_JUMPS", None) and self.save_fn is not None:
            saved = {t: self.save_fn(t) for t in ("nat", "filter")}
            self.restore_fn(self.renderer.chains_for_cleanup(saved=saved))
        else:
            existing = {t: self.list_chains_fn(t) for t in ("nat", "filter")}
            self.restore_fn(self.renderer.chains_for_cleanup(existing))
        self.rendered = None
        self.applied = ProxyState()
        self.need_full = True

    def close(self) -> None:
        """Stop the health check listeners (the rules and LB addresses stay: a restarted agent keeps
        traffic flowing and converges to the same rules)."""
        self.healthcheck.close()


def _nft_apply(text: str) -> None:
    from netk8s.dataplane import nftables

    nftables.apply(text)


def _nft_check(table: str, chain: str) -> bool:
    from netk8s.dataplane import nftables

    return nftables.chain_exists(table, chain)


def _nft_list(table: str) -> set[str]:
    """Chains AND sets of the table: a full sync deletes stale affinity sets too."""
    from netk8s.dataplane import nftables

    return nftables.list_names(table)


# kube-proxy deletes chains flushed more than a second ago (syncProxyRules, staleChains).
STALE_CHAIN_DELAY = 1.0


class NftablesProxier(IptablesProxier):
    """The proxy role of a node agent, nftables mode: `table ip kube-proxy` through `nft -f`."""

    mode = "nftables"
    CHAIN_TABLE = naming.KUBE_PROXY_TABLE
    CANARY_TOP = "services"
    CANARY_PREFIX = "service-"

    def __init__(self, node: NodeContext, restore_fn: Callable[[str], None] = _nft_apply,
                 check_fn: Callable[[str, str], bool] = _nft_check, conntrack: Conntrack | ModuleType | None = None,
                 min_sync_period: float = 0.0, full_sync_period: float = 60.0, *,
                 renderer: Renderer | ModuleType | None = None, list_chains_fn: Callable[[str], set[str]] = _nft_list,
                 **kwargs: Any) -> None:
        if renderer is None:
            from netk8s.proxy import render_nftables as renderer
        super().__init__(node, restore_fn, check_fn, conntrack, min_sync_period, full_sync_period,
                         renderer=renderer, list_chains_fn=list_chains_fn, **kwargs)
        self.stale_since: dict[str, float] = {}  # chain flushed by a sync -> when

    def sync(self, informer: Informerish, events: list, now: float) -> None:
        self.delete_stale_chains(now)
        super().sync(informer, events, now)

    def sync_rules(self, now: float, full: bool) -> bool:
        ok = super().sync_rules(now, full)
        if ok:
            stale = set(getattr(self.rendered, "stale_chains", ()))
            self.stale_since = {c: self.stale_since.get(c, now) for c in stale}
        return ok

    def delete_stale_chains(self, now: float) -> None:
        """Delete the chains a sync flushed at least STALE_CHAIN_DELAY s ago, in a transaction of their
        own (kube-proxy's syncProxyRules does the same: the kernel frees references to them late)."""
        due = sorted(c for c, since in self.stale_since.items() if now - since >= STALE_CHAIN_DELAY)
        if not due or self.rendered is None:
            return
        try:
            self.restore_fn(self.renderer.delete_chains_text(due))
        except NetK8sError as exc:
            log.warning("deleting %d stale chains (will retry): %s", len(due), exc)
            for c in due:
                self.stale_since[c] = now
            return
        for c in due:
            self.stale_since.pop(c, None)
            self.rendered.chains.get(self.CHAIN_TABLE, set()).discard(c)

    def existing_chains(self) -> set[str]:
        """Chains and affinity sets a full sync must consider stale: the kernel's when its state is unknown
        (first sync, after a failure), else what the last sync left."""
        if self.rendered is None or self.failures:
            try:
                return self.list_chains_fn(self.CHAIN_TABLE)
            except NetK8sError as exc:
                log.warning("listing the kube-proxy table: %s", exc)
        if self.rendered is None:
            return set()
        return set(self.rendered.chains.get(self.CHAIN_TABLE, ())) | set(getattr(self.rendered, "sets", ()))

    def cleanup(self) -> None:
        """Delete the table (kube-proxy --cleanup in nftables mode): one transaction."""
        self.restore_fn(self.renderer.chains_for_cleanup())
        self.rendered = None
        self.applied = ProxyState()
        self.need_full = True


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
