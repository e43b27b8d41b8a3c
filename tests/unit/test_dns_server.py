"""The DNS server for real on 127.0.0.1: UDP/TCP, 0x20, EDNS0 and TC, store following, forwarding + cache,
no open recursion, readiness, and the CLI's errors. No root needed."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import EDNS0, QTYPE, DNSRecord

from netk8s.dns import records as rec
from netk8s.dns.server import DnsServer, ServerConfig
from netk8s.dns.upstream import UpstreamServer
from netk8s.store.base import Store
from netk8s.store.memory import MemoryStore
from netk8s.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration  # DNS servers on 127.0.0.1 sockets, and the CLI as a process

LOCAL = "127.0.0.1"
WEB = "web.default.svc.cluster.local"


def service(name: str, cluster_ip: str, ports: list[dict] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip, "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def eslice(svc: str, ips: list[str]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-abcde", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = SqliteStore(tmp_path / "s.db")
    yield s
    s.close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Any]]:
    started: list[Any] = []

    def start(server: Any) -> Any:
        server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


def dns_server(store: Store, clock: Callable[[], float] = time.monotonic, **cfg: Any) -> DnsServer:
    cfg.setdefault("upstreams", [])
    return DnsServer(store, ServerConfig(bind=LOCAL, port=0, health_port=0, ready_port=0, **cfg), clock=clock)


def query(name: str, qtype: str = "A", edns: int = 0) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=edns))
    return q


def udp(port: int, q: DNSRecord | bytes, timeout: float = 3.0) -> bytes:
    data = q if isinstance(q, bytes) else bytes(q.pack())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (LOCAL, port))
        reply, _ = s.recvfrom(65535)
        return reply


def ask(port: int, name: str, qtype: str = "A", edns: int = 0) -> DNSRecord:
    return DNSRecord.parse(udp(port, query(name, qtype, edns)))


def tcp(port: int, queries: list[DNSRecord]) -> list[DNSRecord]:
    """Several queries over one TCP connection (RFC 7766 framing)."""
    out = []
    with socket.create_connection((LOCAL, port), timeout=3) as s:
        for q in queries:
            data = bytes(q.pack())
            s.sendall(len(data).to_bytes(2, "big") + data)
            size = int.from_bytes(_read(s, 2), "big")
            out.append(DNSRecord.parse(_read(s, size)))
    return out


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def ready(srv: DnsServer) -> DnsServer:
    assert srv.ready.wait(5), "server did not sync"
    return srv


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{LOCAL}:{port}{path}", timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_udp_and_tcp_answer_cluster_names(store: Store, servers: Callable[..., Any]) -> None:
    store.create(service("web", "10.96.0.20"))
    srv = ready(servers(dns_server(store)))
    reply = ask(srv.port, WEB)
    assert addresses(reply) == ["10.96.0.20"] and reply.header.aa and reply.header.rcode == rec.NOERROR
    a, srv_rr, txt, nx = tcp(srv.port, [query(WEB), query(f"_http._tcp.{WEB}", "SRV"),
                                        query("dns-version.cluster.local", "TXT"), query("x.cluster.local")])
    assert addresses(a) == ["10.96.0.20"]
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv_rr.rr] == [(80, WEB + ".")]
    assert addresses(DNSRecord(rr=srv_rr.ar)) == ["10.96.0.20"]
    assert [str(rr.rdata) for rr in txt.rr] == ['"1.1.0"']
    assert nx.header.rcode == rec.NXDOMAIN and nx.auth[0].rtype == QTYPE.SOA


def test_question_case_is_echoed_0x20(store: Store, servers: Callable[..., Any]) -> None:
    store.create(service("web", "10.96.0.20"))
    srv = ready(servers(dns_server(store)))
    for name in ("wEb.DeFaUlT.sVc.ClUsTeR.lOcAl", "NoPe.default.svc.cluster.local"):
        data = bytes(query(name).pack())
        reply = udp(srv.port, data)
        assert reply[:2] == data[:2]
        assert reply[12:12 + len(data) - 12] == data[12:]  # the question, byte for byte
    assert addresses(DNSRecord.parse(udp(srv.port, bytes(query("WEB.default.svc.cluster.local").pack())))) == [
        "10.96.0.20"]


def test_edns0_buffer_avoids_tc_and_tcp_returns_everything(store: Store, servers: Callable[..., Any]) -> None:
    store.create(service("big", "None"))
    ips = [f"10.244.{1 + i // 200}.{i % 200 + 2}" for i in range(100)]
    store.create(eslice("big", ips))
    srv = ready(servers(dns_server(store)))
    name = "big.default.svc.cluster.local"
    plain = ask(srv.port, name)
    assert plain.header.tc and not plain.rr
    edns = ask(srv.port, name, edns=4096)
    assert not edns.header.tc and addresses(edns) == sorted(ips)
    assert any(rr.rtype == QTYPE.OPT for rr in edns.ar)
    small_edns = ask(srv.port, name, edns=512)
    assert small_edns.header.tc and any(rr.rtype == QTYPE.OPT for rr in small_edns.ar)
    (over_tcp,) = tcp(srv.port, [query(name)])
    assert not over_tcp.header.tc and addresses(over_tcp) == sorted(ips)


def test_store_changes_are_answered_without_restart(store: Store, servers: Callable[..., Any]) -> None:
    srv = ready(servers(dns_server(store)))
    name = "db.default.svc.cluster.local"
    assert ask(srv.port, name).header.rcode == rec.NXDOMAIN
    store.create(service("db", "None"))
    for n in (2, 4, 1):
        ips = [f"10.244.1.{10 + i}" for i in range(n)]
        slc = store.try_get("EndpointSlice", "default", "db-abcde")
        if slc is None:
            store.create(eslice("db", ips))
        else:
            slc["endpoints"] = eslice("db", ips)["endpoints"]
            store.update(slc)
        wait_for(lambda: addresses(ask(srv.port, name)) == ips, f"{n} endpoints")  # noqa: B023 - called at once
    store.delete("Service", "default", "db")
    wait_for(lambda: ask(srv.port, name).header.rcode == rec.NXDOMAIN, "deleted service")


def test_forwarding_caches_by_ttl(store: Store, servers: Callable[..., Any]) -> None:
    upstream = servers(UpstreamServer("lab.example", {"api": "10.1.2.3"}, ttl=60, bind=LOCAL, port=0))
    clock = FakeClock()
    srv = ready(servers(dns_server(store, clock=clock, upstreams=[(LOCAL, upstream.port)])))
    first = ask(srv.port, "www.lab.example")
    assert addresses(first) == ["192.168.56.100"] and first.rr[0].ttl == 60 and first.header.ra
    assert upstream.queries == 1
    clock.now += 20
    second = ask(srv.port, "WWW.Lab.Example")  # same cache entry, whatever the case
    assert addresses(second) == ["192.168.56.100"] and second.rr[0].ttl == 40
    assert str(second.q.qname) == "WWW.Lab.Example."
    assert upstream.queries == 1
    clock.now += 41  # past the TTL: asked again
    assert addresses(ask(srv.port, "www.lab.example")) == ["192.168.56.100"]
    assert upstream.queries == 2
    # Negative answers are cached for the SOA minimum (capped at 30 s), with the SOA kept.
    for _ in range(2):
        nx = ask(srv.port, "nope.lab.example")
        assert nx.header.rcode == rec.NXDOMAIN and nx.auth[0].rtype == QTYPE.SOA
    assert upstream.queries == 3
    clock.now += 31
    ask(srv.port, "nope.lab.example")
    assert upstream.queries == 4
    (txt,) = tcp(srv.port, [query("hello.lab.example", "TXT")])
    assert [str(rr.rdata) for rr in txt.rr] == ['"netk8s upstream"']


def test_forwarding_tries_the_next_upstream(store: Store, servers: Callable[..., Any]) -> None:
    upstream = servers(UpstreamServer("lab.example", bind=LOCAL, port=0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:  # bound, never answers
        dead.bind((LOCAL, 0))
        srv = dns_server(store, upstreams=[(LOCAL, dead.getsockname()[1]), (LOCAL, upstream.port)])
        srv.forwarder.timeout = 0.3
        ready(servers(srv))
        assert addresses(ask(srv.port, "ext.lab.example")) == ["192.168.56.100"]


def test_no_recursion_for_clients_outside_allow(store: Store, servers: Callable[..., Any]) -> None:
    store.create(service("web", "10.96.0.20"))
    upstream = servers(UpstreamServer("lab.example", bind=LOCAL, port=0))
    srv = ready(servers(dns_server(store, upstreams=[(LOCAL, upstream.port)],
                                   allow=[ipaddress.ip_network("10.0.0.0/8")])))
    refused = ask(srv.port, "www.lab.example")
    assert refused.header.rcode == rec.REFUSED and not refused.rr
    assert upstream.queries == 0  # never asked upstream on behalf of an outsider
    cluster = ask(srv.port, WEB)  # cluster names are answered to anyone, without RA
    assert addresses(cluster) == ["10.96.0.20"] and not cluster.header.ra


class GatedStore:
    """A store whose list() waits for a gate: the server stays before its first sync."""

    def __init__(self, inner: Store, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[dict], int]:
        self.gate.wait(10)
        return self.inner.list(kind, namespace)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_ready_only_after_first_sync() -> None:
    inner, gate = MemoryStore(), threading.Event()
    inner.create(service("web", "10.96.0.20"))
    srv = dns_server(GatedStore(inner, gate))  # type: ignore[arg-type]
    srv.start()
    try:
        assert http_status(srv.ready_port, "/ready") == 503
        assert http_status(srv.health_port, "/health") == 200
        assert http_status(srv.health_port, "/nothing") == 404
        assert ask(srv.port, WEB).header.rcode == rec.SERVFAIL  # not "no such name" before we know
        gate.set()
        wait_for(lambda: http_status(srv.ready_port, "/ready") == 200, "/ready 200")
        assert addresses(ask(srv.port, WEB)) == ["10.96.0.20"]
    finally:
        gate.set()
        srv.stop()
        inner.close()


def test_odd_packets_get_errors_not_crashes(store: Store, servers: Callable[..., Any]) -> None:
    store.create(service("web", "10.96.0.20"))
    srv = ready(servers(dns_server(store)))
    q = bytes(query(WEB).pack())
    notimp = DNSRecord.parse(udp(srv.port, q[:2] + bytes([q[2] | 0x20]) + q[3:]))  # opcode 4 (NOTIFY)
    assert notimp.header.rcode == rec.NOTIMP
    formerr = DNSRecord.parse(udp(srv.port, q[:12] + b"\xc0\x0c\x00\x01\x00\x01"))  # pointer loop
    assert formerr.header.rcode == rec.FORMERR
    chaos = DNSRecord.parse(udp(srv.port, q[:-2] + b"\x00\x03"))  # class CH
    assert chaos.header.rcode == rec.REFUSED
    # A pointer in the question can only point forward (it is the first name): FORMERR, like dnslib says.
    compressed = q[:12] + b"\x03web\xc0\x16\x00\x01\x00\x01" + b"\x07default\x03svc\x07cluster\x05local\x00"
    reply = DNSRecord.parse(udp(srv.port, compressed))
    assert reply.header.rcode == rec.FORMERR and reply.header.id == notimp.header.id
    # Too short to answer, or a response: dropped. The next reply on the socket is the valid query's.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(q[:4] + b"\x00", (LOCAL, srv.port))
        s.sendto(q[:2] + bytes([q[2] | 0x80]) + q[3:], (LOCAL, srv.port))
        s.sendto(b"\x99\x99" + q[2:], (LOCAL, srv.port))
        assert s.recvfrom(65535)[0][:2] == b"\x99\x99"
    assert srv.errors == 0
    assert addresses(ask(srv.port, WEB)) == ["10.96.0.20"]


def test_upstream_server_is_authoritative_for_its_zone_only(servers: Callable[..., Any]) -> None:
    up = servers(UpstreamServer("lab.example", {"api.lab.example": "10.1.2.3"}, bind=LOCAL, port=0))
    assert addresses(ask(up.port, "API.lab.example")) == ["10.1.2.3"]
    nx = ask(up.port, "missing.lab.example")
    assert nx.header.rcode == rec.NXDOMAIN and nx.auth[0].rtype == QTYPE.SOA and nx.header.aa
    nodata = ask(up.port, "www.lab.example", "AAAA")
    assert nodata.header.rcode == rec.NOERROR and not nodata.rr and nodata.auth
    assert ask(up.port, "www.example.com").header.rcode == rec.REFUSED


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netk8s.dns", *args], check=False, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_rejects_a_bad_port_in_one_line() -> None:
    result = run_cli("--store", "memory://", "--port", "notanumber")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "--port" in result.stderr


def test_cli_fails_when_the_port_is_taken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOCAL, 0))
        result = run_cli("--store", "memory://", "--bind", LOCAL, "--port", str(taken.getsockname()[1]),
                         "--health-port", "0", "--ready-port", "0", "--upstream", "127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot listen" in result.stderr.strip().splitlines()[-1]


def external_name(name: str, target: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": target}}


def test_external_name_cname_is_chased_like_coredns(store: Store, servers: Callable[..., Any]) -> None:
    """glibc's stub resolver does not follow a CNAME itself: the server answers CNAME + the target's A."""
    store.create(service("web", "10.96.0.20"))
    store.create(external_name("out", "www.lab.example"))
    store.create(external_name("in", WEB))
    upstream = servers(UpstreamServer("lab.example", bind=LOCAL, port=0))
    srv = ready(servers(dns_server(store, upstreams=[(LOCAL, upstream.port)])))
    out = ask(srv.port, "out.default.svc.cluster.local")
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in out.rr] == [("CNAME", "www.lab.example."),
                                                                   ("A", "192.168.56.100")]
    assert [str(rr.rdata) for rr in ask(srv.port, "out.default.svc.cluster.local", "CNAME").rr] == ["www.lab.example."]
    inside = ask(srv.port, "in.default.svc.cluster.local")
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in inside.rr] == [("CNAME", WEB + "."), ("A", "10.96.0.20")]
    missing = ask(srv.port, "out.default.svc.cluster.local", "TXT")  # the target has no TXT: NODATA upstream
    assert [QTYPE[rr.rtype] for rr in missing.rr] == ["CNAME"] and missing.header.rcode == rec.NOERROR


def test_external_name_not_chased_for_outsiders(store: Store, servers: Callable[..., Any]) -> None:
    store.create(external_name("out", "www.lab.example"))
    upstream = servers(UpstreamServer("lab.example", bind=LOCAL, port=0))
    srv = ready(servers(dns_server(store, upstreams=[(LOCAL, upstream.port)],
                                   allow=[ipaddress.ip_network("10.0.0.0/8")])))
    out = ask(srv.port, "out.default.svc.cluster.local")
    assert [QTYPE[rr.rtype] for rr in out.rr] == ["CNAME"] and upstream.queries == 0
