"""Watch streams: one store watcher fanned out to every HTTP watch, with resume, bookmarks and 410 Gone.

A single thread follows the store (Store.watch from the last revision, all kinds) and hands each batch
of events to the watch handlers' queues on the event loop. A watch request subscribes first, then
catches up from its resourceVersion straight from the store (Expired -> an ERROR event carrying a 410
Status, as kube-apiserver's watch cache answers "too old resource version", so clients relist), and
then follows the queue, dropping what the catch-up already sent. resourceVersion "" or "0" (or
sendInitialEvents=true) starts with an ADDED event per existing object, as kube-apiserver does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from netk8s.apiserver import status as st
from netk8s.apiserver.media import TABLE_TYPE, wants_table
from netk8s.apiserver.tables import to_table
from netk8s.errors import BadRequest, Expired, NetK8sError
from netk8s.store.base import Event, Store, normalize_key

if TYPE_CHECKING:
    from netk8s.apiserver.app import ApiServer, Target

log = logging.getLogger("netk8s.apiserver.watch")

PUMP_TIMEOUT_S = 0.25  # how soon stop() is noticed; events themselves wake the store watch at once
BOOKMARK_EVERY_S = 10.0
# kube-apiserver picks a watch timeout between --min-request-timeout (1800 s) and twice that.
DEFAULT_TIMEOUT_S = (1800, 3600)
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# A watcher this many batches behind is closed (kube-apiserver's cacheWatcher drops a blocked watcher
# too); its client watches again from the last resourceVersion it saw.
MAX_PENDING_BATCHES = 10_000


class WatchHub:
    """Follows the store from one thread and broadcasts event batches to subscribed asyncio queues."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.revision = 0
        self._subs: set[asyncio.Queue[list[Event] | None]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.revision = self.store.revision()
        self._thread = threading.Thread(target=self._pump, args=(self.revision,), name="api-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=PUMP_TIMEOUT_S * 5)

    def subscribe(self) -> asyncio.Queue[list[Event] | None]:
        """A queue of event batches; None in it means the watcher fell too far behind and must end."""
        q: asyncio.Queue[list[Event] | None] = asyncio.Queue()
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[list[Event] | None]) -> None:
        self._subs.discard(q)

    def _pump(self, since: int) -> None:
        while not self._stop.is_set():
            try:
                events = self.store.watch(since, None, timeout=PUMP_TIMEOUT_S)
            except Expired:
                # fell behind the store's history: later watchers catch up from the store themselves
                since = self.store.revision()
                continue
            except NetK8sError as err:
                if self._stop.is_set():
                    return
                log.warning("watch pump: %s", err)
                self._stop.wait(PUMP_TIMEOUT_S)
                continue
            if not events or self._loop is None:
                continue
            since = events[-1].revision
            try:
                self._loop.call_soon_threadsafe(self._dispatch, events)
            except RuntimeError:
                return  # the loop is closed: the server is stopping

    def _dispatch(self, events: list[Event]) -> None:
        self.revision = max(self.revision, events[-1].revision)
        for q in list(self._subs):
            if q.qsize() >= MAX_PENDING_BATCHES:
                self._subs.discard(q)
                q.put_nowait(None)
                continue
            q.put_nowait(events)


class SelectedEvents:
    """Watch event types under a label/field selector, as kube-apiserver's cacheWatcher converts them:
    an object that starts matching comes as ADDED, one that stops matching as DELETED, others not at all.
    Without a selector (`selective` False) an event passes as it is when `keep` accepts the object."""

    def __init__(self, keep: Callable[[dict], bool], selective: bool) -> None:
        self.keep = keep
        self.selective = selective
        self.matching: set[str] = set()
        self.unknown: set[str] = set()
        self.known: set[str] | None = None  # uids listed at seed time; None: not seeded

    def seed(self, objects: list[dict], since: int) -> None:
        """What matched at revision `since`, from the objects as they are now. An object written after
        `since` (or gone since) has an unknown past: its first event counts it as having matched, so that
        leaving the selector is a DELETED (harmless if the client never had it) and is never lost."""
        if not self.selective:
            return
        self.known = set()
        for o in objects:
            uid = _uid(o)
            self.known.add(uid)
            if _revision(o) > since:
                self.unknown.add(uid)
            elif self.keep(o):
                self.matching.add(uid)

    def convert(self, etype: str, obj: dict) -> str | None:
        now = self.keep(obj)
        if not self.selective:
            return etype if now else None
        uid = _uid(obj)
        was = uid in self.matching
        if uid in self.unknown or (self.known is not None and uid not in self.known and etype != "ADDED"):
            was = True
            self.unknown.discard(uid)
            if self.known is not None:
                self.known.add(uid)
        if etype == "DELETED":
            self.matching.discard(uid)
            return "DELETED" if was or now else None
        if now:
            self.matching.add(uid)
            return "MODIFIED" if was and etype == "MODIFIED" else "ADDED"
        if was:
            self.matching.discard(uid)
            return "DELETED"
        return None


def _revision(obj: dict) -> int:
    rv = str((obj.get("metadata") or {}).get("resourceVersion") or "0")
    return int(rv) if rv.isdigit() else 0


def _uid(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace', '')}/{meta.get('name', '')}")


def event_object(ev: Event) -> dict:
    """The object a watch event carries; a DELETED object has the deletion's resourceVersion."""
    if ev.type != "DELETED":
        return ev.object
    obj = dict(ev.object)
    obj["metadata"] = {**obj.get("metadata", {}), "resourceVersion": str(ev.revision)}
    return obj


def too_old(rv: int, detail: str = "") -> dict:
    return st.status(410, "Expired", f"too old resource version: {rv}{' (' + detail + ')' if detail else ''}")


def _timeout(request: web.Request) -> float:
    raw = request.query.get("timeoutSeconds")
    if raw not in (None, ""):
        try:
            return max(0.0, float(raw))
        except ValueError:
            raise BadRequest(f"timeoutSeconds: invalid integer {raw!r}") from None
    return float(random.randint(*DEFAULT_TIMEOUT_S))


async def serve_watch(server: ApiServer, request: web.Request, target: Target,
                      keep: Callable[[dict], bool], selective: bool) -> web.StreamResponse:
    """Stream watch events for `target` (newline-delimited JSON WatchEvents, or Tables when asked)."""
    kind = target.info.kind
    ns = normalize_key(kind, target.namespace, "")[1] if target.namespace is not None else None
    rv_param = request.query.get("resourceVersion", "")
    send_initial = request.query.get("sendInitialEvents", "").lower() == "true"
    bookmarks = request.query.get("allowWatchBookmarks", "").lower() == "true"
    deadline = time.monotonic() + _timeout(request)
    table = wants_table(request.headers.get("Accept", ""))
    include = request.query.get("includeObject", "Metadata")
    if not rv_param.isdigit() and rv_param != "":
        raise BadRequest(f"resourceVersion: invalid value {rv_param!r}")

    selected = SelectedEvents(keep, selective)
    q = server.hub.subscribe()
    resp = web.StreamResponse(headers={"Content-Type": TABLE_TYPE if table else "application/json",
                                       "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    first_table = [True]

    def encode(etype: str, obj: dict) -> bytes:
        if table and etype in ("ADDED", "MODIFIED", "DELETED"):
            t = to_table(kind, [obj], time.time(), include, obj["metadata"].get("resourceVersion", ""))
            if not first_table[0]:
                t["columnDefinitions"] = []  # headers ride on the first event only (watch's NoHeaders)
            first_table[0] = False
            obj = t
        return json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"

    def bookmark(rev: int, initial_end: bool = False) -> bytes:
        meta: dict = {"resourceVersion": str(rev)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": kind, "apiVersion": target.info.api_version, "metadata": meta}
        return json.dumps({"type": "BOOKMARK", "object": obj}, separators=(",", ":")).encode() + b"\n"

    try:
        if selective and rv_param not in ("", "0") and not send_initial:
            # what matched at the client's revision is known before the client sees the watch start
            selected.seed((await server.read(lambda: server.store.list(kind, ns)))[0], int(rv_param))
        await resp.prepare(request)
        if rv_param in ("", "0") or send_initial:
            items, last = await server.read(lambda: server.store.list(kind, ns))
            for obj in items:
                if selected.convert("ADDED", obj):
                    await resp.write(encode("ADDED", obj))
            if send_initial and bookmarks:
                await resp.write(bookmark(last, initial_end=True))
        else:
            last = int(rv_param)
            while True:
                since = last
                try:
                    events = await server.read(functools.partial(server.store.watch, since, [kind], 0))
                except Expired as err:
                    await resp.write(json.dumps({"type": "ERROR", "object": too_old(since, err.message)}).encode()
                                     + b"\n")
                    return resp
                if not events:
                    break
                for ev in events:
                    last = max(last, ev.revision)
                    obj = event_object(ev)
                    if etype := selected.convert(ev.type, obj):
                        await resp.write(encode(etype, obj))
        next_bookmark = time.monotonic() + BOOKMARK_EVERY_S
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            wait = min(deadline, next_bookmark) - now
            try:
                got = await asyncio.wait_for(q.get(), timeout=max(0.01, wait))
            except asyncio.TimeoutError:
                got = []
            if got is None:
                log.info("watch %s: client too slow, closing its stream at revision %d", kind, last)
                break
            batch = got
            for ev in batch:
                if ev.revision <= last:
                    continue
                last = ev.revision
                if ev.object.get("kind") != kind:
                    continue
                obj = event_object(ev)
                if etype := selected.convert(ev.type, obj):
                    await resp.write(encode(etype, obj))
            if bookmarks and time.monotonic() >= next_bookmark:
                await resp.write(bookmark(max(last, server.hub.revision if q.empty() else last)))
                next_bookmark = time.monotonic() + BOOKMARK_EVERY_S
    except ConnectionResetError:
        log.debug("watch %s: client went away", kind)
    except NetK8sError as err:
        if not resp.prepared:
            raise  # the middleware answers with the Status
        # the stream has started (the store failed while catching up, e.g. etcd is down): end it with an
        # ERROR event carrying the Status, as kube-apiserver's watch does; the client watches again
        error = json.dumps({"type": "ERROR", "object": st.from_error(err, kind)}, separators=(",", ":"))
        try:
            await resp.write(error.encode() + b"\n")
        except ConnectionResetError:
            pass
    finally:
        server.hub.unsubscribe(q)
    return resp
