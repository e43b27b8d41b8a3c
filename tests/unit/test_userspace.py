"""Userspace proxy mode without root: the rule renderer, the endpoint chooser, the asyncio data path on
127.0.0.1 (no netfilter), and the plugin's sync decisions with a fake kernel."""

from __future__ import annotations

import asyncio
import hashlib
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from netk8s.dataplane.iptables import parse_save
from netk8s.errors import KernelError
from netk8s.proxy import userspace_rules as ur
from netk8s.proxy.model import Endpoint, NodeContext, ProxyState, ServicePort
from netk8s.proxy.trace import FakeRestore, Ruleset, trace
from netk8s.proxy.userspace import EndpointChooser, ProxyServer, UserspaceProxier
from netk8s.store.base import Event

NODE = NodeContext("node1", ("192.168.56.11",))
NODE_IP = "192.168.56.11"
POD = "10.244.1.9"
OUTSIDE = "192.168.56.100"


def ep(ip: str, port: int = 8080, node: str = "node1", ready: bool = True, terminating: bool = False) -> Endpoint:
    return Endpoint(ip, port, node, ready, ready or terminating, terminating, node == "node1")


def sport(**kw: Any) -> ServicePort:
    base: dict[str, Any] = {"namespace": "default", "name": "web", "port_name": "", "protocol": "TCP",
                            "cluster_ip": "10.96.0.20", "port": 80, "target_port": 8080}
    base.update(kw)
    return ServicePort(**base)


def ports_for(state: ProxyState, first: int = 40000) -> dict[str, int]:
    return {name: first + i for i, name in enumerate(sorted(ur.wanted_portals(state)))}


def applied(state: ProxyState) -> tuple[Ruleset, dict[str, int]]:
    """Render a full text, apply it to the fake restore (which refuses what the kernel refuses)."""
    ports = ports_for(state)
    fake = FakeRestore()
    fake.apply(ur.render(state, NODE, ports).text)
    return fake.ruleset(), ports


def where(rs: Ruleset, src: str, dst: str, dport: int, hook: str = "PREROUTING", proto: str = "tcp") -> str:
    """Where a new connection's first packet goes: `redirect:PORT`, `dnat:IP:PORT`, REJECT, DROP or ACCEPT."""
    res = trace(rs, src, proto, dst, dport, local_dst_ips=[NODE_IP], hook=hook)
    for table, rule in res.matched_rules:
        if table == "nat" and rule.target == "REDIRECT":
            return f"redirect:{rule.target_opts['to-ports']}"
    return f"dnat:{res.dnat}" if res.dnat else res.verdict


def state_of(sp: ServicePort, *eps: Endpoint) -> ProxyState:
    return ProxyState({sp.key: sp}, {sp.key: tuple(eps)})


# ----------------------------------------------------------------------------- renderer

TWO = (ep("10.244.1.5"), ep("10.244.2.5", node="node2"))


@dataclass
class RuleCase:
    name: str
    sp: ServicePort
    eps: tuple[Endpoint, ...]
    # (src, dst, dport, hook) -> expected; portal kinds are resolved to the rendered ports
    expect: list[tuple[str, str, int, str, str]]


RULE_CASES = [
    RuleCase("clusterip", sport(), TWO, [
        (POD, "10.96.0.20", 80, "PREROUTING", "redirect:cluster"),
        (NODE_IP, "10.96.0.20", 80, "OUTPUT", f"dnat:{NODE_IP}:cluster"),
        (POD, "10.96.0.20", 81, "PREROUTING", "ACCEPT"),
    ]),
    RuleCase("nodeport", sport(node_port=30080), TWO, [
        (OUTSIDE, NODE_IP, 30080, "PREROUTING", "redirect:cluster"),
        (NODE_IP, NODE_IP, 30080, "OUTPUT", f"dnat:{NODE_IP}:cluster"),
        (OUTSIDE, "10.96.0.20", 80, "PREROUTING", "redirect:cluster"),
        (OUTSIDE, "10.0.0.1", 30080, "PREROUTING", "ACCEPT"),  # not a local address: no NodePort
    ]),
    RuleCase("loadbalancer_ip", sport(node_port=30080, load_balancer_ips=("192.168.56.200",)), TWO, [
        (OUTSIDE, "192.168.56.200", 80, "PREROUTING", "redirect:cluster"),
        (NODE_IP, "192.168.56.200", 80, "OUTPUT", f"dnat:{NODE_IP}:cluster"),
    ]),
    RuleCase("external_ips", sport(external_ips=("192.168.56.150",)), TWO, [
        (OUTSIDE, "192.168.56.150", 80, "PREROUTING", "redirect:cluster"),
        (POD, "192.168.56.150", 80, "PREROUTING", "redirect:cluster"),
    ]),
    RuleCase("no_endpoints_reject", sport(node_port=30080, external_ips=("192.168.56.150",)), (), [
        (POD, "10.96.0.20", 80, "PREROUTING", "REJECT"),
        (NODE_IP, "10.96.0.20", 80, "OUTPUT", "REJECT"),
        (OUTSIDE, NODE_IP, 30080, "PREROUTING", "REJECT"),
        (OUTSIDE, "192.168.56.150", 80, "PREROUTING", "REJECT"),
    ]),
    RuleCase("unready_only_is_no_endpoints", sport(), (ep("10.244.1.5", ready=False),), [
        (POD, "10.96.0.20", 80, "PREROUTING", "REJECT"),
    ]),
    RuleCase("etp_local_with_local_endpoint", sport(node_port=30080, external_policy_local=True), TWO, [
        (OUTSIDE, NODE_IP, 30080, "PREROUTING", "redirect:local"),
        (POD, NODE_IP, 30080, "PREROUTING", "redirect:cluster"),  # pods short-circuit to every endpoint
        (NODE_IP, NODE_IP, 30080, "OUTPUT", f"dnat:{NODE_IP}:cluster"),
        (POD, "10.96.0.20", 80, "PREROUTING", "redirect:cluster"),
    ]),
    RuleCase("etp_local_without_local_endpoint", sport(node_port=30080, external_policy_local=True),
             (ep("10.244.2.5", node="node2"),), [
        (OUTSIDE, NODE_IP, 30080, "PREROUTING", "DROP"),
        (POD, NODE_IP, 30080, "PREROUTING", "redirect:cluster"),
        (POD, "10.96.0.20", 80, "PREROUTING", "redirect:cluster"),
    ]),
    RuleCase("itp_local_without_local_endpoint", sport(internal_policy_local=True),
             (ep("10.244.2.5", node="node2"),), [
        (POD, "10.96.0.20", 80, "PREROUTING", "DROP"),
    ]),
    RuleCase("udp", sport(protocol="UDP", port=53), TWO, [
        (POD, "10.96.0.20", 53, "PREROUTING", "redirect:cluster"),
    ]),
]


@pytest.mark.parametrize("case", RULE_CASES, ids=[c.name for c in RULE_CASES])
def test_rules_trace(case: RuleCase) -> None:
    state = state_of(case.sp, *case.eps)
    rs, ports = applied(state)
    for src, dst, dport, hook, expected in case.expect:
        for kind in (ur.CLUSTER, ur.LOCAL):
            name = ur.portal_name(case.sp.key, kind)
            if name in ports:
                expected = expected.replace(f":{kind}", f":{ports[name]}")
        proto = case.sp.proto_lower
        assert where(rs, src, dst, dport, hook, proto) == expected, (src, dst, dport, hook)


def test_portals_per_policy() -> None:
    assert set(ur.wanted_portals(state_of(sport(), *TWO))) == {"default/web/cluster"}
    assert set(ur.wanted_portals(state_of(sport(node_port=30080, external_policy_local=True), *TWO))) == {
        "default/web/cluster", "default/web/local"}
    assert set(ur.wanted_portals(state_of(sport(internal_policy_local=True), *TWO))) == {"default/web/local"}
    assert ur.wanted_portals(state_of(sport(protocol="SCTP"), *TWO)) == {}  # not proxied in userspace


def test_affinity_does_not_change_rules() -> None:
    plain = state_of(sport(node_port=30080), *TWO)
    sticky = state_of(sport(node_port=30080, affinity_timeout=10), *TWO)
    assert ur.render(plain, NODE, ports_for(plain)).text == ur.render(sticky, NODE, ports_for(sticky)).text


def test_full_render_replaces_stale_jumps_and_partial_reuses_lines() -> None:
    state = state_of(sport(), *TWO)
    fake = FakeRestore()
    fake.apply(ur.render(state, NODE, {"default/web/cluster": 40000}).text)
    # a restarted agent: new port, jumps already there -> deleted and appended again, never duplicated
    existing = ur.jumps_to_ours(parse_save(fake.save()))
    assert sum(len(v) for v in existing.values()) == len(ur.BUILTIN_JUMPS["nat"]) + len(ur.BUILTIN_JUMPS["filter"])
    full = ur.render(state, NODE, {"default/web/cluster": 41000}, existing_jumps=existing)
    fake.apply(full.text)
    saved = parse_save(fake.save())
    assert ur.jumps_to_ours(saved) == existing
    assert where(fake.ruleset(), POD, "10.96.0.20", 80) == "redirect:41000"
    # partial: unchanged keys reuse their lines (even with a different port map), changed ones re-render
    other = sport(name="api", cluster_ip="10.96.0.30")
    both = ProxyState({**state.services, other.key: other}, {**state.endpoints, other.key: TWO})
    part = ur.render(both, NODE, {"default/api/cluster": 42000}, full=False, changed={other.key}, previous=full)
    assert part.services["default/web"] is full.services["default/web"]
    assert "-A PREROUTING" not in part.text and "-D " not in part.text
    fake.apply(part.text)
    assert where(fake.ruleset(), POD, "10.96.0.30", 80) == "redirect:42000"
    assert where(fake.ruleset(), POD, "10.96.0.20", 80) == "redirect:41000"


def test_cleanup_removes_only_this_modes_rules() -> None:
    fake = FakeRestore()
    fake.apply("*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n")
    state = state_of(sport(node_port=30080), *TWO)
    fake.apply(ur.render(state, NODE, ports_for(state)).text)
    text = ur.cleanup_text(parse_save(fake.save()))
    fake.apply(text)
    saved = parse_save(fake.save())
    assert not any(c in saved.get(t, {}) for t, cs in ur.CHAINS.items() for c in cs)
    assert [r["rule"] for r in saved["nat"]["PREROUTING"]] == ["-A PREROUTING -j KUBE-SERVICES"]
    assert ur.cleanup_text(saved) == ""  # idempotent: nothing left to remove


# ----------------------------------------------------------------------------- endpoint chooser


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_chooser_round_robin_skips_unready() -> None:
    ch = EndpointChooser()
    ch.update([ep("10.0.0.1"), ep("10.0.0.2", ready=False), ep("10.0.0.3")])
    assert [ch.next("1.1.1.1") for _ in range(4)] == ["10.0.0.1:8080", "10.0.0.3:8080"] * 2
    # only terminating-but-serving endpoints left: they are used (kube-proxy's fallback)
    ch.update([ep("10.0.0.4", ready=False, terminating=True)])
    assert ch.next("1.1.1.1") == "10.0.0.4:8080"
    ch.update([])
    assert ch.next("1.1.1.1") is None


def test_chooser_affinity_sticks_and_expires() -> None:
    clock = Clock()
    ch = EndpointChooser(affinity_timeout=10, clock=clock)
    ch.update([ep("10.0.0.1"), ep("10.0.0.2"), ep("10.0.0.3")])
    a = ch.next("1.1.1.1")
    b = ch.next("2.2.2.2")
    assert a != b
    for _ in range(5):
        clock.now += 9  # each use refreshes the timer
        assert ch.next("1.1.1.1") == a
    clock.now += 10  # idle for the whole timeout: a new choice (round robin moved on)
    assert ch.next("1.1.1.1") == "10.0.0.3:8080"
    assert ch.next("1.1.1.1", reset=True) == "10.0.0.1:8080"  # a failed endpoint is skipped
    # removing the endpoint a client sticks to forgets the affinity
    removed = ch.update([ep("10.0.0.2"), ep("10.0.0.3")], affinity_timeout=10)
    assert removed == {"10.0.0.1:8080"}
    assert ch.next("1.1.1.1") in ("10.0.0.2:8080", "10.0.0.3:8080")


# ----------------------------------------------------------------------------- data path on 127.0.0.1


class Servers:
    """Endpoint stand-ins on 127.0.0.1, served by an asyncio loop on a thread of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.closers: list[Callable[[], None]] = []

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def tcp(self, handler: Callable[..., Any]) -> int:
        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(handler, "127.0.0.1", 0)

        server = self.run(start())
        self.closers.append(server.close)
        return int(server.sockets[0].getsockname()[1])

    def echo(self) -> int:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
                w.write_eof()
            except OSError:
                pass
            finally:
                w.close()

        return self.tcp(handle)

    def reply_after_eof(self) -> int:
        """Reads until EOF, then answers sha256(received) and 1 MiB of data."""
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                data = await r.read()
                w.write(hashlib.sha256(data).hexdigest().encode() + b"\n" + b"x" * (1 << 20))
                await w.drain()
            finally:
                w.close()

        return self.tcp(handle)

    def sink(self) -> int:
        """Accepts and never reads (a stuck endpoint)."""
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                w.close()

        return self.tcp(handle)

    def udp(self, name: str) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)

        def readable() -> None:
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                return
            s.sendto(name.encode() + b":" + data, addr)

        self.loop.call_soon_threadsafe(self.loop.add_reader, s.fileno(), readable)

        def close() -> None:
            self.loop.remove_reader(s.fileno())
            s.close()

        self.closers.append(close)
        return int(s.getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            for c in self.closers:
                c()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def servers():
    s = Servers()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def proxy():
    p = ProxyServer(bind_ip="127.0.0.1")
    try:
        yield p
    finally:
        p.close()


def local(port: int) -> Endpoint:
    return ep("127.0.0.1", port)


@pytest.mark.integration
def test_200_concurrent_connections_keep_their_data(servers: Servers, proxy: ProxyServer) -> None:
    backends = [local(servers.echo()) for _ in range(3)]
    port = proxy.open_portal("default/web/cluster", "TCP")
    proxy.set_endpoints("default/web/cluster", backends, None)
    rnd = random.Random(5)
    sizes = [rnd.randint(64 * 1024, 512 * 1024) for _ in range(200)]

    async def one(i: int) -> tuple[str, str]:
        payload = random.Random(i).randbytes(sizes[i])
        r, w = await asyncio.open_connection("127.0.0.1", port)

        async def send() -> None:
            for off in range(0, len(payload), 65536):
                w.write(payload[off:off + 65536])
                await w.drain()
            w.write_eof()

        sender = asyncio.ensure_future(send())
        got = await r.read()  # until the echo's EOF
        await sender
        w.close()
        return hashlib.sha256(payload).hexdigest(), hashlib.sha256(got).hexdigest()

    async def main() -> list[tuple[str, str]]:
        return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(main())
    assert len(results) == 200
    assert all(sent == got for sent, got in results)


@pytest.mark.integration
def test_half_close_delivers_the_reply(servers: Servers, proxy: ProxyServer) -> None:
    port = proxy.open_portal("default/hc/cluster", "TCP")
    proxy.set_endpoints("default/hc/cluster", [local(servers.reply_after_eof())], None)
    payload = random.Random(1).randbytes(300_000)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)  # the server answers only once it sees our EOF
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    reply = b"".join(chunks)
    digest, _, bulk = reply.partition(b"\n")
    assert digest.decode() == hashlib.sha256(payload).hexdigest()
    assert bulk == b"x" * (1 << 20)


@pytest.mark.integration
def test_slow_reader_does_not_grow_proxy_buffers(servers: Servers, proxy: ProxyServer) -> None:
    port = proxy.open_portal("default/slow/cluster", "TCP")
    proxy.set_endpoints("default/slow/cluster", [local(servers.sink())], None)
    cap = 256 << 20
    sent = 0
    chunk = b"y" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.setblocking(False)
        while sent < cap:
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                # stalled when the socket stays unwritable for a while: everything is full end to end
                if not select.select([], [s], [], 2.0)[1]:
                    break
        deadline = time.monotonic() + 30
        while (stats := proxy.stats())["connections"] != 1 and time.monotonic() < deadline:
            select.select([], [], [], 0.05)
        assert stats["connections"] == 1
    assert sent < cap, "the proxy kept accepting data its endpoint never read"
    assert stats["buffered_bytes"] <= 512 * 1024, stats


@pytest.mark.integration
def test_udp_request_response_and_sessions(servers: Servers, proxy: ProxyServer) -> None:
    port = proxy.open_portal("default/dns/cluster", "UDP")
    proxy.set_endpoints("default/dns/cluster", [local(servers.udp("a")), local(servers.udp("b"))], None)
    answers = []
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for i, s in enumerate(socks):
            s.settimeout(10)
            for n in range(2):  # a session sticks to its endpoint
                s.sendto(f"q{i}.{n}".encode(), ("127.0.0.1", port))
                data, src = s.recvfrom(2048)
                assert src == ("127.0.0.1", port)  # answered from the service's socket
                answers.append(data.decode())
    finally:
        for s in socks:
            s.close()
    by_sock = [answers[i:i + 2] for i in range(0, 8, 2)]
    for i, pair in enumerate(by_sock):
        assert pair[0].split(":")[1] == f"q{i}.0" and pair[0].split(":")[0] == pair[1].split(":")[0]
    assert {p[0].split(":")[0] for p in by_sock} == {"a", "b"}  # new sessions round-robin
    assert proxy.stats()["udp_sessions"] == 4


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        data = s.recv(n - len(buf))
        if not data:
            break
        buf += data
    return buf


@pytest.mark.integration
def test_endpoint_removal_closes_only_its_connections(servers: Servers, proxy: ProxyServer) -> None:
    a, b = local(servers.echo()), local(servers.echo())
    port = proxy.open_portal("default/two/cluster", "TCP")
    proxy.set_endpoints("default/two/cluster", [a, b], None)
    c1 = socket.create_connection(("127.0.0.1", port), timeout=10)
    c2 = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        for c in (c1, c2):
            c.sendall(b"ping")
            assert recv_exact(c, 4) == b"ping"
        first = a if a.addr < b.addr else b  # round robin starts at the first endpoint in ip:port order
        other = b if first is a else a
        # terminating (still listed, not chosen): its established connection keeps working
        proxy.set_endpoints("default/two/cluster", [other], None, present={a.addr, b.addr})
        c1.sendall(b"busy")
        assert recv_exact(c1, 4) == b"busy"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c3:
            c3.sendall(b"new!")
            assert recv_exact(c3, 4) == b"new!"
            assert proxy.stats()["connections"] == 3
        proxy.set_endpoints("default/two/cluster", [other], None)  # now gone from the list
        try:
            closed = c1.recv(10) == b""
        except ConnectionResetError:
            closed = True
        assert closed, "the connection to the removed endpoint stays open"
        c2.sendall(b"pong")
        assert recv_exact(c2, 4) == b"pong"  # the other endpoint's connection is untouched
    finally:
        c1.close()
        c2.close()


@pytest.mark.integration
def test_unreachable_endpoint_is_skipped(servers: Servers, proxy: ProxyServer) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        port = proxy.open_portal("default/flaky/cluster", "TCP")
        proxy.set_endpoints("default/flaky/cluster", [local(dead.getsockname()[1]), local(servers.echo())], None)
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"hi")
                assert recv_exact(c, 2) == b"hi"
    finally:
        dead.close()


@pytest.mark.integration
def test_no_endpoint_closes_the_connection(proxy: ProxyServer) -> None:
    port = proxy.open_portal("default/none/cluster", "TCP")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        try:
            assert c.recv(10) == b""
        except ConnectionResetError:
            pass


# ----------------------------------------------------------------------------- the plugin


class FakeInformer:
    def __init__(self) -> None:
        self.objs: dict[str, dict[str, dict]] = {"Service": {}, "EndpointSlice": {}, "Node": {}}
        self.revision = 0

    def put(self, obj: dict) -> Event:
        self.revision += 1
        self.objs[obj["kind"]][f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"] = obj
        return Event(self.revision, "ADDED", obj)

    def delete(self, kind: str, ns: str, name: str) -> Event:
        self.revision += 1
        return Event(self.revision, "DELETED", self.objs[kind].pop(f"{ns}/{name}"))

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [self.objs[kind][k] for k in sorted(self.objs[kind])]


def service(name: str, ip: str, proto: str = "TCP") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "ports": [{"port": 80, "protocol": proto, "targetPort": 8080}]}}


def slice_(name: str, *ports: int) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{name}-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"port": p, "protocol": "TCP"} for p in ports[:1]],
            "endpoints": [{"addresses": ["127.0.0.1"], "nodeName": "node1", "conditions": {"ready": True}}]}


@dataclass
class FakeKernel:
    fake: FakeRestore = field(default_factory=FakeRestore)
    restores: list[str] = field(default_factory=list)
    fail_next: int = 0
    conntrack_calls: list[tuple] = field(default_factory=list)

    def restore(self, text: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise KernelError("iptables-restore: line 3 failed")
        self.restores.append(text)
        self.fake.apply(text)

    def save(self) -> dict:
        return parse_save(self.fake.save())

    def delete_udp_to_service(self, ip: str, port: int) -> int:
        self.conntrack_calls.append(("service", ip, port))
        return 0

    def delete_udp_to_port(self, port: int) -> int:
        self.conntrack_calls.append(("port", port))
        return 0


class NoHealth:
    def update(self, services: object) -> None:
        pass

    def close(self) -> None:
        pass


class NoAnnounce:
    def sync(self, lb_map: object) -> set[str]:
        return set()


@pytest.mark.integration
def test_plugin_syncs_portals_and_rules(servers: Servers, proxy: ProxyServer) -> None:
    kernel = FakeKernel()
    plugin = UserspaceProxier(replace(NODE, node_ips=("127.0.0.1",)), server=proxy, restore_fn=kernel.restore,
                              save_fn=kernel.save, conntrack=kernel, healthcheck=NoHealth(),  # type: ignore[arg-type]
                              announcer=NoAnnounce())  # type: ignore[arg-type]
    inf = FakeInformer()
    echo = servers.echo()
    events = [inf.put(service("web", "10.96.0.20")), inf.put(slice_("web", echo))]
    plugin.sync(inf, events, 1.0)
    assert len(kernel.restores) == 1 and "-A PREROUTING" in kernel.restores[0]  # the first sync is full
    port = plugin.ports["default/web/cluster"]
    assert where(kernel.fake.ruleset(), POD, "10.96.0.20", 80) == f"redirect:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
    # an endpoint change reaches the proxy only: same rules, no restore
    echo2 = servers.echo()
    plugin.sync(inf, [inf.put(slice_("web", echo2))], 1.5)
    assert len(kernel.restores) == 1 and plugin.synced_revision == inf.revision
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"again")
        assert recv_exact(c, 5) == b"again"
    # nothing pending: no work
    plugin.sync(inf, [], 2.0)
    assert len(kernel.restores) == 1
    # a failed restore makes the next sync a full one
    kernel.fail_next = 1
    plugin.sync(inf, [inf.put(service("dns", "10.96.0.10", "UDP"))], 3.0)
    assert plugin.need_full and len(kernel.restores) == 1
    plugin.sync(inf, [], 4.0)
    assert len(kernel.restores) == 2 and "-D PREROUTING" in kernel.restores[1]
    assert ("service", "10.96.0.10", 80) in kernel.conntrack_calls  # UDP flows re-take the new rules
    # the service goes away: its rules first, then its socket
    plugin.sync(inf, [inf.delete("Service", "default", "web")], 5.0)
    assert "default/web/cluster" not in proxy.ports()
    assert where(kernel.fake.ruleset(), POD, "10.96.0.20", 80) == "ACCEPT"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    plugin.cleanup()
    assert ur.cleanup_text(kernel.save()) == ""


@pytest.mark.integration
def test_plugin_close_stops_listeners() -> None:
    kernel = FakeKernel()
    plugin = UserspaceProxier(replace(NODE, node_ips=("127.0.0.1",)), server=ProxyServer(bind_ip="127.0.0.1"),
                              restore_fn=kernel.restore, save_fn=kernel.save, conntrack=kernel,
                              healthcheck=NoHealth(), announcer=NoAnnounce())  # type: ignore[arg-type]
    inf = FakeInformer()
    plugin.sync(inf, [inf.put(service("web", "10.96.0.20"))], 1.0)
    port = plugin.ports["default/web/cluster"]
    plugin.close()
    deadline = time.monotonic() + 10
    refused = False
    while not refused and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            refused = True
    assert refused


def test_rules_view_shows_the_redirects_with_counters() -> None:
    from netk8s.proxy.rules_view import format_rules

    state = state_of(sport(node_port=30080), *TWO)
    fake = FakeRestore()
    fake.apply(ur.render(state, NODE, {"default/web/cluster": 40000}).text)
    saved = parse_save(fake.save())
    for table in saved.values():
        for rules_ in table.values():
            for r in rules_:
                r["packets"] = 20 if "REDIRECT" in r["rule"] and "cluster IP" in r["rule"] else 0
    text = format_rules(saved, "default/web", state)
    assert "KUBE-PORTALS-CONTAINER" in text and "KUBE-NODEPORT-HOST" in text
    assert "      20  -A KUBE-PORTALS-CONTAINER" in text and "userspace proxy" in text, text
