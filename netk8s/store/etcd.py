"""etcd store: objects under one key prefix of an etcd v3 server, resourceVersion = etcd's revision.

The client is etcd3gw (OpenStack's client for etcd's grpc-gateway JSON API, /v3/ on etcd 3.4): it is
maintained, works with Debian's etcd 3.4 and needs no protobuf/grpc stubs (the `etcd3` package breaks
on current protobuf). Its KV and transaction calls are used as they are; watches are read from the
gateway's stream here, because etcd3gw's Watcher drops the `compact_revision` answer that tells a
watcher its start revision was compacted away (netk8s needs it as Expired, i.e. 410 Gone).

Layout and semantics follow kube-apiserver's etcd3 storage (k8s.io/apiserver/pkg/storage/etcd3):
- one key per object, `PREFIX/KIND/NAMESPACE/NAME`; the value is the object's JSON *without* a
  trustworthy resourceVersion: on every read it is set from the key's `mod_revision`, so the
  resourceVersion of an object is exactly the etcd revision of its last write;
- a write is one etcd transaction comparing every key it read (`mod_revision` equal, or absent), so
  concurrent writers are optimistic, like the API server's GuaranteedUpdate; a failed compare retries;
- all writes of one netk8s transaction are one etcd transaction and so share one revision (etcd gives
  one revision per txn, docs "Transaction"); a key written twice in it is written once (its last value).
- watch(since) opens a watch from since+1 with prev_kv (DELETED events carry the last stored object);
  a compacted start raises Expired. Compaction keeps `keep_events` revisions, run every
  `compact_every` revisions by whichever writer crosses the boundary (as the SQLite store does).
"""

from __future__ import annotations

import base64
import builtins
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import requests
import urllib3
from etcd3gw import exceptions as etcd_exc
from etcd3gw.client import Etcd3Client
from requests.adapters import HTTPAdapter

from netk8s.errors import Conflict, Expired, NetK8sError, StoreUnavailable
from netk8s.store.base import (
    Event,
    EventType,
    Key,
    Op,
    WriteVerbs,
    apply_op,
    from_json,
    normalize_key,
    to_json,
    utc_timestamp,
)

DEFAULT_PREFIX = "/netk8s/registry"
WRITE_RETRIES = 50
REQUEST_TIMEOUT_S = 30.0
FOLLOW_POLL_S = 0.2  # how soon a held watch stream's reader notices it should stop
FOLLOW_MAX_QUEUED = 10_000  # batches a held stream keeps for a caller that stopped asking; then it ends
SocketFactory = Callable[[], socket.socket]


def _b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _range_end(prefix: str) -> str:
    """The end of a prefix range: the prefix with its last byte incremented (etcd's WithPrefix)."""
    data = bytearray(prefix.encode())
    data[-1] += 1
    return _b64(bytes(data))


def _reason(exc: Exception | str) -> str:
    """The innermost cause of a requests/urllib3 connection error (`[Errno 111] Connection refused`),
    not urllib3's pool and retry wrapping."""
    text = str(exc)
    for marker in ("connect failed: ", "Caused by "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    while text and text[-1] in "\"') ":  # the closing quotes and parentheses of the wrapping
        text = text[:-1]
    return text or type(exc).__name__


def _socket_adapter(factory: SocketFactory) -> HTTPAdapter:
    """A requests adapter whose connections are sockets made by `factory` (e.g. inside a network
    namespace), then connected as usual."""

    class _Conn(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = factory()
            # urllib3 sets TCP_NODELAY on the sockets it makes (HTTPConnection.default_socket_options);
            # without it Nagle holds a request's body until the server's delayed ACK, ~40 ms a request
            for opt in self.socket_options or ():
                sock.setsockopt(*opt)
            timeout = self.timeout
            if isinstance(timeout, (int, float)):
                sock.settimeout(timeout)
            try:
                sock.connect((self._dns_host, self.port))
            except OSError as e:
                sock.close()
                raise urllib3.exceptions.NewConnectionError(self, f"connect failed: {e}") from e
            return sock

    class _Pool(urllib3.HTTPConnectionPool):
        ConnectionCls = _Conn

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": _Pool}
            self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)

    return _Adapter()


class _EtcdTxn:
    """TxnView over etcd: reads go to etcd at first touch (remembering mod_revision for the compare),
    writes are staged and committed as one etcd transaction."""

    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self.read_revs: dict[Key, int] = {}  # key -> mod_revision seen (0: absent)
        self.staged: dict[Key, dict | None] = {}
        self.current: dict[Key, dict | None] = {}
        self.placeholder = 0
        self.wrote = False

    def read(self, key: Key) -> dict | None:
        if key in self.staged:
            obj = self.staged[key]
            return json.loads(json.dumps(obj)) if obj is not None else None
        if key not in self.current:
            obj, mod = self.store._read(key)
            self.current[key], self.read_revs[key] = obj, mod
        obj = self.current[key]
        return json.loads(json.dumps(obj)) if obj is not None else None

    def bump(self) -> int:
        # The real revision is known only when etcd commits; objects get it afterwards (_write).
        self.placeholder += 1
        return self.placeholder

    def write(self, rev: int, etype: EventType, key: Key, obj: dict) -> None:
        if key not in self.current and key not in self.staged:
            self.read(key)
        self.staged[key] = None if etype == "DELETED" else json.loads(json.dumps(obj))
        self.wrote = True


class _StreamEnded(Exception):
    """The held watch stream was asked to stop (private to _Follower)."""


class _Follower:
    """One etcd watch stream held open across watch() calls: a thread reads it into a queue, so a caller
    that watches on from where its last call ended (the API server's watch pump) continues on the same
    stream instead of opening one per batch of events.

    The stream is plain HTTP/1.1 on a socket of our own (from the store's socket factory), decoded here
    (chunked transfer, one JSON message a line, as etcd's grpc-gateway writes them): a read that times out
    loses nothing, so the reader can look at its stop flag every FOLLOW_POLL_S."""

    def __init__(self, store: EtcdStore, since: int) -> None:
        self.store = store
        self.since = since  # the caller has had every event up to here
        self.items: queue.Queue[builtins.list[Event] | NetK8sError] = queue.Queue()
        self.stop = threading.Event()
        self.dead = False
        self.thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)
        self.thread.start()

    def usable_from(self, since: int) -> bool:
        return since == self.since and not (self.dead and self.items.empty()) and not self.stop.is_set()

    def take(self, timeout: float) -> builtins.list[Event]:
        try:
            item = self.items.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return []
        if isinstance(item, NetK8sError):
            self.stop.set()
            raise item
        self.since = item[-1].revision
        return item

    def close(self) -> None:
        self.stop.set()

    def _run(self) -> None:
        try:
            for msg in self._messages():
                events = self.store._parse_watch_message(msg, self.since)
                if events:
                    self.items.put(events)
                if self.items.qsize() > FOLLOW_MAX_QUEUED:
                    return  # nobody reads: end here; a later caller opens a stream from where it is
            if not self.stop.is_set():
                self.items.put(StoreUnavailable(f"store: {self.store.where}: the watch stream ended",
                                                hint="check that etcd is running (netk8s lab status)"))
        except _StreamEnded:
            pass
        except NetK8sError as e:
            self.items.put(e)
        except (OSError, ValueError) as e:
            self.items.put(StoreUnavailable(f"store: {self.store.where}: watch failed: {e}",
                                            hint="check that etcd is running (netk8s lab status)"))
        finally:
            self.dead = True

    def _messages(self) -> Iterator[dict]:
        store = self.store
        body = json.dumps(store._watch_payload(self.since)).encode()
        try:
            sock = store.socket_factory() if store.socket_factory else socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            raise StoreUnavailable(f"store: {store.where}: watch failed: {e}") from None
        try:
            sock.settimeout(REQUEST_TIMEOUT_S)
            try:
                sock.connect((store.host, store.port))
            except OSError as e:
                raise StoreUnavailable(f"store: {store.where}: watch failed: {e}",
                                       hint="check that etcd is running (netk8s lab status)") from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (store.host.encode(), store.port, len(body), body))
            sock.settimeout(FOLLOW_POLL_S)
            buf = bytearray()

            def until(sep: bytes) -> bytes:
                while (at := buf.find(sep)) < 0:
                    fill()
                out = bytes(buf[:at])
                del buf[:at + len(sep)]
                return out

            def exactly(n: int) -> bytes:
                while len(buf) < n:
                    fill()
                out = bytes(buf[:n])
                del buf[:n]
                return out

            def fill() -> None:
                while True:
                    if self.stop.is_set():
                        raise _StreamEnded
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        raise StoreUnavailable(f"store: {store.where}: the watch stream was closed",
                                               hint="check that etcd is running (netk8s lab status)")
                    buf.extend(data)
                    return

            head = until(b"\r\n\r\n").decode("latin-1")
            status = head.split("\r\n", 1)[0]
            if " 200 " not in status + " ":
                raise NetK8sError(f"store: {store.where}: watch failed: {status}")
            if "transfer-encoding: chunked" not in head.lower():
                raise NetK8sError(f"store: {store.where}: watch failed: the answer is not a chunked stream")
            pending = b""
            while True:
                size = int(until(b"\r\n").split(b";", 1)[0], 16)
                if size == 0:
                    return
                pending += exactly(size + 2)[:-2]
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            sock.close()


class EtcdStore(WriteVerbs):
    """The Store protocol on an etcd v3 server (3.4+), through its grpc-gateway JSON API."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2379, prefix: str = DEFAULT_PREFIX,
                 keep_events: int = 50_000, compact_every: int = 1000,
                 socket_factory: SocketFactory | None = None) -> None:
        self.prefix = prefix.rstrip("/")
        self.keep_events = keep_events
        self.compact_every = max(1, compact_every)
        self.where = f"etcd://{host}:{port}"
        self.host, self.port = host, port
        self.socket_factory = socket_factory
        self._follower: _Follower | None = None
        self._follow_lock = threading.Lock()
        session = requests.Session()
        # etcd is reached directly: no proxy or netrc from the environment (requests reads them on every
        # request, which costs milliseconds, and an http_proxy would send the store's traffic elsewhere)
        session.trust_env = False
        if socket_factory is not None:
            session.mount("http://", _socket_adapter(socket_factory))
        self._client = Etcd3Client(host=host, port=port, timeout=REQUEST_TIMEOUT_S, api_path="/v3/",
                                   session=session)
        self._closed = False

    # -- low level -----------------------------------------------------------------------------------

    def _post(self, path: str, payload: dict) -> dict:
        if self._closed:
            raise NetK8sError(f"store: {self.where} is closed")
        try:
            result: dict = self._client.post(self._client.get_url(path), json=payload)
            return result
        except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError) as e:
            raise StoreUnavailable(f"store: {self.where}: {path} failed: {_reason(getattr(e, 'detail_text', '') or str(e))}",
                                   hint="check that etcd is running (netk8s lab status)") from None
        except etcd_exc.Etcd3Exception as e:
            detail = getattr(e, "detail_text", "") or str(e)
            if "compacted" in detail:
                raise Expired(f"store: revision compacted ({detail.strip()})",
                              hint="list again and watch from the list's revision") from None
            raise NetK8sError(f"store: {self.where}: {path} failed: {detail.strip()}",
                              hint="check that etcd is running (netk8s lab status)") from None
        except requests.RequestException as e:
            raise NetK8sError(f"store: {self.where}: {path} failed: {e}",
                              hint="check that etcd is running (netk8s lab status)") from None

    def _key(self, key: Key) -> str:
        kind, ns, name = key
        return f"{self.prefix}/{kind}/{ns}/{name}"

    def _decode(self, kv: dict) -> dict:
        obj = from_json(_unb64(kv["value"]).decode())
        obj.setdefault("metadata", {})["resourceVersion"] = str(int(kv["mod_revision"]))
        return obj

    def _read(self, key: Key) -> tuple[dict | None, int]:
        res = self._post("/kv/range", {"key": _b64(self._key(key))})
        kvs = res.get("kvs") or []
        if not kvs:
            return None, 0
        return self._decode(kvs[0]), int(kvs[0]["mod_revision"])

    # -- writes --------------------------------------------------------------------------------------

    def _write(self, ops: list[Op]) -> list[dict]:
        for _ in range(WRITE_RETRIES):
            view = _EtcdTxn(self)
            out = [apply_op(view, op, utc_timestamp(time.time())) for op in ops]
            if not view.wrote:
                return out
            compare, success = [], []
            for key, mod in view.read_revs.items():
                target = "MOD" if mod else "CREATE"
                compare.append({"key": _b64(self._key(key)), "result": "EQUAL", "target": target,
                                ("mod_revision" if mod else "create_revision"): str(mod)})
            for key, obj in view.staged.items():
                k = _b64(self._key(key))
                if obj is None:
                    success.append({"request_delete_range": {"key": k}})
                else:
                    success.append({"request_put": {"key": k, "value": _b64(to_json(obj))}})
            res = self._post("/kv/txn", {"compare": compare, "success": success, "failure": []})
            if not res.get("succeeded"):
                continue  # another writer changed a key we read: read again and redo (GuaranteedUpdate)
            rev = int(res["header"]["revision"])
            for op, obj in zip(ops, out):
                key = normalize_key(obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                if op.type != "delete" and view.staged.get(key) is not None:
                    obj["metadata"]["resourceVersion"] = str(rev)  # written by this txn: its revision
            self._maybe_compact(rev, rev - 1)
            return out
        raise Conflict(f"store: {self.where}: too many concurrent writers", hint="try again")

    def _maybe_compact(self, rev: int, before: int) -> None:
        if rev // self.compact_every == before // self.compact_every:
            return
        # Events after `upto` stay: etcd refuses watches that start below the compacted revision, and a
        # watch from `since` starts at since+1, so compacting at upto+1 refuses exactly since < upto.
        upto = rev - self.keep_events
        if upto > 0:
            self.compact(upto + 1)

    def compact(self, revision: int) -> None:
        """Drop the history before `revision` (etcd's compaction): a watch from an older revision is
        then Expired (410 Gone for the API server's clients). Compacting below an earlier compaction
        is a no-op."""
        try:
            self._post("/kv/compaction", {"revision": str(revision), "physical": False})
        except Expired:
            pass  # someone compacted further already

    # -- Store protocol ------------------------------------------------------------------------------

    def try_get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self._read(normalize_key(kind, namespace, name))[0]

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[dict], int]:
        prefix = f"{self.prefix}/{kind}/"
        if namespace is not None:
            prefix += normalize_key(kind, namespace, "")[1] + "/"
        res = self._post("/kv/range", {"key": _b64(prefix), "range_end": _range_end(prefix)})
        items = [self._decode(kv) for kv in res.get("kvs") or []]
        items.sort(key=lambda o: ((o["metadata"].get("namespace") or ""), o["metadata"]["name"]))
        return items, int(res["header"]["revision"])

    def revision(self) -> int:
        res = self._post("/kv/range", {"key": _b64(self.prefix + "/"), "range_end": _range_end(self.prefix + "/"),
                                       "count_only": True})
        return int(res["header"]["revision"])

    def watch(self, since: int, kinds: Collection[str] | None = None,
              timeout: float = 1.0) -> builtins.list[Event]:
        wanted = set(kinds) if kinds is not None else None
        if wanted is not None and not wanted:
            return []
        deadline = time.monotonic() + max(0.0, timeout)
        if timeout <= 0 and self.revision() <= since:
            # nothing after `since` (and nothing compacted): no need to wait for a watch stream's answer
            return []
        while True:
            events = self._watch_once(since, max(0.0, deadline - time.monotonic()))
            found = [ev for ev in events if wanted is None or ev.object.get("kind") in wanted]
            if found:
                return found
            if time.monotonic() >= deadline:
                return []
            if events:  # only other kinds: watch on from after them
                since = max(ev.revision for ev in events)

    def _watch_payload(self, since: int) -> dict:
        prefix = self.prefix + "/"
        return {"create_request": {"key": _b64(prefix), "range_end": _range_end(prefix),
                                   "start_revision": str(since + 1), "prev_kv": True}}

    def _parse_watch_message(self, chunk: dict, since: int) -> builtins.list[Event]:
        """The events of one message of a watch stream; Expired when its start was compacted away."""
        result = chunk.get("result") or {}
        if chunk.get("error"):
            raise NetK8sError(f"store: {self.where}: watch failed: {chunk['error']}")
        if int(result.get("compact_revision") or 0) > 0:
            raise Expired(f"watch from revision {since} is too old: history starts after revision "
                          f"{int(result['compact_revision']) - 1}",
                          hint="list again and watch from the list's revision")
        return [self._event(e) for e in result.get("events") or []]

    def _watch_once(self, since: int, timeout: float) -> builtins.list[Event]:
        if self._closed:
            raise NetK8sError(f"store: {self.where} is closed")
        # A caller that waits (the API server's pump) follows one held stream; others (a catch-up from
        # another thread, timeout 0) get a stream of their own that ends with its first answer.
        if timeout > 0 and self._follow_lock.acquire(blocking=False):
            try:
                if self._follower is None or not self._follower.usable_from(since):
                    if self._follower is not None:
                        self._follower.close()
                    self._follower = _Follower(self, since)
                    # a new stream answers its history (or that it was compacted) after "created": give
                    # it the time a one-shot watch gets
                    timeout = max(0.5, timeout)
                return self._follower.take(timeout)
            finally:
                self._follow_lock.release()
        payload = self._watch_payload(since)
        try:
            resp = self._client.session.post(self._client.get_url("/watch"), json=payload, stream=True,
                                             # at least 0.5 s: etcd answers a compacted start only after "created"
                                             timeout=(REQUEST_TIMEOUT_S, max(0.5, timeout)))
        except (requests.ConnectionError, requests.Timeout) as e:
            raise StoreUnavailable(f"store: {self.where}: watch failed: {_reason(e)}",
                                   hint="check that etcd is running (netk8s lab status)") from None
        except requests.RequestException as e:
            raise NetK8sError(f"store: {self.where}: watch failed: {e}",
                              hint="check that etcd is running (netk8s lab status)") from None
        try:
            for chunk in self._chunks(resp):
                events = self._parse_watch_message(chunk, since)
                if events:
                    return events
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            return []  # no event within the timeout
        finally:
            resp.close()
        return []

    @staticmethod
    def _chunks(resp: requests.Response) -> Iterator[dict]:
        for line in resp.iter_lines():
            if line.strip():
                yield json.loads(line)

    def _event(self, raw: dict) -> Event:
        kv = raw["kv"]
        rev = int(kv["mod_revision"])
        if raw.get("type") == "DELETE":
            prev = raw.get("prev_kv") or {}
            obj = self._decode(prev) if prev.get("value") else {"metadata": {}}
            return Event(rev, "DELETED", obj)
        etype: EventType = "ADDED" if int(kv.get("create_revision") or 0) == rev else "MODIFIED"
        return Event(rev, etype, self._decode(kv))

    def close(self) -> None:
        self._closed = True
        with self._follow_lock:
            if self._follower is not None:
                self._follower.close()
                self._follower = None
        self._client.session.close()


def parse_etcd_url(rest: str) -> tuple[str, int, dict[str, str]]:
    """`HOST:PORT[/PREFIX][?netns=NAME]` (the part after etcd://) -> host, port, options."""
    hostport, _, query = rest.partition("?")
    hostport, slash, prefix = hostport.partition("/")
    host, colon, port_text = hostport.rpartition(":")
    if not colon:
        host, port_text = hostport, "2379"
    try:
        port = int(port_text)
    except ValueError:
        raise NetK8sError(f"store: etcd URL has a bad port {port_text!r}",
                          hint="use etcd://HOST:PORT, e.g. etcd://127.0.0.1:2379") from None
    opts = dict(p.partition("=")[::2] for p in query.split("&") if p)
    if slash:
        opts["prefix"] = "/" + prefix
    unknown = set(opts) - {"netns", "prefix"}
    if unknown:
        raise NetK8sError(f"store: etcd URL: unknown option(s) {', '.join(sorted(unknown))}",
                          hint="supported: ?netns=NAME, /PREFIX")
    return host or "127.0.0.1", port, opts
