"""Image table, env expansion, and the built-in nginx/agnhost servers run as real subprocesses."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netk8s.errors import NetK8sError, ValidationError
from netk8s.images.nginx import WELCOME_PAGE
from netk8s.model.images import (
    ImageUnsupported,
    container_argv,
    env_list_to_dict,
    expand,
    field_context,
    image_name,
)

PY = "/usr/bin/python-test"
REPO = Path(__file__).resolve().parents[2]


# ---- image names ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("nginx", "nginx"),
        ("nginx:1.17", "nginx"),
        ("docker.io/library/nginx:1.17", "nginx"),
        ("registry.k8s.io/e2e-test-images/agnhost:2.39", "agnhost"),
        ("localhost:5000/busybox", "busybox"),
        ("localhost:5000/busybox:1.36", "busybox"),
        ("busybox@sha256:" + "a" * 64, "busybox"),
        ("quay.io/x/alpine:3.19@sha256:" + "b" * 64, "alpine"),
        ("NGINX", "nginx"),
    ],
)
def test_image_name(image: str, name: str) -> None:
    assert image_name(image) == name


# ---- container_argv -------------------------------------------------------------------------

CASES = [
    ("nginx default port", {"image": "nginx"}, [PY, "-m", "netk8s.images.nginx", "--port", "80"]),
    (
        "nginx container port",
        {"image": "docker.io/library/nginx:1.17", "ports": [{"containerPort": 8080}]},
        [PY, "-m", "netk8s.images.nginx", "--port", "8080"],
    ),
    (
        "nginx skips udp port",
        {"image": "nginx:alpine", "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 81}]},
        [PY, "-m", "netk8s.images.nginx", "--port", "81"],
    ),
    (
        "nginx own CMD spelled out",
        {"image": "nginx", "command": ["nginx"], "args": ["-g", "daemon off;"]},
        [PY, "-m", "netk8s.images.nginx", "--port", "80"],
    ),
    ("nginx args only run as given", {"image": "nginx", "args": ["echo", "hi"]}, ["echo", "hi"]),
    ("nginx with command", {"image": "nginx", "command": ["sh", "-c", "x"]}, ["sh", "-c", "x"]),
    ("busybox sleeps", {"image": "busybox"}, ["sleep", "infinity"]),
    ("kube-dns runs the dnslib server with its args", {"image": "netk8s.io/kube-dns:1.0", "args": ["--port", "53"]},
     [PY, "-m", "netk8s.dns", "--port", "53"]),
    ("kube-dns with a command runs the command", {"image": "netk8s.io/kube-dns:1.0", "command": ["true"]}, ["true"]),
    ("busybox digest sleeps", {"image": "busybox@sha256:" + "c" * 64}, ["sleep", "infinity"]),
    ("alpine sleeps", {"image": "alpine:3.19"}, ["sleep", "infinity"]),
    ("busybox args only", {"image": "busybox", "args": ["sleep", "5"]}, ["sleep", "5"]),
    (
        "busybox command and args",
        {"image": "busybox:1.36", "command": ["sh", "-c"], "args": ["echo hi"]},
        ["sh", "-c", "echo hi"],
    ),
    (
        "agnhost netexec",
        {"image": "registry.k8s.io/e2e-test-images/agnhost:2.39", "args": ["netexec", "--http-port=8080"]},
        [PY, "-m", "netk8s.images.agnhost", "netexec", "--http-port=8080"],
    ),
    ("agnhost default is pause", {"image": "agnhost:2.39"}, [PY, "-m", "netk8s.images.agnhost", "pause"]),
    (
        "agnhost entrypoint spelled out",
        {"image": "k8s.gcr.io/e2e-test-images/agnhost:2.21", "command": ["/agnhost", "serve-hostname"],
         "args": ["--port=9376"]},
        [PY, "-m", "netk8s.images.agnhost", "serve-hostname", "--port=9376"],
    ),
    (
        "agnhost other command runs as given",
        {"image": "agnhost:2.39", "command": ["sleep", "1"]},
        ["sleep", "1"],
    ),
    ("any image with command", {"image": "redis:7", "command": ["true"], "args": ["x"]}, ["true", "x"]),
]


@pytest.mark.parametrize(("case", "container", "argv"), CASES, ids=[c[0] for c in CASES])
def test_container_argv(case: str, container: dict, argv: list[str]) -> None:
    assert container_argv(container, PY) == argv


def test_unsupported_image_without_command() -> None:
    with pytest.raises(ImageUnsupported) as exc:
        container_argv({"image": "redis:7", "args": ["--port", "1"]}, PY)
    assert isinstance(exc.value, NetK8sError)
    assert str(exc.value) == (
        "image 'redis:7' is not supported: give a command, or use nginx, busybox, alpine, agnhost or kube-dns"
    )
    assert exc.value.hint


def test_unsupported_agnhost_subcommand() -> None:
    with pytest.raises(ImageUnsupported, match="dns-server"):
        container_argv({"image": "agnhost:2.39", "args": ["dns-server"]}, PY)


def test_command_args_expand_env() -> None:
    container = {"image": "busybox", "command": ["sh", "-c"], "args": ["echo $(MSG) $$(MSG) $(NOPE)"]}
    assert container_argv(container, PY, env={"MSG": "hi"}) == ["sh", "-c", "echo hi $(MSG) $(NOPE)"]


# ---- env ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("$(A)", "1"),
        ("x$(A)y$(B)z", "x1y2z"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("end$", "end$"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == expected


def test_env_list_to_dict_values_refs_and_order() -> None:
    pod = {
        "metadata": {"name": "web-0", "namespace": "prod", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"nodeName": "node1"},
        "status": {"podIP": "10.244.1.5"},
    }
    ctx = field_context(pod, host_ip="192.168.56.11")
    env: list[dict] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "URL", "value": "http://$(POD_IP):80/$(LATER)"},
        {"name": "LATER", "value": "x"},
        {"name": "EMPTY"},
        {"name": "SVC", "value": "$(WEB_SERVICE_HOST)"},
    ]
    out = env_list_to_dict(env, ctx, base={"WEB_SERVICE_HOST": "10.96.0.20", "POD_NAME": "overridden"})
    assert out == {
        "WEB_SERVICE_HOST": "10.96.0.20",
        "POD_NAME": "web-0",
        "POD_NS": "prod",
        "POD_IP": "10.244.1.5",
        "NODE": "node1",
        "HOST_IP": "192.168.56.11",
        "APP": "web",
        "URL": "http://10.244.1.5:80/$(LATER)",  # only variables defined earlier expand
        "LATER": "x",
        "EMPTY": "",
        "SVC": "10.96.0.20",
    }


def test_env_unsupported_sources() -> None:
    with pytest.raises(ValidationError, match=r"env\[0\]\.valueFrom\.secretKeyRef"):
        env_list_to_dict([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}], {})
    with pytest.raises(ValidationError, match="fieldPath"):
        env_list_to_dict([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}], {})


# ---- built-in servers -----------------------------------------------------------------------

def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early: {proc.communicate()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port}")


def start(module: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal the server; return its exit code and stdout. The callers check the exit code: a server
    that ignored the signal would never exit, and communicate's deadline fails the test."""
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


@pytest.fixture
def server_procs() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=5)


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"User-Agent": "test-agent/1"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT])
@pytest.mark.integration
def test_nginx_server(server_procs: list, sig: int) -> None:
    port = free_port()
    proc = start("netk8s.images.nginx", "--port", str(port), "--address", "127.0.0.1")
    server_procs.append(proc)
    wait_listening(port, proc)

    status, headers, body = get(port, "/")
    assert status == 200
    assert body == WELCOME_PAGE and len(body) == 612
    assert b"<title>Welcome to nginx!</title>" in body
    assert headers["server"] == "nginx/1.17.10"
    assert headers["content-type"] == "text/html"
    assert headers["content-length"] == "612"

    assert get(port, "/index.html")[2] == WELCOME_PAGE
    status, headers, body = get(port, "/nope")
    assert status == 404
    assert body.startswith(b"<html>\r\n<head><title>404 Not Found</title></head>")
    assert b"<hr><center>nginx/1.17.10</center>" in body

    code, out = stop(proc, sig)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    # combined: client first, then the request, status, bytes, referer, user agent
    assert lines[0].startswith("127.0.0.1 - - [")
    assert lines[0].endswith('] "GET / HTTP/1.1" 200 612 "-" "test-agent/1"')
    assert '"GET /nope HTTP/1.1" 404 ' in lines[2]


@pytest.mark.integration
def test_agnhost_netexec(server_procs: list) -> None:
    http_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    proc = start("netk8s.images.agnhost", "netexec", f"--http-port={http_port}", "--udp-port",
                 str(udp_port), "--address", "127.0.0.1")
    server_procs.append(proc)
    wait_listening(http_port, proc)
    host = socket.gethostname()

    assert get(http_port, "/hostname")[2].decode() == host
    assert get(http_port, "/")[2].decode().startswith("NOW: ")
    assert get(http_port, "/echo?msg=hello%20world")[2] == b"hello world"
    assert get(http_port, "/healthz")[0] == 200

    with socket.create_connection(("127.0.0.1", http_port), timeout=5) as sock:
        local = sock.getsockname()
        sock.sendall(b"GET /clientip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(4096):
            raw += chunk
    assert raw.split(b"\r\n\r\n", 1)[1].decode() == f"{local[0]}:{local[1]}"

    status, _, body = get(http_port, "/shell?cmd=echo%20out")
    assert status == 200 and json.loads(body) == {"output": "out\n"}

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.bind(("127.0.0.1", 0))
        u.sendto(b"hostname", ("127.0.0.1", udp_port))
        assert u.recv(1024).decode() == host
        u.sendto(b"echo ping 1", ("127.0.0.1", udp_port))
        assert u.recv(1024) == b"ping 1"
        u.sendto(b"clientip", ("127.0.0.1", udp_port))
        assert u.recv(1024).decode() == f"127.0.0.1:{u.getsockname()[1]}"

    dial = f"/dial?request=hostname&protocol=udp&host=127.0.0.1&port={udp_port}&tries=2"
    assert json.loads(get(http_port, dial)[2]) == {"responses": [host, host], "errors": []}

    code, out = stop(proc)
    assert code == 0
    assert "GET /hostname" in out


@pytest.mark.integration
def test_agnhost_exit_endpoint(server_procs: list) -> None:
    port = free_port()
    proc = start("netk8s.images.agnhost", "netexec", f"--http-port={port}", "--udp-port=0",
                 "--address=127.0.0.1")
    server_procs.append(proc)
    wait_listening(port, proc)
    assert get(port, "/exit?code=3")[0] == 200
    assert proc.wait(timeout=5) == 3


@pytest.mark.integration
def test_agnhost_serve_hostname_and_pause(server_procs: list) -> None:
    port = free_port()
    proc = start("netk8s.images.agnhost", "serve-hostname", "--port", str(port), "--address", "127.0.0.1")
    server_procs.append(proc)
    wait_listening(port, proc)
    assert get(port, "/")[2].decode() == socket.gethostname()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"x", ("127.0.0.1", port))
        assert u.recv(1024).decode() == socket.gethostname()
    assert stop(proc)[0] == 0

    pause = start("netk8s.images.agnhost", "pause")
    server_procs.append(pause)
    assert pause.stdout is not None
    assert pause.stdout.readline() == "Paused\n"  # printed once its signal handlers are in place
    assert pause.poll() is None
    assert stop(pause)[0] == 0
