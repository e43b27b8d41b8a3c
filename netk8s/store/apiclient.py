"""The Store protocol over the Kubernetes REST API of a netk8s API server: what every component uses.

URLs (store/factory.py):
  `https://HOST:PORT?kubeconfig=PATH[&context=NAME]`  the server at HOST:PORT, trust and credentials
                                                     from the kubeconfig's context (default: current)
  `kubeconfig:///PATH[?context=NAME]`                 everything, the server included, from the kubeconfig

The transport is urllib3: a well-kept HTTP/1.1 client with connection pooling, TLS with client
certificates and streamed chunked responses; it is what the official `kubernetes` Python client is
built on, so the requests netk8s sends are the ones a client library sends. It is synchronous, as the
Store protocol is, so components keep their threads and need no event loop.

How the verbs map (kube-apiserver paths, registry semantics in netk8s/apiserver/registry.py):
- get/list: GET; list returns the list's metadata.resourceVersion as the revision.
- create: POST. update: PUT with the object's resourceVersion (stale -> 409 Conflict); the API server
  keeps the status on the main resource (as kube-apiserver does), so a changed status goes in a second
  PUT to the `status` subresource. put: update without resourceVersion, create when absent.
- delete: DELETE with gracePeriodSeconds=0 (the Store's "remove it now", as a kubelet does once a pod
  has stopped) and a resourceVersion precondition when given; dependents follow in the background.
- transaction: the API has no multi-object transaction; ops run one by one in order (the CLI
  validates a batch before it writes, and the server validates each object again).
- watch: one long-lived watch stream per kind (`?watch=true&resourceVersion=N&allowWatchBookmarks=true`),
  each on its own thread and connection, fed into a buffer. A stream that breaks reconnects with
  backoff from the last revision it saw; `410 Gone` (and a buffer that outgrew its bound) raise
  Expired to the caller, who relists. Streams of different kinds are not ordered with respect to each
  other, so a consumer of several kinds keeps one cursor per kind: watch_kinds() (the Informer uses it
  through store.base.watch_kinds); BOOKMARK events move a quiet kind's cursor forward.
Requests that cannot connect (the API server is restarting) are retried with backoff for up to
`retry_for` seconds before they fail with ApiUnavailable.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import random
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Collection, Iterator
from pathlib import Path

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError

from netk8s.apiserver.resources import has_status
from netk8s.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    NetK8sError,
    NotFound,
    Unauthorized,
    ValidationError,
)
from netk8s.model.kinds import KINDS, kind_info
from netk8s.store import kubeconfig
from netk8s.store.base import Event, Op, normalize_key, to_json

log = logging.getLogger("netk8s.store.apiclient")

USER_AGENT = "netk8s-client/1.0"
REQUEST_TIMEOUT = urllib3.Timeout(connect=5.0, read=60.0)
# A watch stream carries a bookmark every 10 s (apiserver/watch.py), so a minute of silence means a
# dead peer; the server ends a watch after timeoutSeconds, and the feed watches again.
WATCH_TIMEOUT = urllib3.Timeout(connect=5.0, read=60.0)
WATCH_SECONDS = 300
BACKOFF_MIN, BACKOFF_MAX = 0.1, 3.0
DEFAULT_RETRY_FOR = 90.0
FEED_BUFFER = 20_000  # events kept per kind; a consumer further behind gets Expired and relists
# Methods a broken connection may be retried on: the request may have been applied, and repeating it
# is harmless (a repeated PUT with a resourceVersion comes back as a Conflict the caller handles).
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})


class ApiUnavailable(NetK8sError):
    """The API server could not be reached (connection refused, reset, TLS failure) for too long."""


# ------------------------------------------------------------------------------------------ paths


def collection_path(kind: str, namespace: str | None) -> str:
    """`/api/v1/namespaces/NS/pods`, `/apis/apps/v1/deployments` (namespace None: every namespace)."""
    info = kind_info(kind)
    root = "/api/v1" if info.api_version == "v1" else f"/apis/{info.api_version}"
    if info.namespaced and namespace is not None:
        ns = normalize_key(kind, namespace, "")[1]
        return f"{root}/namespaces/{urllib.parse.quote(ns, safe='')}/{info.plural}"
    return f"{root}/{info.plural}"


def object_path(kind: str, namespace: str, name: str, subresource: str = "") -> str:
    _, ns, name = normalize_key(kind, namespace, name)
    path = f"{collection_path(kind, ns if kind_info(kind).namespaced else None)}/{urllib.parse.quote(name, safe='')}"
    return f"{path}/{subresource}" if subresource else path


def error_from_status(code: int, body: object) -> NetK8sError:
    """The netk8s error for a failed request's Status (the inverse of apiserver/status.py)."""
    status = body if isinstance(body, dict) else {}
    message = str(status.get("message") or (body if isinstance(body, str) and body else f"HTTP {code}"))
    reason = str(status.get("reason") or "")
    causes = list((status.get("details") or {}).get("causes") or [])
    if code == 404:
        return NotFound(message)
    if code == 409:
        return AlreadyExists(message) if reason == "AlreadyExists" else Conflict(message, causes=causes)
    if code == 410:
        return Expired(message, hint="list again and watch from the list's revision")
    if code == 401:
        return Unauthorized(message, hint="check the kubeconfig's client certificate or token")
    if code == 403:
        return Forbidden(message)
    if code == 422:
        first = causes[0] if causes else {}
        return ValidationError(message, field=str(first.get("field") or ""), causes=causes)
    if code == 400:
        return BadRequest(message)
    return NetK8sError(f"API server: {message}" if not message.startswith("API") else message)


def _retry_after(resp: urllib3.BaseHTTPResponse) -> float | None:
    """Seconds to wait before repeating a request answered 429 or 5xx with Retry-After (the server did
    not apply it), else None."""
    if resp.status != 429 and not 500 <= resp.status <= 504:
        return None
    raw = resp.headers.get("Retry-After", "")
    try:
        return min(max(float(raw), 0.1), 10.0) if raw else None
    except ValueError:
        return None


def _with_type_meta(obj: dict, kind: str) -> dict:
    info = kind_info(kind)
    obj.setdefault("kind", info.kind)
    obj.setdefault("apiVersion", info.api_version)
    return obj


def _rv(obj: dict) -> int:
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "0")
    return int(text) if text.isdigit() else 0


def parse_url(url: str) -> tuple[str, Path, str]:
    """(server or "" for the kubeconfig's, kubeconfig path, context) of an API store URL."""
    parsed = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    unknown = sorted(set(query) - {"kubeconfig", "context"})
    if unknown:
        raise NetK8sError(f"store URL {url!r}: unknown option {unknown[0]!r}", hint="options: kubeconfig, context")
    if parsed.scheme == "kubeconfig":
        path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        if not path:
            raise NetK8sError(f"store URL {url!r}: no kubeconfig path", hint="use kubeconfig:///path/kubeconfig")
        return "", Path(path), query.get("context", "")
    if parsed.scheme != "https":
        raise NetK8sError(f"store URL {url!r}: want https://HOST:PORT?kubeconfig=PATH or kubeconfig:///PATH")
    if not parsed.hostname or not parsed.port:
        raise NetK8sError(f"store URL {url!r}: want https://HOST:PORT (the port is required)")
    if not query.get("kubeconfig"):
        raise NetK8sError(f"store URL {url!r}: kubeconfig=PATH is required (the CA and the credentials)")
    return f"https://{parsed.netloc}", Path(query["kubeconfig"]), query.get("context", "")


def ssl_context(cfg: kubeconfig.ClientConfig) -> ssl.SSLContext:
    """TLS that trusts the kubeconfig's CA and presents its client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if cfg.ca_data:
            ctx.load_verify_locations(cadata=cfg.ca_data.decode())
        if cfg.cert_data:
            # ssl loads a certificate chain from files only: a private directory, removed at once
            with tempfile.TemporaryDirectory(prefix="netk8s-tls-") as tmp:
                cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
                for path, data in ((cert, cfg.cert_data), (key, cfg.key_data)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    try:
                        os.write(fd, data)
                    finally:
                        os.close(fd)
                ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise NetK8sError(f"kubeconfig {cfg.context or ''}: bad certificate data ({exc})") from None
    return ctx


# ------------------------------------------------------------------------------------------ watch feeds


class _Feed:
    """One kind's watch stream on its own thread: events and bookmarks into a buffer under `cond`."""

    def __init__(self, client: ApiClientStore, kind: str, start: int) -> None:
        self.client = client
        self.kind = kind
        self.start = start  # events after this revision are (or will be) in the buffer
        self.progress = start  # every event of this kind up to here is in the buffer
        self.trimmed = start  # events up to here were dropped from the buffer
        self.events: list[Event] = []
        self.expired = ""  # the 410 message once the server said the start is too old
        self.stopped = threading.Event()
        self._resp: urllib3.BaseHTTPResponse | None = None
        self.thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop the feed; an open stream is shut down at once (its thread exits and closes the pool)."""
        self.stopped.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except (OSError, AttributeError):
                pass

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        pool = self.client._new_pool(maxsize=1)
        try:
            while not self.stopped.is_set() and not self.expired:
                try:
                    if self._stream(pool):
                        backoff = BACKOFF_MIN
                        continue
                except (HTTPError, OSError, ValueError) as exc:
                    log.info("watch %s: %s; reconnecting in %.1fs", self.kind, exc, backoff)
                self.stopped.wait(backoff * (0.5 + random.random()))
                backoff = min(BACKOFF_MAX, backoff * 2)
        finally:
            pool.clear()
            with self.client._cond:
                self.client._cond.notify_all()

    def _stream(self, pool: urllib3.PoolManager) -> bool:
        """One watch request from `progress`; True when it ended normally (watch again at once)."""
        query = urllib.parse.urlencode({"watch": "true", "resourceVersion": str(self.progress),
                                        "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)})
        url = f"{self.client.server}{collection_path(self.kind, None)}?{query}"
        resp = pool.request("GET", url, headers=self.client._headers(), preload_content=False,
                            timeout=WATCH_TIMEOUT, retries=False)
        self._resp = resp
        try:
            if resp.status != 200:
                body = resp.read()
                err = error_from_status(resp.status, _decode(body))
                if isinstance(err, Expired):
                    self._expire(err.message)
                    return True
                if isinstance(err, (Unauthorized, Forbidden)):
                    log.warning("watch %s: %s", self.kind, err.message)
                raise ProtocolError(f"watch answered {resp.status}: {err.message}")
            for line in _lines(resp, self.stopped):
                self._handle(json.loads(line))
                if self.expired or self.stopped.is_set():
                    break
            return True
        finally:
            self._resp = None
            resp.release_conn()
            resp.close()

    def _handle(self, ev: dict) -> None:
        etype = ev.get("type")
        obj = ev.get("object") or {}
        if etype == "ERROR":
            if int(obj.get("code") or 0) == 410:
                self._expire(str(obj.get("message") or "too old resource version"))
                return
            raise ProtocolError(f"watch error: {obj.get('message')}")
        rev = _rv(obj)
        cond = self.client._cond
        with cond:
            if etype == "BOOKMARK":
                self.progress = max(self.progress, rev)
            elif etype in ("ADDED", "MODIFIED", "DELETED") and rev > self.progress:
                self.events.append(Event(rev, etype, _with_type_meta(obj, self.kind)))  # type: ignore[arg-type]
                self.progress = rev
                if len(self.events) > FEED_BUFFER:
                    drop = len(self.events) - FEED_BUFFER
                    self.trimmed = self.events[drop - 1].revision
                    del self.events[:drop]
            else:
                return
            cond.notify_all()

    def _expire(self, message: str) -> None:
        with self.client._cond:
            self.expired = message or "too old resource version"
            self.client._cond.notify_all()

    def after(self, since: int) -> list[Event]:
        """Buffered events after `since` (call under the client's cond); Expired if some are lost."""
        if self.expired or since < self.trimmed:
            raise Expired(f"watch {self.kind} from revision {since}: {self.expired or 'events were dropped'}",
                          hint="list again and watch from the list's revision")
        if not self.events or self.events[-1].revision <= since:
            return []
        lo, hi = 0, len(self.events)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.events[mid].revision <= since:
                lo = mid + 1
            else:
                hi = mid
        return self.events[lo:]


def _decode(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode(errors="replace")


def _lines(resp: urllib3.BaseHTTPResponse, stopped: threading.Event) -> Iterator[bytes]:
    """Newline-delimited JSON lines of a streamed (chunked) response, as they arrive."""
    buf = b""
    chunks = resp.read_chunked() if resp.chunked else resp.stream(65536)
    for chunk in chunks:
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line
        if stopped.is_set():
            return
    if buf.strip():
        yield buf


# ------------------------------------------------------------------------------------------ the store


class ApiClientStore:
    """A Store whose every call is a request to the API server at `server`."""

    def __init__(self, cfg: kubeconfig.ClientConfig, server: str = "", retry_for: float = DEFAULT_RETRY_FOR,
                 user_agent: str = USER_AGENT) -> None:
        self.cfg = cfg
        self.server = (server or cfg.server).rstrip("/")
        self.retry_for = retry_for
        self.user_agent = user_agent
        self._ssl = ssl_context(cfg)
        self._http = self._new_pool(maxsize=8)
        self._cond = threading.Condition()
        self._feeds: dict[str, _Feed] = {}
        self._closed = False

    @classmethod
    def from_url(cls, url: str, retry_for: float = DEFAULT_RETRY_FOR) -> ApiClientStore:
        server, path, context = parse_url(url)
        return cls(kubeconfig.read(path, context), server, retry_for=retry_for)

    def _new_pool(self, maxsize: int) -> urllib3.PoolManager:
        return urllib3.PoolManager(num_pools=2, maxsize=maxsize, block=False, ssl_context=self._ssl)

    def _headers(self, content_type: str = "") -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.cfg.token:
            headers["Authorization"] = f"Bearer {self.cfg.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    # -- requests ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: object = None, params: dict[str, str] | None = None) -> dict:
        """One API request; the decoded JSON answer, or the netk8s error of its Status."""
        url = self.server + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = to_json(body).encode() if body is not None else None
        headers = self._headers("application/json" if data is not None else "")
        deadline = time.monotonic() + self.retry_for
        backoff = BACKOFF_MIN
        while True:
            if self._closed:
                raise NetK8sError("store: API client is closed")
            try:
                resp = self._http.request(method, url, body=data, headers=headers, timeout=REQUEST_TIMEOUT,
                                          retries=False)
                wait = _retry_after(resp)
                if wait is None or time.monotonic() + wait > deadline:
                    break
                # the server could not serve it now (its store is down: 500 ServerTimeout) and says when
                # to ask again; client-go's request.go does the same (checkWait, Retry-After)
                log.debug("%s %s: HTTP %d, Retry-After %.0fs", method, path, resp.status, wait)
                time.sleep(wait * (0.5 + random.random() / 2))
                continue
            except (NewConnectionError, urllib3.exceptions.ConnectTimeoutError, ProtocolError,
                    urllib3.exceptions.SSLError, urllib3.exceptions.ReadTimeoutError) as exc:
                # a request that never connected can always be sent again; one that broke may have
                # been applied, so only idempotent methods are repeated
                sent = not isinstance(exc, (NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
                if (sent and method not in IDEMPOTENT) or time.monotonic() + backoff > deadline:
                    raise ApiUnavailable(f"API server {self.server}: {method} {path}: {exc}",
                                         hint="is the lab's API server running? (netk8s lab status)") from None
                log.debug("%s %s: %s; retrying in %.1fs", method, path, exc, backoff)
                time.sleep(backoff * (0.5 + random.random()))
                backoff = min(BACKOFF_MAX, backoff * 2)
        payload = _decode(resp.data)
        if resp.status >= 400:
            raise error_from_status(resp.status, payload)
        if not isinstance(payload, dict):
            raise NetK8sError(f"API server {self.server}: {method} {path}: answer is not a JSON object")
        return payload

    # -- Store protocol ------------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict:
        return _with_type_meta(self.request("GET", object_path(kind, namespace, name)), kind)

    def try_get(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self.get(kind, namespace, name)
        except NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None) -> tuple[builtins.list[dict], int]:
        out = self.request("GET", collection_path(kind, namespace))
        items = [_with_type_meta(o, kind) for o in out.get("items") or []]
        items.sort(key=lambda o: ((o.get("metadata") or {}).get("namespace", ""), o["metadata"]["name"]))
        return items, int((out.get("metadata") or {}).get("resourceVersion") or 0)

    def create(self, obj: dict) -> dict:
        kind, ns = self._kind_ns(obj)
        return _with_type_meta(self.request("POST", collection_path(kind, ns), obj), kind)

    def update(self, obj: dict) -> dict:
        kind, ns = self._kind_ns(obj)
        name = self._name(obj)
        stored = _with_type_meta(self.request("PUT", object_path(kind, ns, name), obj), kind)
        if has_status(kind) and obj.get("status") != stored.get("status"):
            body = dict(stored)
            body["status"] = obj.get("status")
            stored = _with_type_meta(self.request("PUT", object_path(kind, ns, name, "status"), body), kind)
        return stored

    def put(self, obj: dict) -> dict:
        if not (obj.get("metadata") or {}).get("name"):
            return self.create(obj)
        bare = dict(obj)
        bare["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
        for _ in range(10):
            try:
                return self.update(bare)
            except NotFound:
                pass
            try:
                return self.create(bare)
            except AlreadyExists:
                continue
        raise Conflict(f"{kind_info(self._kind_ns(obj)[0]).plural}/{self._name(obj)}: put kept racing")

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> dict:
        options: dict = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                         "propagationPolicy": "Background"}
        if resource_version not in (None, ""):
            options["preconditions"] = {"resourceVersion": str(resource_version)}
        out = self.request("DELETE", object_path(kind, namespace, name), options)
        if out.get("kind") == "Status":
            # the object is gone and the server answered with its identity only
            _, ns, name = normalize_key(kind, namespace, name)
            meta: dict = {"name": name, "uid": (out.get("details") or {}).get("uid", "")}
            if ns:
                meta["namespace"] = ns
            return _with_type_meta({"metadata": meta}, kind)
        return _with_type_meta(out, kind)

    def transaction(self, ops: builtins.list[Op]) -> builtins.list[dict]:
        out = []
        for op in ops:
            if op.type == "create":
                out.append(self.create(op.obj))
            elif op.type == "update":
                out.append(self.update(op.obj))
            elif op.type == "put":
                out.append(self.put(op.obj))
            elif op.type == "delete":
                meta = op.obj.get("metadata") or {}
                out.append(self.delete(op.obj["kind"], meta.get("namespace", ""), meta.get("name", ""),
                                       meta.get("resourceVersion")))
            else:
                raise ValidationError(f"store: unknown operation {op.type!r}")
        return out

    def revision(self) -> int:
        out = self.request("GET", "/api/v1/namespaces", params={"limit": "1"})
        return int((out.get("metadata") or {}).get("resourceVersion") or 0)

    def watch(self, since: int, kinds: Collection[str] | None = None,
              timeout: float = 1.0) -> builtins.list[Event]:
        """Events after `since` of `kinds` (every kind when None), merged by revision. Streams of
        different kinds are not ordered with respect to each other: consumers of several kinds that
        move one cursor should use watch_kinds()."""
        wanted = list(kinds) if kinds is not None else list(KINDS)
        events, _ = self.watch_kinds({k: since for k in wanted}, timeout)
        return events

    def watch_kinds(self, cursors: dict[str, int], timeout: float) -> tuple[builtins.list[Event], dict[str, int]]:
        """Events of each kind after its own cursor, waiting up to `timeout` s for the first; and the
        cursors to pass next time (moved by events and bookmarks). Expired when a kind's history from
        its cursor is gone (410 Gone): relist that kind."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            feeds = {kind: self._feed(kind, since) for kind, since in cursors.items()}
            while True:
                out: list[Event] = []
                for kind, feed in feeds.items():
                    if feed.expired:
                        self._feeds.pop(kind, None)
                    out.extend(feed.after(cursors[kind]))
                if out:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            new = {kind: max(cursors[kind], feed.progress) for kind, feed in feeds.items()}
        out.sort(key=lambda e: e.revision)
        return out, new

    def _feed(self, kind: str, since: int) -> _Feed:
        """The running feed of `kind` that holds every event after `since` (under _cond)."""
        kind_info(kind)
        feed = self._feeds.get(kind)
        if feed is not None and feed.start <= since and not feed.expired and not feed.stopped.is_set():
            return feed
        if feed is not None:
            feed.stop()  # its thread ends on its own (the stream is shut down)
        feed = self._feeds[kind] = _Feed(self, kind, since)
        return feed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            feeds = list(self._feeds.values())
            self._feeds.clear()
            self._cond.notify_all()
        for feed in feeds:
            feed.stop()
        for feed in feeds:
            feed.thread.join(timeout=2.0)
        self._http.clear()

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _kind_ns(obj: dict) -> tuple[str, str]:
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if not isinstance(kind, str) or not kind:
            raise ValidationError("object: kind: required")
        kind_info(kind)
        meta = obj.get("metadata") or {}
        return kind, normalize_key(kind, meta.get("namespace") or "", "x")[1]

    @staticmethod
    def _name(obj: dict) -> str:
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            raise ValidationError(f"{obj.get('kind', '?').lower()}/?: metadata.name: required")
        return str(name)
