"""The cluster DNS server: asyncio UDP + TCP on one port, a store-watching thread, health and ready endpoints.

Queries for cluster names are answered from precomputed wire templates (netk8s.dns.wire) without
dnslib; other names go to the forwarder, only for clients in the allow list (never an open resolver).
A thread runs the store informer (Services, EndpointSlices, Pods) and applies each event to the record
table incrementally; the first completed sync makes /ready return 200, like CoreDNS's ready plugin.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

from dnslib import DNSHeader, DNSRecord

from netk8s.dns import records as rec
from netk8s.dns.forward import Forwarder, Upstream, client_reply
from netk8s.dns.records import DnsConfig, RecordTable
from netk8s.dns.wire import (
    OPT_RR,
    Answers,
    Query,
    error_reply,
    fit,
    parse_fast,
    parse_slow,
    render,
    to_dnslib,
)
from netk8s.store.base import Store
from netk8s.store.informer import Informer

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+

log = logging.getLogger("netk8s.dns")

KINDS = ["Service", "EndpointSlice", "Pod"]
# Pods, loopback and the lab's node addresses (192.168.56.11-60 fall in .0/26), not the external
# client 192.168.56.100: recursion is for the cluster only.
DEFAULT_ALLOW = ("10.244.0.0/16", "127.0.0.0/8", "192.168.56.0/26")
UDP_RCVBUF = 4 << 20  # absorb bursts instead of dropping (the kernel caps it at rmem_max)
REPLY_CACHE = 16384  # cached UDP replies per RA bit; the cache is emptied when full
MAX_FORWARDS = 1000  # forwarded queries in flight; beyond that answer SERVFAIL at once

Reply = bytes | None | Coroutine[Any, Any, bytes | None]
Handler = Callable[[bytes, str, bool], Reply]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class ServerConfig:
    bind: str = "0.0.0.0"
    port: int = 53  # 0: any free port (UDP and TCP get the same one)
    dns: DnsConfig = field(default_factory=DnsConfig)
    upstreams: list[Upstream] = field(default_factory=list)
    allow: list[Network] = field(default_factory=lambda: [ipaddress.ip_network(c) for c in DEFAULT_ALLOW])
    health_port: int | None = 8080  # None: no endpoint; 0: any free port
    ready_port: int | None = 8181
    poll_timeout: float = 0.2  # answers follow the store within about this long
    tcp_idle: float = 10.0  # seconds a TCP connection may stay quiet (CoreDNS/miekg: 8-10 s)
    max_tcp: int = 256
    # Take no query before the first sync (worker processes sharing a socket: a sibling that has synced
    # answers meanwhile, or the kernel queues). False: answer SERVFAIL for cluster names until then.
    wait_sync: bool = False


# ---- transport shared with the upstream server -------------------------------------------------------


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler, tasks: set[asyncio.Task]) -> None:
        self.handler = handler
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            out = self.handler(data, addr[0], True)
        except Exception:
            log.debug("udp handler failed", exc_info=True)
            return
        if out is None:
            return
        if self.transport is None:
            if not isinstance(out, bytes):
                out.close()
            return
        if isinstance(out, bytes):
            self.transport.sendto(out, addr)
            return
        task = asyncio.ensure_future(self._later(out, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _later(self, pending: Awaitable[bytes | None], addr: tuple) -> None:
        try:
            out = await pending
        except Exception:
            log.debug("deferred udp reply failed", exc_info=True)
            return
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away: nothing to do


class _UdpThread:
    """The UDP fast path on a thread of its own: blocking recvfrom/sendto, no event-loop round per datagram.

    Measured (BENCHMARKS.md, DNS): asyncio's per-datagram cost (epoll wake-up, callback, transport
    bookkeeping) dominated the precomputed answer's own cost. `answer(data, addr)` returns the reply;
    bytes go straight back, a coroutine (a forwarded query) is handed to the event loop and answered from
    there. Worker processes may share the socket (the kernel hands each datagram to one blocked reader),
    so the socket must stay blocking: O_NONBLOCK would be shared by every process too.
    Stopping: a flag plus empty datagrams to our own address until this thread (and not a sibling
    process blocked on the same socket) has seen one."""

    def __init__(self, answer: Callable[[bytes, tuple], Reply], sock: socket.socket,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.answer, self.sock, self.loop = answer, sock, loop
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="dns-udp", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        # Bound methods in locals: this loop runs once per datagram (see BENCHMARKS.md, DNS).
        recvfrom, sendto, answer = self.sock.recvfrom, self.sock.sendto, self.answer
        while not self.stopping:
            try:
                data, addr = recvfrom(65535)
                if not data:
                    continue
                out = answer(data, addr)
                if type(out) is bytes:
                    sendto(out, addr)
                    continue
            except OSError:
                continue  # the client went away (ICMP error) or we are stopping: the flag decides
            except Exception:
                log.debug("udp handler failed", exc_info=True)
                continue
            if out is None:
                continue
            try:
                fut = asyncio.run_coroutine_threadsafe(out, self.loop)  # type: ignore[arg-type]
            except RuntimeError:  # the loop is closing
                out.close()  # type: ignore[union-attr]
                continue
            fut.add_done_callback(functools.partial(self._deferred, addr))

    def _deferred(self, addr: tuple, fut: Any) -> None:
        try:
            out = fut.result()
        except Exception:
            log.debug("deferred udp reply failed", exc_info=True)
            return
        if out and not self.stopping:
            try:
                self.sock.sendto(out, addr)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopping = True
        if self.thread.ident is not None:
            try:
                addr = self.sock.getsockname()
                host = addr[0]
                if host in ("0.0.0.0", ""):
                    host = "127.0.0.1"
                elif host == "::":
                    host = "::1"
                deadline = time.monotonic() + 2.0
                with socket.socket(self.sock.family, socket.SOCK_DGRAM) as poke:
                    while self.thread.is_alive() and time.monotonic() < deadline:
                        poke.sendto(b"", (host, addr[1]))
                        self.thread.join(0.05)
            except OSError:
                pass
        self.sock.close()


def bind_dns(bind: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on the same port (another free port is tried when port is 0
    and TCP's is taken). OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            udp.bind((bind, port))
        except OSError:
            udp.close()
            raise
        try:
            tcp = socket.create_server((bind, udp.getsockname()[1]), family=family, backlog=128)
        except OSError:
            udp.close()
            if port:
                raise
            continue
        return udp, tcp
    raise OSError(f"no free port on {bind} for both UDP and TCP")


class Listener:
    """UDP and TCP (RFC 7766 framing, several queries per connection, idle timeout) on one address."""

    def __init__(self, handler: Handler, tcp_idle: float = 10.0, max_tcp: int = 256,
                 udp_thread: bool = False) -> None:
        self.handler = handler
        self.tcp_idle = tcp_idle
        self.max_tcp = max_tcp
        self.udp_thread = udp_thread
        self._udp_worker: _UdpThread | None = None
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._conns: set[asyncio.Task] = set()

    async def open(self, bind: str, port: int) -> int:
        """Bind UDP then TCP on the same port (retrying another free port when port is 0)."""
        udp, tcp = bind_dns(bind, port)
        await self.start(udp, tcp)
        return self.port

    async def start(self, udp: socket.socket, tcp: socket.socket,
                    answer: Callable[[bytes, tuple], Reply] | None = None) -> None:
        """Serve on bound sockets (possibly inherited: worker processes share them). `answer` is the UDP
        thread's per-datagram entry (default: the handler)."""
        loop = asyncio.get_running_loop()
        try:
            self._tcp = await asyncio.start_server(self._tcp_client, sock=tcp)
        except OSError:
            udp.close()
            tcp.close()
            raise
        if self.udp_thread:
            handler = self.handler
            self._udp_worker = _UdpThread(answer or (lambda data, addr: handler(data, addr[0], True)), udp, loop)
            self._udp_worker.start()
        else:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self.handler, self._tasks), sock=udp)
            self._udp = transport  # type: ignore[assignment]
        self.port = udp.getsockname()[1]

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._conns) >= self.max_tcp or task is None:
            writer.close()
            return
        self._conns.add(task)
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else ""
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle)
                data = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), self.tcp_idle)
                out = self.handler(data, client, False)
                if out is not None and not isinstance(out, bytes):
                    out = await out
                if out:
                    writer.write(len(out).to_bytes(2, "big") + out)
                    await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # server stopping
        except Exception:
            log.debug("tcp client failed", exc_info=True)
        finally:
            self._conns.discard(task)
            writer.close()

    async def close(self) -> None:
        if self._udp_worker is not None:
            self._udp_worker.stop()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        pending = [*self._conns, *self._tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()


class Serving(Protocol):
    async def serve(self, stop: asyncio.Event, started: Callable[[], None]) -> None: ...


class InThread:
    """Run a server's serve() on its own event loop in a thread (tests, embedding)."""

    def __init__(self, server: Serving) -> None:
        self.server = server
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._main, name="dns-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("server did not start")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._stop = asyncio.Event()
            loop.run_until_complete(self.server.serve(self._stop, self._started.set))
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
        finally:
            self._started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # loop already closed
        if self._thread is not None:
            self._thread.join(timeout)


# ---- health / ready ----------------------------------------------------------------------------------


class RunsInThread:
    """start() / stop() for a server with serve(): serve on a thread of its own (tests, embedding)."""

    _runner: InThread | None = None

    def start(self) -> Self:
        """Returns once the server is bound."""
        self._runner = InThread(self)  # type: ignore[arg-type]  # subclasses are Serving
        self._runner.start()
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()


class _Probe(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, path: str, check: Callable[[], bool]) -> None:
        """Serve on an already listening socket (bound by bind_all, possibly in a parent process)."""
        self.path_ok, self.check = path, check
        super().__init__(sock.getsockname()[:2], _ProbeHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()[:2]


class _ProbeHandler(BaseHTTPRequestHandler):
    server: _Probe

    def do_GET(self) -> None:
        if self.path.split("?")[0] != self.server.path_ok:
            code, body = 404, b"not found\n"
        elif self.server.check():
            code, body = 200, b"OK\n"
        else:
            code, body = 503, b"not ready\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every second would flood the log


# ---- the DNS server ----------------------------------------------------------------------------------


@dataclass
class Sockets:
    """What a DNS server listens on, bound before it serves: worker processes inherit one set and
    share it (the kernel hands each datagram and connection to one of them)."""

    udp: socket.socket
    tcp: socket.socket
    health: socket.socket | None = None
    ready: socket.socket | None = None

    def close(self) -> None:
        for sock in (self.udp, self.tcp, self.health, self.ready):
            if sock is not None:
                sock.close()


def bind_all(cfg: ServerConfig) -> Sockets:
    """Bind the DNS port (UDP + TCP) and the probe ports of `cfg`. OSError when one is taken."""
    udp, tcp = bind_dns(cfg.bind, cfg.port)
    out = Sockets(udp, tcp)
    family = socket.AF_INET6 if ":" in cfg.bind else socket.AF_INET
    try:
        if cfg.health_port is not None:
            out.health = socket.create_server((cfg.bind, cfg.health_port), family=family)
        if cfg.ready_port is not None:
            out.ready = socket.create_server((cfg.bind, cfg.ready_port), family=family)
    except OSError:
        out.close()
        raise
    return out


class DnsServer(RunsInThread):
    """The cluster DNS server over a store."""

    def __init__(self, store: Store, cfg: ServerConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, sockets: Sockets | None = None) -> None:
        self.store = store
        self.cfg = cfg or ServerConfig()
        self.sockets = sockets  # None: serve() binds cfg's ports itself
        self.table = RecordTable(self.cfg.dns)
        self.answers = Answers(self.table)
        self.forwarder = Forwarder(self.cfg.upstreams, clock=clock)
        self.listener = Listener(self.handle, self.cfg.tcp_idle, self.cfg.max_tcp, udp_thread=True)
        self.ready = threading.Event()
        self.port = 0
        self.health_port = 0
        self.ready_port = 0
        self.errors = 0
        self._allow_cache: dict[str, bool] = {}
        # UDP replies by query bytes after the id, one dict per RA bit (index False/True). Replaced, never
        # cleared, when the table changes: see answer_udp() for why that keeps stale replies out.
        self._replies: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
        self._forwards = 0
        self._quit = threading.Event()
        self._synced: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probes: list[_Probe] = []

    # ---- queries ---------------------------------------------------------------------------------

    def allowed(self, client: str) -> bool:
        """May this client use us as a recursive resolver?"""
        ok = self._allow_cache.get(client)
        if ok is None:
            try:
                addr = ipaddress.ip_address(client.split("%")[0])
                ok = any(addr in net for net in self.cfg.allow)
            except ValueError:
                ok = False
            if len(self._allow_cache) > 4096:
                self._allow_cache.clear()
            self._allow_cache[client] = ok
        return ok

    def answer_udp(self, data: bytes, addr: tuple) -> Reply:
        """The UDP thread's entry: a reply from the cache, else handle() (which fills the cache).

        A reply depends only on the query's bytes after the id, the RA bit (the client) and the table,
        so the cache is keyed by those bytes and the id is spliced in. Why no stale reply survives a table
        change: the cache dict is read here *before* the answer is computed, and apply() installs fresh
        dicts only *after* the templates changed; a reply computed from old templates can only land in a
        dict that is already replaced (or will be, by the apply() in progress)."""
        replies = self._replies
        client = addr[0]
        ra = self._allow_cache.get(client)
        if ra is None:
            ra = self.allowed(client)
        hit = replies[ra].get(data[2:])
        if hit is not None:
            return data[:2] + hit
        return self.handle(data, client, True, replies[ra])

    def handle(self, data: bytes, client: str, udp: bool, cache: dict[bytes, bytes] | None = None) -> Reply:
        """One DNS message in; reply bytes, None (drop), or a coroutine for a forwarded reply. Replies
        rendered from the table go into `cache` (UDP only) keyed by the query bytes after the id."""
        try:
            q = parse_fast(data)
            if q is None:
                slow = parse_slow(data)
                if not isinstance(slow, Query):
                    return slow
                q = slow
            ra = self.allowed(client)
            t = self.answers.lookup(q)
            if t is not None:
                if not self.ready.is_set():  # an empty table would deny names that exist
                    return error_reply(q.qid, q.flags, rec.SERVFAIL, q.question, OPT_RR if q.edns else b"")
                if q.qtype not in (rec.CNAME, rec.ANY) and q.key in self.answers.cname:
                    return self._chase(q, ra, udp)
                out = render(q, t, ra, udp)
                if cache is not None:
                    if len(cache) >= REPLY_CACHE:
                        cache.clear()  # many distinct queries (0x20 case mixes): start over
                    cache[bytes(data[2:])] = out[2:]
                return out
            if not ra:
                # Cluster names are answered to anyone (like CoreDNS); recursion only for the cluster.
                return error_reply(q.qid, q.flags, rec.REFUSED, q.question, OPT_RR if q.edns else b"")
            if not self.forwarder.upstreams or self._forwards >= MAX_FORWARDS:
                return error_reply(q.qid, q.flags, rec.SERVFAIL, q.question, OPT_RR if q.edns else b"")
            return self._forward(q, udp)
        except Exception:
            self.errors += 1
            if self.errors <= 10:
                log.warning("query from %s failed", client, exc_info=True)
            return None

    def _chase(self, q: Query, ra: bool, udp: bool) -> Reply:
        """An ExternalName's CNAME followed to its target's records, as CoreDNS's kubernetes plugin
        does (a stub resolver such as glibc's does not chase a CNAME itself): a target in our zones
        from the table; elsewhere through the forwarder, only for clients we recurse for."""
        answer = self.table.resolve(q.name(), rec.CNAME)
        if answer is None or not answer.answers:
            return None
        cname_rr = answer.answers[0]
        target = str(cname_rr[3][0])
        inside = self.table.resolve(target, q.qtype)
        if inside is not None:
            msg = DNSRecord(DNSHeader(aa=1, rcode=inside.rcode))
            for rr in (*answer.answers, *inside.answers):
                msg.add_answer(to_dnslib(rr))
            for rr in inside.authority:
                msg.add_auth(to_dnslib(rr))
            return fit(q, client_reply(q.qid, q.flags, q.question, msg, q.edns, ra), udp)
        if not ra or not self.forwarder.upstreams:
            return fit(q, client_reply(q.qid, q.flags, q.question,
                                       _only(answer.answers), q.edns, ra), udp)
        return self._chase_upstream(q, answer.answers, target, udp)

    async def _chase_upstream(self, q: Query, cname: tuple, target: str, udp: bool) -> bytes:
        self._forwards += 1
        try:
            found = await self.forwarder.resolve(target, q.qtype, int.from_bytes(q.question[-2:], "big"))
            msg = _only(cname)
            if found is not None:
                msg.header.rcode = found.header.rcode
                msg.rr.extend(found.rr)
                msg.auth.extend(found.auth)
            return fit(q, client_reply(q.qid, q.flags, q.question, msg, q.edns), udp)
        finally:
            self._forwards -= 1

    async def _forward(self, q: Query, udp: bool) -> bytes:
        self._forwards += 1
        try:
            qtype, qclass = int.from_bytes(q.question[-4:-2], "big"), int.from_bytes(q.question[-2:], "big")
            msg = await self.forwarder.resolve(q.name(), qtype, qclass)
            return fit(q, client_reply(q.qid, q.flags, q.question, msg, q.edns), udp)
        finally:
            self._forwards -= 1

    # ---- store -----------------------------------------------------------------------------------

    def _watch(self) -> None:
        """Informer loop: list once, then apply each batch of events to the table, incrementally."""
        informer = Informer(self.store, KINDS)
        while not self._quit.is_set():
            try:
                events = informer.poll(self.cfg.poll_timeout)
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not stop the server
                log.warning("store watch failed: %s; retrying", exc)
                self._quit.wait(1.0)
                continue
            if events or not self.ready.is_set():
                self.apply([(ev.type, ev.object) for ev in events], informer.revision)
            if not self.ready.is_set():
                self.ready.set()
                if self._loop is not None and self._synced is not None:
                    self._loop.call_soon_threadsafe(self._synced.set)
                log.info("synced %d names from the store at revision %d", len(self.table.names()),
                         informer.revision)

    def apply(self, events: list[tuple[str, dict]], revision: int) -> int:
        """Apply store events; returns the number of templates rebuilt."""
        dirty: set[str] = set()
        for etype, obj in events:
            try:
                dirty |= self.table.apply(etype, obj)
            except Exception:
                log.warning("cannot apply %s %s", etype, (obj.get("metadata") or {}).get("name"), exc_info=True)
        self.answers.set_serial(max(1, revision))
        built = self.answers.update(dirty)
        self._replies = ({}, {})  # after the templates changed: see answer_udp()
        return built

    # ---- lifecycle -------------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event, started: Callable[[], None] = lambda: None) -> None:
        """Bind (unless given sockets), start the watcher and probes, serve until `stop` is set.
        OSError when a port is taken."""
        socks = self.sockets if self.sockets is not None else bind_all(self.cfg)
        self._loop = asyncio.get_running_loop()
        self._synced = asyncio.Event()
        self.port = socks.udp.getsockname()[1]
        watcher = threading.Thread(target=self._watch, name="dns-informer", daemon=True)
        running: list[_Probe] = []
        listening = False
        try:
            if socks.health is not None:
                self._probes.append(_Probe(socks.health, "/health", lambda: True))
                self.health_port = socks.health.getsockname()[1]
            if socks.ready is not None:
                self._probes.append(_Probe(socks.ready, "/ready", self.ready.is_set))
                self.ready_port = socks.ready.getsockname()[1]
            for probe in self._probes:
                threading.Thread(target=probe.serve_forever, args=(0.1,), name="dns-probe", daemon=True).start()
                running.append(probe)
            watcher.start()
            if self.cfg.wait_sync:
                started()  # bound: the kernel queues queries until we read them
                await _first(stop.wait(), self._synced.wait())
            if not stop.is_set():
                listening = True
                await self.listener.start(socks.udp, socks.tcp, self.answer_udp)
                ups = ", ".join(f"{ip}:{port}" for ip, port in self.forwarder.upstreams) or "none"
                log.info("serving %s on %s:%d udp+tcp, ttl %d, upstreams %s", self.table.domain, self.cfg.bind,
                         self.port, self.table.ttl, ups)
            if not self.cfg.wait_sync:
                started()
            await stop.wait()
        finally:
            self._quit.set()
            if listening:
                await self.listener.close()
            else:
                socks.udp.close()
                socks.tcp.close()
            for probe in self._probes:
                if probe in running:
                    probe.shutdown()  # waits for serve_forever: only for those that run
                probe.server_close()
            if watcher.is_alive():
                watcher.join(5.0)  # it wakes every poll_timeout



async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until one of these finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _only(rrs: tuple) -> DNSRecord:
    """An authoritative message holding just these records (the ExternalName's CNAME)."""
    msg = DNSRecord(DNSHeader(aa=1))
    for rr in rrs:
        msg.add_answer(to_dnslib(rr))
    return msg
