"""Processes the lab started: spawn them tagged, find them again by tag or namespace, stop them by PID.

Every process netk8s starts carries NETK8S_TAG=<lab> in its environment (naming.PROCESS_TAG_ENV), so
`netk8s clean` can find exactly those processes with no saved state, and never anything else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from netk8s.dataplane.procfs import all_pids, proc_environ, proc_stat
from netk8s.model import naming

# Popen objects of detached children: kept so Python neither warns ("still running") on collection nor
# loses the exit status; the processes themselves outlive the CLI by design (start_new_session).
_children: list[subprocess.Popen] = []


def spawn(argv: list[str], lab: str, log_path: Path, extra_env: dict[str, str] | None = None) -> int:
    """Start a detached, tagged process with its output appended to log_path; returns its PID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env[naming.PROCESS_TAG_ENV] = lab
    env.update(extra_env or {})
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    _children.append(proc)
    return proc.pid


def tagged_pids(lab: str | None = None) -> list[int]:
    """PIDs whose environment carries the netk8s tag (for one lab, or any lab when None)."""
    want = f"{naming.PROCESS_TAG_ENV}=".encode()
    me = os.getpid()
    found = []
    for pid in all_pids():
        if pid == me:
            continue
        for var in proc_environ(pid) or ():
            if var.startswith(want) and (lab is None or var[len(want):].decode(errors="replace") == lab):
                found.append(pid)
                break
    return found


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def stop_pids(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM the given PIDs, wait up to `grace`, then SIGKILL what is left."""
    pids = [p for p in set(pids) if p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        _reap()
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        _reap()
        time.sleep(0.02)
    _reap()


def _reap() -> None:
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
