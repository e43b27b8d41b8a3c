"""nftables in the namespace this process runs in: apply `nft -f` transactions, list and delete the table.

Every call runs the `nft` binary (apt package nftables) with an argv list; a transaction goes on stdin
(`nft -f -`), so it is applied atomically or not at all. nft reports a rejected command as
`/dev/stdin:LINE:COL-COL: Error: ...`; the error raised names that line with its context.

Run `python -m netk8s.dataplane.nftables dump --json` inside a node namespace to print the kube-proxy
table as `nft -j` JSON plus the rule texts by handle (the CLI's `netk8s rules` does this).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from netk8s.dataplane import timeouts
from netk8s.dataplane.iptables import line_context
from netk8s.errors import KernelError
from netk8s.model.naming import KUBE_PROXY_TABLE

NFT = "nft"
FAMILY = "ip"
TABLE = KUBE_PROXY_TABLE
TIMEOUT = 120.0

# nft's error location: "/dev/stdin:12:5-30: Error: Could not process rule: No such file or directory"
_LINE_RE = re.compile(r"^(?:/dev/stdin|-):(\d+):", re.MULTILINE)


def _run(argv: list[str], stdin: str | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise KernelError(f"{argv[0]}: not installed", hint="apt-get install nftables") from exc
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"{' '.join(argv)}: timed out after {timeout}s") from exc
    except OSError as exc:
        raise KernelError(f"{argv[0]}: cannot run: {exc.strerror or exc}") from exc


def failing_line(stderr: str) -> int | None:
    """The 1-based input line nft names in its error output, or None."""
    m = _LINE_RE.search(stderr)
    return int(m.group(1)) if m else None


def apply(text: str) -> None:
    """Apply one transaction with `nft -f -`; on failure raise KernelError naming the failing line."""
    argv = [NFT, "-f", "-"]
    proc = _run(argv, stdin=text, timeout=timeouts.for_text(TIMEOUT, text))
    if proc.returncode == 0:
        return
    err = proc.stderr.strip()
    first = next((ln for ln in err.splitlines() if "Error" in ln), None) or \
        next((ln for ln in err.splitlines() if ln.strip()), f"exit status {proc.returncode}")
    line_no = failing_line(err)
    lines = text.splitlines()
    if line_no is not None and 0 < line_no <= len(lines):
        message = (f"{' '.join(argv)} failed at line {line_no}: {lines[line_no - 1]!r}: {first}\n"
                   f"{line_context(text, line_no)}")
    else:
        message = f"{' '.join(argv)} failed: {first}"
    raise KernelError(message, hint="the rendered transaction was rejected; the next sync is a full one")


def table_exists(family: str = FAMILY, table: str = TABLE) -> bool:
    return _run([NFT, "list", "table", family, table], timeout=30).returncode == 0


def chain_exists(table: str, chain: str, family: str = FAMILY) -> bool:
    """True when `chain` exists in `family table` (the proxier's canary passes the table name)."""
    return _run([NFT, "list", "chain", family, table, chain], timeout=30).returncode == 0


def list_table_json(family: str = FAMILY, table: str = TABLE) -> dict[str, Any]:
    """`nft -j list table` parsed; {"nftables": []} when the table does not exist."""
    proc = _run([NFT, "-j", "list", "table", family, table])
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return {"nftables": []}
        raise KernelError(f"nft -j list table {family} {table} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout or '{"nftables": []}')


def list_names(table: str = TABLE, family: str = FAMILY) -> set[str]:
    """Names of the chains and sets/maps in the table (empty when it does not exist)."""
    names: set[str] = set()
    for obj in list_table_json(family, table).get("nftables", []):
        for kind in ("chain", "set", "map"):
            if kind in obj:
                names.add(obj[kind]["name"])
    return names


def delete_table(family: str = FAMILY, table: str = TABLE) -> None:
    """Delete the table with everything in it; nothing to do when it is not there."""
    apply(f"add table {family} {table}\ndelete table {family} {table}\n")


def rule_texts(family: str = FAMILY, table: str = TABLE) -> dict[int, str]:
    """handle -> rule text as `nft -a list table` prints it (the view shows rules the way nft does)."""
    proc = _run([NFT, "-a", "list", "table", family, table])
    if proc.returncode != 0:
        return {}
    out: dict[int, str] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s+(.*\S)\s+# handle (\d+)$", line)
        if m and not re.match(r"^(chain|set|map|type|flags|elements|comment|policy)\b", m.group(1)):
            out[int(m.group(2))] = m.group(1)
    return out


def dump(family: str = FAMILY, table: str = TABLE) -> dict[str, Any]:
    """What `netk8s rules` (and `describe netpol`, for table netk8s-policy) reads: the table's JSON and
    the rule texts by handle."""
    return {"json": list_table_json(family, table), "rules": {str(h): t for h, t in rule_texts(family, table).items()}}


def main(args: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="netk8s.dataplane.nftables", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="the kube-proxy table as JSON (with counters) and rule texts")
    d.add_argument("--json", action="store_true")
    d.add_argument("--table", default=TABLE, help=f"table of family {FAMILY} (default {TABLE})")
    opts = p.parse_args(args)
    try:
        data = dump(FAMILY, opts.table)
    except KernelError as exc:
        print(f"netk8s.dataplane.nftables: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
