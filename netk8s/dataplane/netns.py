"""Named network namespaces (/run/netns/NAME): create, delete, list, find their processes, run in them.

Namespaces are created with pyroute2.netns.create, which does the unshare in a forked child, so the
caller never changes namespace (the same layout `ip netns add` makes: a bind mount of the child's
/proc/PID/ns/net on /run/netns/NAME, with /run/netns a shared mount).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

from pyroute2 import netns as _pyroute2_netns

from netk8s.errors import KernelError

NETNS_RUN_DIR = Path("/run/netns")


def _path(name: str) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise KernelError(f"netns name {name!r} is not a valid file name")
    return NETNS_RUN_DIR / name


def _is_nsfs_mount(path: Path) -> bool:
    """True when `path` is a bound namespace file (its st_dev is the nsfs one), not a stale stub.

    A crash between creating the mount point and bind-mounting it leaves an empty regular file that
    `ip netns` still lists; comparing st_dev with our own ns file tells the two apart.
    """
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except FileNotFoundError:
        return False


def netns_exists(name: str) -> bool:
    """True when /run/netns/NAME is a live namespace mount."""
    return _is_nsfs_mount(_path(name))


def create_netns(name: str) -> None:
    """Create the named namespace; do nothing when it already exists. The caller's namespace is unchanged."""
    path = _path(name)
    if _is_nsfs_mount(path):
        return
    if path.exists():
        # a stale mount point from a half-finished create: remove it, then create for real
        _remove_mount(name)
    try:
        _pyroute2_netns.create(name)
    except FileExistsError:
        # another process created it between our check and our create: fine if it is real
        if not _is_nsfs_mount(path):
            raise KernelError(f"create_netns {name}: mount point exists but is not a namespace") from None
    except OSError as exc:
        raise KernelError(f"create_netns {name}: {exc.strerror or exc}") from exc
    if not _is_nsfs_mount(path):
        raise KernelError(f"create_netns {name}: namespace did not appear at {path}")


def _remove_mount(name: str) -> None:
    try:
        _pyroute2_netns.remove(name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise KernelError(f"delete_netns {name}: {exc.strerror or exc}") from exc


def delete_netns(name: str) -> None:
    """Remove the named namespace (its links go with it once no process holds it). Ok if already gone."""
    path = _path(name)
    if not path.exists() and not path.is_symlink():
        return
    _remove_mount(name)


def list_netns(prefix: str = "nk8s-") -> list[str]:
    """Names of the named namespaces starting with `prefix`, sorted."""
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def netns_inode(name: str) -> int:
    """Inode number of the namespace (the N in `net:[N]`)."""
    try:
        st = os.stat(_path(name))
    except FileNotFoundError:
        raise KernelError(f"netns {name} does not exist") from None
    if not _is_nsfs_mount(_path(name)):
        raise KernelError(f"netns {name} is a stale mount point, not a namespace")
    return st.st_ino


def pids_in_netns(name: str) -> list[int]:
    """PIDs of every process whose network namespace is the named one (vanished PIDs are skipped)."""
    inode = netns_inode(name)
    dev = os.stat("/proc/self/ns/net").st_dev
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError as exc:
            # the process exited (ENOENT/ESRCH) or is a kernel thread we may not inspect
            if exc.errno in (errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM):
                continue
            raise
        if st.st_ino == inode and st.st_dev == dev:
            pids.append(int(entry))
    return sorted(pids)


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """argv that runs `argv` inside the named namespace (for short commands)."""
    _path(name)
    return ["ip", "netns", "exec", name, *argv]


def run_in_netns(
    name: str,
    argv: list[str],
    timeout: float = 30,
    input: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the named namespace and wait; text output captured.

    With check=True a non-zero exit raises KernelError carrying the command and its stderr.
    """
    if not netns_exists(name):
        raise KernelError(f"run_in_netns {name}: namespace does not exist", hint="is the lab up?")
    full = exec_argv(name, argv)
    try:
        proc = subprocess.run(
            full, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"run_in_netns {name}: {argv!r} timed out after {timeout}s") from exc
    except OSError as exc:
        raise KernelError(f"run_in_netns {name}: cannot run {argv!r}: {exc.strerror or exc}") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        last = err[-1] if err else ""
        raise KernelError(f"run_in_netns {name}: {argv!r} exited {proc.returncode}: {last}")
    return proc
