"""The built-in servers queue a burst of connections while they get no CPU (docs/reliability.md, cause 1).

Under load a pod's server thread waits for a CPU while connections keep arriving: clients, the
readiness probe, a Service's share of a spread. They wait in the listen socket's accept queue; when it
is full the kernel drops the next SYN and the client retransmits it only 1 s later (then 3 s, 7 s), which
is a failed request for a client with a 3 s timeout. socketserver's default backlog is 5. The server
here is stopped (SIGSTOP, the limit of "gets no CPU") while a burst of connections is made; every one of
them must complete its handshake into the accept queue, and be answered once the server runs again.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from netk8s.dataplane import links, netns
from netk8s.model import naming
from tests.root.conftest import Procs, new_lab_name

pytestmark = pytest.mark.root

BURST = 64
PORT = 8080
SERVERS = {
    "agnhost-netexec": ["-m", "netk8s.images.agnhost", "netexec", f"--http-port={PORT}", "--udp-port=0"],
    "agnhost-serve-hostname": ["-m", "netk8s.images.agnhost", "serve-hostname", f"--port={PORT}", "--udp=false"],
    "nginx": ["-m", "netk8s.images.nginx", f"--port={PORT}"],
}


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"{naming.NETNS_PREFIX}{new_lab_name()}-backlog"
    netns.create_netns(name)
    try:
        links.ensure_loopback_up(name)
        yield name
    finally:
        netns.delete_netns(name)
        assert not netns.netns_exists(name)


def connect_nonblocking(ns: str) -> socket.socket:
    s = netns.open_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", PORT))
    return s


def handshaken(sockets: list[socket.socket]) -> int:
    """How many of the connects completed (writable, no error): their SYN got into the accept queue."""
    _, writable, _ = select.select([], sockets, [], 0)
    return sum(1 for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)


def wait_listening(ns: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with netns.open_socket(ns, socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            if s.connect_ex(("127.0.0.1", PORT)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {PORT} in {ns}")


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_burst_while_the_server_gets_no_cpu_is_queued_and_answered(ns: str, procs: Procs, server: str) -> None:
    proc = procs.start(ns, [sys.executable, *SERVERS[server]])
    wait_listening(ns)
    os.kill(proc.popen.pid, signal.SIGSTOP)
    sockets: list[socket.socket] = []
    try:
        sockets = [connect_nonblocking(ns) for _ in range(BURST)]
        # every handshake completes while the server is stopped, or none more will: a dropped SYN is
        # retransmitted after 1, 3, 7 s and meets the same full queue (poll well past the first two)
        deadline = time.monotonic() + 10
        done = handshaken(sockets)
        while done < BURST and time.monotonic() < deadline:
            time.sleep(0.1)
            done = handshaken(sockets)
        assert done == BURST, f"{server}: only {done} of {BURST} connections got into the accept queue"
        os.kill(proc.popen.pid, signal.SIGCONT)
        answered = 0
        for s in sockets:
            s.setblocking(True)
            s.settimeout(60)
            s.sendall(b"GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            answered += data.startswith(b"HTTP/1.")
        assert answered == BURST
    finally:
        os.kill(proc.popen.pid, signal.SIGCONT)
        for s in sockets:
            s.close()
