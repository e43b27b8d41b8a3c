"""In-namespace sockets without a forked helper: netns.run_in_netns_thread / open_socket / create_netns.

A socket opened by `open_socket` must act inside the target namespace (its links, its loopback) from
the calling thread, and the calling thread's own namespace must be the same afterwards, also when the
function run in the namespace raises or the namespace does not exist.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from netk8s.dataplane import links, netns
from netk8s.errors import KernelError
from netk8s.model import naming
from tests.root.conftest import new_lab_name

pytestmark = pytest.mark.root


def _thread_ns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"{naming.NETNS_PREFIX}{new_lab_name()}-sock"
    netns.create_netns(name)
    try:
        yield name
    finally:
        netns.delete_netns(name)
        assert not netns.netns_exists(name)


def test_create_netns_makes_a_separate_namespace_and_is_idempotent(ns: str) -> None:
    before = _thread_ns()
    assert netns.netns_exists(ns)
    assert netns.netns_inode(ns) != os.stat("/proc/thread-self/ns/net").st_ino
    netns.create_netns(ns)  # already there: nothing happens
    assert links.list_links(ns) == ["lo"]
    assert links.link_info(ns, "lo")["up"] is False  # a brand-new namespace
    assert _thread_ns() == before


def test_create_netns_replaces_a_stale_mount_point() -> None:
    name = f"{naming.NETNS_PREFIX}{new_lab_name()}-stale"
    path = netns.NETNS_RUN_DIR / name
    path.touch()  # what a crash between the O_EXCL create and the bind mount leaves
    try:
        assert not netns.netns_exists(name)
        netns.create_netns(name)
        assert netns.netns_exists(name)
        assert links.list_links(name) == ["lo"]
    finally:
        netns.delete_netns(name)
    assert not path.exists()


def test_the_thread_runs_inside_the_namespace_and_the_caller_stays(ns: str) -> None:
    before = _thread_ns()
    inode = netns.run_in_netns_thread(ns, lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    assert inode == netns.netns_inode(ns)
    assert _thread_ns() == before


def test_the_caller_stays_when_the_function_raises(ns: str) -> None:
    before = _thread_ns()

    def boom() -> None:
        raise ValueError("inside " + os.readlink("/proc/thread-self/ns/net"))

    with pytest.raises(ValueError, match="inside net:") as info:
        netns.run_in_netns_thread(ns, boom)
    assert str(info.value) != f"inside {before}"  # it really ran in the other namespace
    assert _thread_ns() == before


def test_a_missing_namespace_is_a_kernel_error_and_the_caller_stays() -> None:
    before = _thread_ns()
    missing = f"{naming.NETNS_PREFIX}{new_lab_name()}-none"
    with pytest.raises(KernelError, match="does the namespace exist|No such file") as info:
        netns.open_socket(missing, socket.AF_INET, socket.SOCK_DGRAM)
    assert "ip netns list" in info.value.hint
    with pytest.raises(KernelError, match=missing):
        links.list_links(missing)
    assert _thread_ns() == before
    assert not netns.netns_exists(missing)  # never created by a lookup


def test_a_socket_opened_in_the_namespace_acts_there_from_the_calling_thread(ns: str) -> None:
    before = _thread_ns()
    links.set_up(ns, "lo")
    # netlink: the socket sees the namespace's links, not ours
    links.ensure_bridge(ns, "nk8stbr0")
    assert "nk8stbr0" in links.list_links(ns)
    assert "nk8stbr0" not in links.list_links(None)  # read-only look at our own namespace
    # UDP over the namespace's own loopback: a receiver and a sender opened there talk to each other
    rx = netns.open_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    tx = netns.open_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        port = rx.getsockname()[1]
        tx.sendto(b"ping", ("127.0.0.1", port))
        data, peer = rx.recvfrom(16)
        assert data == b"ping" and peer[0] == "127.0.0.1"
        # the port is taken in that namespace: a third socket opened there cannot bind it
        again = netns.open_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
        with again, pytest.raises(OSError):
            again.bind(("127.0.0.1", port))
    finally:
        rx.close()
        tx.close()
    assert _thread_ns() == before


def test_shared_sockets_serve_several_calls_and_close_at_the_end(ns: str) -> None:
    before = _thread_ns()
    fds = len(os.listdir("/proc/self/fd"))
    with links.shared_sockets():
        links.set_up(ns, "lo")
        with links.shared_sockets():  # nested: same sockets, still open after the inner block
            assert links.link_info(ns, "lo")["up"] is True
        assert links.list_links(ns) == ["lo"]
        with pytest.raises(KernelError, match="nolink"):
            links.set_up(ns, "nolink")
        assert links.get_mac(ns, "lo") == "00:00:00:00:00:00"  # the socket survives a failed request
        assert len(os.listdir("/proc/self/fd")) > fds  # the namespace's socket is kept open
    assert len(os.listdir("/proc/self/fd")) == fds  # ... and closed when the outer block ends
    assert _thread_ns() == before
