"""iptables in the namespace this process runs in: apply a rendered text, save, probe chains, read counters.

Backend decision: netk8s programs the LEGACY xtables backend (`iptables-legacy-restore`,
`iptables-legacy-save`) inside node namespaces. Reasons: python-iptables (used for `netk8s rules`
counters) reads only the legacy tables; legacy restore of a whole table is fast; and a node namespace
is fresh, so there is no nft ruleset to coexist with. Debian's plain `iptables` is the nft backend, so
`bin_dir_for_legacy()` makes a directory of `iptables*` symlinks to the legacy binaries; the lab puts
it first on PATH in node shells so `iptables -t nat -L KUBE-SERVICES` shows what the proxy programmed.

Legacy restore commits table by table: when the text holds `*nat ... COMMIT *filter ... COMMIT` and
the filter part fails, nat is already applied. The proxier therefore treats any failure as "the kernel
state is unknown" and does a full sync next time (kube-proxy does the same).

Run `python -m netk8s.dataplane.iptables dump [--json]` inside a node namespace to print the rules
with their counters (the CLI's `netk8s rules` does this through netk8s.dataplane.netns.run_in_netns).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from netk8s.dataplane import timeouts
from netk8s.errors import KernelError
from netk8s.model import naming
from netk8s.model.iptsave import chain_names, parse_save, table_lines

IPTABLES = "iptables-legacy"
RESTORE = "iptables-legacy-restore"
SAVE = "iptables-legacy-save"
TIMEOUT = 60.0
CONTEXT_LINES = 2

# Names a user types -> the legacy binary that serves them (for bin_dir_for_legacy).
LEGACY_LINKS = {
    "iptables": "iptables-legacy",
    "iptables-save": "iptables-legacy-save",
    "iptables-restore": "iptables-legacy-restore",
    "ip6tables": "ip6tables-legacy",
    "ip6tables-save": "ip6tables-legacy-save",
    "ip6tables-restore": "ip6tables-legacy-restore",
}

# iptables-restore reports a failure as "Error occurred at line: N" (parse errors) or
# "iptables-restore: line N failed" (COMMIT rejected by the kernel), see iptables-restore.c.
_LINE_RE = re.compile(r"(?:line:?\s+(\d+)\s+failed|Error occurred at line:\s*(\d+))")


@contextlib.contextmanager
def _run_errors(argv: list[str], timeout: float) -> Iterator[None]:
    """Turn a failure to run `argv` (missing, hung on the xtables lock, not executable) into a KernelError."""
    try:
        yield
    except FileNotFoundError as exc:
        raise KernelError(f"{argv[0]}: not installed", hint="apt-get install iptables") from exc
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"{' '.join(argv)}: timed out after {timeout}s",
                          hint="another process may hold the xtables lock") from exc
    except OSError as exc:
        raise KernelError(f"{argv[0]}: cannot run: {exc.strerror or exc}") from exc


def _run(argv: list[str], stdin: str | None = None,
         timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    with _run_errors(argv, timeout):
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)


def _run_text(argv: list[str], text: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """_run with `text` as stdin, from an in-memory file (memfd) rather than a pipe: subprocess feeds a
    pipe 4 KiB at a time with a poll per write, which made a 17 MB restore (10,000 Services) 0.3-1 s
    slower than the same restore reading a file (measured). Encoding 1 MB at a time also spares a second
    in-memory copy of the whole text."""
    with os.fdopen(os.memfd_create("netk8s-iptables-restore", os.MFD_CLOEXEC), "w+b") as f:
        for i in range(0, len(text), 1 << 20):
            f.write(text[i:i + (1 << 20)].encode())
        f.flush()
        f.seek(0)
        with _run_errors(argv, timeout):
            return subprocess.run(argv, stdin=f, capture_output=True, text=True, timeout=timeout, check=False)


def failing_line(stderr: str) -> int | None:
    """The 1-based line number iptables-restore names in its error output, or None."""
    m = _LINE_RE.search(stderr)
    if m is None:
        return None
    return int(m.group(1) or m.group(2))


def line_context(text: str, line_no: int, context: int = CONTEXT_LINES) -> str:
    """Lines line_no-context .. line_no+context of `text`, numbered, the failing one marked with `>`."""
    lines = text.splitlines()
    lo, hi = max(1, line_no - context), min(len(lines), line_no + context)
    return "\n".join(f"{'>' if n == line_no else ' '} {n:5d} | {lines[n - 1]}" for n in range(lo, hi + 1))


def restore(text: str, noflush: bool = True) -> None:
    """Apply an iptables-restore text with ONE `iptables-legacy-restore [--noflush] --wait` call.

    On failure raise KernelError naming the failing line with 2 lines of context around it.
    """
    argv = [RESTORE, "--wait"] + (["--noflush"] if noflush else [])
    proc = _run_text(argv, text, timeouts.for_text(TIMEOUT, text))
    if proc.returncode == 0:
        return
    err = proc.stderr.strip()
    first = next((ln for ln in err.splitlines() if ln.strip()), f"exit status {proc.returncode}")
    line_no = failing_line(err)
    if line_no is not None and 0 < line_no <= len(text.splitlines()):
        failed = text.splitlines()[line_no - 1]
        message = (f"{' '.join(argv)} failed at line {line_no}: {failed!r}: {first}\n"
                   f"{line_context(text, line_no)}")
    else:
        message = f"{' '.join(argv)} failed: {first}"
    raise KernelError(message, hint="the rendered rules were rejected; the next sync is a full one")


def save(table: str | None = None, counters: bool = False) -> str:
    """`iptables-legacy-save` output (one table or all), with `[packets:bytes]` when counters=True."""
    argv = [SAVE] + (["-t", table] if table else []) + (["-c"] if counters else [])
    proc = _run(argv)
    if proc.returncode != 0:
        raise KernelError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def chain_exists(table: str, chain: str) -> bool:
    """True when `chain` exists in `table` (`iptables-legacy -w -t TABLE -S CHAIN` succeeds)."""
    proc = _run([IPTABLES, "-w", "-t", table, "-S", chain], timeout=10)
    return proc.returncode == 0


def list_chains(table: str) -> set[str]:
    """Names of every chain in `table` (built-in ones included), from `iptables-legacy-save -t TABLE`."""
    return set(parse_save(save(table)).get(table, {}))


def ensure_rules_text(saved: Mapping[str, str], rules: Mapping[str, Mapping[str, Sequence[str]]]) -> str:
    """Pure: restore text adding the rules of `rules` (table -> built-in chain -> rules, top to bottom)
    that `saved` (table -> `iptables-save -t TABLE` output) lacks; "" when none is missing.

    kube-proxy's EnsureChain + EnsureRule(Prepend) per jump (pkg/proxy/iptables/proxier.go,
    iptablesJumpChains): a missing rule is inserted at the top of its chain, bottom rule first, so that
    they read in the given order; a missing target chain is created empty (`-N`); present rules and every
    other rule of the chain are left alone. Rules compare word by word (iptables-save prints them the
    way kube-proxy writes them)."""
    lines: list[str] = []
    for table, chains in rules.items():
        section = table_lines(saved.get(table, ""), table)
        existing = set(chain_names(section))
        present: dict[str, set[tuple[str, ...]]] = {}
        for line in section:
            if line.startswith("[") and "] " in line:  # `iptables-save -c` counters
                line = line.split("] ", 1)[1]
            if line.startswith("-A ") and line.split(None, 2)[1] in chains:
                words = shlex.split(line)
                present.setdefault(words[1], set()).add(tuple(words[2:]))
        new_chains: list[str] = []
        inserts: list[str] = []
        for chain, wanted in chains.items():
            for rule in reversed(wanted):
                words = shlex.split(rule)
                if tuple(words) in present.get(chain, set()):
                    continue
                if "-j" in words[:-1]:
                    target = words[words.index("-j") + 1]
                    if target.startswith(naming.KUBE_CHAIN_PREFIX) and target not in existing and target not in new_chains:
                        new_chains.append(target)
                inserts.append(f"-I {chain} 1 {rule}")
        if inserts:
            lines += [f"*{table}", *(f"-N {c}" for c in new_chains), *inserts, "COMMIT"]
    return "\n".join(lines) + "\n" if lines else ""


def ensure_rules(rules: Mapping[str, Mapping[str, Sequence[str]]]) -> str:
    """Make sure every rule of `rules` (table -> built-in chain -> rules) is in the kernel, adding only the
    missing ones (ensure_rules_text): one `iptables-legacy-save -t TABLE` per table, then at most one
    restore. kube-proxy runs `iptables -C` then `-I` per rule; with the legacy backend each call reads
    the whole table (~0.4 s for the nat table of 10,000 Services), so one save per table is cheaper.
    Returns the restore text applied ("" when nothing was missing)."""
    text = ensure_rules_text({table: save(table) for table in rules}, rules)
    if text:
        restore(text)
    return text


# ---------------------------------------------------------------- counters


def _counters_from_iptc(tables: Sequence[str]) -> dict[str, dict[str, list[tuple[int, int]]]]:
    """Per-rule (packets, bytes) in chain order, read with python-iptables (legacy tables only)."""
    if "XTABLES_LIBDIR" not in os.environ:
        for candidate in ("/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib/aarch64-linux-gnu/xtables",
                          "/usr/lib/xtables", "/usr/libexec/xtables"):
            if os.path.isdir(candidate):
                os.environ["XTABLES_LIBDIR"] = candidate
                break
    import iptc  # lazily: it loads libxtables at import time

    out: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for name in tables:
        table = iptc.Table(name)
        table.refresh()
        out[name] = {chain.name: [tuple(rule.get_counters()) for rule in chain.rules]  # type: ignore[misc]
                     for chain in table.chains}
    return out


def read_counters(tables: Iterable[str] = ("nat", "filter")) -> dict[str, Any]:
    """{table: {chain: [{"rule": "-A ...", "packets": n, "bytes": n}]}} plus "_source".

    Counters come from python-iptables ("_source": "python-iptables"); rule texts from
    `iptables-legacy-save`, matched by chain and position. When iptc cannot be imported or its view
    disagrees with the save (a sync ran in between), everything comes from `iptables-legacy-save -c`
    ("_source": "iptables-legacy-save").
    """
    names = list(tables)
    try:
        counters = _counters_from_iptc(names)
    except (ImportError, OSError, AttributeError) as exc:  # iptc missing, libxtables not found
        counters = None
        reason = f"python-iptables unavailable: {exc}"
    except Exception as exc:  # noqa: BLE001 - iptc raises its own IPTCError for kernel errors
        counters = None
        reason = f"python-iptables failed: {exc}"
    result: dict[str, Any] = {}
    if counters is not None:
        texts = {name: parse_save(save(name)).get(name, {}) for name in names}
        if all(_same_shape(texts[n], counters.get(n, {})) for n in names):
            for name in names:
                result[name] = {
                    chain: [{"rule": r["rule"], "packets": int(c[0]), "bytes": int(c[1])}
                            for r, c in zip(rules, counters[name][chain])]
                    for chain, rules in texts[name].items()
                }
            result["_source"] = "python-iptables"
            return result
        reason = "python-iptables and iptables-save disagreed (rules changed while reading)"
    for name in names:
        result[name] = parse_save(save(name, counters=True)).get(name, {})
    result["_source"] = "iptables-legacy-save"
    result["_note"] = reason
    return result


def _same_shape(texts: dict[str, list], counters: dict[str, list]) -> bool:
    return set(texts) == set(counters) and all(len(texts[c]) == len(counters[c]) for c in texts)


# ---------------------------------------------------------------- PATH shims


def bin_dir_for_legacy(dir: Path) -> Path:
    """Make `dir` hold symlinks iptables, iptables-save, iptables-restore, ip6tables... -> the legacy
    binaries (found on PATH or in /usr/sbin); idempotent. Prepend it to PATH in node shells."""
    import shutil

    dir.mkdir(parents=True, exist_ok=True)
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
    for name, target in LEGACY_LINKS.items():
        real = shutil.which(target, path=search)
        if real is None:
            if name.startswith("ip6"):
                continue
            raise KernelError(f"{target}: not installed", hint="apt-get install iptables")
        link = dir / name
        if link.is_symlink() and os.readlink(link) == real:
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(real)
    return dir


# ---------------------------------------------------------------- command line


def _format_text(dump: dict[str, Any]) -> str:
    lines = [f"# counters from {dump.get('_source')}"]
    for table, chains in dump.items():
        if table.startswith("_"):
            continue
        lines.append(f"*{table}")
        for chain, rules in chains.items():
            lines.append(f":{chain}")
            lines.extend(f"[{r['packets']}:{r['bytes']}] {r['rule']}" for r in rules)
    return "\n".join(lines) + "\n"


def main(args: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="netk8s.dataplane.iptables", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    dump = sub.add_parser("dump", help="rules of the nat and filter tables with packet counters")
    dump.add_argument("--json", action="store_true")
    dump.add_argument("--table", action="append", help="table (default nat and filter)")
    opts = p.parse_args(args)
    try:
        data = read_counters(tuple(opts.table or ("nat", "filter")))
    except KernelError as exc:
        print(f"netk8s.dataplane.iptables: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(data, indent=1) + "\n" if opts.json else _format_text(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
