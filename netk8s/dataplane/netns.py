"""Named network namespaces (/run/netns/NAME): create, delete, list, find their processes, run in them.

Namespaces are made the way `ip netns add` makes them (iproute2 ip/ipnetns.c netns_add): /run/netns a
shared mount, an empty file /run/netns/NAME, unshare(CLONE_NEWNET), then a bind mount of the new
namespace's file on it. The unshare and every setns(2) here happen in a short-lived thread of their own
(`run_in_netns_thread`): a network namespace belongs to a thread, not to the process (setns(2), unshare(2)),
so the caller's threads never switch, and a thread is much cheaper than the forked helper that
pyroute2.netns uses. A netlink socket keeps the namespace it was created in (netlink(7)), so a socket
opened by such a thread (`open_socket`) acts inside the namespace from any thread afterwards.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from pyroute2 import netns as _pyroute2_netns

from netk8s.errors import KernelError

NETNS_RUN_DIR = Path("/run/netns")

# <sched.h> / <sys/mount.h>
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_T = TypeVar("_T")


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


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def run_in_netns_thread(name: str | None, fn: Callable[[], _T], new: bool = False) -> _T:
    """Call `fn` in a short-lived thread that first entered the named namespace; return what it returns.

    name=None: the thread stays where the caller is. new=True: the thread unshares into a fresh,
    anonymous namespace instead (`name` must be None). Exceptions from the setns or from `fn` are
    raised here. The thread ends right after `fn`, so nothing else ever runs in the namespace it
    entered, and the calling thread's namespace never changes, whatever happens.
    """
    if new and name is not None:
        raise KernelError("run_in_netns_thread: give a namespace name or new=True, not both")
    fd = os.open(_path(name), os.O_RDONLY | os.O_CLOEXEC) if name is not None else None
    result: list[_T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            if fd is not None:
                _check(_libc.setns(fd, CLONE_NEWNET), f"setns {name}")
            elif new:
                _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            error.append(exc)

    try:
        thread = threading.Thread(target=body, name=f"netns-{name or 'new'}", daemon=True)
        thread.start()
        thread.join()
    finally:
        if fd is not None:
            os.close(fd)
    if error:
        raise error[0]
    return result[0]


def open_socket(name: str | None, family: int, type: int, proto: int = 0) -> socket.socket:
    """A socket created inside the named namespace (None: ours); it keeps acting there from any thread."""
    if name is None:
        return socket.socket(family, type, proto)
    try:
        return run_in_netns_thread(name, lambda: socket.socket(family, type, proto))
    except OSError as exc:
        raise KernelError(
            f"cannot open a socket in netns {name}: {exc.strerror or exc}",
            hint="does the namespace exist? (ip netns list)",
        ) from exc


def _mount_new_netns(path: Path) -> None:
    """In a fresh thread: unshare a new network namespace and bind-mount it on `path` (as ip netns add)."""

    def bind() -> None:
        # /proc/thread-self: the namespace is this thread's; /proc/self would name the main thread's
        _check(
            _libc.mount(b"/proc/thread-self/ns/net", str(path).encode(), b"none", MS_BIND, None),
            f"bind mount on {path}",
        )

    run_in_netns_thread(None, bind, new=True)


def _share_run_dir() -> None:
    """/run/netns a shared mount point, so namespace mounts show in every mount namespace (iproute2 does so)."""
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    run_dir = str(NETNS_RUN_DIR).encode()
    if _libc.mount(b"", run_dir, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    # not a mount point yet: bind it on itself first, then make it shared (iproute2 netns_add)
    _check(_libc.mount(run_dir, run_dir, b"none", MS_BIND | MS_REC, None), f"bind mount {NETNS_RUN_DIR}")
    _check(_libc.mount(b"", run_dir, b"none", MS_SHARED | MS_REC, None), f"share {NETNS_RUN_DIR}")


def create_netns(name: str) -> None:
    """Create the named namespace; do nothing when it already exists. The caller's namespace is unchanged."""
    path = _path(name)
    if _is_nsfs_mount(path):
        return
    if path.exists():
        # a stale mount point from a half-finished create: remove it, then create for real
        _remove_mount(name)
    try:
        _share_run_dir()
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
        try:
            _mount_new_netns(path)
        except OSError:
            path.unlink(missing_ok=True)
            raise
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
    timeout: float | None = 30,
    input: str | None = None,
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the named namespace and wait; text output captured.

    With check=True a non-zero exit raises KernelError carrying the command and its stderr.
    capture=False passes the caller's stdin, stdout and stderr through (an interactive `lab exec`);
    then the result carries only the exit status. `env`: the command's environment (default: ours).
    """
    if not netns_exists(name):
        raise KernelError(f"run_in_netns {name}: namespace does not exist", hint="is the lab up?")
    full = exec_argv(name, argv)
    try:
        proc = subprocess.run(
            full, input=input, capture_output=capture, text=True, timeout=timeout, check=False,
            env=None if env is None else dict(env),
        )
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"run_in_netns {name}: {argv!r} timed out after {timeout}s") from exc
    except OSError as exc:
        raise KernelError(f"run_in_netns {name}: cannot run {argv!r}: {exc.strerror or exc}") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        last = err[-1] if err else ""
        raise KernelError(f"run_in_netns {name}: {argv!r} exited {proc.returncode}: {last}")
    return proc
