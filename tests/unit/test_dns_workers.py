"""The DNS server's worker processes (--workers N) and its UDP reply cache, for real on 127.0.0.1.

Which worker answers a datagram is the kernel's choice (they share one socket), so a test makes one
worker answer by stopping the others with SIGSTOP: a stopped process is skipped when the socket wakes a
reader. No root needed."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import DNSRecord

from netk8s.dns import records as rec
from netk8s.dns.server import DnsServer, ServerConfig
from netk8s.store.memory import MemoryStore
from netk8s.store.sqlite import SqliteStore
from tests.unit.test_dns_server import (
    LOCAL,
    WEB,
    GatedStore,
    addresses,
    ask,
    eslice,
    http_status,
    query,
    service,
    tcp,
    wait_for,
)

pytestmark = pytest.mark.integration  # DNS worker processes and their sockets

HEADLESS = "hl.default.svc.cluster.local"


def children(pid: int) -> set[int]:
    """PIDs whose parent is `pid` (from /proc/*/stat: the field after the parenthesised name)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def free_port() -> int:
    """A TCP port free right now (the probes need a fixed one: 0 turns them off)."""
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Cli:
    """`python -m netk8s.dns --workers N` on a free port; the parent's log line says ports and PIDs."""

    def __init__(self, url: str, workers: int) -> None:
        self.pids: list[int] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netk8s.dns", "--store", url, "--bind", LOCAL, "--port", "0",
             "--health-port", str(free_port()), "--ready-port", str(free_port()), "--upstream", "127.0.0.1:9",
             "--workers", str(workers)],
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        self.log: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not select.select([self.proc.stderr], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            found = re.search(r"serving on \S+:(\d+) \(health (\d+), ready (\d+)\) with \d+ workers \(pids ([\d, ]+)\)",
                              line)
            if found:
                self.port, self.health, self.ready = (int(found.group(i)) for i in (1, 2, 3))
                self.pids = [int(p) for p in found.group(4).split(", ")]
                return
        self.stop()
        raise AssertionError("no 'serving on' line:\n" + "".join(self.log))

    def answered_by(self, pid: int, check: Callable[[], bool], what: str) -> None:
        """Wait until `check` holds while every worker but `pid` is stopped (SIGSTOP)."""
        others = [p for p in self.pids if p != pid]
        for other in others:
            os.kill(other, signal.SIGSTOP)
        try:
            wait_for(check, f"{what} from worker {pid}", timeout=15)
        finally:
            for other in others:
                os.kill(other, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, SqliteStore]]:
    store = SqliteStore(tmp_path / "s.db")
    yield f"sqlite://{tmp_path / 's.db'}", store
    store.close()


@pytest.fixture
def clis() -> Iterator[Callable[..., Cli]]:
    started: list[Cli] = []

    def start(url: str, workers: int) -> Cli:
        cli = Cli(url, workers)
        started.append(cli)
        return cli

    yield start
    for cli in started:
        pids = list(cli.pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)  # a test that failed while a worker was stopped
            except ProcessLookupError:
                pass
        cli.stop()


def _safe_ask(port: int, name: str) -> DNSRecord | None:
    try:
        return ask(port, name)
    except OSError:
        return None


def _has(port: int, name: str, want: list[str]) -> bool:
    reply = _safe_ask(port, name)
    return reply is not None and addresses(reply) == want


def test_every_worker_answers_and_follows_the_store(db: tuple[str, SqliteStore],
                                                    clis: Callable[..., Cli]) -> None:
    url, store = db
    store.create(service("web", "10.96.0.20"))
    store.create(service("hl", "None"))
    store.create(eslice("hl", ["10.244.1.5"]))
    cli = clis(url, 2)
    assert len(cli.pids) == 2 and children(cli.proc.pid) == set(cli.pids)
    for pid in cli.pids:
        cli.answered_by(pid, lambda: _has(cli.port, WEB, ["10.96.0.20"]), "the ClusterIP")
        cli.answered_by(pid, lambda: _has(cli.port, HEADLESS, ["10.244.1.5"]), "the endpoint")
    store.put(eslice("hl", ["10.244.1.6", "10.244.2.7"]))  # each worker's informer sees it on its own
    for pid in cli.pids:
        cli.answered_by(pid, lambda: _has(cli.port, HEADLESS, ["10.244.1.6", "10.244.2.7"]), "the new endpoints")
    assert addresses(tcp(cli.port, [query(WEB)])[0]) == ["10.96.0.20"]
    wait_for(lambda: http_status(cli.ready, "/ready") == 200, "/ready 200 (worker 0)")
    assert http_status(cli.health, "/health") == 200


def test_stopping_the_parent_stops_the_workers(db: tuple[str, SqliteStore], clis: Callable[..., Cli]) -> None:
    url, store = db
    store.create(service("web", "10.96.0.20"))
    cli = clis(url, 2)
    wait_for(lambda: _has(cli.port, WEB, ["10.96.0.20"]), "an answer")
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(30) == 0
    wait_for(lambda: all(gone(pid) for pid in cli.pids), "workers gone", timeout=15)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the port is free again: nobody holds it
        s.bind((LOCAL, cli.port))


def test_workers_stop_when_the_parent_is_killed(db: tuple[str, SqliteStore], clis: Callable[..., Cli]) -> None:
    url, _ = db
    cli = clis(url, 2)
    cli.proc.kill()  # SIGKILL: the parent cannot stop them, they notice it is gone
    cli.proc.wait(10)
    wait_for(lambda: all(gone(pid) for pid in cli.pids), "orphaned workers gone", timeout=15)


def test_a_dead_worker_is_restarted(db: tuple[str, SqliteStore], clis: Callable[..., Cli]) -> None:
    url, store = db
    store.create(service("web", "10.96.0.20"))
    cli = clis(url, 2)
    os.kill(cli.pids[1], signal.SIGKILL)
    wait_for(lambda: len(children(cli.proc.pid) - set(cli.pids)) == 1, "a new worker", timeout=15)
    (new,) = children(cli.proc.pid) - set(cli.pids)
    cli.pids = [cli.pids[0], new]
    cli.answered_by(new, lambda: _has(cli.port, WEB, ["10.96.0.20"]), "the ClusterIP")


def test_cli_rejects_a_bad_worker_count() -> None:
    result = subprocess.run([sys.executable, "-m", "netk8s.dns", "--store", "memory://", "--workers", "-1"],
                            check=False, capture_output=True, text=True, timeout=20)
    assert result.returncode == 2 and "--workers" in result.stderr


def test_cli_with_workers_fails_when_the_port_is_taken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOCAL, 0))
        result = subprocess.run(
            [sys.executable, "-m", "netk8s.dns", "--store", "memory://", "--bind", LOCAL, "--port",
             str(taken.getsockname()[1]), "--health-port", "0", "--ready-port", "0", "--workers", "2"],
            check=False, capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr.strip().splitlines()[-1]


# ---- in-process: wait_sync and the reply cache ---------------------------------------------------------


def test_wait_sync_queues_queries_until_the_first_sync() -> None:
    inner, gate = MemoryStore(), threading.Event()
    inner.create(service("web", "10.96.0.20"))
    srv = DnsServer(GatedStore(inner, gate),  # type: ignore[arg-type]
                    ServerConfig(bind=LOCAL, port=0, health_port=None, ready_port=None, upstreams=[],
                                 wait_sync=True))
    srv.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(bytes(query(WEB).pack()), (LOCAL, srv.port))
            with pytest.raises(socket.timeout):
                s.recvfrom(65535)  # no SERVFAIL from an empty table: nothing reads the socket yet
            gate.set()
            s.settimeout(10)
            reply = DNSRecord.parse(s.recvfrom(65535)[0])  # the queued query, answered after the sync
        assert reply.header.rcode == rec.NOERROR and addresses(reply) == ["10.96.0.20"]
    finally:
        gate.set()
        srv.stop()
        inner.close()


def _synced_server(store: MemoryStore, **cfg: Any) -> DnsServer:
    srv = DnsServer(store, ServerConfig(bind=LOCAL, port=0, health_port=None, ready_port=None, upstreams=[],
                                        **cfg))
    srv.apply([("ADDED", obj) for kind in ("Service", "EndpointSlice") for obj in store.list(kind)[0]], 1)
    srv.ready.set()
    return srv


def test_reply_cache_splices_the_id_and_keeps_ra_per_client() -> None:
    store = MemoryStore()
    store.create(service("web", "10.96.0.20"))
    srv = _synced_server(store)
    q = query(WEB)
    q.header.id = 1
    first = srv.answer_udp(bytes(q.pack()), ("10.244.1.5", 5000))
    q.header.id = 2
    cached = srv.answer_udp(bytes(q.pack()), ("10.244.1.5", 5001))
    outsider = srv.answer_udp(bytes(q.pack()), ("192.168.56.100", 5002))
    assert isinstance(first, bytes) and isinstance(cached, bytes) and isinstance(outsider, bytes)
    assert len(srv._replies[True]) == 1 and len(srv._replies[False]) == 1  # the cache itself
    assert DNSRecord.parse(first).header.id == 1 and DNSRecord.parse(cached).header.id == 2
    assert first[2:] == cached[2:]
    assert DNSRecord.parse(cached).header.ra == 1 and DNSRecord.parse(outsider).header.ra == 0
    store.close()


def test_reply_cache_never_serves_an_answer_from_before_a_change() -> None:
    store = MemoryStore()
    store.create(service("hl", "None"))
    store.create(eslice("hl", ["10.244.1.5"]))
    srv = _synced_server(store)
    data = bytes(query(HEADLESS).pack())
    for _ in range(2):  # the second one comes from the cache
        reply = srv.answer_udp(data, ("127.0.0.1", 5000))
        assert isinstance(reply, bytes) and addresses(DNSRecord.parse(reply)) == ["10.244.1.5"]
    changed = eslice("hl", ["10.244.1.9"])
    store.put(changed)
    srv.apply([("MODIFIED", changed)], 2)
    reply = srv.answer_udp(data, ("127.0.0.1", 5000))
    assert isinstance(reply, bytes) and addresses(DNSRecord.parse(reply)) == ["10.244.1.9"]
    store.close()
