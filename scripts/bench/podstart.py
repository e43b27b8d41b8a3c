"""Benchmark 5: pod start-up in a lab, and per-pod network set-up: netk8s podnet.add vs Debian's CNI plugins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.bench import report
from scripts.bench.common import BenchError, Lab, Namespaces, have, is_ready
from scripts.bench.report import Section, fmt, fmt_ratio, median, percentile

CNI_DIR = "/usr/lib/cni"
MTU = 1450

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: start}}
spec:
  replicas: {n}
  selector: {{matchLabels: {{app: start}}}}
  template:
    metadata: {{labels: {{app: start}}}}
    spec:
      containers:
      - {{name: c, image: "busybox:1.36", command: ["sleep", "3600"]}}
"""


def sizes(quick: bool) -> tuple[int, int]:
    """(pods, nodes)."""
    return (30, 2) if quick else (100, 4)


def lab_startup(pods: int, nodes: int, log: Any) -> dict:
    """Seconds from `netk8s apply` of a Deployment of `pods` replicas to all of them Ready (store polled)."""
    lab = Lab("bench5", nodes=nodes)
    try:
        lab.up()
        store = lab.open_store()
        try:
            t0 = time.monotonic()
            lab.apply(DEPLOYMENT.format(n=pods))
            t_apply = time.monotonic() - t0
            first_ready = None
            deadline = t0 + 300
            while True:
                items, _ = store.list("Pod", "default")
                ready = [p for p in items if is_ready(p) and not p["metadata"].get("deletionTimestamp")]
                if ready and first_ready is None:
                    first_ready = time.monotonic() - t0
                if len(ready) >= pods:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"only {len(ready)} of {pods} pods Ready after 300 s\n{lab.logs_tail()}")
                store.watch(store.revision(), ["Pod"], timeout=0.1)
            total = time.monotonic() - t0
        finally:
            store.close()
        lab.cli("wait", "--for=condition=Ready", "pod", "-l", "app=start", "--timeout", "60s")
        per_node: dict[str, int] = {}
        for p in items:
            node = (p.get("spec") or {}).get("nodeName", "?")
            per_node[node] = per_node.get(node, 0) + 1
        log(f"podstart: {pods} pods Ready in {total:.1f}s")
        return {"total": total, "apply_cli": t_apply, "first_ready": first_ready, "per_node": per_node}
    finally:
        lab.down()


def cni_config(tmp: Path) -> str:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "nk8sbench", "type": "bridge", "bridge": "cni0", "isGateway": True,
        "ipMasq": False, "hairpinMode": True, "mtu": MTU,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.2.0/24", "gateway": "10.244.2.1"}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp / "ipam")},
    })


def cni_add(node_ns: str, pod_ns: str, cid: str, config: str) -> None:
    """What a runtime does for a pod: make its netns, exec the bridge plugin (which execs host-local)."""
    from netk8s.dataplane import netns as dp_netns

    dp_netns.create_netns(pod_ns)
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{pod_ns}",
           "CNI_IFNAME": "eth0", "CNI_PATH": CNI_DIR, "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin")}
    # nsenter: setns + exec only, the way a runtime runs the plugin in the node's namespace
    p = subprocess.run(["nsenter", f"--net=/run/netns/{node_ns}", f"{CNI_DIR}/bridge"], input=config, env=env,
                       capture_output=True, text=True, timeout=30, check=False)
    if p.returncode != 0:
        raise BenchError(f"CNI bridge ADD {cid}: {(p.stdout + p.stderr).strip()[-300:]}")


def network_setup(pods: int, log: Any) -> dict:
    from netk8s.dataplane import netns as dp_netns
    from netk8s.node import podnet

    tmp = Path(tempfile.mkdtemp(prefix="nk8sb-cni-"))
    ours: list[float] = []
    cni: list[float] = []
    made_pod_ns: list[str] = []
    with Namespaces("ps") as nss:
        try:
            nk_node = nss.new("nk8snode")
            cni_node = nss.new("cninode")
            podnet.ensure_node_bridge(nk_node, "10.244.1.1/24", MTU)
            config = cni_config(tmp)
            for i in range(pods):
                # podnet validates that pod namespaces start with nk8s-: name them like a lab "bpn"'s pods
                cfg = podnet.PodNetConfig(pod_netns=f"nk8s-bpn-p-{i:04d}", pod_uid=f"bench-{i}",
                                          ip=f"10.244.1.{i + 2}", prefix_len=24, gateway="10.244.1.1", mtu=MTU)
                cni_ns = f"nk8sb-ps-c{i:04d}"
                for what in (("ours", "cni") if i % 2 == 0 else ("cni", "ours")):
                    t = time.perf_counter()
                    if what == "ours":
                        made_pod_ns.append(cfg.pod_netns)
                        podnet.add(nk_node, cfg)
                        ours.append(time.perf_counter() - t)
                    else:
                        made_pod_ns.append(cni_ns)
                        cni_add(cni_node, cni_ns, f"bench{i}", config)
                        cni.append(time.perf_counter() - t)
            log(f"podstart network: netk8s {median(ours):.4f}s/pod, CNI {median(cni):.4f}s/pod")
            profile = profile_adds(nk_node, pods, made_pod_ns)
        finally:
            for ns in made_pod_ns:
                try:
                    dp_netns.delete_netns(ns)
                except Exception as exc:  # noqa: BLE001 - keep cleaning
                    log(f"could not delete {ns}: {exc}")
            shutil.rmtree(tmp, ignore_errors=True)
    return {"ours": ours, "cni": cni, "ratios": report.paired_ratios(ours, cni), "profile": profile}


def profile_adds(node_ns: str, start: int, made: list[str], count: int = 5) -> str:
    """cProfile of `count` more podnet.add calls (not timed), top entries by cumulative time."""
    import cProfile
    import io
    import pstats

    from netk8s.node import podnet

    prof = cProfile.Profile()
    for i in range(start, start + count):
        cfg = podnet.PodNetConfig(pod_netns=f"nk8s-bpn-p-{i:04d}", pod_uid=f"bench-{i}", ip=f"10.244.1.{i + 2}",
                                  prefix_len=24, gateway="10.244.1.1", mtu=MTU)
        made.append(cfg.pod_netns)
        prof.enable()
        podnet.add(node_ns, cfg)
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(r"netk8s|pyroute2/(netns|iproute)", 14)
    return f"[{count} x podnet.add, sorted by cumulative time]\n" + report.profile_summary(buf.getvalue(), 14)


def run_bench(quick: bool, log: Any) -> Section:
    pods, nodes = sizes(quick)
    sec = Section("podstart", "5. Pod start-up", method=(
        f"(a) A {nodes}-node lab (`bench5`, vxlan, iptables); `netk8s apply` of a Deployment of {pods} busybox "
        "pods (`sleep`); the time runs from just before the `apply` command to the moment the store shows "
        f"all {pods} pods Ready (polled through store watches), confirmed with `netk8s wait`. (b) Per-pod "
        f"network set-up, {pods} pods each, alternating: netk8s's `podnet.add` (the call the agent makes: netns, "
        "lo up, veth on cbr0 with hairpin, IP, default route) against what a runtime does with Debian's CNI "
        "plugins (make the netns, exec `/usr/lib/cni/bridge` via `nsenter --net` with `CNI_COMMAND=ADD` and a "
        "bridge + host-local JSON config on stdin, which execs `host-local`). Each side has its own node "
        "namespace (`nk8sb-ps-...`); pod namespaces are deleted at the end."))
    data: dict[str, Any] = {}
    errors = []
    try:
        data["lab"] = lab_startup(pods, nodes, log)
    except BenchError as exc:
        errors.append(f"lab start-up: {exc}")
    if have(f"{CNI_DIR}/bridge") or Path(CNI_DIR, "bridge").exists():
        try:
            data["net"] = network_setup(pods, log)
        except BenchError as exc:
            errors.append(f"network set-up: {exc}")
    else:
        errors.append("Debian's CNI plugins are not installed (make bench installs containernetworking-plugins)")
    sec.error = "; ".join(errors)
    sec.data = data
    rows = []
    lab = data.get("lab")
    if lab:
        rows.append((f"{pods} pods Ready over {nodes} nodes", fmt(lab["total"], "s"),
                     (f"apply CLI {fmt(lab['apply_cli'], 's')}, first pod Ready {fmt(lab['first_ready'], 's')}, "
                      f"per node {lab['per_node']}")))
    if rows:
        sec.tables.append(report.table(("what", "time", "detail"), rows))
    net = data.get("net")
    if net:
        sec.tables.append(report.table(
            ("network set-up per pod", "median", "p90", "pods"),
            [("netk8s podnet.add", fmt(median(net["ours"]), "s"), fmt(percentile(net["ours"], 90), "s"), len(net["ours"])),
             ("CNI bridge + host-local", fmt(median(net["cni"]), "s"), fmt(percentile(net["cni"], 90), "s"),
              len(net["cni"])),
             ("netk8s / CNI (median of paired ratios)", fmt_ratio(median(net["ratios"])), "", "")]))
    note = "" if not quick else f" (quick run: {pods} pods over {nodes} nodes)"
    sec.targets.append(report.at_most(
        "100 pods Ready", "<= 10 s", lab["total"] if lab else None, 10.0,
        (fmt(lab["total"], "s") + note) if lab else "-",
        reason="each agent starts its pods one after the other (netns, veth, processes, probes) on 2 shared cores",
        close_gap="start pods concurrently in the agent and batch the status writes to the store"))
    r = median(net["ratios"]) if net else None
    sec.targets.append(report.at_most(
        "network set-up per pod vs CNI plugins", "faster than bridge + host-local (< 1.0x)", r, 0.999,
        fmt_ratio(r) if net else "-",
        reason="each podnet.add opens about ten pyroute2 sockets (one per links.* call), and "
               "IPRoute(netns=...) enters the namespace through a forked helper each time: that dominates "
               "the profile below, not the netlink work itself",
        close_gap="one IPRoute per namespace for the whole add (node side and pod side), passed to the "
                  "links helpers"))
    if net and sec.targets[-1].met is False:
        sec.profile = net.get("profile", "")
    return sec


def plot(sec: Section, path: Path, quick: bool) -> bool:
    import matplotlib.pyplot as plt

    net = sec.data.get("net")
    if not net:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.boxplot([[x * 1e3 for x in net["ours"]], [x * 1e3 for x in net["cni"]]])
    ax.set_xticks([1, 2], ["netk8s podnet.add", "CNI bridge + host-local"])
    ax.set_ylabel("ms per pod")
    lab = sec.data.get("lab")
    title = "pod network set-up"
    if lab:
        title += f" (lab: all pods Ready in {lab['total']:.1f} s)"
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
