"""PodRuntime end to end in a real network namespace: sandbox + containers, shared localhost, pod
hostname and /etc files, adoption by a second runtime, SIGKILL detection, graceful and forced stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netk8s.model.images import container_argv
from netk8s.node.runtime import PodRuntime, proc_stat

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

UID = "0f1e2d3c-pod-web-0"
RESOLV = "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
HOSTS = "127.0.0.1\tlocalhost\n10.244.1.5\tweb-0\n"

# Container B: fetch the page from container A over the pod's localhost; ignore SIGTERM so stop_pod
# has to escalate to SIGKILL; fork a child that must die with it.
CLIENT = textwrap.dedent(
    """
    import signal, subprocess, sys, time, urllib.request
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "infinity"])
    print("child", child.pid, flush=True)
    while True:
        try:
            print(urllib.request.urlopen("http://127.0.0.1:8080/", timeout=2).read().decode(), flush=True)
            break
        except OSError as exc:
            print("retry", exc, flush=True)
            time.sleep(0.2)
    while True:
        time.sleep(1)
    """
)


def wait_for(check: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is None or stat[0] in ("Z", "X")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"nk8s-t{os.getpid()}-rt"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_in_pod(rt: PodRuntime, ns: str, argv: list[str]) -> str:
    result = rt.exec(UID, ns, argv, timeout=30)
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


def test_pod_lifecycle(netns: str, tmp_path: Path) -> None:
    tag = f"t{os.getpid()}rt"
    rt = PodRuntime(tmp_path / "pods", tag)
    host_name = socket.gethostname()
    host_resolv = Path("/etc/resolv.conf").read_bytes()
    started: list[int] = []
    try:
        files = rt.write_pod_files(UID, "web-0", RESOLV, HOSTS)
        assert files["resolv.conf"].read_text() == RESOLV
        sandbox = rt.start_sandbox(UID, netns, "web-0")
        started.append(sandbox)
        web_argv = container_argv({"image": "nginx", "ports": [{"containerPort": 8080}]}, sys.executable)
        web = rt.start_container(UID, "web", web_argv, {"GREETING": "hi"}, netns)
        client = rt.start_container(UID, "client", [sys.executable, "-c", CLIENT], {}, netns)
        started += [web, client]

        # B reached A over the pod's own localhost
        wait_for(lambda: "Welcome to nginx!" in rt.log_path(UID, "client").read_text(), what="client log")
        access = rt.log_path(UID, "web").read_text()
        assert access.startswith("127.0.0.1 - - [") and '"GET / HTTP/1.1" 200 612' in access

        # namespaces: net from /run/netns, UTS from the sandbox, private mounts only for containers
        netns_ino = os.stat(f"/run/netns/{netns}").st_ino
        for pid in (sandbox, web, client):
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns_ino
            assert os.stat(f"/proc/{pid}/ns/uts").st_ino == os.stat(f"/proc/{sandbox}/ns/uts").st_ino
        assert os.stat(f"/proc/{web}/ns/uts").st_ino != os.stat("/proc/self/ns/uts").st_ino
        assert os.stat(f"/proc/{sandbox}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino
        assert os.stat(f"/proc/{web}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino

        env = dict(item.split("=", 1) for item in
                   Path(f"/proc/{web}/environ").read_text().split("\0") if "=" in item)
        assert env["NETK8S_TAG"] == tag and env["GREETING"] == "hi" and "PATH" in env

        # the pod's hostname and /etc files inside; the host's untouched
        assert run_in_pod(rt, netns, ["hostname"]).strip() == "web-0"
        assert run_in_pod(rt, netns, ["cat", "/etc/resolv.conf"]) == RESOLV
        assert run_in_pod(rt, netns, ["cat", "/etc/hosts"]) == HOSTS
        assert socket.gethostname() == host_name
        assert Path("/etc/resolv.conf").read_bytes() == host_resolv

        # the one exec path (probes, hooks, netk8s exec): exit status, input, timeout, container env
        assert rt.exec(UID, netns, ["sh", "-c", "exit 3"], timeout=30).exit_code == 3
        assert rt.exec(UID, netns, ["cat"], timeout=30, input=b"ping").stdout == b"ping"
        assert rt.exec(UID, netns, ["no-such-command-nk8s"], timeout=30).exit_code == 127
        with pytest.raises(TimeoutError):
            rt.exec(UID, netns, ["sleep", "30"], timeout=0.5)
        environ = rt.container_environ(UID, "web")
        assert environ["GREETING"] == "hi" and environ["NETK8S_TAG"] == tag
        said = rt.exec(UID, netns, ["sh", "-c", "echo $GREETING"], timeout=30, env=environ)
        assert said.stdout == b"hi\n"

        # adoption: a fresh runtime on the same root (an agent restart) sees the running processes
        rt2 = PodRuntime(tmp_path / "pods", tag)
        assert rt2.list_pods() == [UID]
        assert rt2.containers(UID) == ["client", "web"]
        assert rt2.sandbox_pid(UID) == sandbox
        assert rt2.alive(UID, "web") and rt2.alive(UID, "client")
        assert rt2.exit_code(UID, "web") is None
        info = rt2.process_info(UID, "web")
        assert info is not None and info["pid"] == web and info["argv"] == web_argv

        # a process killed with SIGKILL is reported dead, by both runtimes
        victim = rt.start_container(UID, "victim", ["sleep", "infinity"], {}, netns)
        started.append(victim)
        assert rt2.alive(UID, "victim")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not rt2.alive(UID, "victim"), what="victim dead (adopted view)")
        assert not rt.alive(UID, "victim")
        assert rt.exit_code(UID, "victim") == 128 + signal.SIGKILL
        assert rt2.exit_code(UID, "victim") is None  # adopted: the exit status is not ours to know

        # stop: nginx exits on SIGTERM, the client ignores it and is SIGKILLed after the grace period
        child = int(rt.log_path(UID, "client").read_text().split()[1])
        assert not gone(child)
        t0 = time.monotonic()
        rt.stop_pod(UID, grace_seconds=1.0)
        assert time.monotonic() - t0 >= 1.0
        for name in ("web", "client", "victim"):
            assert not rt.alive(UID, name)
        assert rt.sandbox_pid(UID) is None
        assert rt.exit_code(UID, "web") == 0
        assert rt.exit_code(UID, "client") == 128 + signal.SIGKILL
        assert all(gone(pid) for pid in (sandbox, web, client, child))
        rt.stop_pod(UID, grace_seconds=1.0)  # idempotent on a stopped pod

        rt.remove_pod_state(UID)
        assert rt.list_pods() == []
        assert not (tmp_path / "pods" / UID).exists()
    finally:
        try:
            rt.stop_pod(UID, grace_seconds=0)
        finally:
            for pid in started:
                if not gone(pid) and proc_stat(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def test_container_needs_sandbox(tmp_path: Path) -> None:
    rt = PodRuntime(tmp_path / "pods", "tx")
    with pytest.raises(Exception, match="sandbox is not running"):
        rt.start_container(UID, "web", ["true"], {}, "nk8s-none")
