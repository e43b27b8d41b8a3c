"""Benchmark 6: HTTP through the Ingress (ingress-nginx: Debian's nginx in the controller pod) vs the same
Service's NodePort, with nginx itself as the anchor; and how soon a new Ingress rule is served."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.bench import report
from scripts.bench.common import (
    PY,
    BenchError,
    Lab,
    Namespaces,
    have,
    in_ns,
    is_ready,
    nginx_argv,
    nginx_config,
    run,
    wait_for,
    wait_port,
)
from scripts.bench.report import Section, fmt, fmt_ratio, median, percentile
from tests.root import manifests

HOST = "bench.example.com"
RULE_HOST = "rules.example.com"  # no rule answers on it until the measured one is added: 404 before
ANCHOR_PORT = 18080
RULE_TIMEOUT = 30.0

APP = manifests.docs(
    manifests.deployment("web", 2, [manifests.container("web", args=["serve-hostname"])]),
    manifests.service("web", ports=[{"name": "http", "port": 80, "targetPort": 9376}], type="NodePort"))

# Runs in the external client: for each stdin line (a path), GET it with Host HOST until it answers 200;
# print the CLOCK_MONOTONIC time of that first 200 (system-wide, so the driver's timestamps compare).
POLLER = r"""
import http.client, sys, time
ip, host, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
for line in sys.stdin:
    path, end, seen = line.strip(), time.monotonic() + limit, None
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection(ip, 80, timeout=2)
            c.request("GET", path, headers={"Host": host})
            status = c.getresponse().status
            c.close()
        except OSError:
            status = 0
        if status == 200:
            seen = time.monotonic()
            break
        time.sleep(0.005)
    print(seen if seen is not None else "timeout", flush=True)
"""

_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/sec, the latency percentiles (`--latency`: 50/75/90/99 %, seconds) and error counts."""
    out: dict[str, Any] = {"percentiles": {}, "errors": 0}
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"^(\d+(?:\.\d+)?)%\s+(\d+(?:\.\d+)?)(us|ms|s|m)$", s)
        if m:
            out["percentiles"][float(m.group(1))] = float(m.group(2)) * _WRK_UNITS[m.group(3)]
        elif s.startswith("Requests/sec:"):
            out["rps"] = float(s.split()[1])
        elif s.startswith("Socket errors:"):
            out["errors"] += sum(int(x) for x in re.findall(r"\d+", s))
        elif s.startswith("Non-2xx or 3xx responses:"):
            out["errors"] += int(s.split()[-1])
    return out


def wrk(ns: str, url: str, seconds: int, host: str | None = None) -> dict[str, Any]:
    argv = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if host:
        argv += ["-H", f"Host: {host}"]
    result = parse_wrk(run(in_ns(ns, [*argv, url]), timeout=seconds + 60).stdout)
    if "rps" not in result:
        raise BenchError(f"wrk {url}: no Requests/sec in its output")
    return result


def ingress(name: str, path: str, path_type: str = "Prefix", host: str = HOST) -> str:
    return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
                       "spec": {"rules": [{"host": host, "http": {"paths": [
                           {"path": path, "pathType": path_type,
                            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})


def throughput(lab: Lab, nss: Namespaces, anchor_dir: Path, seconds: int, reps: int,
               log: Any) -> dict[str, list[dict]]:
    ext = lab.external_netns()
    lb = lab.get_json("svc", "ingress-nginx-controller", "-n", "ingress-nginx")["status"]["loadBalancer"][
        "ingress"][0]["ip"]
    svc = lab.get_json("svc", "web")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    node_ip = lab.get_json("nodes")["items"][0]["status"]["addresses"][0]["address"]
    conf = nginx_config(anchor_dir, ANCHOR_PORT)
    nss.procs.start(in_ns(ext, nginx_argv(conf)))
    wait_port(ext, "127.0.0.1", ANCHOR_PORT)
    paths = {"ingress": (f"http://{lb}/", HOST), "nodeport": (f"http://{node_ip}:{node_port}/", None),
             "nginx alone": (f"http://127.0.0.1:{ANCHOR_PORT}/", None)}
    out: dict[str, list[dict]] = {k: [] for k in paths}
    for rep in range(reps):
        for name, (url, host) in paths.items():  # interleaved, so drift in the machine's load hits all alike
            log(f"ingress: wrk {name} (rep {rep + 1}/{reps})")
            out[name].append(wrk(ext, url, seconds, host))
    return out


def rule_latency(lab: Lab, nss: Namespaces, rules: int, log: Any) -> dict[str, list[float]]:
    """Seconds from `netk8s apply` of a new rule returning (the object is stored) to its first 200."""
    ext = lab.external_netns()
    lb = lab.get_json("svc", "ingress-nginx-controller", "-n", "ingress-nginx")["status"]["loadBalancer"][
        "ingress"][0]["ip"]
    poller = nss.procs.start(in_ns(ext, [PY, "-c", POLLER, lb, RULE_HOST, str(RULE_TIMEOUT)]), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert poller.stdin is not None and poller.stdout is not None
    served: list[float] = []
    applied: list[float] = []
    for i in range(rules):
        path = f"/rule-{i}"
        t0 = time.monotonic()
        lab.apply(ingress(f"rule-{i}", path, "Exact", RULE_HOST))
        t_applied = time.monotonic()
        poller.stdin.write(path + "\n")
        poller.stdin.flush()
        answer = poller.stdout.readline().strip()
        if answer in ("", "timeout"):
            raise BenchError(f"rule {path} not served within {RULE_TIMEOUT:.0f}s")
        served.append(float(answer) - t_applied)
        applied.append(t_applied - t0)
        log(f"ingress: rule {i + 1}/{rules} served {served[-1] * 1e3:.0f} ms after apply")
    return {"served": served, "apply_cli": applied}


def run_bench(quick: bool, log: Any) -> Section:
    seconds, reps, rules = (5, 2, 10) if quick else (15, 3, 30)
    sec = Section("ingress", "6. Ingress", method=(
        "A 2-node lab (`bench6`, vxlan, iptables) with ingress-nginx (the controller pod runs Debian's nginx "
        "from its rendered configuration); Deployment `web` (2 agnhost serve-hostname pods) behind a NodePort "
        f"Service and an Ingress for host {HOST}. From the lab's external client, `wrk -t1 -c16 -d{seconds}s "
        "--latency` (1) to the ingress's LoadBalancer IP with the Host header (external client -> nginx in the "
        "controller pod -> pod IP), (2) to the same Service's NodePort on a node (kube-proxy DNAT -> pod), "
        "(3) the anchor: an nginx alone answering `return 200` on the client's loopback (what nginx itself costs "
        f"with no backend); {reps} interleaved repetitions each. Rule change: {rules} times, `netk8s apply` of "
        f"an Ingress with a new Exact path on {RULE_HOST} (404 before), then a poller in the external client GETs it every 5 ms until the "
        "first 200; the time runs from the apply command's return (the object is stored) to that answer."))
    if not have("wrk"):
        sec.error = "wrk is not installed (make bench installs it)"
        return sec
    lab = Lab("bench6", nodes=2, ingress=True)
    data: dict[str, Any] = {}
    anchor_dir = Path(tempfile.mkdtemp(prefix="nk8sb-ingress-nginx-"))
    try:
        with Namespaces("ing") as nss:
            lab.up()
            lab.apply(APP + "---\n" + ingress("web", "/"))
            wait_for("web pods Ready", lambda: len([p for p in lab.get_json("pods", "-l", "app=web")["items"]
                                                     if is_ready(p)]) == 2, timeout=120)
            data["wrk"] = throughput(lab, nss, anchor_dir, seconds, reps, log)
            data["rules"] = rule_latency(lab, nss, rules, log)
    except BenchError as exc:
        sec.error = str(exc)
    finally:
        lab.down()
        shutil.rmtree(anchor_dir, ignore_errors=True)
    sec.data = data
    runs = data.get("wrk")
    if runs:
        rows = []
        rps = {k: median([r["rps"] for r in v]) for k, v in runs.items()}
        p99 = {k: median([r["percentiles"].get(99.0) for r in v if r["percentiles"].get(99.0) is not None])
               for k, v in runs.items()}
        for name in runs:
            rows.append((name, fmt(rps[name], "req/s", 4), fmt(p99[name], "s"),
                         sum(r["errors"] for r in runs[name])))
        sec.tables.append(report.table(("path", "requests/s (median)", "p99 latency (median)", "errors"), rows))
        sec.tables.append(report.table(("ratio", "value"), [
            ("ingress / NodePort requests/s", fmt_ratio(report.ratio(rps["ingress"], rps["nodeport"]))),
            ("ingress / NodePort p99", fmt_ratio(report.ratio(p99["ingress"], p99["nodeport"]))),
            ("nginx alone / ingress requests/s (the cost of the hop to a pod)",
             fmt_ratio(report.ratio(rps["nginx alone"], rps["ingress"]))),
        ]))
    rl = data.get("rules")
    p99_rule = percentile(rl["served"], 99) if rl else None
    if rl:
        sec.tables.append(report.table(("rule change to served", "median", "p99", "max", "rules"), [
            ("after `apply` returned", fmt(median(rl["served"]), "s"), fmt(p99_rule, "s"),
             fmt(max(rl["served"]), "s"), len(rl["served"])),
            ("the `apply` command itself", fmt(median(rl["apply_cli"]), "s"), fmt(percentile(rl["apply_cli"], 99), "s"),
             fmt(max(rl["apply_cli"]), "s"), len(rl["apply_cli"]))]))
    sec.targets.append(report.at_most(
        "a new Ingress rule answers", "<= 2 s (p99)", p99_rule, 2.0, fmt(p99_rule, "s") if rl else "-",
        reason="the controller renders and reloads after a quiet period of the watch; nginx starts new workers",
        close_gap="shorten the controller's batching window"))
    return sec


def plot(sec: Section, path: Path, quick: bool) -> bool:
    import matplotlib.pyplot as plt

    runs, rl = sec.data.get("wrk"), sec.data.get("rules")
    if not runs or not rl:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(runs)
    a.bar(names, [median([r["rps"] for r in runs[n]]) or 0 for n in names])
    a.set_ylabel("requests/s (median)")
    a.set_yscale("log")
    a.set_title("HTTP from the external client")
    b.hist([x * 1e3 for x in rl["served"]], bins=15)
    b.set_xlabel("ms from apply to the first 200")
    b.set_title("new Ingress rule served")
    for ax in (a, b):
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
