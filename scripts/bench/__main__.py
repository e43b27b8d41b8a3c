"""`python -m scripts.bench [--quick] [--only NAME,...] [--out BENCHMARKS.md]`: run the benchmarks, write the report.

Benchmarks: rules, latency, dataplane, dns, podstart, ingress, netpol, apiserver, reliability, vm (see BENCHMARKS.md for each method). Each one
cleans up after itself in `finally`; SIGTERM is turned into KeyboardInterrupt so Ctrl-C and `kill`
both unwind through those blocks. A benchmark that fails is reported as failed, the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from scripts.bench import report
from scripts.bench.common import REPO
from scripts.bench.report import Section

BENCHES = ("rules", "latency", "dataplane", "dns", "podstart", "ingress", "netpol", "apiserver", "reliability", "vm")
PLOT_DIR = Path("docs/bench")


def machine_info() -> dict[str, str]:
    model, cpus = report.parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    mem = report.parse_meminfo_total(Path("/proc/meminfo").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True, check=False).stdout.strip()
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"]
    return {
        "CPU": model,
        "logical CPUs": str(cpus),
        "RAM": report.fmt((mem or 0) / 2**30, "GiB"),
        "kernel": platform.release(),
        "OS": _os_name(),
        "Python": platform.python_version(),
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "git commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load average at start": " ".join(load),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


MAIN_PID = os.getpid()


def _sigterm(signum: int, frame: Any) -> None:
    # Only the driver unwinds: a forked helper child (pyroute2's netns.create forks and runs Python code)
    # inherits this handler, and must NOT run the driver's `finally` blocks (they delete our namespaces).
    if os.getpid() != MAIN_PID:
        os._exit(128 + signum)
    raise KeyboardInterrupt(f"signal {signum}")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_one(name: str, quick: bool, out_dir: Path) -> Section:
    mod = importlib.import_module(f"scripts.bench.{name}")
    t = time.monotonic()
    try:
        sec: Section = mod.run_bench(quick, log)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one failed benchmark must not lose the others' figures
        traceback.print_exc()
        sec = Section(name, name, method=getattr(mod, "METHOD", ""), error=f"{type(exc).__name__}: {exc}")
    sec.seconds = time.monotonic() - t
    try:
        png = out_dir / PLOT_DIR / f"{name}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        if mod.plot(sec, png, quick):
            sec.plot = str(PLOT_DIR / f"{name}.png")
    except ImportError as exc:
        sec.notes.append(f"no plot: {exc} (make bench installs matplotlib)")
    except Exception as exc:  # noqa: BLE001 - a plot problem must not lose the figures
        sec.notes.append(f"no plot: {type(exc).__name__}: {exc}")
    log(f"{name} done in {sec.seconds:.0f}s")
    return sec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions (< 10 min)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(BENCHES)}")
    ap.add_argument("--out", default="BENCHMARKS.md", help="the report to write (plots go to docs/bench/ beside it)")
    opts = ap.parse_args(argv)
    only = [x.strip() for x in opts.only.split(",") if x.strip()] or list(BENCHES)
    unknown = [x for x in only if x not in BENCHES]
    if unknown:
        ap.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    if os.geteuid() != 0:
        print("scripts.bench: must run as root (it builds network namespaces)", file=sys.stderr)
        return 1
    os.environ.setdefault("MPLBACKEND", "Agg")
    signal.signal(signal.SIGTERM, _sigterm)
    out = Path(opts.out).resolve()
    machine = machine_info()
    sections = []
    started = time.monotonic()
    try:
        for name in only:
            log(f"running {name}{' (quick)' if opts.quick else ''}")
            sections.append(run_one(name, opts.quick, out.parent))
    except KeyboardInterrupt:
        log("interrupted: cleaned up; report not written")
        return 130
    machine["total run time"] = f"{time.monotonic() - started:.0f} s"
    command = "make bench-quick" if opts.quick else "make bench"
    if opts.only:
        command = f"python -m scripts.bench{' --quick' if opts.quick else ''} --only {','.join(only)}"
    out.write_text(report.render_report(sections, machine, quick=opts.quick, command=command))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
