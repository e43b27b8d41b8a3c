"""Benchmark 9: request latency through a ClusterIP and a NodePort while the backend scales and its pods are
deleted, on an idle machine and with a CPU burner on every core (issue 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from scripts.bench import report
from scripts.bench.common import PY, REPO, BenchError, Lab, is_ready
from scripts.bench.report import Section, fmt, percentile
from tests.root import manifests
from tests.root.loadkit import CLIENT

REQUESTS = 1000
# agnhost netexec behind a NodePort, drained for 2 s (preStop) and killed after 5 s; a busybox client
BACKEND = manifests.docs(
    manifests.netexec_backend("backend", 1, grace_s=5, pre_stop_s=2, udp=True),
    manifests.service("web-np", "backend", [{"port": 80, "targetPort": 8080}], type="NodePort"),
    manifests.client_pod())

METHOD = (
    "A 3-node lab (`bench9`, vxlan, iptables) with an agnhost netexec Deployment (readiness probe every 1 s, "
    "preStop sleep 2 s) behind a NodePort Service, and a busybox `client` pod. Two request loops run at once "
    "(tests/root/loadkit.py's client: a new TCP connection per HTTP/1.0 `GET /hostname`, 3 s timeout, 10 ms "
    "pause between requests): from the client pod to the ClusterIP (`netk8s exec`), and from the external "
    "namespace to the NodePort of node2; each sends at least 1,000 requests and records the latency of every "
    "answered one (connect to last byte). Scenario *scale*: 1 -> 5 -> 1 replicas while the loops run; scenario "
    "*delete*: 3 replicas, each pod deleted in turn (waiting for 3 Ready again). *idle*: nothing else of ours "
    "runs; *loaded*: one busy-loop burner per core at nice 0 (lab processes at nice 0 too). p99 is over the "
    "loop's answered requests; a failed request counts in `failed`, not in the latencies.")


class Loop(threading.Thread):
    """One request loop (CLIENT) from a pod or the external namespace; its last JSON line is the result."""

    def __init__(self, lab: Lab, where: str, url: str, stop: Path) -> None:
        super().__init__(daemon=True)
        pre = ([PY, "-m", "netk8s.cli.main", "exec", where, "--"] if where != "external"
               else [PY, "-m", "netk8s.cli.main", "lab", "exec", "external"])
        self.argv = [*pre, sys.executable, "-c", CLIENT, url, str(REQUESTS), str(stop), "900"]
        self.lab, self.where = lab, where
        self.result: dict[str, Any] = {}

    def run(self) -> None:
        p = subprocess.run(self.argv, env=self.lab.env, cwd=REPO, capture_output=True, text=True, timeout=1200,
                           check=False)
        for line in p.stdout.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "ok" in msg:
                self.result = msg
        if not self.result:
            self.result = {"error": (p.stderr or p.stdout)[-300:]}


def ready_count(lab: Lab) -> int:
    pods = lab.get_json("pods", "-l", "app=backend")["items"]
    return sum(1 for p in pods if is_ready(p) and not p["metadata"].get("deletionTimestamp"))


def endpoint_count(lab: Lab) -> int:
    ep = lab.get_json("endpoints", "web-np")
    return sum(len(s.get("addresses") or []) for s in ep.get("subsets") or [])


def settle(lab: Lab, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not (ready_count(lab) == n and endpoint_count(lab) == n):
        if time.monotonic() > deadline:
            raise BenchError(f"backend did not settle at {n} Ready pods / endpoints in {timeout:.0f} s")
        time.sleep(0.5)


def scenario(lab: Lab, name: str, vip: str, node_port: int) -> dict[str, dict]:
    lab.cli("scale", "deployment", "backend", "--replicas", "1" if name == "scale" else "3")
    settle(lab, 1 if name == "scale" else 3)
    stop = Path(tempfile.mkdtemp(prefix="nk8sb-rel-")) / "stop"
    loops = {"ClusterIP": Loop(lab, "client", f"http://{vip}/hostname", stop),
             "NodePort": Loop(lab, "external", f"http://192.168.56.12:{node_port}/hostname", stop)}
    for t in loops.values():
        t.start()
    try:
        if name == "scale":
            for n in (5, 1):
                lab.cli("scale", "deployment", "backend", "--replicas", str(n))
                settle(lab, n)
        else:
            for p in lab.get_json("pods", "-l", "app=backend")["items"]:
                lab.cli("delete", "pod", p["metadata"]["name"])
                settle(lab, 3)
    finally:
        stop.touch()
        for t in loops.values():
            t.join(1200)
    return {k: t.result for k, t in loops.items()}


def burners() -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"], stdin=subprocess.DEVNULL)
            for _ in range(os.cpu_count() or 1)]


def run_bench(quick: bool, log: Any) -> Section:
    sec = Section("reliability", "9. Requests during scaling and pod deletion, idle vs loaded", method=METHOD)
    lab = Lab("bench9", nodes=3)
    data: dict[str, Any] = {}
    try:
        lab.up()
        lab.apply(BACKEND)
        settle(lab, 1)
        svc = lab.get_json("svc", "web-np")
        vip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
        deadline = time.monotonic() + 120
        while not any(p["metadata"]["name"] == "client" and is_ready(p) for p in lab.get_json("pods")["items"]):
            if time.monotonic() > deadline:
                raise BenchError("client pod not Ready in 120 s")
            time.sleep(0.5)
        for load in ("idle", "loaded"):
            procs = burners() if load == "loaded" else []
            try:
                for name in ("scale", "delete"):
                    data[(load, name)] = scenario(lab, name, vip, node_port)
                    log(f"reliability {load} {name}: " + ", ".join(
                        f"{k} p99 {v.get('p99_s')} failed {v.get('bad')}" for k, v in data[(load, name)].items()))
            finally:
                for b in procs:
                    b.kill()
                for b in procs:
                    b.wait()
    except BenchError as exc:
        sec.error = str(exc)
    finally:
        lab.down()
    rows = []
    for (load, name), loops in data.items():
        for svc_type, r in loops.items():
            lat = r.get("lat_ms") or []
            rows.append((svc_type, "1 -> 5 -> 1" if name == "scale" else "rolling deletion", load,
                         r.get("ok", "-"), r.get("bad", r.get("error", "-")),
                         fmt(percentile(lat, 50), "ms"), fmt(percentile(lat, 99), "ms"), fmt(max(lat) if lat else None, "ms")))
    if rows:
        sec.tables.append(report.table(("Service", "during", "machine", "answered", "failed", "p50", "p99", "max"),
                                       rows))
    sec.data = {f"{k[0]}/{k[1]}": {t: {x: y for x, y in r.items() if x != "lat_ms"} for t, r in v.items()}
                for k, v in data.items()}
    return sec


def plot(sec: Section, path: Path, quick: bool) -> bool:
    return False
