"""Request loops that record every failure with its 5-tuple and the kernel's state at that moment, and CPU
burners for tests that must hold under load (issue: requests through Services must not time out when
the machine is busy).

A loop runs inside a pod (or the external namespace) and prints one JSON line per failed request as it
happens: time, the TCP 5-tuple (its source port is bound before connecting, so it is known even when the
connect times out), the error. The thread that reads those lines takes a snapshot of every node at once
(conntrack, neighbours, the proxy's rules with counters) into the report directory, so a failure can be
explained after the fact. `scripts/stress.py` (make test-stress) sets NETK8S_STRESS_REPORT to collect
them across suites; without it they go to the lab's state directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.root.labkit import Lab

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+

REPORT_ENV = "NETK8S_STRESS_REPORT"

# The in-pod client: raw HTTP/1.0 over a socket whose source port is bound first (the 5-tuple of a failure).
CLIENT = r"""
import json, os, socket, sys, time
url, min_count, stop_path, deadline = sys.argv[1], int(sys.argv[2]), sys.argv[3], time.monotonic() + float(sys.argv[4])
request_timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 3.0
hostport, _, path = url.removeprefix("http://").partition("/")
host, _, port = hostport.partition(":")
port = int(port or 80)
ok = bad = 0
lat = []
while time.monotonic() < deadline and not (os.path.exists(stop_path) and ok + bad >= min_count):
    s = socket.socket()
    s.settimeout(request_timeout)
    src = ("?", 0)
    t0 = time.monotonic()
    try:
        s.bind(("0.0.0.0", 0))
        s.connect((host, port))
        src = s.getsockname()
        s.sendall(f"GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while (chunk := s.recv(65536)):
            data += chunk
        if not data.startswith(b"HTTP/1.") or b" 200 " not in data.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"bad response {data[:60]!r}")
        ok += 1
        lat.append(time.monotonic() - t0)
        if ok == 1:
            print(json.dumps({"first_ok": time.time()}), flush=True)
    except Exception as e:
        bad += 1
        if src[1] == 0:
            try:
                src = s.getsockname()
            except OSError:
                pass
        print(json.dumps({"failure": {"time": time.time(), "proto": "tcp", "src": f"{src[0]}:{src[1]}",
                                      "dst": f"{host}:{port}", "error": repr(e),
                                      "elapsed": round(time.monotonic() - t0, 3)}}), flush=True)
    finally:
        s.close()
    time.sleep(0.01)
lat.sort()
def pct(q):
    return lat[min(len(lat) - 1, int(len(lat) * q))] if lat else None
# per-request latencies (ms) for scripts/bench/reliability.py; the tests only count
print(json.dumps({"ok": ok, "bad": bad, "p50_s": pct(0.5), "p99_s": pct(0.99), "max_s": lat[-1] if lat else None,
                  "lat_ms": [round(x * 1000, 2) for x in lat]}), flush=True)
"""


def report_dir(lab: Lab) -> Path:
    path = Path(os.environ.get(REPORT_ENV) or lab.state_dir / "request-failures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def snapshot(lab: Lab, reason: dict, nodes: list[str]) -> Path:
    """Every node's conntrack table, neighbour table and proxy rules with counters, now, into one file."""
    out = report_dir(lab) / f"failure-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**6}.txt"
    parts = [json.dumps(reason, indent=1)]
    for node in nodes:
        for argv in (["conntrack", "-L"], ["conntrack", "-S"], ["ip", "neigh", "show"], ["iptables-legacy-save", "-c"],
                     ["nft", "list", "ruleset"]):
            res = lab.node_exec(node, *argv, check=False, timeout=30)
            parts.append(f"=== {node}: {' '.join(argv)} (exit {res.returncode})\n{res.stdout}{res.stderr}")
    out.write_text("\n".join(parts))
    return out


class RequestLoop(threading.Thread):
    """Sends HTTP requests from `where` (a pod, or "external") to `url` until the stop file exists and at
    least `min_count` requests were sent; each failure is recorded with a snapshot of the nodes."""

    def __init__(self, lab: Lab, where: str, url: str, stop_path: Path, min_count: int = 100,
                 deadline_s: float = 600, request_timeout_s: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.argv = ([sys.executable, "-m", "netk8s.cli.main", "exec", where, "--"] if where != "external"
                     else [sys.executable, "-m", "netk8s.cli.main", "lab", "exec", "external"])
        self.argv += [sys.executable, "-c", CLIENT, url, str(min_count), str(stop_path), str(deadline_s),
                      str(request_timeout_s)]
        self.lab, self.where, self.url = lab, where, url
        self.result: dict | None = None
        self.failures: list[dict] = []
        self.snapshots: list[Path] = []
        self.proc: subprocess.Popen | None = None
        self.nodes: list[str] | None = None
        self.stderr = ""
        self.answered = threading.Event()  # set once the first request was answered (the loop runs)

    def run(self) -> None:
        with tempfile.TemporaryFile("w+") as err:
            self.proc = subprocess.Popen(self.argv, env=self.lab.env, stdout=subprocess.PIPE, stderr=err, text=True)
            assert self.proc.stdout is not None
            try:
                for line in self.proc.stdout:
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if "failure" in msg:
                        self._record({**msg["failure"], "from": self.where, "url": self.url})
                    elif "first_ok" in msg:
                        self.answered.set()
                    else:
                        self.result = msg
            finally:
                if self.proc.poll() is None and self.result is None:
                    self.proc.kill()
                self.proc.wait()
                self.proc.stdout.close()
                err.seek(0)
                self.stderr = err.read()[-2000:]

    def _record(self, failure: dict) -> None:
        self.failures.append(failure)
        try:
            if self.nodes is None:
                self.nodes = [n["metadata"]["name"] for n in self.lab.get_json("nodes")["items"]]
            self.snapshots.append(snapshot(self.lab, failure, self.nodes))
        except Exception as e:  # noqa: BLE001 a snapshot that cannot be taken must not hide the failure itself
            failure["snapshot_error"] = repr(e)

    def check(self, min_ok: int) -> None:
        """Zero failed requests and at least `min_ok` answered; the failures and snapshots name the rest."""
        assert self.result is not None, (f"loop from {self.where} printed no result (failures: {self.failures}, "
                                         f"stderr: {self.stderr})")
        print(f"request loop from {self.where} to {self.url}: "
              f"{ {k: v for k, v in self.result.items() if k != 'lat_ms'} }")
        assert self.result["bad"] == 0 and self.result["ok"] >= min_ok, (
            {k: v for k, v in self.result.items() if k != "lat_ms"}, self.failures[:5], [str(p) for p in self.snapshots[:5]])


class Burners:
    """CPU burners, one per core by default: the machine is busy while the block runs."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count or os.cpu_count() or 1
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Self:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"],
                                       stdin=subprocess.DEVNULL) for _ in range(self.count)]
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
