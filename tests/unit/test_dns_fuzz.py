"""Robustness: 100,000 hostile packets through the real UDP socket of a running DNS server process.

Random bytes, truncated and bit-flipped valid queries, scapy fuzz(DNS(...)) packets, huge label counts and
compression loops. The server (a subprocess, forwarding to an upstream subprocess) must stay alive and
still answer a valid query correctly. Packets are pre-generated from a seeded pool; the sender does not
wait for a reply to each, only syncs with a valid probe every so often so the kernel does not simply
drop most of them before the server sees them.
"""

from __future__ import annotations

import queue
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import EDNS0, DNSRecord
from scapy.layers.dns import DNS, DNSQR, DNSRROPT
from scapy.packet import fuzz

from netk8s.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration  # a DNS server process and its UDP socket

LOCAL = "127.0.0.1"
PACKETS = 100_000
SYNC_EVERY = 250
NAMES = ["web.default.svc.cluster.local", "db.default.svc.cluster.local", "_http._tcp.web.default.svc.cluster.local",
         "20.0.96.10.in-addr.arpa", "10-244-1-5.default.pod.cluster.local", "www.lab.example", "cluster.local",
         "dns-version.cluster.local", "nope.lab.example", "x.example.com", "default.svc.cluster.local"]
QTYPES = ["A", "AAAA", "SRV", "PTR", "TXT", "ANY", "SOA", "CNAME", "AXFR"]


class Proc:
    """A subprocess whose stderr is read by a thread (so it never blocks on a full pipe)."""

    def __init__(self, argv: list[str]) -> None:
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.put(line)

    def wait_for_port(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.popen.poll() is None, f"exited: {''.join(self.seen)}"
                continue
            self.seen.append(line)
            m = re.search(r" on 127\.0\.0\.1:(\d+) udp\+tcp", line)
            if m:
                return int(m.group(1))
        raise AssertionError(f"no start line: {''.join(self.seen)}")

    def drain(self) -> list[str]:
        """Every stderr line so far."""
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        if self.popen.stderr is not None:
            self.popen.stderr.close()


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[tuple[Proc, int]]:
    db = tmp_path / "s.db"
    store = SqliteStore(db)
    store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                  "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}})
    store.close()
    procs: list[Proc] = []
    try:
        upstream = Proc([sys.executable, "-m", "netk8s.dns.upstream", "--bind", LOCAL, "--port", "0",
                         "--zone", "lab.example"])
        procs.append(upstream)
        up_port = upstream.wait_for_port()
        server = Proc([sys.executable, "-m", "netk8s.dns", "--store", f"sqlite:///{db}", "--bind", LOCAL,
                       "--port", "0", "--upstream", f"{LOCAL}:{up_port}", "--health-port", "0",
                       "--ready-port", "0"])
        procs.append(server)
        yield server, server.wait_for_port()
    finally:
        for p in reversed(procs):
            p.stop()


def valid_queries() -> list[bytes]:
    out = []
    for name in NAMES:
        for qtype in QTYPES:
            q = DNSRecord.question(name, qtype)
            out.append(bytes(q.pack()))
            q.add_ar(EDNS0(udp_len=4096))
            out.append(bytes(q.pack()))
    return out


def handmade(rng: random.Random) -> list[bytes]:
    """Packets aimed at the parser's edges."""
    header = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    tail = b"\x00\x01\x00\x01"
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"
    with_opt = header[:11] + b"\x01"
    name = b"\x03web\x07default\x03svc\x07cluster\x05local\x00"
    return [
        header + b"\x01a" * 127 + b"\x00" + tail,  # 255-byte name: the limit
        header + b"\x01a" * 200 + b"\x00" + tail,  # far over 255 bytes
        header + b"\x3fa" + b"a" * 62 + b"\x00" + tail,  # label of 63
        header + b"\xc0\x0c" + tail,  # pointer to itself
        header + b"\x01a\xc0\x0e\xc0\x0c" + tail,  # two pointers in a loop
        header + b"\xc0\x00" + tail,  # pointer into the header
        header + b"\xff\xff" + tail,  # pointer past the end
        header + b"\x40a\x00" + tail,  # reserved label type 0x40
        header + b"\x80a\x00" + tail,  # reserved label type 0x80
        header[:4] + b"\xff\xff" + header[6:] + name + tail,  # QDCOUNT 65535
        header[:4] + b"\x00\x00" + header[6:],  # no question
        with_opt + name + tail,  # ARCOUNT 1, no OPT
        with_opt + name + tail + opt[:5],  # truncated OPT
        with_opt + name + tail + opt[:9] + b"\xff\xff",  # OPT rdlen past the end
        with_opt + name + tail + opt[:5] + b"\x00\x01" + opt[7:],  # EDNS version 1
        with_opt + name + tail + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00",  # ARCOUNT 1, an A record
        header[:11] + b"\x0a" + name + tail + opt * 10,  # ten OPT records
        header + name + tail + rng.randbytes(60000),  # valid query, huge trailing garbage
        header[:2] + b"\x81\x80" + header[4:] + name + tail,  # a response (must not be answered)
        header[:2] + b"\x28\x00" + header[4:] + name + tail,  # opcode UPDATE
        header + name + b"\x00\xfc\x00\x01",  # AXFR
        header + name + b"\x00\x01\x00\x03",  # class CH
        header + b"\x3f" + bytes(range(192, 255)) + b"\x00" + tail,  # binary label
    ]


def scapy_pool(rng: random.Random, count: int = 300) -> list[bytes]:
    out = []
    for i in range(count):
        qd = DNSQR(qname=rng.choice(NAMES), qtype=rng.choice([1, 28, 33, 12, 16, 255]))
        pkt = DNS(qd=qd, ar=DNSRROPT(rclass=4096)) if i % 3 == 0 else DNS(qd=qd)
        out.append(bytes(fuzz(pkt)))
    return out


def flip(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        bit = rng.randrange(len(b) * 8)
        b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def packets(rng: random.Random, n: int) -> Iterator[bytes]:
    valid, edge, fuzzed = valid_queries(), handmade(rng), scapy_pool(rng)
    for i in range(n):
        kind = i % 7
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 600))
        elif kind == 1:
            v = rng.choice(valid)
            yield v[:rng.randrange(len(v))]
        elif kind in (2, 3):
            yield flip(rng, rng.choice(valid))
        elif kind == 4:
            yield rng.choice(fuzzed) if rng.random() < 0.5 else flip(rng, rng.choice(fuzzed))
        elif kind == 5:
            yield rng.choice(edge)
        else:
            yield rng.choice(valid)[:12] + rng.randbytes(rng.randrange(0, 80))


def probe(port: int, timeout: float = 10.0) -> DNSRecord:
    """A valid query, retried until its own reply comes back (fuzz replies and drops are expected)."""
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    data = bytes(q.pack())
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            s.sendto(data, (LOCAL, port))
            try:
                while True:
                    reply, _ = s.recvfrom(65535)
                    if reply[:2] == data[:2]:
                        return DNSRecord.parse(reply)
            except TimeoutError:
                continue
    raise AssertionError("the server stopped answering")


def test_server_survives_100k_fuzzed_packets(dns: tuple[Proc, int]) -> None:
    proc, port = dns
    # before its first store sync the server answers SERVFAIL (no records yet): wait for the sync
    deadline = time.monotonic() + 30
    while not (first := probe(port)).rr and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [str(rr.rdata) for rr in first.rr] == ["10.96.0.20"]
    rng = random.Random(4)
    delivered = 0  # sendto() accepted it (a full send buffer just loses the packet)
    probes_answered = 0
    replies: list[bytes] = []  # what the server sent back to the fuzz packets
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)

        def drain() -> None:  # collect the replies to fuzz packets so they do not pile up
            try:
                while True:
                    replies.append(s.recv(65535))
            except BlockingIOError:
                pass

        for i, data in enumerate(packets(rng, PACKETS), start=1):
            try:
                s.sendto(data, (LOCAL, port))
                delivered += 1
            except (BlockingIOError, OSError):
                pass  # e.g. EMSGSIZE for nothing here, or a full send buffer: the packet is just lost
            if i % SYNC_EVERY == 0:
                assert [str(rr.rdata) for rr in probe(port).rr] == ["10.96.0.20"]
                probes_answered += 1
                assert proc.popen.poll() is None
            if i % 2000 == 0:
                drain()
        drain()
    # The server kept answering valid queries correctly all along, and it answered fuzz: every reply is
    # a DNS response (at least a header, QR bit set), never an echo or garbage.
    assert probes_answered == PACKETS // SYNC_EVERY
    assert delivered > PACKETS // 2, f"only {delivered} of {PACKETS} packets reached the socket"
    assert replies, "the server answered none of the fuzz packets"
    assert all(len(r) >= 12 and r[2] & 0x80 for r in replies), "a reply that is not a DNS response"
    reply = probe(port)
    assert proc.popen.poll() is None, "the server process died"
    assert reply.header.rcode == 0 and [str(rr.rdata) for rr in reply.rr] == ["10.96.0.20"]
    forwarded = DNSRecord.parse(DNSRecord.question("www.lab.example", "A").send(LOCAL, port, timeout=5))
    assert [str(rr.rdata) for rr in forwarded.rr] == ["192.168.56.100"]
    (tcp,) = [DNSRecord.parse(DNSRecord.question("web.default.svc.cluster.local").send(LOCAL, port, tcp=True,
                                                                                       timeout=5))]
    assert [str(rr.rdata) for rr in tcp.rr] == ["10.96.0.20"]
    assert not any("Traceback" in line for line in proc.drain()), "".join(proc.seen)
