"""Fixtures for privileged tests: skip when not root, unique lab names, host-namespace and leak checks.

Every lab name made here is `t<pid>x<n>`: unique per test run, and the `x` keeps one run's prefix from
matching another run's (t123x... vs t1234x...). The host's root namespace is snapshotted before the
session and must be identical after it. Processes started by a test are registered with `procs` and
killed by PID in teardown.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from netk8s.dataplane import netns
from netk8s.lab import topology
from netk8s.model import naming

RUN_TAG = f"t{os.getpid() % 100000}x"
_counter = itertools.count()


def _is_root() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _host_snapshot() -> dict[str, str]:
    """The host root namespace's network state, with counters and lifetimes (which tick) removed."""
    cmds = {
        "link": ["ip", "-o", "link"],
        "addr": ["ip", "-o", "addr"],
        "route": ["ip", "route"],
        "rule": ["ip", "rule"],
        "iptables": ["iptables-save"],
        "nft": ["nft", "list", "ruleset"],
    }
    out: dict[str, str] = {}
    for key, argv in cmds.items():
        if shutil.which(argv[0]) is None:
            continue
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        text = proc.stdout
        text = re.sub(r"valid_lft \S+ preferred_lft \S+", "", text)
        text = re.sub(r"\[\d+:\d+\]", "", text)
        text = re.sub(r"packets \d+ bytes \d+", "", text)
        out[key] = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return out


@pytest.fixture(autouse=True)
def _require_root() -> None:
    if not _is_root():
        pytest.skip("needs root and iproute2 (builds network namespaces)")


@pytest.fixture(scope="session", autouse=True)
def host_namespace_unchanged() -> Iterator[None]:
    """Fail the session if anything in the host's root network namespace changed."""
    if not _is_root():
        yield
        return
    before = _host_snapshot()
    yield
    after = _host_snapshot()
    for key in before:
        assert after.get(key) == before[key], f"host root namespace changed: {key}"
    leaked = netns.list_netns(f"{naming.NETNS_PREFIX}{RUN_TAG}")
    assert not leaked, f"leaked namespaces: {leaked}"


def new_lab_name() -> str:
    name = f"{RUN_TAG}{next(_counter)}"
    return naming.check_lab_name(name)


@pytest.fixture
def lab_name() -> Iterator[str]:
    """A unique lab name; teardown destroys the lab and asserts none of its namespaces remain."""
    name = new_lab_name()
    try:
        yield name
    finally:
        topology.destroy_lab(name)
        left = topology.lab_netns(name)
        assert not left, f"lab {name} left namespaces behind: {left}"


class Proc:
    """A process the test started, with its output collected line by line in the background."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 10, stream: str = "stdout") -> str:
        """Poll (with a deadline) until a line matching `pattern` appears; return it."""
        sink = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(sink):
                if re.search(pattern, line):
                    return line
            if self.popen.poll() is not None and not any(t.is_alive() for t in self._threads):
                break
            time.sleep(0.02)
        raise AssertionError(
            f"{self.argv!r}: no line matching {pattern!r} in {stream}; "
            f"stdout={self.stdout!r} stderr={self.stderr!r} rc={self.popen.poll()}"
        )

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            if self.wait(5) is None:
                self.popen.kill()
                self.popen.wait(5)
        for thread in self._threads:
            thread.join(5)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


class Procs:
    """Starts processes inside namespaces and remembers them, so teardown kills exactly those PIDs."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, ns: str, argv: list[str]) -> Proc:
        proc = Proc(netns.exec_argv(ns, argv))
        self.started.append(proc)
        return proc

    def python(self, ns: str, code: str, *args: str) -> Proc:
        return self.start(ns, [sys.executable, "-u", "-c", code, *args])

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


@pytest.fixture
def procs() -> Iterator[Procs]:
    tracker = Procs()
    try:
        yield tracker
    finally:
        tracker.stop_all()
