"""The one /proc reader: the process table, a process's stat fields, environment and executable (proc(5)).

(Namespace files, /proc/PID/ns/*, belong to dataplane/netns.py; /proc/sys to dataplane/sysctl.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
# IPVS's connection table of the reading process's network namespace (read in a node by netk8s.trace.ipvs)
IP_VS_CONN = "/proc/net/ip_vs_conn"


def all_pids() -> list[int]:
    """Every pid in /proc now (a snapshot: any of them may exit before it is read)."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def proc_stat(pid: int | str) -> tuple[str, int, int] | None:
    """(state, session id, starttime) of a pid from /proc/PID/stat, or None if there is no such process.

    The comm field may hold spaces and parentheses, so split after the LAST ')' (proc(5))."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); field 6 is session, field 22 is starttime (clock ticks after boot).
    return fields[0], int(fields[3]), int(fields[19])


def proc_environ(pid: int | str) -> list[bytes] | None:
    """The NUL-separated `KEY=value` entries of /proc/PID/environ, or None when it cannot be read."""
    try:
        return (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None


def proc_exe(pid: int | str) -> str | None:
    """The path /proc/PID/exe links to (the program the process runs), or None when it cannot be read."""
    try:
        return os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None
