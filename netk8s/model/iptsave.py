"""The one parser of `iptables-save` text (pure): tables, chains, rules and their counters."""

from __future__ import annotations

import re
from typing import Any

_COUNTERS_RE = re.compile(r"^\[(\d+):(\d+)\]\s+(.*)$")


def table_lines(text: str, table: str) -> list[str]:
    """The lines between `*table` and its COMMIT in iptables-save output (which may hold several
    tables), `[packets:bytes]` counters stripped."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("*"):
            inside = line[1:].strip() == table
        elif inside and line.strip() == "COMMIT":
            inside = False
        elif inside:
            m = _COUNTERS_RE.match(line)
            out.append(m.group(3) if m else line)
    return out


def chain_names(lines: list[str]) -> list[str]:
    """The chains a table's lines declare (`:NAME POLICY [0:0]`), in save order."""
    return [line[1:].split()[0] for line in lines if line.startswith(":") and len(line) > 1]


def parse_save(text: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Parse `iptables-save [-c]` output into {table: {chain: [{"rule", "packets", "bytes"}]}}.

    Every chain of a table appears (empty list when it has no rules), in save order.
    """
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    table: dict[str, list[dict[str, Any]]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = out.setdefault(line[1:], {})
            continue
        if table is None:
            continue
        if line.startswith(":"):
            table.setdefault(line[1:].split()[0], [])
            continue
        packets = nbytes = 0
        m = _COUNTERS_RE.match(line)
        if m:
            packets, nbytes, line = int(m.group(1)), int(m.group(2)), m.group(3)
        words = line.split(None, 2)
        if len(words) >= 2 and words[0] == "-A":
            table.setdefault(words[1], []).append({"rule": line, "packets": packets, "bytes": nbytes})
    return out
