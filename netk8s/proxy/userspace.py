"""kube-proxy's userspace mode: the agent itself forwards each Service's TCP streams and UDP datagrams.

The design of kube-proxy's original proxy (pkg/proxy/userspace, Kubernetes <= 1.25), in three parts:

* EndpointChooser (no I/O, injected clock): round-robin over the usable endpoints, and ClientIP
  session affinity: a client keeps its endpoint until `timeoutSeconds` pass without a new connection
  (upstream roundrobin.go LoadBalancerRR, NextEndpoint and its affinity map).
* ProxyServer: an asyncio loop on a thread of the agent holding one socket ("portal") per service
  port and policy (see netk8s.proxy.userspace_rules). TCP: accept, choose, connect (with a timeout,
  the next endpoint on failure), then copy both ways with asyncio streams: `drain()` after every write
  and bounded read buffers give back-pressure (a slow reader stalls its sender instead of growing
  memory), EOF from one side becomes shutdown(SHUT_WR) towards the other while the other direction
  keeps flowing (half-close), and an error on either side closes both. UDP: one connected socket per
  client address and portal ("session"), replies sent back from the portal socket; sessions end after
  UDP_SESSION_TIMEOUT idle seconds. Removing an endpoint closes the connections and sessions to it;
  those to endpoints that stay are untouched.
* UserspaceBackend, this mode's Backend for the one syncer (netk8s.proxy.proxier.Proxier, which tracks
  changes, backs off, probes and runs health checks and LoadBalancer announcement as in every mode):
  opens/closes portals, hands each its endpoints, renders the redirect rules (pure,
  netk8s.proxy.userspace_rules) and applies them with ONE iptables-restore per sync.

What this mode cannot do, as upstream: the endpoint sees the node's address, never the client's (the
proxy opens a new connection), so externalTrafficPolicy Local only selects local endpoints; and the
proxied connections live in the agent: killing the agent drops them (a restarted agent listens on
new ports, and its first full sync replaces the stale redirects).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netk8s.model.iptsave import parse_save
from netk8s.proxy import userspace_rules as rules
from netk8s.proxy.backend_iptables import IptablesKernel
from netk8s.proxy.model import Endpoint, NodeContext, ProxyState

log = logging.getLogger("netk8s.proxy.userspace")

CONNECT_TIMEOUT = 3.0  # per endpoint; upstream tried endpoints with 0.25, 0.5, 1, 2 s timeouts
CHUNK = 64 * 1024  # bytes read at a time
STREAM_LIMIT = 64 * 1024  # StreamReader buffer limit (reading pauses above twice this)
# Idle time after which a UDP session ends. Upstream's --udp-timeout default was 250 ms, tuned for DNS's
# one request, one answer; netk8s uses the kernel's own default for unreplied UDP conntrack entries
# (nf_conntrack_udp_timeout = 30 s), so a UDP "flow" lives as long as in the iptables mode.
UDP_SESSION_TIMEOUT = 30.0
UDP_SWEEP_PERIOD = 1.0
MAX_DATAGRAM = 65535
AFFINITY_PURGE_SIZE = 1024
FULL_SYNC_PERIOD = 30.0  # this mode's SyncConfig.full_sync_period


# ---------------------------------------------------------------------------------------------------------
# Choosing an endpoint (no I/O)


def usable_endpoints(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """Ready endpoints, or the serving+terminating ones when none is ready (categorize's rule)."""
    eps = tuple(endpoints)
    ready = tuple(e for e in eps if e.ready)
    return ready or tuple(e for e in eps if e.serving and e.terminating)


@dataclass
class _Affinity:
    endpoint: str
    last_used: float


class EndpointChooser:
    """Round-robin with optional ClientIP affinity over one portal's endpoints (`ip:port` strings)."""

    def __init__(self, affinity_timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.affinity_timeout = affinity_timeout
        self.clock = clock
        self.endpoints: tuple[str, ...] = ()
        self.index = 0
        self.affinity: dict[str, _Affinity] = {}

    def update(self, endpoints: Iterable[Endpoint], affinity_timeout: float | None | str = "unchanged"
               ) -> set[str]:
        """New endpoint list (unusable ones skipped); returns the addresses that went away. Affinity to
        removed endpoints is forgotten (upstream removeSessionAffinityByEndpoint); turning affinity off
        or changing its timeout forgets all of it."""
        new = tuple(sorted({e.addr for e in usable_endpoints(endpoints)}))
        removed = set(self.endpoints) - set(new)
        if affinity_timeout != "unchanged" and affinity_timeout != self.affinity_timeout:
            assert not isinstance(affinity_timeout, str)
            self.affinity.clear()
            self.affinity_timeout = affinity_timeout
        if removed:
            self.affinity = {c: a for c, a in self.affinity.items() if a.endpoint not in removed}
        if new != self.endpoints:
            self.endpoints = new
            self.index = self.index % len(new) if new else 0
        return removed

    def sticky(self, client_ip: str) -> bool:
        """Whether the next pick for `client_ip` is an affinity hit (what `next` would decide)."""
        aff = self.affinity.get(client_ip)
        return (self.affinity_timeout is not None and aff is not None and aff.endpoint in self.endpoints
                and self.clock() - aff.last_used < self.affinity_timeout)

    def next(self, client_ip: str, reset: bool = False) -> str | None:
        """The endpoint for a new connection from `client_ip`; `reset` skips the client's affinity (its
        endpoint just failed). None when there is no endpoint."""
        if not self.endpoints:
            return None
        now = self.clock()
        ttl = self.affinity_timeout
        if ttl is not None and not reset:
            aff = self.affinity.get(client_ip)
            if aff is not None and now - aff.last_used < ttl and aff.endpoint in self.endpoints:
                aff.last_used = now
                return aff.endpoint
        endpoint = self.endpoints[self.index % len(self.endpoints)]
        self.index = (self.index + 1) % len(self.endpoints)
        if ttl is not None:
            if len(self.affinity) >= AFFINITY_PURGE_SIZE:
                self.affinity = {c: a for c, a in self.affinity.items() if now - a.last_used < ttl}
            self.affinity[client_ip] = _Affinity(endpoint, now)
        return endpoint


def _split(addr: str) -> tuple[str, int]:
    ip, _, port = addr.rpartition(":")
    return ip, int(port)


# ---------------------------------------------------------------------------------------------------------
# The data path


@dataclass(eq=False)
class _TcpConn:
    endpoint: str
    down: asyncio.StreamWriter  # towards the client
    up: asyncio.StreamWriter  # towards the endpoint

    def abort(self) -> None:
        for w in (self.down, self.up):
            w.transport.abort()

    def buffered(self) -> int:
        total = 0
        for w in (self.down, self.up):
            total += w.transport.get_write_buffer_size()
        return total


@dataclass(eq=False)
class _UdpSession:
    client: tuple[str, int]
    endpoint: str
    sock: socket.socket
    last_active: float


@dataclass(eq=False)
class _Portal:
    name: str
    protocol: str
    sock: socket.socket
    chooser: EndpointChooser
    server: asyncio.AbstractServer | None = None
    tcp: set[_TcpConn] = field(default_factory=set)
    readers: dict[_TcpConn, tuple[asyncio.StreamReader, asyncio.StreamReader]] = field(default_factory=dict)
    tasks: set[asyncio.Task] = field(default_factory=set)  # one per accepted connection
    udp: dict[tuple[str, int], _UdpSession] = field(default_factory=dict)
    closed: bool = False

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


class ProxyServer:
    """Portals on an asyncio loop of their own thread; every public method is thread-safe."""

    def __init__(self, bind_ip: str = "0.0.0.0", clock: Callable[[], float] = time.monotonic,
                 connect_timeout: float = CONNECT_TIMEOUT, udp_timeout: float = UDP_SESSION_TIMEOUT) -> None:
        self.bind_ip = bind_ip
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.udp_timeout = udp_timeout
        self.portals: dict[str, _Portal] = {}  # touched in the loop thread only
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ----- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self.loop is not None:
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.call_later(UDP_SWEEP_PERIOD, self._sweep_udp)
                loop.run_forever()
                loop.close()

            self.thread = threading.Thread(target=run, name="userspace-proxy", daemon=True)
            self.thread.start()
            ready.wait()
            self.loop = loop

    def _call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run `fn(*args)` (a coroutine function or a plain one) in the loop thread, wait for the result."""
        self.start()
        assert self.loop is not None

        async def call() -> Any:
            res = fn(*args)
            if asyncio.iscoroutine(res):
                res = await res
            return res

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)

    def close(self) -> None:
        """Close every portal and connection, stop the loop thread."""
        with self._lock:
            loop, thread = self.loop, self.thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._close_all)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            with self._lock:
                self.loop = self.thread = None

    async def _close_all(self) -> None:
        for name in list(self.portals):
            await self._close_portal(name)

    # ----- portals ---------------------------------------------------------------------------------
    def open_portal(self, name: str, protocol: str, affinity_timeout: float | None = None) -> int:
        """Open the socket of a portal (idempotent) and return its port. Raises OSError."""
        return int(self._call(self._open_portal, name, protocol, affinity_timeout))

    async def _open_portal(self, name: str, protocol: str, affinity_timeout: float | None) -> int:
        cur = self.portals.get(name)
        if cur is not None and cur.protocol == protocol:
            return cur.port
        if cur is not None:
            await self._close_portal(name)
        kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.setblocking(False)
            sock.bind((self.bind_ip, 0))  # the kernel picks a free port (upstream: a port range or 0)
            portal = _Portal(name, protocol, sock, EndpointChooser(affinity_timeout, self.clock))
            if protocol == "TCP":
                sock.listen(1024)
                portal.server = await asyncio.start_server(
                    lambda r, w: self._accepted(portal, r, w), sock=sock, limit=STREAM_LIMIT)
            else:
                assert self.loop is not None
                self.loop.add_reader(sock.fileno(), self._udp_readable, portal)
        except BaseException:
            sock.close()
            raise
        self.portals[name] = portal
        log.info("portal %s %s listening on %s:%d", name, protocol, self.bind_ip, portal.port)
        return portal.port

    def set_endpoints(self, name: str, endpoints: Sequence[Endpoint], affinity_timeout: float | None,
                      present: Iterable[str] | None = None) -> None:
        """Give a portal the endpoints new connections may use. Connections and UDP sessions to an
        endpoint not in `present` (`ip:port`s still listed at all; default: `endpoints`) are closed: a
        terminating endpoint gets no new connections but keeps its established ones, as with conntrack."""
        keep = frozenset(present) if present is not None else frozenset(e.addr for e in endpoints)
        self._call(self._set_endpoints, name, tuple(endpoints), affinity_timeout, keep)

    def _set_endpoints(self, name: str, endpoints: tuple[Endpoint, ...], affinity_timeout: float | None,
                       keep: frozenset[str]) -> None:
        portal = self.portals.get(name)
        if portal is None:
            return
        portal.chooser.update(endpoints, affinity_timeout)
        gone = {c.endpoint for c in portal.tcp} | {s.endpoint for s in portal.udp.values()}
        gone -= keep
        if not gone:
            return
        for conn in [c for c in portal.tcp if c.endpoint in gone]:
            conn.abort()
        for client, sess in list(portal.udp.items()):
            if sess.endpoint in gone:
                self._end_udp(portal, client)
        log.info("portal %s: endpoints %s removed, their connections closed", name, ", ".join(sorted(gone)))

    def close_portal(self, name: str) -> None:
        self._call(self._close_portal, name)

    async def _close_portal(self, name: str) -> None:
        portal = self.portals.pop(name, None)
        if portal is None:
            return
        portal.closed = True
        if portal.server is not None:
            portal.server.close()
        else:
            assert self.loop is not None
            self.loop.remove_reader(portal.sock.fileno())
            for client in list(portal.udp):
                self._end_udp(portal, client)
        for conn in list(portal.tcp):
            conn.abort()
        tasks = list(portal.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        portal.sock.close()
        if portal.server is not None:
            await portal.server.wait_closed()
        log.info("portal %s closed", name)

    def ports(self) -> dict[str, int]:
        return dict(self._call(lambda: {n: p.port for n, p in self.portals.items()}))

    def stats(self) -> dict[str, int]:
        """Connections, UDP sessions and bytes the proxy holds in its buffers (reads and writes)."""

        def collect() -> dict[str, int]:
            conns = sessions = buffered = 0
            for p in self.portals.values():
                conns += len(p.tcp)
                sessions += len(p.udp)
                for c in p.tcp:
                    buffered += c.buffered()
                for readers in p.readers.values():
                    buffered += sum(len(getattr(r, "_buffer", b"")) for r in readers)
            return {"connections": conns, "udp_sessions": sessions, "buffered_bytes": buffered}

        return dict(self._call(collect))

    # ----- TCP ---------------------------------------------------------------------------------------
    async def _accepted(self, portal: _Portal, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        portal.tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        conn: _TcpConn | None = None
        try:
            up = await self._connect(portal, writer)
            if up is None or portal.closed:
                writer.transport.abort()  # no endpoint reachable: the client sees a reset, as upstream
                return
            up_reader, up_writer, endpoint = up
            conn = _TcpConn(endpoint, writer, up_writer)
            portal.tcp.add(conn)
            portal.readers[conn] = (reader, up_reader)
            await asyncio.gather(self._pump(reader, up_writer, conn), self._pump(up_reader, writer, conn))
        finally:
            portal.tasks.discard(task)
            if conn is not None:
                portal.tcp.discard(conn)
                portal.readers.pop(conn, None)
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    async def _connect(self, portal: _Portal, writer: asyncio.StreamWriter
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str] | None:
        peer = writer.get_extra_info("peername") or ("", 0)
        tries = max(1, len(portal.chooser.endpoints))
        for attempt in range(tries):
            sticky = attempt == 0 and portal.chooser.sticky(str(peer[0]))
            endpoint = portal.chooser.next(str(peer[0]), reset=attempt > 0)
            if endpoint is None:
                return None
            ip, port = _split(endpoint)
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(ip, port, limit=STREAM_LIMIT),
                                              self.connect_timeout)
                # One line per pick: `netk8s trace` reads the agent's choice for a client address here.
                log.info("pick portal=%s client=%s:%s endpoint=%s choice=%s local=%s", portal.name, peer[0],
                         peer[1] if len(peer) > 1 else 0, endpoint, "affinity" if sticky else "round-robin",
                         "{}:{}".format(*(w.get_extra_info("sockname") or ("", 0))[:2]))
                return r, w, endpoint
            except (OSError, asyncio.TimeoutError) as exc:
                log.info("portal %s: connecting to %s failed (%s), trying the next endpoint", portal.name,
                         endpoint, exc or type(exc).__name__)
        return None

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _TcpConn) -> None:
        """Copy until EOF, then half-close towards dst; on any error close both sides."""
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                dst.write(data)
                await dst.drain()  # back-pressure: wait while the peer does not keep up
            if not dst.transport.is_closing() and dst.can_write_eof():
                dst.write_eof()  # shutdown(SHUT_WR) once the buffered data is sent
        except (OSError, asyncio.IncompleteReadError, RuntimeError):
            conn.abort()

    # ----- UDP ---------------------------------------------------------------------------------------
    def _udp_readable(self, portal: _Portal) -> None:
        for _ in range(64):  # bounded per wake-up, so one busy portal cannot starve the others
            try:
                data, client = portal.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("portal %s: recvfrom: %s", portal.name, exc)
                return
            sess = portal.udp.get(client)
            if sess is None:
                sess = self._new_udp_session(portal, client)
                if sess is None:
                    continue  # no endpoint: dropped, as upstream
            sess.last_active = self.clock()
            try:
                sess.sock.send(data)
            except OSError as exc:  # ECONNREFUSED from an earlier ICMP error, a full buffer: UDP drops
                log.debug("portal %s: send to %s: %s", portal.name, sess.endpoint, exc)

    def _new_udp_session(self, portal: _Portal, client: tuple[str, int]) -> _UdpSession | None:
        sticky = portal.chooser.sticky(client[0])
        endpoint = portal.chooser.next(client[0])
        if endpoint is None:
            return None
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            s.connect(_split(endpoint))
        except OSError as exc:
            s.close()
            log.info("portal %s: UDP session to %s: %s", portal.name, endpoint, exc)
            return None
        sess = _UdpSession(client, endpoint, s, self.clock())
        log.info("pick portal=%s client=%s:%s endpoint=%s choice=%s local=%s", portal.name, client[0], client[1],
                 endpoint, "affinity" if sticky else "round-robin", "{}:{}".format(*s.getsockname()[:2]))
        portal.udp[client] = sess
        assert self.loop is not None
        self.loop.add_reader(s.fileno(), self._udp_reply, portal, sess)
        return sess

    def _udp_reply(self, portal: _Portal, sess: _UdpSession) -> None:
        for _ in range(64):
            try:
                data = sess.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.ECONNREFUSED:
                    log.debug("portal %s: recv from %s: %s", portal.name, sess.endpoint, exc)
                return
            sess.last_active = self.clock()
            try:
                portal.sock.sendto(data, sess.client)  # the reply leaves from the portal's socket
            except OSError as exc:
                log.debug("portal %s: reply to %s: %s", portal.name, sess.client, exc)

    def _end_udp(self, portal: _Portal, client: tuple[str, int]) -> None:
        sess = portal.udp.pop(client, None)
        if sess is None:
            return
        assert self.loop is not None
        self.loop.remove_reader(sess.sock.fileno())
        sess.sock.close()

    def _sweep_udp(self) -> None:
        now = self.clock()
        for portal in list(self.portals.values()):
            for client, sess in list(portal.udp.items()):
                if now - sess.last_active >= self.udp_timeout:
                    self._end_udp(portal, client)
        assert self.loop is not None
        self.loop.call_later(UDP_SWEEP_PERIOD, self._sweep_udp)


# ---------------------------------------------------------------------------------------------------------
# The node agent's plugin


def cleanup_rules() -> None:
    """Remove this mode's chains and the jumps to them from the current namespace (idempotent; used when
    the node changes proxy mode, like `kube-proxy --cleanup`). Other rules are left alone."""
    from netk8s.dataplane import iptables

    UserspaceBackend(iptables).remove_rules()


class UserspaceBackend:
    """The userspace mode's Backend (see the module docstring), driven by netk8s.proxy.proxier.Proxier.

    Renders open the portals first and hand each its endpoints (so a new redirect finds its socket
    ready); then ONE restore, skipped on partial syncs when the chains would hold the same rules
    (endpoint changes usually only reach the proxy's endpoint lists); after it, the portals no rule
    points at any more close. A full sync re-reads the kernel's jumps, so rules a dead agent left are
    replaced. `kernel`: netk8s.dataplane.iptables, or netk8s.proxy.testing.fake_iptables.FakeRestore."""

    mode = "userspace"

    def __init__(self, kernel: IptablesKernel, server: ProxyServer | None = None) -> None:
        self.kernel = kernel
        self._server = server
        self.ports: dict[str, int] = {}  # portal name -> port of its open socket
        self.protocols: dict[str, str] = {}
        self.pushed: dict[str, tuple[Any, ...]] = {}  # what each portal was given
        self.wanted: dict[str, tuple[str, str, str]] = {}  # the last render's portals
        self.applied_body: str | None = None  # the chains' rules the kernel holds
        self.state = ProxyState()  # the last rendered state (for the stale UDP flows)
        self.restores = 0

    @property
    def server(self) -> ProxyServer:
        if self._server is None:
            self._server = ProxyServer()
        return self._server

    def saved(self) -> dict[str, Any]:
        """parse_save() output of the nat and filter tables."""
        return {t: parse_save(self.kernel.save(t)).get(t, {}) for t in rules.CHAINS}

    # ----- rendering: portals first -------------------------------------------------------------
    def sync_portals(self, state: ProxyState) -> set[str]:
        """Open the portals `state` needs and hand each its endpoints; the keys whose portals opened."""
        opened: set[str] = set()
        self.wanted = wanted = rules.wanted_portals(state)
        for name, (key, _kind, proto) in sorted(wanted.items()):
            if self.protocols.get(name) == proto:
                continue
            sp = state.services[key]
            try:
                self.ports[name] = self.server.open_portal(name, proto, sp.affinity_timeout)
                self.protocols[name] = proto
                self.pushed.pop(name, None)
                opened.add(key)
            except OSError as exc:
                log.error("portal %s: cannot open a %s socket: %s (its traffic is not captured)", name, proto, exc)
        for name, (key, kind, _proto) in sorted(wanted.items()):
            if name not in self.ports:
                continue
            sp = state.services[key]
            eps = rules.portal_needs(sp, state.endpoints_of(key)).endpoints[kind]
            present = frozenset(e.addr for e in state.endpoints_of(key))
            want = (eps, sp.affinity_timeout, present)
            if self.pushed.get(name) != want:
                self.server.set_endpoints(name, eps, sp.affinity_timeout, present)
                self.pushed[name] = want
        self.state = state
        return opened

    def _ports(self) -> dict[str, int]:
        return {n: p for n, p in self.ports.items() if n in self.wanted}

    def render_full(self, state: ProxyState, node: NodeContext, existing: set[str]) -> rules.Rendered:
        """Every redirect; the jumps to this mode's chains the kernel holds now are replaced."""
        self.sync_portals(state)
        jumps = rules.jumps_to_ours(self.saved())
        return rules.render(state, node, self._ports(), full=True, existing_jumps=jumps)

    def render_partial(self, state: ProxyState, node: NodeContext, changed: set[str],
                       previous: rules.Rendered) -> rules.Rendered:
        opened = self.sync_portals(state)
        return rules.render(state, node, self._ports(), full=False, changed=changed | opened, previous=previous)

    def ensure_jumps(self) -> None:
        """Nothing apart: a full render's text holds the built-in chains' jumps (upstream's iptablesInit)."""

    def apply(self, rendered: rules.Rendered) -> None:
        if not rendered.full and rendered.body == self.applied_body:
            return  # the chains would hold the same rules
        self.kernel.restore(rendered.text)
        self.restores += 1

    def probe(self, rendered: rules.Rendered, index: int) -> list[str]:
        """The entry chains (this mode has no per-service chains to round-robin over)."""
        return [f"{t}/{c}" for t, chains in rules.CHAINS.items() for c in chains[:1]
                if not self.kernel.chain_exists(t, c)]

    def read_back(self) -> set[str]:
        return {c for t, chains in rules.CHAINS.items() for c in self.kernel.list_chains(t) if c in chains}

    def existing(self, rendered: rules.Rendered | None, unknown: bool) -> set[str]:
        """The chains are fixed and always written whole: what exists matters only for the jumps, which
        render_full reads itself."""
        return self.read_back() if unknown else set()

    def after_apply(self, previous: rules.Rendered | None, rendered: rules.Rendered, now: float) -> None:
        self.applied_body = rendered.body
        for name in sorted(set(self.ports) - set(self.wanted)):
            self.close_portal(name)

    def housekeeping(self, rendered: rules.Rendered | None, now: float) -> None:
        """Nothing is deferred: idle UDP sessions are swept by the proxy server's own loop."""

    def close_portal(self, name: str) -> None:
        self.ports.pop(name, None)
        self.protocols.pop(name, None)
        self.pushed.pop(name, None)
        try:
            self.server.close_portal(name)
        except OSError as exc:
            log.warning("closing portal %s: %s", name, exc)

    def stale_udp(self, old: ProxyState, new: ProxyState, keys: Iterable[str], previous: rules.Rendered | None,
                  rendered: rules.Rendered) -> list[tuple]:
        """A UDP flow's conntrack entry pins the redirect it got first: when a UDP port's rules changed (new
        proxy port after a restart, endpoints appeared), forget those flows so the next datagram takes the
        new rules (kube-proxy deletes stale UDP entries for the same reason)."""
        done: list[tuple] = []
        for key, lines in sorted(rendered.services.items()):
            sp = new.services[key]
            if sp.protocol != "UDP" or (previous is not None and previous.services.get(key) == lines):
                continue
            for vip in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips):
                if vip:
                    done.append(("service", vip, sp.port))
            if sp.node_port:
                done.append(("port", sp.node_port))
        return done

    # ----- mode change / shutdown ----------------------------------------------------------------
    def remove_rules(self) -> None:
        text = rules.cleanup_text(self.saved())
        if text:
            self.kernel.restore(text)
        self.applied_body = None

    def cleanup(self) -> None:
        """Remove this mode's rules (switching proxy mode) and close every portal."""
        self.remove_rules()
        for name in list(self.ports):
            self.close_portal(name)

    def close(self) -> None:
        """Stop the listeners and close every proxied connection (they live in this process, as upstream's
        did); the rules stay until the next agent's first full sync replaces them."""
        if self._server is not None:
            self._server.close()
