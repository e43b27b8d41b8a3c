"""Benchmark 2: network programming latency in a 3-node lab (Kubernetes' SLI, SLO 30 s at p99)."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from scripts.bench import report
from scripts.bench.common import PY, BenchError, Lab, Namespaces, in_ns, is_ready, try_lab, wait_for
from scripts.bench.report import NOT_AVAILABLE, Section, fmt, percentile

MODES = ("iptables", "nftables", "userspace")
POLL = 0.01
TIMEOUT = 30.0

# Runs in a node namespace: for each stdin line (a regex), dump the rules every POLL s until the regex
# matches; print the CLOCK_MONOTONIC time it was first seen (the clock is system-wide, so the driver's
# timestamps compare), or "timeout".
POLLER = r"""
import re, subprocess, sys, time
cmds = [c.split() for c in sys.argv[1].split(";")]
poll, limit = float(sys.argv[2]), float(sys.argv[3])
for line in sys.stdin:
    rx = re.compile(line.strip())
    end = time.monotonic() + limit
    seen = None
    while time.monotonic() < end:
        t = time.monotonic()
        text = "".join(subprocess.run(c, capture_output=True, text=True).stdout for c in cmds)
        if rx.search(text):
            seen = t
            break
        time.sleep(poll)
    print(seen if seen is not None else "timeout", flush=True)
"""

# Runs in the client pod: for each stdin line "IP PORT", GET / until an HTTP answer comes back; prints the
# monotonic time the successful attempt started.
PROBER = r"""
import selectors, socket, sys, time
limit = float(sys.argv[1])
sel = selectors.DefaultSelector()
for line in sys.stdin:
    ip, port = line.split()
    end = time.monotonic() + limit
    seen, last = None, 0.0
    while seen is None and time.monotonic() < end:
        now = time.monotonic()
        if now - last >= 0.01:
            # a new attempt every 10 ms: a SYN sent before the rules existed must not hide later ones
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((ip, int(port)))
            sel.register(s, selectors.EVENT_WRITE, now)
            last = now
        for key, _ in sel.select(0.002):
            s, t = key.fileobj, key.data
            sel.unregister(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                try:
                    s.setblocking(True)
                    s.settimeout(1)
                    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1."):
                        seen = t if seen is None else min(seen, t)
                except OSError:
                    pass
            s.close()
        for key in list(sel.get_map().values()):
            if time.monotonic() - key.data > 1.0:
                sel.unregister(key.fileobj)
                key.fileobj.close()
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()
    print(seen if seen is not None else "timeout", flush=True)
"""

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: lat}
spec:
  replicas: 1
  selector: {matchLabels: {app: lat}}
  template:
    metadata: {labels: {app: lat}}
    spec:
      containers: [{name: web, image: "nginx:1.25", ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node1
  containers: [{name: c, image: "busybox:1.36", command: ["sleep", "3600"]}]
"""


def dump_cmds(mode: str) -> str:
    if mode == "iptables":
        return "iptables-legacy-save -t nat"
    if mode == "nftables":
        return "nft list ruleset"
    return "iptables-legacy-save;nft list ruleset"  # userspace: whatever redirect rules it installs


def ip_rx(ip: str, suffix: str = "") -> str:
    return re.escape(ip) + suffix + r"(?![\d])"


def service_obj(k: int) -> tuple[dict, str]:
    cip = str(ipaddress.ip_address(int(ipaddress.ip_address("10.100.0.1")) + k))
    return ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"lat-{k}", "namespace": "default"},
             "spec": {"type": "ClusterIP", "clusterIP": cip, "clusterIPs": [cip], "selector": {"app": "lat"},
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}]}}, cip)


class Watchers:
    """One rule poller per node namespace and one HTTP prober in the client pod (long-running)."""

    def __init__(self, nss: Namespaces, lab: Lab, mode: str, client_ns: str) -> None:
        self.nodes = []
        for i in range(1, lab.nodes + 1):
            self.nodes.append(nss.procs.start(
                in_ns(lab.node_netns(f"node{i}"), [PY, "-c", POLLER, dump_cmds(mode), str(POLL), str(TIMEOUT)]),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                env=_env_with_sbin()))
        self.prober = nss.procs.start(in_ns(client_ns, [PY, "-c", PROBER, str(TIMEOUT)]),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, rx: str, target: tuple[str, int] | None) -> tuple[list[float | None], float | None]:
        for p in self.nodes:
            p.stdin.write(rx + "\n")
        if target:
            self.prober.stdin.write(f"{target[0]} {target[1]}\n")
        rules = [_num(p.stdout.readline()) for p in self.nodes]
        req = _num(self.prober.stdout.readline()) if target else None
        return rules, req


def _env_with_sbin() -> dict[str, str]:
    import os

    return dict(os.environ, PATH="/usr/sbin:/sbin:" + os.environ.get("PATH", "/usr/bin:/bin"))


def _num(line: str) -> float | None:
    try:
        return float(line.strip())
    except ValueError:
        return None


def slice_ips(store: Any) -> set[str]:
    items, _ = store.list("EndpointSlice", "default")
    out = set()
    for s in items:
        # lat-0, the first Service created (change 0), selects every pod of the Deployment
        if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != "lat-0":
            continue
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True):
                out.update(ep.get("addresses") or [])
    return out


def measure_mode(mode: str, changes: int, log: Any) -> dict:
    lab = Lab(f"bench2{mode[0]}", nodes=3, proxy_mode=mode)
    try:
        why = try_lab(lab)
        if why:
            return {"unavailable": why}
        lab.apply(APP)
        def app_ready() -> list[dict] | None:
            pods = lab.get_json("pods")["items"]
            return pods if len(pods) == 2 and all(is_ready(p) for p in pods) else None

        pods = wait_for("latency app pods Ready", app_ready, timeout=90, interval=0.3)
        client = next(p for p in pods if p["metadata"]["name"] == "client")
        store = lab.open_store()
        from netk8s.store.base import mutate

        svc_rows: list[dict] = []
        ep_rows: list[dict] = []
        with Namespaces("lat") as nss:
            w = Watchers(nss, lab, mode, lab.pod_netns(client))
            try:
                for k in range(changes):
                    # userspace mode keeps endpoints in the proxy process, not in kernel rules: Services only
                    if k % 2 == 0 or mode == "userspace":
                        obj, cip = service_obj(k)
                        t0 = time.monotonic()
                        store.create(obj)
                        rx = ip_rx(cip, "/32") if mode == "iptables" else ip_rx(cip)
                        rules, req = w.ask(rx, (cip, 80))
                        svc_rows.append(_row(t0, rules, req))
                    else:
                        before = slice_ips(store)
                        t0 = time.monotonic()
                        mutate(store, "Deployment", "default", "lat",
                               lambda d: {**d, "spec": {**d["spec"], "replicas": d["spec"]["replicas"] + 1}})
                        new = wait_for("the new endpoint in the EndpointSlice",
                                       lambda before=before: slice_ips(store) - before, timeout=60,
                                       interval=0.01)
                        t_slice = time.monotonic()
                        ip = min(new)
                        rules, _ = w.ask(ip_rx(ip, ":80") if mode == "iptables" else ip_rx(ip), None)
                        row = _row(t_slice, rules, None)
                        row["pod_start"] = t_slice - t0
                        ep_rows.append(row)
                    last = (svc_rows if k % 2 == 0 or mode == "userspace" else ep_rows)[-1]
                    log(f"latency {mode} change {k}: rules {fmt(last['rules'], 's')} request {fmt(last.get('request'), 's')}")
            finally:
                store.close()
        return {"service": svc_rows, "endpoint": ep_rows}
    finally:
        lab.down()


def _row(t0: float, rules: list[float | None], req: float | None) -> dict:
    missing = sum(1 for r in rules if r is None)
    all_nodes = None if missing else max(r for r in rules if r is not None) - t0
    return {"rules": all_nodes, "rules_per_node": [None if r is None else r - t0 for r in rules],
            "request": None if req is None else req - t0, "timeouts": missing}


def run_bench(quick: bool, log: Any) -> Section:
    changes = 10 if quick else 50
    sec = Section("latency", "2. Network programming latency", method=(
        f"A 3-node lab per proxy mode (`bench2i`, ...). {changes} changes, alternating: (1) create a ClusterIP "
        "Service selecting a ready nginx Deployment, written straight to the lab's store (the same write "
        "`netk8s apply` makes; clusterIP chosen by the benchmark); the clock starts just before the write. "
        "(2) scale the Deployment up by one (userspace mode: Service creations only, as it keeps endpoints "
        "in its process, not in kernel rules) (store read-modify-write); per Kubernetes' SLI the clock starts when "
        "the controller's EndpointSlice shows the new ready endpoint (the benchmark polls the store every "
        "10 ms; the pod start before it is reported apart). (a) rules: a poller in every node namespace dumps "
        f"the rules (`iptables-legacy-save -t nat` / `nft list ruleset`) every {POLL * 1000:.0f} ms until the "
        "ClusterIP (`-d IP/32`, present only once the Service has endpoints) or the new endpoint (`IP:80`) "
        "shows; the latency is the slowest node's. (b) request: a prober in a client pod on node1 retries "
        "`GET /` to the new ClusterIP (250 ms connect timeout, 5 ms between tries) until nginx answers. "
        "All processes read CLOCK_MONOTONIC, which is system-wide. p50/p99 by linear interpolation."))
    data: dict[str, Any] = {}
    for mode in MODES:
        try:
            data[mode] = measure_mode(mode, changes, log)
        except BenchError as exc:
            data[mode] = {"error": str(exc)[:300]}
    sec.data = data
    rows = []
    for mode in MODES:
        d = data[mode]
        if "unavailable" in d or "error" in d:
            rows.append((mode, NOT_AVAILABLE if "unavailable" in d else f"error: {d['error']}", "", "", "", "", ""))
            continue
        svc, ep = d["service"], d["endpoint"]
        for what, xs, n in (("Service created -> rules on all nodes", [r["rules"] for r in svc], len(svc)),
                            ("Service created -> first request answered", [r["request"] for r in svc], len(svc)),
                            ("EndpointSlice updated -> rules on all nodes", [r["rules"] for r in ep], len(ep)),
                            ("(scale written -> EndpointSlice updated)", [r["pod_start"] for r in ep], len(ep))):
            ok = [x for x in xs if x is not None]
            if not n:
                rows.append((mode, what, "n/a: endpoints live in the proxy process, not in kernel rules", "", "", 0, ""))
                continue
            rows.append((mode, what, fmt(percentile(ok, 50), "s"), fmt(percentile(ok, 99), "s"),
                         fmt(max(ok) if ok else None, "s"), n, n - len(ok)))
    sec.tables.append(report.table(("mode", "change -> observed", "p50", "p99", "max", "changes", "timeouts"), rows))
    for mode in MODES:
        d = data[mode]
        ok = "unavailable" not in d and "error" not in d
        xs = ([r["rules"] for r in d["service"] + d["endpoint"]] if ok else [])
        reqs = [r["request"] for r in d["service"]] if ok else []
        timeouts = sum(1 for x in xs + reqs if x is None)
        p99 = percentile([x for x in xs if x is not None], 99) if ok and not timeouts else None
        if ok and timeouts:
            p99 = float("inf")
        measured = (fmt(p99, "s") if p99 != float("inf") else f"{timeouts} timeouts") if ok else (
            NOT_AVAILABLE if "unavailable" in d else "error")
        sec.targets.append(report.at_most(
            f"programming latency p99, {mode}", "<= 0.5 s (SLO: 30 s)", p99, 0.5, measured,
            reason="the agent's informer polls the store and the sync loop ticks every ~0.2 s; in iptables "
                   "mode each sync then runs iptables-legacy-restore, which (likely) waits on the xtables lock shared by "
                   "every node namespace of the machine",
            close_gap="wake the proxier on the store's change notification instead of the periodic tick"))
        p99r = percentile([x for x in reqs if x is not None], 99) if ok and reqs else None
        sec.targets.append(report.at_most(
            f"first request answered p99, {mode}", "<= 0.5 s", p99r, 0.5,
            fmt(p99r, "s") if ok else (NOT_AVAILABLE if "unavailable" in d else "error"),
            reason="the request can only succeed after the rules reach node1 and the EndpointSlice exists",
            close_gap="as above, plus the endpoints controller writing the slice in the same pass as the Service"))
    return sec


def plot(sec: Section, path: Path, quick: bool) -> bool:
    import matplotlib.pyplot as plt

    series = []
    for mode, d in sec.data.items():
        if "service" not in d:
            continue
        series.append((f"{mode}: Service -> rules", [r["rules"] for r in d["service"]]))
        series.append((f"{mode}: Service -> request", [r["request"] for r in d["service"]]))
        series.append((f"{mode}: endpoint -> rules", [r["rules"] for r in d["endpoint"]]))
    series = [(n, sorted(x for x in xs if x is not None)) for n, xs in series]
    series = [(n, xs) for n, xs in series if xs]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, xs in series:
        ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=name)
    ax.axvline(0.5, color="grey", linestyle=":", label="target p99 0.5 s")
    ax.set_xlabel("seconds")
    ax.set_ylabel("fraction of changes")
    ax.set_title("network programming latency (CDF)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True

