"""The controller loop: an informer over every kind, every reconciler run on its cache, ops applied one by one.

Level-triggered: a pass runs after events (coalesced for ~10 ms) or every `resync` seconds, and each
reconciler recomputes what it wants from the whole cache. A write that loses a race (Conflict, NotFound,
AlreadyExists) is dropped: the event it raced with triggers another pass that sees the newer state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from netk8s.controller.endpoints import ENDPOINTS
from netk8s.controller.gc import GARBAGE_COLLECTOR, NAMESPACES, SYSTEM_NAMESPACES
from netk8s.controller.reconcile import Reconciler
from netk8s.controller.scheduler import NODE_CIDRS, SCHEDULER
from netk8s.controller.services import KUBERNETES_SERVICE, LOADBALANCER
from netk8s.controller.workloads import DEPLOYMENTS, REPLICASETS, STATEFULSETS
from netk8s.errors import AlreadyExists, Conflict, NetK8sError, NotFound
from netk8s.model.kinds import KINDS
from netk8s.store.base import Op, Store
from netk8s.store.informer import Informer

log = logging.getLogger("netk8s.controller")

POLL_TIMEOUT = 0.2
COALESCE = 0.01
CATCH_UP_TIMEOUT = 5.0


def default_reconcilers() -> list[Reconciler]:
    """Every built-in controller, in the order one pass runs them. Add new ones here."""
    return [NAMESPACES, GARBAGE_COLLECTOR, NODE_CIDRS, DEPLOYMENTS, REPLICASETS, STATEFULSETS, SCHEDULER,
            KUBERNETES_SERVICE, LOADBALANCER, ENDPOINTS]


def ensure_system_namespaces(store: Store) -> None:
    """Create default, kube-system, kube-public and kube-node-lease if they are missing."""
    for name in SYSTEM_NAMESPACES:
        if store.try_get("Namespace", "", name) is not None:
            continue
        try:
            store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                          "status": {"phase": "Active"}})
            log.info("created namespace %s", name)
        except AlreadyExists:
            pass


def _describe(op: Op) -> str:
    md = op.obj.get("metadata") or {}
    name = md.get("name") or f"{md.get('generateName', '')}*"
    ns = md.get("namespace")
    return f"{op.type} {op.obj.get('kind', '?').lower()}/{name}" + (f" -n {ns}" if ns else "")


def apply_op(store: Store, op: Op) -> dict:
    """Perform one op with the store's single-object calls."""
    if op.type == "create":
        return store.create(op.obj)
    if op.type == "update":
        return store.update(op.obj)
    if op.type == "put":
        return store.put(op.obj)
    md = op.obj.get("metadata") or {}
    return store.delete(op.obj["kind"], md.get("namespace", ""), md["name"], md.get("resourceVersion"))


def apply_ops(store: Store, reconciler: str, ops: list[Op]) -> int:
    """Apply ops one by one; races are logged at debug and skipped. Returns how many succeeded."""
    done = 0
    for op in ops:
        try:
            apply_op(store, op)
        except (Conflict, NotFound, AlreadyExists) as exc:
            log.debug("%s: %s: skipped (%s)", reconciler, _describe(op), exc)
            continue
        except NetK8sError as exc:
            log.warning("%s: %s failed: %s", reconciler, _describe(op), exc)
            continue
        done += 1
        log.debug("%s: %s", reconciler, _describe(op))
    return done


def run_pass(store: Store, snapshot: Informer, reconcilers: Sequence[Reconciler], now: float) -> int:
    """Run every reconciler once on the snapshot and apply its ops. Returns the number of writes."""
    writes = 0
    for rec in reconcilers:
        try:
            ops = rec.reconcile(snapshot, now)
        except Exception:  # a broken reconciler must not stop the others; the next pass retries it
            log.exception("%s: reconcile failed", rec.name)
            continue
        if ops:
            n = apply_ops(store, rec.name, ops)
            if n:
                log.info("%s: %d of %d writes applied", rec.name, n, len(ops))
            writes += n
    return writes


def _catch_up(informer: Informer, revision: int, stop: threading.Event) -> None:
    """Poll until the cache reflects our own writes, so the next pass does not, say, create pods twice."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while informer.revision < revision and not stop.is_set():
        if time.monotonic() > deadline:
            log.warning("informer is behind the store (at %d, want %d)", informer.revision, revision)
            return
        informer.poll(POLL_TIMEOUT)


def run_controller(store: Store, stop: threading.Event, clock: Callable[[], float] = time.time,
                   resync: float = 2.0, reconcilers: Sequence[Reconciler] | None = None) -> None:
    """Run the controllers until `stop` is set."""
    recs = list(default_reconcilers() if reconcilers is None else reconcilers)
    ensure_system_namespaces(store)
    informer = Informer(store, list(KINDS))
    informer.sync()
    # sync() lists kind by kind; catching up to one revision makes the kinds agree (a namespace listed
    # before its new pods must not look missing, or the namespace controller would delete them).
    _catch_up(informer, store.revision(), stop)
    log.info("controller started (%s)", ", ".join(r.name for r in recs))
    dirty = True
    last_pass = float("-inf")
    while not stop.is_set():
        wrote = False
        if dirty or time.monotonic() - last_pass >= resync:
            wrote = run_pass(store, informer, recs, clock()) > 0
            if wrote:
                # Our writes change what the reconcilers see (an RS needs its pods, a pod its node):
                # wait until the cache holds them, then pass again at once.
                _catch_up(informer, store.revision(), stop)
            last_pass = time.monotonic()
        events = informer.poll(COALESCE if wrote else POLL_TIMEOUT)
        dirty = wrote or bool(events)
        while events and not stop.is_set():  # coalesce a burst into one pass
            events = informer.poll(COALESCE)
    log.info("controller stopped")
