"""The one way a process enters a pod: containers, the sandbox, probes, hooks, `netk8s exec`, pods/exec.

`spawn` starts a process inside a pod's namespaces (its network namespace, the sandbox's UTS namespace,
the pod's /etc files bind-mounted in a private mount namespace) through the dataplane launcher
(netk8s.dataplane.launch), which enters the namespaces and then execs, so the returned Popen's pid is
the command itself. `run` is `spawn` plus waiting with a deadline, for commands that end: exec probes,
exec hooks, `netk8s exec`. A streaming exec (the API server's pods/exec) calls `spawn` with pipes.
Where a pod's processes enter is a `PodTarget`; PodRuntime.exec_target builds it for a running pod.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from netk8s.dataplane.launch import launch_argv
from netk8s.errors import NetK8sError

# What subprocess accepts for a stream: DEVNULL / PIPE, a file descriptor, a file, or None (inherit).
Stream = int | IO[bytes] | None


class PodExecError(NetK8sError):
    """A process could not be started inside a pod."""


@dataclass(frozen=True)
class PodTarget:
    """The namespaces a pod process enters: the pod's netns, plus either the sandbox's UTS namespace
    (`uts_pid`, every process after the sandbox) or a new one (`new_uts_hostname`, the sandbox itself),
    and the files bind-mounted over /etc in a private mount namespace."""

    netns: str
    uts_pid: int | None = None
    new_uts_hostname: str | None = None
    binds: tuple[tuple[Path, Path], ...] = ()


@dataclass(frozen=True)
class ExecResult:
    """How a command run in a pod ended: its exit status (128+N for signal N) and captured output."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""


def spawn(
    target: PodTarget,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str | None = None,
    stdin: Stream = subprocess.DEVNULL,
    stdout: Stream = subprocess.DEVNULL,
    stderr: Stream = subprocess.DEVNULL,
    detach: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `argv` inside the pod described by `target`, with exactly `env` as its environment.

    detach=True puts it in a session of its own (containers and the sandbox: they outlive the agent
    and own their process group). Raises PodExecError when the launcher cannot be started; a command
    that does not exist in the pod exits 127 (the launcher's, and the shell's, convention)."""
    if not argv:
        raise PodExecError(f"netns {target.netns}: empty command")
    full = launch_argv(list(argv), netns=target.netns, new_uts_hostname=target.new_uts_hostname,
                       uts_pid=target.uts_pid, binds=target.binds, cwd=cwd)
    try:
        return subprocess.Popen(full, stdin=stdin, stdout=stdout, stderr=stderr, env=dict(env),
                                start_new_session=detach, close_fds=True)
    except OSError as exc:
        raise PodExecError(f"cannot start {argv[0]} in netns {target.netns}: {exc.strerror or exc}") from None


def exit_status(code: int) -> int:
    """A Popen return code as container runtimes report it: 128+N for a process killed by signal N."""
    return code if code >= 0 else 128 - code


def run(
    target: PodTarget,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float | None,
    input: bytes | None = None,
    capture: bool = True,
    inherit_stdin: bool = False,
) -> ExecResult:
    """Run `argv` in the pod and wait for it. capture=False passes the caller's stdout/stderr through
    (an interactive `netk8s exec`); inherit_stdin=True passes stdin through too, else it is `input` or
    empty. On timeout the command is killed and TimeoutError raised (kubelet fails the probe / hook)."""
    out: Stream = subprocess.PIPE if capture else None
    if input is not None:
        stdin: Stream = subprocess.PIPE
    else:
        stdin = None if inherit_stdin else subprocess.DEVNULL
    proc = spawn(target, argv, env, stdin=stdin, stdout=out, stderr=out)
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise TimeoutError(f"command {list(argv)!r} timed out after {timeout:g}s") from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return ExecResult(exit_status(proc.returncode), stdout or b"", stderr or b"")
