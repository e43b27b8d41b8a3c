"""Benchmark 1: rule programming at scale, per proxy mode, against the bare load of the same text."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from scripts.bench import report, synth
from scripts.bench.common import PY, BenchError, Namespaces, in_ns, run
from scripts.bench.report import NOT_AVAILABLE, Section, fmt, fmt_ratio, median

MODES = ("iptables", "nftables")
ENDPOINTS = 5


def sizes(quick: bool) -> list[int]:
    return [100, 1000] if quick else [100, 1000, 5000, 10000]


def reps_for(n: int, quick: bool) -> int:
    if quick:
        return 2
    return 5 if n <= 1000 else 3


def worker(ns: str, opts: dict[str, Any], timeout: float = 900) -> dict:
    p = run(in_ns(ns, [PY, "-m", "scripts.bench.rules_worker", json.dumps(opts)]), timeout=timeout, check=False)
    if p.returncode != 0:
        raise BenchError(f"rules_worker {opts.get('mode')} {opts.get('services')}: "
                         f"{(p.stderr or p.stdout).strip()[-400:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure_mode(mode: str, quick: bool, tmp: Path, log: Any) -> dict:
    """{"unavailable": reason} or {n: {...medians...}} for one mode, sizes ascending."""
    results: dict[Any, Any] = {}
    changes = 3 if quick else 5
    for n in sizes(quick):
        fulls, bares, ratios, partials, rss, parts = [], [], [], [], [], []
        first: dict = {}
        for rep in range(reps_for(n, quick)):
            text_file = tmp / f"{mode}-{n}.rules"
            order = ("proxier", "bare") if rep % 2 == 0 else ("bare", "proxier")
            if rep == 0:
                order = ("proxier", "bare")  # the bare load needs the text the proxier rendered
            got: dict[str, dict] = {}
            for what in order:
                with Namespaces(f"r{rep}") as nss:
                    ns = nss.new(f"{mode[:3]}{n}-{what[:2]}")
                    if what == "proxier":
                        got[what] = worker(ns, {"mode": mode, "services": n, "endpoints": ENDPOINTS,
                                                "changes": changes, "dump": str(text_file)})
                        if "unavailable" in got[what]:
                            return {"unavailable": got[what]["unavailable"]}
                    elif text_file.exists():
                        got[what] = worker(ns, {"mode": mode, "bare": True, "file": str(text_file)})
            pr = got["proxier"]
            first = first or pr
            fulls.append(pr["full_s"])
            rss.append(pr["rss_peak"])
            partials.extend(x["s"] for x in pr["partial"])
            parts.append(pr)
            if "bare" in got:
                bares.append(got["bare"]["bare_s"])
                ratios.append(pr["full_s"] / got["bare"]["bare_s"])
        log(f"rules {mode} {n}: full {median(fulls):.3f}s bare {median(bares) or 0:.3f}s")
        results[n] = {
            "full": median(fulls), "bare": median(bares), "ratio": median(ratios),
            "ratio_of_medians": report.ratio(median(fulls), median(bares)),
            "partial": median(partials),
            "partial_p99": report.percentile(partials, 99),
            "rss": median([r for r in rss if r]),
            "rss_objects": median([p["rss_objects"] for p in parts if p.get("rss_objects")]),
            "build": median([p["build_s"] for p in parts if p.get("build_s") is not None]),
            "apply": median([p["apply_s"] for p in parts if p.get("apply_s") is not None]),
            "partial_apply": median([x["apply_s"] for p in parts for x in p["partial"] if x.get("apply_s") is not None]),
            "partial_build": median([x["build_s"] for p in parts for x in p["partial"] if x.get("build_s") is not None]),
            "partial_modes": sorted({str(x["mode"]) for p in parts for x in p["partial"]}),
            "rules": first.get("stats", {}).get("rules"),
            "kernel_rules": first.get("kernel_rules"),
            "reps": len(fulls),
        }
    # One profiled full sync at the largest size (not timed: cProfile slows the run down).
    n = sizes(quick)[-1]
    with Namespaces("rp") as nss:
        ns = nss.new(f"{mode[:3]}{n}-prof")
        prof = worker(ns, {"mode": mode, "services": n, "endpoints": ENDPOINTS, "changes": 0, "profile": True})
    results["profile"] = prof.get("profile", "")
    return results


def run_bench(quick: bool, log: Any) -> Section:
    sec = Section("rules", "1. Rule programming at scale", method=(
        f"In a fresh network namespace of its own (`nk8sb-...`, no lab), a fresh Python process per size and "
        f"repetition builds N synthetic Services x {ENDPOINTS} endpoints (one in ten a NodePort) as Service + "
        "EndpointSlice dicts and feeds them through the real syncer (`Proxier` with the iptables backend over "
        "netk8s.dataplane.iptables; with the nftables backend over netk8s.dataplane.nftables) by calling `sync()` as the agent "
        "does. **Full sync** = the wall time of that first `sync()`: build_state + change tracking + render + "
        "ONE `iptables-legacy-restore --noflush` (or `nft -f`), i.e. store objects -> rules in the kernel. "
        "**One-endpoint change** = one EndpointSlice gets a new address, then `sync()` (a partial sync); "
        f"{3 if quick else 5} changes per process. **Bare load** = the very same rendered text loaded by "
        "`iptables-legacy-restore --noflush` / `nft -f -` alone into another fresh namespace, timed the same "
        "way (subprocess.run from Python). Proxier and bare load alternate (A,B / B,A ...); the ratio is the "
        "median of the per-repetition ratios. **Memory** = VmHWM (peak RSS) of that process, which also holds "
        "the objects as the agent's informer would. The canary (a periodic probe, not part of a change) is "
        "disabled in the measured process."))
    tmp = Path(tempfile.mkdtemp(prefix="nk8sb-rules-"))
    data: dict[str, dict] = {}
    try:
        for mode in MODES:
            try:
                data[mode] = measure_mode(mode, quick, tmp, log)
            except BenchError as exc:
                data[mode] = {"error": str(exc)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for mode in MODES:
        d = data[mode]
        if "unavailable" in d or "error" in d:
            why = NOT_AVAILABLE if "unavailable" in d else f"error: {d['error'][:200]}"
            rows.append((mode, "-", why, "", "", "", "", "", "", ""))
            continue
        for n in sizes(quick):
            r = d[n]
            rows.append((mode, f"{n:,}", fmt(r["full"], "s"), fmt(r["bare"], "s"), fmt_ratio(r["ratio"]),
                         f"{fmt(r['build'], 's')} / {fmt(_render(r), 's')} / {fmt(r['apply'], 's')}",
                         fmt(r["partial"], "s") + f" ({'/'.join(r['partial_modes'])})",
                         fmt(r["partial_apply"], "s"), fmt((r["rss"] or 0) / 2**20, "MiB"), r["reps"]))
    sec.tables.append(report.table(
        ("mode", "Services", "full sync (median)", "bare load of same text", "full / bare",
         "build / render / apply", "one-endpoint change", "of which apply", "peak RSS", "reps"), rows))
    crow = []
    for mode in MODES:
        d = data[mode]
        if "unavailable" in d or "error" in d:
            continue
        for n in sizes(quick):
            kp = report.kube_proxy_rule_count(synth.service_port_shapes(n, ENDPOINTS)) if mode == "iptables" else None
            crow.append((mode, f"{n:,}", fmt(d[n]["rules"]), fmt(d[n]["kernel_rules"]), fmt(kp) if kp else "n/a",
                         ("same" if kp == d[n]["kernel_rules"] else "differs") if kp else ""))
    if crow:
        sec.tables.append("**Rule counts.** " + report.KUBE_PROXY_DERIVATION + " netk8s follows the same layout. "
                          "`rules in the kernel` counts `-A` lines of `iptables-legacy-save` (nft: rule lines "
                          "of `nft -a list ruleset`) right after the full sync.\n\n" + report.table(
                              ("mode", "Services", "netk8s rule_count", "rules in the kernel",
                               "kube-proxy (derived)", "kernel vs kube-proxy"), crow))
    big = sizes(quick)[-1]
    ipt = data["iptables"]
    nft = data["nftables"]
    ok_ipt = "unavailable" not in ipt and "error" not in ipt
    ok_nft = "unavailable" not in nft and "error" not in nft
    size_note = "" if big == 10000 else f" (quick run: measured at {big:,} Services, target is at 10,000)"
    r = ipt.get(big) if ok_ipt else None
    sec.targets.append(report.at_most(
        "iptables full sync vs bare restore", "<= 1.3x at 10,000 x 5", r["ratio"] if r else None, 1.3,
        (fmt_ratio(r["ratio"]) + size_note) if r else (NOT_AVAILABLE if "unavailable" in ipt else ipt.get("error", "")),
        reason=_ratio_reason(r) if r else "", close_gap=(
            "render straight from the informer's objects (skip the ProxyState copy), cache per-service "
            "rendered lines between full syncs, and write the text with one join")))
    r = nft.get(big) if ok_nft else None
    sec.targets.append(report.at_most(
        "nftables one-endpoint change", "<= 0.1 s at 10,000 Services", r["partial"] if r else None, 0.1,
        (fmt(r["partial"], "s") + size_note) if r else (NOT_AVAILABLE if "unavailable" in nft else nft.get("error", "")),
        reason=(_partial_reason(r) if r else ""), close_gap=(
            "a rule shape nft can add without reading every set of the table (kube-proxy's anonymous "
            "numgen vmaps are what it reads), or a kernel/nft with faster set lookups")))
    rss_vals = [(m, data[m][big]["rss"]) for m in MODES if big in data[m]]
    worst = max(rss_vals, key=lambda x: x[1] or 0) if rss_vals else None
    sec.targets.append(report.at_most(
        "agent RSS", "<= 200 MB at 10,000 Services", (worst[1] / 1e6) if worst else None, 200,
        (f"{fmt(worst[1] / 1e6, 'MB')} ({worst[0]}){size_note}" if worst else "-"),
        reason="the informer's dicts plus ProxyState plus the rendered text are all held at once",
        close_gap="drop the previous Rendered text after apply; keep slotted ServicePort/Endpoint objects"))
    profiles = [f"[{m}, {big:,} Services, full sync, top by own time]\n{data[m]['profile']}"
                for m in MODES if data[m].get("profile")]
    if profiles and any(t.met is False for t in sec.targets):
        sec.profile = "\n\n".join(profiles)
        sec.notes.append("In the profiles, `select.poll` is the proxier waiting for its `iptables-legacy-restore` / "
                         "`nft -f` child (the apply); the rest is netk8s's Python (build_state, render).")
    elif profiles:
        sec.notes.append("All targets measured were met; profile omitted.")
    sec.data = data
    return sec


def _render(r: dict) -> float | None:
    """Render time = full sync - build - apply (the rest of sync(), change tracking included)."""
    if r.get("build") is None or r.get("apply") is None or r.get("full") is None:
        return None
    return max(0.0, r["full"] - r["build"] - r["apply"])


def _ratio_reason(r: dict) -> str:
    render = _render(r)
    if r.get("build") is None or render is None:
        return "netk8s adds Python work before the restore"
    return (f"of {fmt(r['full'], 's')}: build_state {fmt(r['build'], 's')}, render {fmt(render, 's')}, "
            f"apply {fmt(r['apply'], 's')}: the Python side is the overhead over the bare restore.")


def _partial_reason(r: dict) -> str:
    b, a = r.get("partial_build"), r.get("partial_apply")
    return (f"state update from the event {fmt(b, 's')}; the `nft -f` / restore apply takes {fmt(a, 's')} "
            f"(nft reads the table's sets, the services' anonymous vmaps included, for any `add rule` or "
            f"`add element`).")


def plot(sec: Section, path: Path, quick: bool) -> bool:
    import matplotlib.pyplot as plt

    data = sec.data
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    any_line = False
    for mode, d in data.items():
        if "unavailable" in d or "error" in d:
            continue
        xs = sizes(quick)
        axes[0].plot(xs, [d[n]["full"] for n in xs], marker="o", label=f"{mode} netk8s full sync")
        axes[0].plot(xs, [d[n]["bare"] for n in xs], marker="x", linestyle="--", label=f"{mode} bare load")
        axes[1].plot(xs, [d[n]["partial"] for n in xs], marker="o", label=mode)
        axes[2].plot(xs, [(d[n]["rss"] or 0) / 1e6 for n in xs], marker="o", label=mode)
        any_line = True
    if not any_line:
        plt.close(fig)
        return False
    for ax, title, unit in zip(axes, ("full sync vs bare load", "one-endpoint change", "peak RSS"),
                               ("seconds", "seconds", "MB")):
        ax.set_xscale("log")
        ax.set_xlabel(f"Services (x {ENDPOINTS} endpoints)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True

