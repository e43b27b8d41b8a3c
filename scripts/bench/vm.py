"""VM nodes: boot-to-ready time of a QEMU guest, and rule programming for N Services inside one guest per mode.

`python -m scripts.bench.vm [--boots 3] [--services 1000] [--modes ipvs,iptables,nftables] [--out FILE]`
prints (and with --out writes) a markdown section for BENCHMARKS.md.

* boot-to-ready: a switch namespace of its own (`nk8s-<tag>-sw`), a VM node (netk8s.lab.vm.VmNode) booted
  `--boots` times one after another; ready = the guest control server ran `true` (the moment a node agent
  could start). The guest's uptime when PID 1 entered the host's tree is read from the serial console.
* rules: in ONE guest, for each mode, a fresh network namespace of the guest's kernel runs
  scripts.bench.rules_worker (the real Proxier + backend + applier over the guest's kernel: ipvsadm
  --restore / iptables-legacy-restore / nft -f) for N synthetic Services x 5 endpoints: one full sync
  from nothing, then one-endpoint changes (partial syncs).
Everything runs inside namespaces made here and the guest; the VM, tap and namespaces go in `finally`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from netk8s.dataplane import links, netns
from netk8s.errors import KernelError
from netk8s.lab.vm import VmNode
from netk8s.model import naming

REPO = Path(__file__).resolve().parents[2]
TAG = f"vmb{os.getpid() % 100000}"
GUEST_IP, CONTROL_IP = "192.168.56.11", "192.168.56.10"


def log(msg: str) -> None:
    print(f"[bench-vm {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pid1_uptime(serial: Path) -> float | None:
    m = re.search(r"netk8s-guest: up ([0-9.]+)s", serial.read_text(errors="replace"))
    return float(m.group(1)) if m else None


def new_vm(workdir: Path, switch: str) -> VmNode:
    return VmNode(name="node1", switch_netns=switch, bridge=naming.UNDERLAY_BRIDGE, tap=naming.vm_tap(TAG, "node1"),
                  ip_cidr=f"{GUEST_IP}/24", workdir=workdir, tag=TAG)


def rules_in_guest(vm: VmNode, mode: str, services: int, changes: int) -> dict:
    ns = f"nk8s-{TAG}-{mode[:4]}"
    opts = {"mode": mode, "services": services, "endpoints": 5, "changes": changes}
    vm.run(["ip", "netns", "add", ns], check=True)
    try:
        vm.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        r = vm.run(["ip", "netns", "exec", ns, sys.executable, "-m", "scripts.bench.rules_worker", json.dumps(opts)],
                   timeout=1800, env={"PYTHONPATH": str(REPO)}, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        vm.run(["ip", "netns", "delete", ns])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts.bench.vm")
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=3)
    ap.add_argument("--modes", default="ipvs,iptables,nftables")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    switch = naming.switch_netns(TAG)
    boots: list[dict] = []
    rules: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="netk8s-bench-vm-") as tmp:
        netns.create_netns(switch)
        vm: VmNode | None = None
        try:
            links.ensure_bridge(switch, naming.UNDERLAY_BRIDGE)
            links.set_up(switch, naming.UNDERLAY_BRIDGE)
            links.ensure_address(switch, naming.UNDERLAY_BRIDGE, f"{CONTROL_IP}/24")
            for i in range(args.boots):
                vm = new_vm(Path(tmp) / f"boot{i}", switch)
                vm.boot()
                ready = vm.wait_ready()
                boots.append({"ready": ready, "pid1": pid1_uptime(vm.serial_log)})
                log(f"boot {i}: ready after {ready:.1f} s (PID 1 in the host tree at {boots[-1]['pid1']} s uptime)")
                if i < args.boots - 1:
                    vm.stop()
            assert vm is not None
            for mode in [m for m in args.modes.split(",") if m and args.services > 0]:
                try:
                    rules[mode] = rules_in_guest(vm, mode, args.services, args.changes)
                except KernelError as exc:  # one mode failing still reports the others
                    rules[mode] = {"error": str(exc).splitlines()[0][:200]}
                    log(f"rules {mode}: FAILED {exc}")
                    continue
                log(f"rules {mode} {args.services}: full {rules[mode]['full_s']:.2f} s, "
                    f"applier {rules[mode]['apply_s']:.2f} s")
        finally:
            if vm is not None:
                vm.stop()
            netns.delete_netns(switch)
    text = render(boots, rules, args.services)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def render(boots: list[dict], rules: dict[str, dict], services: int) -> str:
    ready = [b["ready"] for b in boots]
    pid1 = [b["pid1"] for b in boots if b["pid1"] is not None]
    lines = ["| boot-to-ready (s), median | min | max | guest uptime at PID 1 in the host tree (s), median | boots |",
             "|---|---|---|---|---|",
             (f"| {statistics.median(ready):.1f} | {min(ready):.1f} | {max(ready):.1f} | "
             f"{statistics.median(pid1) if pid1 else float('nan'):.1f} | {len(ready)} |")]
    if rules:
        lines += ["", ("| mode (in the guest) | Services | full sync (s) | of which the applier (s) | "
                  "partial sync, median (s) | kernel objects |"), "|---|---|---|---|---|---|"]
        for mode, r in rules.items():
            if "error" in r:
                lines.append(f"| {mode} | {services} | failed: {r['error']} | | | |")
                continue
            part = statistics.median([p["s"] for p in r["partial"]]) if r.get("partial") else float("nan")
            lines.append(f"| {mode} | {services} | {r['full_s']:.2f} | {r['apply_s'] or 0:.2f} | {part:.2f} | "
                         f"{r.get('kernel_rules')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
