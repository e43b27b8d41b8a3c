"""Process launcher: enter a pod's namespaces (net, UTS, private mounts), then exec the command.

Run as `python -m netk8s.dataplane.launch [--netns NAME] [--new-uts --hostname H] [--uts-pid PID]
[--bind SRC:DST]... [--cwd DIR] -- ARGV...`. It is the `runc init` of netk8s: it changes only its own
namespaces and then execs, so the pid the caller sees is the pid of the command itself.

Python 3.11 has no os.setns/os.unshare, so the syscalls go through ctypes libc. Exit codes follow
the shell (and runc): 127 when the command is not found, 126 for every other failure before exec.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

NETNS_RUN_DIR = "/run/netns"

# <linux/sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
# <linux/mount.h>
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19

EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126

class LaunchError(Exception):
    """A namespace or mount step failed; carries the exit code to use (private to the launcher process)."""

    def __init__(self, message: str, code: int = EXIT_CANNOT_RUN) -> None:
        super().__init__(message)
        self.code = code


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise LaunchError(f"{what}: {os.strerror(err)}")


def setns_path(path: str, nstype: int, what: str) -> None:
    """Join the namespace behind `path` (a /run/netns file or /proc/PID/ns/*). setns(2)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LaunchError(f"{what}: {path} does not exist", EXIT_NOT_FOUND) from None
    except OSError as exc:
        raise LaunchError(f"{what}: cannot open {path}: {exc.strerror}") from None
    try:
        _check(_libc().setns(fd, nstype), f"{what}: setns {path}")
    finally:
        os.close(fd)


def unshare(flags: int, what: str) -> None:
    _check(_libc().unshare(flags), f"{what}: unshare")


def new_uts(hostname: str) -> None:
    """A fresh UTS namespace, then its hostname. The unshare MUST come first: sethostname in the
    host's UTS namespace would rename the host."""
    unshare(CLONE_NEWUTS, "--new-uts")
    name = hostname.encode()
    _check(_libc().sethostname(name, ctypes.c_size_t(len(name))), f"--hostname {hostname}")


def bind_mounts(binds: Sequence[tuple[str, str]]) -> None:
    """A private mount namespace in which each SRC is bind-mounted over DST.

    `/` is made rslave first so the binds never propagate back to the host's mount namespace
    (systemd makes `/` shared; see mount_namespaces(7), "MS_SLAVE").
    """
    unshare(CLONE_NEWNS, "--bind")
    libc = _libc()
    _check(libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_SLAVE), None), "--bind: make / rslave")
    for src, dst in binds:
        if not os.path.exists(src):
            raise LaunchError(f"--bind: source {src} does not exist")
        if not os.path.exists(dst):
            raise LaunchError(f"--bind: target {dst} does not exist")
        _check(
            libc.mount(src.encode(), dst.encode(), None, ctypes.c_ulong(MS_BIND), None),
            f"--bind {src}:{dst}",
        )


def _bind_text(bind: tuple[str | Path, str | Path] | str) -> str:
    if isinstance(bind, str):
        return bind
    src, dst = bind
    return f"{src}:{dst}"


def launch_argv(
    argv: Sequence[str],
    netns: str | None = None,
    new_uts_hostname: str | None = None,
    uts_pid: int | None = None,
    binds: Iterable[tuple[str | Path, str | Path] | str] = (),
    cwd: str | Path | None = None,
) -> list[str]:
    """The command line that runs `argv` through this launcher with the given namespaces."""
    if not argv:
        raise ValueError("launch_argv: empty argv")
    if new_uts_hostname is not None and uts_pid is not None:
        raise ValueError("launch_argv: new_uts_hostname and uts_pid are exclusive")
    out = [sys.executable, "-m", "netk8s.dataplane.launch"]
    if netns:
        out += ["--netns", netns]
    if new_uts_hostname is not None:
        out += ["--new-uts", "--hostname", new_uts_hostname]
    if uts_pid is not None:
        out += ["--uts-pid", str(uts_pid)]
    for bind in binds:
        out += ["--bind", _bind_text(bind)]
    if cwd is not None:
        out += ["--cwd", str(cwd)]
    return out + ["--", *argv]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netk8s.dataplane.launch", description=__doc__.splitlines()[0])
    p.add_argument("--netns", help="network namespace name (under /run/netns)")
    p.add_argument("--new-uts", action="store_true", help="run in a new UTS namespace")
    p.add_argument("--hostname", help="hostname of the new UTS namespace")
    p.add_argument("--uts-pid", type=int, help="join the UTS namespace of this pid")
    p.add_argument("--bind", action="append", default=[], metavar="SRC:DST", help="bind-mount SRC on DST")
    p.add_argument("--cwd", help="working directory")
    return p


def parse(args: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split at the first `--`; options before it, the command after it."""
    args = list(args)
    if "--" not in args:
        raise LaunchError("usage: launch [options] -- ARGV...", 2)
    cut = args.index("--")
    opts = _parser().parse_args(args[:cut])
    argv = args[cut + 1:]
    if not argv:
        raise LaunchError("no command given after --", 2)
    if opts.new_uts and not opts.hostname:
        raise LaunchError("--new-uts needs --hostname", 2)
    if opts.hostname and not opts.new_uts:
        # Refuse rather than guess: setting a hostname without a new UTS namespace renames the host.
        raise LaunchError("--hostname needs --new-uts", 2)
    if opts.new_uts and opts.uts_pid is not None:
        raise LaunchError("--new-uts and --uts-pid are exclusive", 2)
    return opts, argv


def _split_bind(text: str) -> tuple[str, str]:
    src, sep, dst = text.partition(":")
    if not sep or not src or not dst:
        raise LaunchError(f"--bind {text}: expected SRC:DST", 2)
    return src, dst


def enter(opts: argparse.Namespace) -> None:
    """Apply the namespace steps in order: net, UTS, mounts, cwd."""
    binds = [_split_bind(b) for b in opts.bind]
    if opts.netns:
        if "/" in opts.netns:
            raise LaunchError(f"--netns {opts.netns}: not a namespace name", 2)
        setns_path(os.path.join(NETNS_RUN_DIR, opts.netns), CLONE_NEWNET, f"--netns {opts.netns}")
    if opts.uts_pid is not None:
        setns_path(f"/proc/{opts.uts_pid}/ns/uts", CLONE_NEWUTS, f"--uts-pid {opts.uts_pid}")
    elif opts.new_uts:
        new_uts(opts.hostname)
    if binds:
        bind_mounts(binds)
    if opts.cwd:
        try:
            os.chdir(opts.cwd)
        except OSError as exc:
            raise LaunchError(f"--cwd {opts.cwd}: {exc.strerror}") from None


def main(args: Sequence[str] | None = None) -> int:
    try:
        opts, argv = parse(sys.argv[1:] if args is None else args)
        enter(opts)
    except LaunchError as exc:
        print(f"netk8s-launch: {exc}", file=sys.stderr, flush=True)
        return exc.code
    try:
        os.execvpe(argv[0], argv, os.environ)
    except FileNotFoundError:
        print(f"netk8s-launch: {argv[0]}: command not found", file=sys.stderr, flush=True)
        return EXIT_NOT_FOUND
    except OSError as exc:
        print(f"netk8s-launch: {argv[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        return EXIT_CANNOT_RUN
    return EXIT_CANNOT_RUN  # not reached: execvpe only returns by raising


if __name__ == "__main__":
    sys.exit(main())
