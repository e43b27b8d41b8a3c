"""`make test-stress`: the privileged Services, networking and DNS suites while every CPU is busy.

Starts one CPU burner per core at normal priority and runs pytest (and so every lab process it starts:
agents, controller, DNS, the pods' servers) at --nice (default 0, level with the burners), RUNS times in a
row. Why nice 0: at nice 10 against nice-0 burners the suites get about a tenth of the CPU (CFS weights
110 vs 1024); measured on the 2-core development machine (shared with other work, load average ~20), the
one scaling test of the iptables Services module alone took 25 min and a round (4 Services labs, overlay,
DNS) would take hours. At nice 0 the burners still keep every core busy, the lab competes with them as a
busy host's workload would. Measured at nice 0 on that shared machine (load average 12-15 before our
burners): the iptables Services module's first 11 tests took 27 min, so a round takes about 1.5-2 h there;
on an otherwise idle 2-core machine a round is several times shorter (docs/reliability.md). Request
loops in the suites record each failed request with its time, 5-tuple and a snapshot of the nodes'
conntrack, neighbour and rule tables (tests/root/loadkit.py) under REPORT; the summary lists them.
Exit status: non-zero if any run failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITES = ["tests/root/test_services.py", "tests/root/test_lab_overlay.py", "tests/root/test_dns.py"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--nice", type=int, default=0, help="niceness of the suites and every lab process (see above)")
    ap.add_argument("--report", type=Path, default=REPO / "stress-report")
    ap.add_argument("-k", dest="keyword", default="", help="pytest's -k: only the tests matching it (one proxy mode...)")
    ap.add_argument("suites", nargs="*", default=SUITES)
    args = ap.parse_args(argv)
    pytest_args = ["-k", args.keyword] if args.keyword else []
    args.report.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NETK8S_STRESS_REPORT=str(args.report.resolve()))
    burners = [subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"], stdin=subprocess.DEVNULL)
               for _ in range(args.burners)]
    results = []
    try:
        for run in range(1, args.runs + 1):
            t0 = time.monotonic()
            cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   *pytest_args, *args.suites]
            rc = subprocess.call(cmd, cwd=REPO, env=env)
            results.append((run, rc, time.monotonic() - t0))
            print(f"stress run {run}/{args.runs}: exit {rc} in {results[-1][2]:.0f} s", flush=True)
    finally:
        for b in burners:
            b.kill()
        for b in burners:
            b.wait()
    failures = sorted(args.report.glob("failure-*.txt"))
    print(f"\n{len(results)} runs with {args.burners} burners at nice 0, suites at nice {args.nice}"
          f"{' (-k ' + args.keyword + ')' if args.keyword else ''}:")
    for run, rc, secs in results:
        print(f"  run {run}: {'passed' if rc == 0 else f'FAILED (exit {rc})'} in {secs:.0f} s")
    print(f"request failures recorded: {len(failures)}" + (f" (snapshots in {args.report})" if failures else ""))
    for f in failures[:20]:
        print(f"  {f.name}: {f.read_text().split(chr(10) + '===', 1)[0].replace(chr(10), ' ')[:200]}")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
