"""The API server serves a socket opened inside another network namespace (--listen-netns), as the lab's
control-plane address is: a client in that namespace reaches it over TLS with a client certificate."""

from __future__ import annotations

import json
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netk8s.dataplane import links, netns
from netk8s.model import naming
from tests.root.conftest import Proc, new_lab_name
from tests.unit.apiserver_util import make_test_pki

pytestmark = pytest.mark.root

PORT = 6443


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"{naming.NETNS_PREFIX}{new_lab_name()}-api"
    netns.create_netns(name)
    links.ensure_loopback_up(name)
    try:
        yield name
    finally:
        netns.delete_netns(name)
        assert not netns.netns_exists(name)


def _get_in_netns(ns: str, path: str, d: Path) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
    ctx.load_cert_chain(str(d / "adm.crt"), str(d / "adm.key"))
    raw = netns.open_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", PORT))
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_listen_netns_serves_inside_the_namespace(ns: str, tmp_path: Path) -> None:
    make_test_pki(tmp_path)
    argv = [sys.executable, "-m", "netk8s.apiserver", "--store", "memory://",
            "--listen-netns", f"{ns}=127.0.0.1:{PORT}",
            "--tls-cert", str(tmp_path / "srv.crt"), "--tls-key", str(tmp_path / "srv.key"),
            "--client-ca", str(tmp_path / "ca.crt")]
    proc = Proc(argv)
    try:
        proc.wait_for(rf"serving https://127.0.0.1:{PORT} in netns {ns}", timeout=20, stream="stderr")
        code, body = _get_in_netns(ns, "/api/v1/namespaces", tmp_path)
        assert (code, body["kind"]) == (200, "NamespaceList")
    finally:
        proc.stop()
