"""Probes against real servers on 127.0.0.1, and the threshold bookkeeping of ProbeTracker."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from netk8s.node.probes import ProbeTracker, resolve_port, run_probe


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, str]]] = []
    release_slow: ClassVar[threading.Event] = threading.Event()  # /slow answers only once this is set

    def log_message(self, format: str, *args: object) -> None:
        """Silence."""

    def do_GET(self) -> None:
        Handler.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        if self.path == "/slow":
            Handler.release_slow.wait(60)
        status = {"/ok": 200, "/redirect": 302, "/fail": 500, "/slow": 200}.get(self.path, 404)
        body = b"broken" if status == 500 else b"fine"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 302:
            self.send_header("Location", "/ok")
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        """The /slow client gave up (the timeout under test); its broken pipe is expected."""


@pytest.fixture
def http_port() -> Iterator[int]:
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def no_exec(argv: Sequence[str], timeout: float) -> int:
    raise AssertionError("exec_fn must not be called")


def container(port: int) -> dict:
    return {"name": "web", "ports": [{"name": "http", "containerPort": port}]}


def http_probe(path: str, port: object, **extra: object) -> dict:
    return {"httpGet": {"path": path, "port": port}, **extra}


@pytest.mark.parametrize(
    ("path", "ok", "message"),
    [
        ("/ok", True, "statuscode: 200"),
        ("/redirect", True, "statuscode: 302"),
        ("/fail", False, "HTTP probe failed with statuscode: 500, body: broken"),
        ("/missing", False, "statuscode: 404"),
    ],
)
@pytest.mark.integration
def test_http_status(http_port: int, path: str, ok: bool, message: str) -> None:
    result = run_probe(http_probe(path, http_port), "127.0.0.1", container(http_port), no_exec)
    assert result[0] is ok
    assert message in result[1]


@pytest.mark.integration
def test_http_named_port_host_and_headers(http_port: int) -> None:
    Handler.seen.clear()
    probe = {"httpGet": {"path": "/ok", "port": "http", "host": "127.0.0.1",
                         "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}}
    ok, _ = run_probe(probe, "192.0.2.1", container(http_port), no_exec)  # host overrides the pod IP
    assert ok
    assert Handler.seen[-1]["path"] == "/ok"
    assert Handler.seen[-1]["x-probe"] == "yes"
    assert Handler.seen[-1]["user-agent"].startswith("kube-probe/")


@pytest.mark.integration
def test_http_timeout(http_port: int) -> None:
    # Event order, not a stopwatch: the server answers only after run_probe returned, so the probe
    # can only have come back through its own timeout.
    Handler.release_slow.clear()
    try:
        ok, message = run_probe(http_probe("/slow", http_port, timeoutSeconds=0.3), "127.0.0.1",
                                container(http_port), no_exec)
    finally:
        Handler.release_slow.set()
    assert not ok
    assert "timeout" in message


@pytest.mark.integration
def test_http_refused_and_unknown_named_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, not listening: connections are refused
        ok, message = run_probe(http_probe("/", closed), "127.0.0.1", {}, no_exec)
        assert not ok and "refused" in message
    ok, message = run_probe(http_probe("/", "metrics"), "127.0.0.1", container(1), no_exec)
    assert not ok and "metrics" in message


@pytest.mark.integration
def test_tcp_open_and_closed() -> None:
    with socket.socket() as listener, socket.socket() as idle:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        idle.bind(("127.0.0.1", 0))
        open_port, closed_port = listener.getsockname()[1], idle.getsockname()[1]
        assert run_probe({"tcpSocket": {"port": open_port}}, "127.0.0.1", {}, no_exec)[0]
        ok, message = run_probe({"tcpSocket": {"port": closed_port}}, "127.0.0.1", {}, no_exec)
        assert not ok and f"127.0.0.1:{closed_port}" in message


def test_exec_probe() -> None:
    calls: list[tuple[list[str], float]] = []

    def fake(argv: Sequence[str], timeout: float) -> int:
        calls.append((list(argv), timeout))
        return 0 if argv[-1] == "good" else 2

    probe = {"exec": {"command": ["check", "good"]}, "timeoutSeconds": 4}
    assert run_probe(probe, "10.0.0.1", {}, fake) == (True, "command ['check', 'good'] exited with 0")
    ok, message = run_probe({"exec": {"command": ["check", "bad"]}}, "10.0.0.1", {}, fake)
    assert not ok and message.endswith("exited with 2")
    assert calls == [(["check", "good"], 4.0), (["check", "bad"], 1.0)]

    def slow(argv: Sequence[str], timeout: float) -> int:
        raise TimeoutError

    assert run_probe({"exec": {"command": ["x"]}}, "10.0.0.1", {}, slow)[0] is False


def test_probe_without_handler() -> None:
    assert run_probe({"periodSeconds": 1}, "10.0.0.1", {}, no_exec)[0] is False
    assert run_probe({"grpc": {"port": 1}}, "10.0.0.1", {}, no_exec) == (False, "grpc probes are not supported")


def test_resolve_port() -> None:
    c = container(8080)
    assert resolve_port(80, c) == 80
    assert resolve_port("http", c) == 8080
    assert resolve_port("9090", c) == 9090
    with pytest.raises(ValueError):
        resolve_port(None, c)


# ---- ProbeTracker ---------------------------------------------------------------------------

READY = ("uid1", "web", "readiness")
LIVE = ("uid1", "web", "liveness")


def test_due_respects_initial_delay_and_period() -> None:
    t = ProbeTracker()
    probe = {"initialDelaySeconds": 5, "periodSeconds": 10}
    assert not t.due(READY, probe, started_at=100.0, now=104.9)
    assert t.due(READY, probe, started_at=100.0, now=105.0)
    assert not t.due(READY, probe, started_at=100.0, now=114.9)
    assert t.due(READY, probe, started_at=100.0, now=115.0)
    assert t.due(LIVE, {}, started_at=100.0, now=100.0)  # defaults: no delay
    assert not t.due(LIVE, {}, started_at=100.0, now=109.0)  # default period 10s


def test_readiness_thresholds() -> None:
    t = ProbeTracker()
    probe = {"successThreshold": 2, "failureThreshold": 3}
    assert t.state(READY) is False  # unready until proven ready
    assert t.record(READY, probe, True) is None
    assert t.record(READY, probe, True) is True  # second consecutive success flips to ready
    assert t.record(READY, probe, True) is None  # no flip while it stays ready
    assert t.record(READY, probe, False) is None
    assert t.record(READY, probe, False) is None
    assert t.record(READY, probe, True) is None  # a success resets the failure count
    assert t.record(READY, probe, False) is None
    assert t.record(READY, probe, False) is None
    assert t.record(READY, probe, False) is False  # third consecutive failure flips to unready
    assert t.state(READY) is False


def test_liveness_restart_needed_and_reset_on_new_start() -> None:
    t = ProbeTracker()
    probe = {"failureThreshold": 2, "periodSeconds": 1}
    assert t.due(LIVE, probe, started_at=10.0, now=10.0)
    assert t.state(LIVE) is True  # live until proven dead
    assert t.record(LIVE, probe, False) is None
    assert t.record(LIVE, probe, False) is False  # restart needed
    assert t.record(LIVE, probe, False) is None  # said once
    # the container was restarted: a new start time starts the key over
    assert t.due(LIVE, probe, started_at=20.0, now=20.0)
    assert t.state(LIVE) is True
    assert t.record(LIVE, probe, False) is None


def test_startup_and_forget() -> None:
    t = ProbeTracker()
    key = ("uid2", "db", "startup")
    assert t.state(key) is None
    assert t.record(key, {}, True) is True
    t.record(READY, {}, True)
    t.forget_pod("uid1")
    assert t.state(READY) is False
    assert t.state(key) is True


def test_reset_and_field_name_kinds() -> None:
    t = ProbeTracker()
    live = ("uid1", "web", "livenessProbe")  # the container field name works as the kind too
    ready = ("uid1", "web", "readinessProbe")
    assert t.state(live) is True and t.state(ready) is False
    assert t.record(ready, {}, True) is True
    assert t.record(live, {"failureThreshold": 1}, False) is False
    t.record(("uid1", "db", "readinessProbe"), {}, True)
    t.reset("uid1", "web")  # every kind of one container
    assert t.state(live) is True and t.state(ready) is False
    assert t.state(("uid1", "db", "readinessProbe")) is True
    t.reset(("uid1", "db", "readinessProbe"))
    assert t.state(("uid1", "db", "readinessProbe")) is False
