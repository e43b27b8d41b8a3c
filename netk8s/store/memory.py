"""In-memory store with the SQLite store's semantics: a thread-safe fake for controller unit tests.

Objects and events are kept as JSON text (like the SQLite store), so callers never share dicts with the
store and a non-JSON value fails the same way. watch() waits on a Condition and wakes at once.
"""

from __future__ import annotations

import bisect
import builtins
import threading
import time
from collections.abc import Collection

from netk8s.errors import NetK8sError
from netk8s.store.base import (
    Event,
    EventType,
    Key,
    Op,
    WriteVerbs,
    apply_op,
    check_since,
    from_json,
    normalize_key,
    to_json,
    utc_timestamp,
)


class _MemoryTxn:
    """TxnView that stages writes; MemoryStore commits them only when every op succeeded."""

    def __init__(self, objects: dict[Key, str], rev: int) -> None:
        self.objects = objects
        self.rev = rev
        self.staged: dict[Key, str | None] = {}
        self.events: list[tuple[int, EventType, str, str]] = []  # (rev, type, kind, data)

    def read(self, key: Key) -> dict | None:
        data = self.staged[key] if key in self.staged else self.objects.get(key)
        return from_json(data) if data is not None else None

    def bump(self) -> int:
        self.rev += 1
        return self.rev

    def write(self, rev: int, etype: EventType, key: Key, obj: dict) -> None:
        data = to_json(obj)
        self.staged[key] = None if etype == "DELETED" else data
        self.events.append((rev, etype, key[0], data))


class MemoryStore(WriteVerbs):
    """The Store protocol in memory. Thread-safe; history is compacted like the SQLite store's."""

    def __init__(self, keep_events: int = 50_000, compact_every: int = 1000) -> None:
        self.keep_events = keep_events
        self.compact_every = max(1, compact_every)
        self._cond = threading.Condition()
        self._objects: dict[Key, str] = {}
        self._events: list[tuple[int, EventType, str, str]] = []  # sorted by revision
        self._rev = 0
        self._compacted = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise NetK8sError("store: memory store is closed")

    def _write(self, ops: list[Op]) -> list[dict]:
        now = utc_timestamp(time.time())
        with self._cond:
            self._check_open()
            view = _MemoryTxn(self._objects, self._rev)
            out = [apply_op(view, op, now) for op in ops]  # an exception leaves the store untouched
            if view.rev == self._rev:
                return out
            for key, data in view.staged.items():
                if data is None:
                    self._objects.pop(key, None)
                else:
                    self._objects[key] = data
            self._events.extend(view.events)
            start, self._rev = self._rev, view.rev
            if self._rev // self.compact_every != start // self.compact_every:
                self._compact()
            self._cond.notify_all()
            return out

    def _compact(self) -> None:
        upto = self._rev - self.keep_events
        if upto > self._compacted:
            cut = bisect.bisect_right(self._events, upto, key=lambda e: e[0])
            del self._events[:cut]
            self._compacted = upto

    # -- Store protocol ------------------------------------------------------------------------------

    def try_get(self, kind: str, namespace: str, name: str) -> dict | None:
        key = normalize_key(kind, namespace, name)
        with self._cond:
            self._check_open()
            data = self._objects.get(key)
        return from_json(data) if data is not None else None

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[dict], int]:
        ns = None if namespace is None else normalize_key(kind, namespace, "")[1]
        with self._cond:
            self._check_open()
            rows = sorted((k, v) for k, v in self._objects.items()
                          if k[0] == kind and (ns is None or k[1] == ns))
            rev = self._rev
        return [from_json(v) for _, v in rows], rev

    def revision(self) -> int:
        with self._cond:
            return self._rev

    def watch(self, since: int, kinds: Collection[str] | None = None,
              timeout: float = 1.0) -> builtins.list[Event]:
        wanted = set(kinds) if kinds is not None else None
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                self._check_open()
                check_since(since, self._compacted)
                start = bisect.bisect_right(self._events, since, key=lambda e: e[0])
                found = [Event(rev, etype, from_json(data)) for rev, etype, kind, data in self._events[start:]
                         if wanted is None or kind in wanted]
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
