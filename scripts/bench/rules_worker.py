"""Runs INSIDE a fresh benchmark namespace: one proxier, one size; prints its measurements as JSON.

`python -m scripts.bench.rules_worker '{"mode": "iptables", "services": 1000, ...}'`

* proxier: build the synthetic Services + EndpointSlices, run the real proxier class (its real renderer
  and its real applier: `iptables-legacy-restore --noflush` / `nft -f`) through `sync()` as the agent
  does: a full sync (store objects -> rules in the kernel), then one-endpoint changes (partial syncs).
  Reports the split build/render/apply, the rules in the kernel, and the peak RSS (VmHWM) of this process.
* bare: load a rendered text with the bare tool alone (the side-by-side baseline).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from netk8s.store.base import Event
from scripts.bench import synth
from scripts.bench.report import parse_vm_hwm, profile_summary

NODE_IPS = ("192.168.56.11",)
# IPVS mode's kernel calls besides ipvsadm --restore, timed one by one (the reads are the diff's input)
IPVS_SPLIT = ("set_addresses", "ipset_restore", "restore", "ensure_rules", "device_addresses", "ipvsadm_list",
              "ipset_save")
SPLIT: dict[str, Timer] = {}


def vm_hwm() -> int | None:
    return parse_vm_hwm(Path("/proc/self/status").read_text())


class Null:
    """Health-check server / LB announcer stand-in: the benchmark measures the rules only."""

    def update(self, *_: Any) -> None: ...

    def close(self) -> None: ...

    def sync(self, *_: Any) -> set:
        return set()


class Informer:
    def __init__(self, services: list[dict], slices: list[dict]) -> None:
        self.objs = {"Service": services, "EndpointSlice": slices, "Node": []}
        self.revision = 1

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return self.objs.get(kind, [])


class Timer:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return self.fn(*a, **kw)
        finally:
            self.seconds += time.perf_counter() - t


class Recorder:
    """Passes each applied text on and keeps a reference to it while `texts` is a list (the dump of the
    full sync for the bare load: the very text the proxier applied)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.texts: list[str] | None = None

    def __call__(self, text: str) -> None:
        self.fn(text)
        if self.texts is not None:
            self.texts.append(text)


class Timed:
    """A dataplane module with some of its functions replaced (the timed, recorded applier)."""

    def __init__(self, module: Any, **replaced: Any) -> None:
        self.module, self.replaced = module, replaced

    def __getattr__(self, name: str) -> Any:
        return self.replaced[name] if name in self.replaced else getattr(self.module, name)


def make_proxier(mode: str) -> tuple[Any, Timer | None, Timer | None, Recorder]:
    """(proxier, apply timer, state timer, recorder) for the mode; ImportError when the mode is not in this
    build. The state timer wraps the proxier's refresh_state: build_state over every object on the first
    sync, the incremental update from the events after that."""
    from netk8s.proxy.model import NodeContext
    from netk8s.proxy.proxier import Proxier, SyncConfig

    node = NodeContext("node1", NODE_IPS)
    config = SyncConfig(canary_period=1e9)
    if mode == "iptables":
        from netk8s.dataplane import iptables
        from netk8s.proxy.backend_iptables import IptablesBackend

        rec = Recorder(iptables.restore)
        apply_t = Timer(rec)
        p = Proxier(node, IptablesBackend(Timed(iptables, restore=apply_t)), config,  # type: ignore[arg-type]
                    healthcheck=Null(), announcer=Null())  # type: ignore[arg-type]
    elif mode == "nftables":
        from netk8s.dataplane import nftables
        from netk8s.proxy.backend_nftables import NftablesBackend

        rec = Recorder(nftables.apply)
        apply_t = Timer(rec)
        p = Proxier(node, NftablesBackend(Timed(nftables, apply=apply_t)), config,  # type: ignore[arg-type]
                    healthcheck=Null(), announcer=Null())  # type: ignore[arg-type]
    elif mode == "ipvs":
        # only where the kernel has IP_VS (a VM node: scripts/bench/vm.py runs this worker in a guest)
        from netk8s.dataplane import ipvs
        from netk8s.proxy.backend_ipvs import IpvsBackend

        ipvs.require_support()
        rec = Recorder(ipvs.ipvsadm_restore)
        apply_t = Timer(rec)
        # every other kernel call of the backend timed apart: where an IPVS sync's time goes (SPLIT)
        SPLIT.clear()
        SPLIT.update({name: Timer(getattr(ipvs, name)) for name in IPVS_SPLIT})
        p = Proxier(node, IpvsBackend(Timed(ipvs, ipvsadm_restore=apply_t, **SPLIT)), config,  # type: ignore[arg-type]
                    healthcheck=Null(), announcer=Null())  # type: ignore[arg-type]
    else:
        raise ImportError(f"proxy mode {mode!r}")
    build_t = Timer(p.refresh_state)
    p.refresh_state = build_t
    return p, apply_t, build_t, rec


def kernel_rules(mode: str) -> int | None:
    """Rules in the kernel, counted line by line as the tool prints them: reading the whole listing
    (~20 MB at 10,000 Services) into this process would add to the peak RSS it reports."""
    argv = {"iptables": ["iptables-legacy-save"], "ipvs": ["ipvsadm", "-S", "-n"]}.get(
        mode, ["nft", "-a", "list", "ruleset"])
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
        assert p.stdout is not None
        if mode == "ipvs":  # one line per virtual server (-A) and real server (-a)
            return sum(1 for line in p.stdout if line.startswith(("-A ", "-a ")))
        if mode == "iptables":
            return sum(1 for line in p.stdout if line.startswith("-A "))
        return sum(1 for line in p.stdout if "# handle" in line
                   and not line.strip().startswith(("chain", "table", "set", "map")))


def stats_of(p: Any) -> dict:
    s = getattr(p, "last_sync_stats", None)
    if s is None:
        return {}
    return {k: getattr(s, k) for k in ("mode", "rules", "seconds", "changed", "ok", "error") if hasattr(s, k)}


def run_proxier(opts: dict) -> dict:
    mode, n, e = opts["mode"], opts["services"], opts["endpoints"]
    rss_start = vm_hwm()
    services, slices = synth.objects(n, e)
    informer = Informer(services, slices)
    p, apply_t, build_t, rec = make_proxier(mode)
    rec.texts = [] if opts.get("dump") else None
    rss_objects = vm_hwm()
    ev = [SimpleNamespace(object={"kind": "EndpointSlice"})]
    now = 1000.0
    prof = cProfile.Profile() if opts.get("profile") else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    p.sync(informer, ev, now)
    if prof:
        prof.disable()
    full = time.perf_counter() - t0
    st = stats_of(p)
    if st.get("ok") is False:
        raise SystemExit(f"full sync failed: {st.get('error')}")
    out: dict[str, Any] = {
        "full_s": full, "stats": st,
        "apply_s": apply_t.seconds if apply_t else None,
        "build_s": build_t.seconds if build_t else None,
        "kernel_rules": kernel_rules(mode),
    }
    if SPLIT:
        out["split"] = {name: t.seconds for name, t in SPLIT.items()}
    if rec.texts is not None:
        # In 1 MB pieces: joining or encoding the whole text at once would add its size to the peak RSS
        # this process reports.
        with open(opts["dump"], "w") as f:
            for text in rec.texts:
                f.writelines(text[i:i + (1 << 20)] for i in range(0, len(text), 1 << 20))
        rec.texts = None
        out["dumped"] = True
    partial: list[dict] = []
    for k in range(opts.get("changes", 0)):
        i = (k * 7919) % n
        slices[i] = synth.endpoint_slice(i, e, replace={0: synth.changed_ip(k)})
        informer.revision += 1
        # The event the agent's informer hands over: the changed object itself.
        ev = [Event(informer.revision, "MODIFIED", slices[i])]
        a0 = apply_t.seconds if apply_t else 0.0
        b0 = build_t.seconds if build_t else 0.0
        s0 = {name: t.seconds for name, t in SPLIT.items()}
        now += 1.0
        t = time.perf_counter()
        p.sync(informer, ev, now)
        dt = time.perf_counter() - t
        s = stats_of(p)
        partial.append({"s": dt, "mode": s.get("mode"), "ok": s.get("ok"),
                        "apply_s": (apply_t.seconds - a0) if apply_t else None,
                        "build_s": (build_t.seconds - b0) if build_t else None,
                        **({"split": {name: t.seconds - s0[name] for name, t in SPLIT.items()}} if SPLIT else {})})
    out["partial"] = partial
    out["rss_start"], out["rss_objects"], out["rss_peak"] = rss_start, rss_objects, vm_hwm()
    if prof:
        buf = io.StringIO()
        ps = pstats.Stats(prof, stream=buf)
        ps.sort_stats("tottime").print_stats(12)
        out["profile"] = profile_summary(buf.getvalue())
    return out


def run_bare(opts: dict) -> dict:
    text = Path(opts["file"]).read_text()
    argv = (["iptables-legacy-restore", "--wait", "--noflush"] if opts["mode"] == "iptables" else ["nft", "-f", "-"])
    t = time.perf_counter()
    proc = subprocess.run(argv, input=text, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"bare load failed: {proc.stderr.strip()[:300]}")
    return {"bare_s": dt, "kernel_rules": kernel_rules(opts["mode"])}


def main() -> int:
    opts = json.loads(sys.argv[1])
    try:
        out = run_bare(opts) if opts.get("bare") else run_proxier(opts)
    except ImportError as exc:
        out = {"unavailable": f"{exc}"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
