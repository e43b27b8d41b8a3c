"""Benchmark 9: VM nodes: boot-to-ready, rule programming per mode and the data plane through a ClusterIP, inside ONE QEMU guest.

* boot-to-ready: a switch namespace of its own (`nk8s-<tag>-sw`), a VM node (netk8s.lab.vm.VmNode)
  booted BOOTS times one after another; ready = the guest control server ran `true` (the moment a node
  agent could start). The guest's uptime when PID 1 entered the host's tree is read from its console.
* rules: in the last guest booted, for each size and mode, a fresh network namespace of the guest's
  kernel runs scripts.bench.rules_worker (the real Proxier + backend + applier over the guest's kernel:
  iptables-legacy-restore / nft -f / ipvsadm --restore + ipset restore + ip -batch) for N synthetic
  Services x 5 endpoints: one full sync from nothing, then one-endpoint changes (partial syncs).
* data plane: two node namespaces in the same guest, one per mode (iptables, ipvs), each with a client
  and a server pod on its bridge (scripts.bench.vm_worker setup); throughput and short-connection rate
  client pod -> ClusterIP and client pod -> server pod IP, interleaved across the modes.
Everything runs in namespaces made here and in the guest; the VM, its tap and the switch go in `finally`.
`python -m scripts.bench --only vm [--quick] --out FILE` runs it alone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.bench import report
from scripts.bench.report import Section, fmt, fmt_ratio, median
from scripts.bench.vm_worker import CLUSTER_IP, SERVER_IP, pod_names

REPO = Path(__file__).resolve().parents[2]
TAG = f"vmb{os.getpid() % 100000}"
GUEST_IP, CONTROL_IP = "192.168.56.11", "192.168.56.10"
MEMORY_MB = 2048  # 10,000 Services: the worker's ~170 MB plus the tools' listings, in a tmpfs-rooted guest
MODES = ("iptables", "nftables", "ipvs")
DATAPLANE_MODES = ("iptables", "ipvs")
CHANGES = 3
ENDPOINTS = 5
READS = ("ipset_save", "ipvsadm_list", "device_addresses")  # IPVS mode's read-back of the kernel each sync
RULES_TIMEOUT = 4 * 3600.0  # s per (mode, size): 10,000 Services under TCG on a shared machine


def sizes(quick: bool) -> tuple[int, ...]:
    return (100, 1000) if quick else (1000, 10000)


def plan(quick: bool) -> dict[str, Any]:
    """What one run measures (pure: the section's text and the driver both read it)."""
    return {"boots": 2 if quick else 3, "sizes": sizes(quick), "modes": MODES, "changes": CHANGES,
            "dataplane_modes": DATAPLANE_MODES, "reps": 2 if quick else 3, "seconds": 3 if quick else 5}


def method(quick: bool, tools: dict[str, str] | None = None, p: dict | None = None) -> str:
    p = p or plan(quick)
    tools = tools or {}
    bulk = "iperf3 (one stream)" if tools.get("bulk") == "iperf3" else "a Python bulk sender into a Python sink"
    conn = ("wrk -t1 -c16 with `Connection: close` against nginx" if tools.get("conn") == "nginx"
            else "a Python connect/request/close loop against a Python HTTP server")
    return (
        "ONE QEMU guest (netk8s.lab.vm.VmNode: Debian's kernel, the host's / read-only over 9p, "
        f"{MEMORY_MB} MiB, 1 vCPU, TCG when /dev/kvm is not usable: see the table's accel column), "
        "on a switch namespace of its own. "
        f"**Boot-to-ready**: QEMU started to the guest control server running `true`, {p['boots']} boots one "
        "after another (the node agent starts at that moment; the node's Ready condition needs an API server "
        "and is not measured here). "
        "**Rules**: in that guest, for each mode and size, a fresh network namespace of the guest's kernel "
        f"runs scripts/bench/rules_worker.py (the agent's Proxier, backend and applier) over N synthetic "
        f"Services x {ENDPOINTS} endpoints (after the data plane runs): one full sync from nothing, then {p['changes']} one-endpoint changes "
        "(partial syncs; the median is reported). Sizes "
        f"{', '.join(f'{n:,}' for n in p['sizes'])}. "
        "**Data plane**: two node namespaces in the same guest, one per mode (iptables, ipvs), each with a "
        "client and a server pod wired by the agent's CNI code and one Service synced by the agent's "
        f"proxier; {bulk} for throughput and {conn} for the connection rate, {p['seconds']} s per run, "
        f"{p['reps']} interleaved rounds (mode A, mode B, ...), client pod -> ClusterIP and client pod -> "
        "server pod IP. Under TCG every instruction is emulated: the figures compare the modes with each "
        "other in the same guest, they are not what a node on real hardware does.")


def log_to(log: Any, msg: str) -> None:
    log(f"vm: {msg}")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def pid1_uptime(serial: Path) -> float | None:
    m = re.search(r"netk8s-guest: up ([0-9.]+)s", serial.read_text(errors="replace"))
    return float(m.group(1)) if m else None


# ------------------------------------------------------------------------------------------ driver (I/O)
def _guest_py(vm: Any, ns: str, module: str, *args: str, timeout: float) -> dict:
    r = vm.run(["ip", "netns", "exec", ns, sys.executable, "-m", module, *args], timeout=timeout,
               env={"PYTHONPATH": str(REPO)}, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def rules_in_guest(vm: Any, mode: str, services: int, changes: int) -> dict:
    ns = f"nk8s-{TAG}-{mode[:4]}"
    opts = {"mode": mode, "services": services, "endpoints": ENDPOINTS, "changes": changes}
    vm.run(["ip", "netns", "add", ns], check=True)
    try:
        vm.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        return _guest_py(vm, ns, "scripts.bench.rules_worker", json.dumps(opts), timeout=RULES_TIMEOUT)
    finally:
        vm.run(["ip", "netns", "delete", ns])


def dataplane_in_guest(vm: Any, p: dict, log: Any) -> dict:
    """Both modes' node namespaces set up side by side, then interleaved rounds of bulk + conn per path."""
    nodes: dict[str, dict] = {}
    out: dict[str, Any] = {"setup": {}, "runs": {}}
    try:
        for mode in p["dataplane_modes"]:
            node_ns = f"nk8s-{TAG}-n{mode[:4]}"
            nodes[mode] = {"node_ns": node_ns, "pods": []}
            vm.run(["ip", "netns", "add", node_ns], check=True)
            vm.run(["ip", "-n", node_ns, "link", "set", "lo", "up"], check=True)
            prefix = f"nk8s-{TAG}-{mode[:4]}"
            # The pods' namespaces from the guest's own mount namespace: one made by the worker under
            # `ip netns exec` (a mount namespace of its own) would not be visible here (setns: EINVAL).
            for pod_ns in pod_names(prefix):
                nodes[mode]["pods"].append(pod_ns)
                vm.run(["ip", "netns", "add", pod_ns], check=True)
            res = _guest_py(vm, node_ns, "scripts.bench.vm_worker", "setup",
                            json.dumps({"mode": mode, "prefix": prefix}), timeout=600)
            nodes[mode].update(res)
            out["setup"][mode] = {"sync_s": res["sync_s"]}
            out["tools"] = res["tools"]
            log_to(log, f"dataplane {mode}: node set up (sync {res['sync_s']:.2f} s, tools {res['tools']})")
        paths = [(mode, target, ip) for mode in p["dataplane_modes"]
                 for target, ip in (("ClusterIP", CLUSTER_IP), ("pod IP", SERVER_IP))]
        for rep in range(p["reps"]):
            order = paths[rep % len(paths):] + paths[:rep % len(paths)]
            for mode, target, ip in order:
                key = f"{mode}/{target}"
                run = out["runs"].setdefault(key, {"bps": [], "cps": []})
                for kind, field in (("bulk", "bps"), ("conn", "cps")):
                    res = _guest_py(vm, nodes[mode]["client_ns"], "scripts.bench.vm_worker", "client",
                                    json.dumps({"kind": kind, "ip": ip, "seconds": p["seconds"]}),
                                    timeout=p["seconds"] + 300)
                    run[field].append(res["value"])
                log_to(log, f"dataplane round {rep} {key}: {run['bps'][-1] / 1e6:.0f} Mbit/s, "
                       f"{run['cps'][-1]:.0f} conn/s")
    finally:
        for node in nodes.values():
            for pid in node.get("pids", []):
                vm.run(["kill", str(pid)])
            for ns in (*node["pods"], node["node_ns"]):
                vm.run(["ip", "netns", "delete", ns])
    return out


def measure(quick: bool, log: Any, p: dict | None = None, checkpoint: Path | None = None) -> dict:
    """Run the plan (default: plan(quick)); with `checkpoint`, the figures so far are written there as JSON
    after every step (a run stopped half-way still renders with `--render`)."""
    from netk8s.dataplane import links, netns, qemu
    from netk8s.errors import KernelError
    from netk8s.lab.vm import VmNode
    from netk8s.model import naming

    p = p or plan(quick)
    data: dict[str, Any] = {"quick": quick, "plan": {k: list(v) if isinstance(v, tuple) else v for k, v in p.items()},
                            "boots": [], "rules": [], "load": [("start", loadavg())],
                            "accel": "kvm" if qemu.kvm_usable() else "tcg"}

    started = time.monotonic()
    data["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def save(phase: str) -> None:
        data["load"].append((phase, loadavg()))
        data["seconds"] = time.monotonic() - started
        if checkpoint is not None:
            checkpoint.write_text(json.dumps(data, indent=1))

    switch = naming.switch_netns(TAG)
    with tempfile.TemporaryDirectory(prefix="netk8s-bench-vm-") as tmp:
        netns.create_netns(switch)
        vm: VmNode | None = None
        try:
            links.ensure_bridge(switch, naming.UNDERLAY_BRIDGE)
            links.set_up(switch, naming.UNDERLAY_BRIDGE)
            links.ensure_address(switch, naming.UNDERLAY_BRIDGE, f"{CONTROL_IP}/24")
            for i in range(p["boots"]):
                vm = VmNode(name="node1", switch_netns=switch, bridge=naming.UNDERLAY_BRIDGE,
                            tap=naming.vm_tap(TAG, "node1"), ip_cidr=f"{GUEST_IP}/24", workdir=Path(tmp) / f"boot{i}",
                            tag=TAG, memory_mb=MEMORY_MB)
                vm.boot()
                ready = vm.wait_ready()
                data["boots"].append({"ready": ready, "pid1": pid1_uptime(vm.serial_log)})
                log_to(log, f"boot {i}: ready after {ready:.1f} s (PID 1 in the host tree at "
                       f"{data['boots'][-1]['pid1']} s of guest uptime)")
                if i < p["boots"] - 1:
                    vm.stop()
            assert vm is not None
            data["guest_kernel"] = vm.run(["uname", "-r"], check=True).stdout.strip()
            save("booted")
            if p["dataplane_modes"]:
                try:
                    data["dataplane"] = dataplane_in_guest(vm, p, log)
                except KernelError as exc:
                    data["dataplane"] = {"error": str(exc).splitlines()[0][:300]}
                    log_to(log, f"dataplane FAILED {exc}")
                save("data plane")
            for n in p["sizes"]:
                for mode in p["modes"]:
                    row: dict[str, Any] = {"mode": mode, "services": n}
                    try:
                        row.update(rules_in_guest(vm, mode, n, p["changes"]))
                        log_to(log, f"rules {mode} {n}: full {row['full_s']:.2f} s, partial "
                               f"{[round(x['s'], 2) for x in row.get('partial', [])]}")
                    except KernelError as exc:  # one mode failing still reports the others
                        row["error"] = str(exc).splitlines()[0][:300]
                        log_to(log, f"rules {mode} {n}: FAILED {exc}")
                    data["rules"].append(row)
                    save(f"rules {mode} {n:,}")
            save("end")
        finally:
            if vm is not None:
                vm.stop()
            netns.delete_netns(switch)
    return data


def run_bench(quick: bool, log: Any) -> Section:
    return section(measure(quick, log))


def main(argv: list[str] | None = None) -> int:
    """`python -m scripts.bench.vm [--quick] [--sizes N,N] [--modes M,M] [--no-dataplane] [--json F] [--out F]`
    (one part of the plan, checkpointed), or `--render F --out F` (the section from a checkpoint)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m scripts.bench.vm")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="")
    ap.add_argument("--modes", default="")
    ap.add_argument("--boots", type=int, default=0)
    ap.add_argument("--changes", type=int, default=0)
    ap.add_argument("--no-dataplane", action="store_true")
    ap.add_argument("--json", default="", help="checkpoint: the figures so far, after every step")
    ap.add_argument("--render", default="", help="render the section from this checkpoint; run nothing")
    ap.add_argument("--out", default="", help="write the section's Markdown here")
    args = ap.parse_args(argv)
    # SIGTERM (and SIGINT, which a shell's background job ignores) unwind through measure's `finally`:
    # the VM, its tap and the switch namespace go (scripts.bench.__main__ does the same for the driver).
    from scripts.bench.__main__ import _sigterm

    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, _sigterm)
    if args.render:
        data = json.loads(Path(args.render).read_text())
    else:
        p = plan(args.quick)
        if args.sizes:
            p["sizes"] = tuple(int(x) for x in args.sizes.split(","))
        if args.modes:
            p["modes"] = tuple(x for x in args.modes.split(",") if x)
        if args.boots:
            p["boots"] = args.boots
        if args.changes:
            p["changes"] = args.changes
        if args.no_dataplane:
            p["dataplane_modes"] = ()
        data = measure(args.quick, lambda m: print(f"[bench-vm] {m}", file=sys.stderr, flush=True), p,
                       Path(args.json) if args.json else None)
    if "machine" not in data:
        from scripts.bench.__main__ import machine_info

        info = machine_info()
        data["machine"] = {k: info[k] for k in ("CPU", "logical CPUs", "RAM", "kernel", "OS", "git commit") if k in info}
    sec = section(data)
    sec.seconds = float(data.get("seconds") or 0.0)
    text = report.render_report([sec], {}, quick=bool(data.get("quick")), command="python -m scripts.bench.vm")
    body = text[text.index("## 10."):]
    print(body)
    if args.out:
        Path(args.out).write_text(body)
    return 0


def plot(sec: Section, path: Path, quick: bool) -> bool:
    return False


# ------------------------------------------------------------------------------------------ rendering (pure)
def _partial(row: dict) -> float | None:
    return median(x["s"] for x in row.get("partial", []))


def _ipvs_split(row: dict) -> str:
    split = row.get("split") or {}
    if not split:
        return ""
    parts = [("ipvsadm --restore", row.get("apply_s"))] + sorted(split.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {fmt(v, 's')}" for name, v in parts if v)


def section(data: dict) -> Section:
    quick = bool(data.get("quick"))
    tools = (data.get("dataplane") or {}).get("tools")
    sec = Section("vm", "10. VM nodes", method=method(quick, tools, data.get("plan")), data=data)
    boots = data.get("boots", [])
    ready = [b["ready"] for b in boots]
    pid1 = [b["pid1"] for b in boots if b.get("pid1") is not None]
    sec.tables.append(report.table(
        ("boot-to-ready, median", "min", "max", "guest uptime when PID 1 entered the host's tree, median", "boots",
         "accel", "guest kernel"),
        [(fmt(median(ready), "s"), fmt(min(ready, default=None), "s"), fmt(max(ready, default=None), "s"),
          fmt(median(pid1), "s"), len(ready), data.get("accel", "?"), data.get("guest_kernel", "?"))]))
    rows = []
    for r in data.get("rules", []):
        if "error" in r:
            rows.append((r["mode"], f"{r['services']:,}", f"failed: {r['error']}", "", "", "", "", "", ""))
            continue
        partial = _partial(r)
        rows.append((r["mode"], f"{r['services']:,}", fmt(r.get("full_s"), "s"), fmt(r.get("apply_s"), "s"),
                     fmt(partial, "s"), fmt(median(x["apply_s"] for x in r.get("partial", [])
                                                   if x.get("apply_s") is not None), "s"),
                     len(r.get("partial", [])), fmt(r.get("kernel_rules")),
                     fmt((r.get("rss_peak") or 0) / 2**20 or None, "MiB")))
    if rows:
        sec.tables.append(report.table(
            ("mode (in the guest)", "Services", "full sync", "of which the restore call", "one-endpoint change, median",
             "of which the restore call", "changes", "kernel objects", "peak RSS"), rows))
    splits = [(r["services"], _ipvs_split(r), _ipvs_split(min(r["partial"], key=lambda x: x["s"]))
               if r.get("partial") else "") for r in data.get("rules", []) if r.get("split")]
    if splits:
        sec.tables.append(report.table(("IPVS mode, Services", "full sync: kernel calls", "one-endpoint change: kernel calls"),
                                       [(f"{n:,}", full, part) for n, full, part in splits]))
    for r in data.get("rules", []):
        if r.get("split") and r.get("partial"):
            reads = median(sum(x.get("split", {}).get(k, 0.0) for k in READS) for x in r["partial"])
            sec.notes.append(
                f"IPVS mode, {r['services']:,} Services: of a one-endpoint change's {fmt(_partial(r), 's')} (median), "
                f"{fmt(reads, 's')} is reading the kernel back for the diff ({', '.join(READS)}), as kube-proxy's "
                "IPVS proxier lists the kernel's virtual servers and ipset entries every sync.")
    dp = data.get("dataplane") or {}
    if dp.get("error"):
        sec.notes.append(f"data plane failed: {dp['error']}")
    runs = dp.get("runs") or {}
    if runs:
        drows = []
        for key, r in runs.items():
            mode, target = key.split("/", 1)
            direct = runs.get(f"{mode}/pod IP", {})
            drows.append((mode, target, f"{fmt(_mbit(median(r['bps'])), 'Mbit/s')} ({_span([_mbit(x) for x in r['bps']])})",
                          f"{fmt(median(r['cps']), 'conn/s')} ({_span(r['cps'])})",
                          fmt_ratio(report.ratio(median(r["bps"]), median(direct.get("bps", [])))),
                          fmt_ratio(report.ratio(median(r["cps"]), median(direct.get("cps", [])))),
                          len(r["bps"])))
        sec.tables.append(report.table(("mode", "client pod ->", "throughput, median (rounds' range)",
                                        "connection rate, median (rounds' range)",
                                        "throughput vs pod IP", "conn rate vs pod IP", "rounds"), drows))
        sec.notes.append("client pod -> pod IP is the same path in both node namespaces (no Service rule is "
                         "on it): the spread between the two modes' pod-IP rows is the noise of the shared host.")
        a, b = runs.get("ipvs/ClusterIP"), runs.get("iptables/ClusterIP")
        if a and b:
            sec.notes.append(
                f"ClusterIP, IPVS vs iptables in the same guest: throughput "
                f"{fmt_ratio(report.ratio(median(a['bps']), median(b['bps'])))}, connection rate "
                f"{fmt_ratio(report.ratio(median(a['cps']), median(b['cps'])))} (medians of the rounds).")
    if dp.get("setup"):
        sec.notes.append("one-Service sync in the data plane's node namespaces: " + ", ".join(
            f"{mode} {fmt(s['sync_s'], 's')}" for mode, s in dp["setup"].items()))
    if data.get("machine"):
        sec.notes.append("machine (host): " + ", ".join(f"{k} {v}" for k, v in data["machine"].items()))
    if data.get("load"):
        sec.notes.append(f"load average of the host (1, 5, 15 min) during the run{' of ' + data['date'] if data.get('date') else ''}, "
                         "shared with other jobs: " + "; ".join(
            f"{phase}: {load}" for phase, load in data["load"]))
    return sec


def _span(values: list[float | None]) -> str:
    xs = [x for x in values if x is not None]
    return f"{fmt(min(xs))}-{fmt(max(xs))}" if xs else "-"


def _mbit(bps: float | None) -> float | None:
    return None if bps is None else bps / 1e6


if __name__ == "__main__":
    raise SystemExit(main())
