"""The one /proc reader: a process's stat fields and environment (proc(5))."""

from __future__ import annotations

from pathlib import Path


def proc_stat(pid: int | str) -> tuple[str, int, int] | None:
    """(state, session id, starttime) of a pid from /proc/PID/stat, or None if there is no such process.

    The comm field may hold spaces and parentheses, so split after the LAST ')' (proc(5))."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); field 6 is session, field 22 is starttime (clock ticks after boot).
    return fields[0], int(fields[3]), int(fields[19])


def proc_environ(pid: int | str) -> list[bytes] | None:
    """The NUL-separated `KEY=value` entries of /proc/PID/environ, or None when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
