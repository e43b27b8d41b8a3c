"""The ingress controller against a real nginx on 127.0.0.1: a SQLite store, backends on loopback standing
in for pods, the controller loop in a thread. Routing, the 404 default, status publishing, reloads under a
request loop with zero failures, a refused configuration keeping the last good one, 0600 key files."""

from __future__ import annotations

import http.client
import http.server
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netk8s.ingress import certs
from netk8s.ingress.controller import DEFAULT_CERT_FILE, IngressController
from netk8s.ingress.model import ControllerConfig, Snapshot, build_model
from netk8s.ingress.nginx import Nginx, Workdir
from netk8s.ingress.render import RenderOptions
from netk8s.store.base import mutate
from netk8s.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class Backend:
    """An HTTP server answering `name` and the X-Forwarded-For it got (a pod behind the Ingress)."""

    def __init__(self, name: str) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = f"{outer.name} {self.path} xff={self.headers.get('X-Forwarded-For')}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.name = name
        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def wait_for(what: str, fn: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def slice_for(svc: str, port: int, name: str = "web-1") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [LOOPBACK], "conditions": {"ready": True}}]}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict]:
    store = SqliteStore(tmp_path / "store.db")
    b1, b2 = Backend("one"), Backend("two")
    store.create({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                  "metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
                  "spec": {"controller": "k8s.io/ingress-nginx"}})
    store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                  "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    store.create(slice_for("web", b1.port))
    store.create({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                  "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
                  "status": {"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}]}}})
    store.create({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                  "metadata": {"name": "web", "namespace": "default"},
                  "spec": {"rules": [{"host": "a.example.com", "http": {"paths": [
                      {"path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    workdir = Workdir.create(tmp_path)
    cert, key = certs.fake_certificate()
    workdir.write_private(workdir.certs / DEFAULT_CERT_FILE, cert + key)
    http_port, https_port = free_port(), free_port()
    opts = RenderOptions(workdir=str(workdir.base), certs_dir=str(workdir.certs),
                         default_certificate=DEFAULT_CERT_FILE, http_port=http_port, https_port=https_port,
                         bind_address=LOOPBACK)
    nginx = Nginx(workdir, http_port)
    ctl = IngressController(SqliteStore(tmp_path / "store.db"), ControllerConfig(), opts, workdir, nginx,
                            ("ingress-nginx", "ingress-nginx-controller"))
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(ctl.run(stop.is_set)), daemon=True)
    thread.start()
    try:
        wait_for("nginx ready", ctl.state.ready.is_set)
        yield {"store": store, "port": http_port, "ctl": ctl, "b1": b1, "b2": b2, "workdir": workdir}
    finally:
        stop.set()
        thread.join(10)
        nginx.stop()
        ctl.store.close()
        store.close()
        b1.close()
        b2.close()
    assert result == [0]


def test_routes_default_404_and_forwarded_for(env: dict) -> None:
    status, body = get(env["port"], "a.example.com", "/x")
    assert status == 200 and body.startswith("one /x") and "xff=127.0.0.1" in body
    status, body = get(env["port"], "other.example.com")
    assert status == 404 and "404 Not Found" in body


def test_status_gets_the_load_balancer_ip(env: dict) -> None:
    def status() -> object:
        ing = env["store"].get("Ingress", "default", "web")
        return (ing.get("status") or {}).get("loadBalancer", {}).get("ingress")

    assert wait_for("ingress status", status) == [{"ip": "192.168.56.200"}]


def test_endpoint_changes_reload_without_a_failed_request(env: dict) -> None:
    failures: list[str] = []
    answers: set[str] = set()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                status, body = get(env["port"], "a.example.com")
            except OSError as exc:
                failures.append(repr(exc))
                continue
            if status != 200:
                failures.append(f"{status} {body[:80]}")
            else:
                answers.add(body.split()[0])

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        nginx = env["ctl"].nginx
        for port in (env["b2"].port, env["b1"].port, env["b2"].port):
            before = nginx.reloads
            mutate(env["store"], "EndpointSlice", "default", "web-1",
                   lambda o, port=port: {**o, "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
            want = "two" if port == env["b2"].port else "one"
            wait_for("a reload", lambda before=before: nginx.reloads > before)
            # an old worker may take a last connection right after the reload: wait for a steady answer
            wait_for(f"answers from {want}", lambda want=want: all(
                get(env["port"], "a.example.com")[1].startswith(want) for _ in range(5)))
    finally:
        stop.set()
        t.join(10)
    assert failures == []
    assert answers == {"one", "two"}


def test_refused_configuration_keeps_the_last_good_one(env: dict) -> None:
    ctl: IngressController = env["ctl"]
    applied = ctl.state.applied
    ctl._apply("http { this is not nginx }\n", build_model(Snapshot(), ControllerConfig()))
    assert ctl.state.refused is not None and ctl.state.applied == applied
    assert get(env["port"], "a.example.com")[0] == 200
    assert ctl.nginx.running()


def test_key_material_is_root_only(env: dict) -> None:
    wd: Workdir = env["workdir"]
    for d in (wd.certs, wd.conf_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for f in [*wd.certs.iterdir(), wd.conf]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_stale_workdirs_are_swept_live_and_fresh_ones_kept(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from netk8s.ingress.nginx import OWNER_FILE, WORKDIR_PREFIX, sweep_stale_workdirs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stale, live, fresh, old_unowned = (tmp_path / f"{WORKDIR_PREFIX}{n}" for n in ("a", "b", "c", "d"))
    for d in (stale, live, fresh, old_unowned):
        d.mkdir()
    (stale / OWNER_FILE).write_text(dead)
    (live / OWNER_FILE).write_text(str(os.getpid()))
    os.utime(old_unowned, (0, 0))
    assert sorted(sweep_stale_workdirs(tmp_path)) == sorted([stale, old_unowned])
    assert live.exists() and fresh.exists()
