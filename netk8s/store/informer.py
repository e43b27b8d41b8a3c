"""A client-side cache of some kinds, kept current by watching the store (a single-threaded informer).

sync() lists every kind; poll() applies the events that follow and returns them. Each kind has its own
cursor (the revision its list or last event was at), as client-go's per-resource reflectors do, so the
same informer works over a store with one ordered history and over the API server, where every kind
is a watch stream of its own (store.base.watch_kinds). When the history the informer needs is gone
(Expired, 410 Gone), it lists again and returns synthetic events that describe the difference between
the old and the new cache, so a caller never misses a change.
"""

from __future__ import annotations

import builtins
import copy
import time

from netk8s.errors import Expired
from netk8s.store.base import Event, Store, normalize_key, watch_kinds

CacheKey = tuple[str, str]  # (namespace, name)


class Informer:
    """Cache {kind: {(namespace, name): object}} of `kinds`, fed by store.watch()."""

    def __init__(self, store: Store, kinds: list[str]) -> None:
        self._store = store
        self._kinds = list(dict.fromkeys(kinds))
        self._cache: dict[str, dict[CacheKey, dict]] = {k: {} for k in self._kinds}
        # Per kind, the revision the cache holds it at: events at or below it are already applied.
        self._cursors: dict[str, int] = {k: 0 for k in self._kinds}
        self._revision = 0
        self._synced = False

    @property
    def revision(self) -> int:
        """The store revision the cache reflects: the last store event seen (of any kind), or the
        oldest list's revision."""
        return self._revision

    @property
    def synced(self) -> bool:
        return self._synced

    def sync(self) -> None:
        """Initial (or fresh) list of every kind; the cache is replaced."""
        self._relist()

    def _relist(self) -> list[Event]:
        old = self._cache
        cache: dict[str, dict[CacheKey, dict]] = {}
        listed_at: dict[str, int] = {}
        for kind in self._kinds:
            items, rev = self._store.list(kind)
            cache[kind] = {(normalize_key(kind, (o.get("metadata") or {}).get("namespace", ""),
                                          o["metadata"]["name"])[1:]): o for o in items}
            listed_at[kind] = rev
        self._cache, self._cursors, self._synced = cache, dict(listed_at), True
        # Each kind is watched from its own list's revision (later lists already hold some of the
        # events that follow an earlier one).
        self._revision = min(listed_at.values()) if listed_at else self._store.revision()
        return self._diff(old, cache, listed_at)

    def _diff(self, old: dict[str, dict[CacheKey, dict]], new: dict[str, dict[CacheKey, dict]],
              listed_at: dict[str, int]) -> list[Event]:
        events: list[Event] = []
        for kind in self._kinds:
            before, after, rev = old.get(kind, {}), new.get(kind, {}), listed_at[kind]
            for key in sorted(before.keys() | after.keys()):
                was, now = before.get(key), after.get(key)
                if now is None:
                    assert was is not None
                    events.append(Event(rev, "DELETED", copy.deepcopy(was)))
                elif was is None:
                    events.append(Event(rev, "ADDED", copy.deepcopy(now)))
                elif was["metadata"].get("uid") != now["metadata"].get("uid"):
                    # Deleted and created again while we were not looking: report both.
                    events.append(Event(rev, "DELETED", copy.deepcopy(was)))
                    events.append(Event(rev, "ADDED", copy.deepcopy(now)))
                elif was != now:
                    events.append(Event(rev, "MODIFIED", copy.deepcopy(now)))
        events.sort(key=lambda e: e.revision)  # stable: keeps kind order within one revision
        return events

    def poll(self, timeout: float) -> list[Event]:
        """Wait up to `timeout` s for events of the informer's kinds after `revision`, apply them to the
        cache and return them. Before the first sync(), syncs and returns every object as ADDED."""
        if not self._synced:
            return self._relist()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                # Over a store with one history this watches every kind, so `revision` follows the
                # store's latest event even of a kind we ignore (a caller waiting for its own write to
                # show up relies on that, and a quiet kind never falls behind the compaction window).
                events, cursors = watch_kinds(self._store, dict(self._cursors),
                                              max(0.0, deadline - time.monotonic()))
            except Expired:
                return self._relist()
            out = [ev for ev in events if self._apply(ev)]
            self._cursors = {k: max(self._cursors[k], c) for k, c in cursors.items() if k in self._cursors}
            if self._cursors:
                self._revision = max(self._revision, max(self._cursors.values()))
            if out or time.monotonic() >= deadline:
                return out

    def _apply(self, ev: Event) -> bool:
        """Apply one store event to the cache; False if it is of another kind or already applied."""
        self._revision = max(self._revision, ev.revision)
        kind = ev.object.get("kind", "")
        if kind not in self._cache or ev.revision <= self._cursors[kind]:
            return False
        self._cursors[kind] = ev.revision
        meta = ev.object.get("metadata") or {}
        key = normalize_key(kind, meta.get("namespace", ""), meta["name"])[1:]
        if ev.type == "DELETED":
            self._cache[kind].pop(key, None)
        else:
            self._cache[kind][key] = copy.deepcopy(ev.object)
        return True

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """The cached object (a copy), or None."""
        _, ns, _ = normalize_key(kind, namespace, name)
        obj = self._cache.get(kind, {}).get((ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        """Cached objects of a kind (in one namespace, or all), sorted by (namespace, name); copies."""
        items = self._cache.get(kind, {})
        ns = None if namespace is None else normalize_key(kind, namespace, "")[1]
        return [copy.deepcopy(items[k]) for k in sorted(items) if ns is None or k[0] == ns]

    def view(self, kind: str) -> builtins.list[dict]:  # `list` here would be the method above
        """The cached objects of a kind, NOT copied (client-go listers' contract: read, never mutate).

        For a reader that rebuilds from the whole cache on every change (the NetworkPolicy model), where
        copying 1,000s of objects per sync would cost more than the rebuild itself."""
        items = self._cache.get(kind, {})
        return [items[k] for k in sorted(items)]
