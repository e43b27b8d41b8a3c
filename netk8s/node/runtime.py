"""The pod runtime: start, track, stop and adopt a pod's sandbox and container processes.

Like a CRI runtime with a pause container: each pod has a sandbox process (`sleep infinity`) that owns
the pod's UTS namespace (hostname = pod name); containers are host processes that join the pod's
network namespace and the sandbox's UTS namespace and see the pod's own /etc/resolv.conf, /etc/hosts
and /etc/hostname through bind mounts in a private mount namespace (see netk8s.dataplane.launch).
Processes run in their own session, detached from the agent, so they outlive an agent restart; their
identity (pid + kernel start time) is kept in pid files, from which a new agent adopts them.

Layout under `root` (the node's pods directory), one directory per pod uid:
    <uid>/etc/{resolv.conf,hosts,hostname}   <uid>/logs/<name>.log   <uid>/pids/<name>.json
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal as signals
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import netk8s
from netk8s.dataplane.procfs import all_pids, proc_environ, proc_exe, proc_stat
from netk8s.errors import NetK8sError, ValidationError
from netk8s.model.naming import PROCESS_TAG_ENV
from netk8s.node import podexec
from netk8s.node.podexec import ExecResult, PodTarget

SANDBOX = "_sandbox"  # never a container name: those are DNS labels, without "_"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_HOME = "/root"
POD_FILES = ("resolv.conf", "hosts", "hostname")
KILL_WAIT = 5.0  # how long to wait for SIGKILLed processes to disappear
POLL_INTERVAL = 0.05
# How long the launcher (a Python process: setns, unshare, then exec) may take to exec the command. A
# launcher that fails is seen at once (it exits); a slow one is just slow: in a TCG guest on a busy
# machine a Python start takes well over 10 s (seen: a sandbox retried for minutes with 10 s).
LAUNCH_TIMEOUT = 90.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# The directory that holds the netk8s package; children need it on sys.path when netk8s is not installed.
_SOURCE_ROOT = Path(netk8s.__file__).resolve().parent.parent


class PodRuntimeError(NetK8sError):
    """A pod process could not be started or found."""


def _check_name(what: str, name: str) -> str:
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ValidationError(f"{what}: {name!r} is not a valid name")
    return name


def _environ_entries(pid: int) -> list[bytes]:
    """The NAME=VALUE entries of /proc/PID/environ; empty when the process is gone or not ours to read."""
    return proc_environ(pid) or []


def _has_env(pid: int, entry: bytes) -> bool:
    return entry in _environ_entries(pid)


def process_environ(pid: int) -> dict[str, str]:
    """The environment a process was started with (as `kubectl exec` gives a container's), or {}."""
    pairs = (item.split(b"=", 1) for item in _environ_entries(pid) if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _write_atomic(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class PodRuntime:
    """Pod processes of one node. `tag` goes into every process's environment as NETK8S_TAG=<tag>."""

    def __init__(self, root: Path, tag: str) -> None:
        self.root = Path(root)
        self.tag = tag
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._retired: list[subprocess.Popen[bytes]] = []  # exited-or-not Popens no longer tracked by name

    # ---- paths -------------------------------------------------------------------------------
    def pod_dir(self, uid: str) -> Path:
        return self.root / _check_name("pod uid", uid)

    def log_path(self, uid: str, name: str) -> Path:
        return self.pod_dir(uid) / "logs" / f"{_check_name('container name', name)}.log"

    def _pid_path(self, uid: str, name: str) -> Path:
        return self.pod_dir(uid) / "pids" / f"{_check_name('container name', name)}.json"

    # ---- pod files ---------------------------------------------------------------------------
    def write_pod_files(self, uid: str, hostname: str, resolv_conf: str, hosts: str) -> dict[str, Path]:
        """Write the pod's etc files; returns {"resolv.conf": path, "hosts": path, "hostname": path}.

        An existing file is rewritten in place, not replaced: running containers see it through a
        bind mount, which pins the inode (a rename would leave them on the old file)."""
        etc = self.pod_dir(uid) / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        contents = {"resolv.conf": resolv_conf, "hosts": hosts, "hostname": hostname + "\n"}
        out: dict[str, Path] = {}
        for fname, text in contents.items():
            path = etc / fname
            if path.exists():
                with open(path, "r+", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.truncate()
            else:
                _write_atomic(path, text)
            out[fname] = path
        return out

    def _binds(self, uid: str) -> list[tuple[Path, Path]]:
        etc = self.pod_dir(uid) / "etc"
        binds = []
        for fname in POD_FILES:
            src, dst = etc / fname, Path("/etc") / fname
            if src.exists() and dst.exists():
                binds.append((src, dst))
        return binds

    # ---- environment -------------------------------------------------------------------------
    def process_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a pod process: `env` only, plus PATH/HOME defaults and the tag.

        When netk8s runs from a source tree (not installed), its directory is appended to PYTHONPATH:
        the launcher and the built-in images are `python -m netk8s...` modules."""
        out = {k: str(v) for k, v in (env or {}).items()}
        out.setdefault("PATH", DEFAULT_PATH)
        out.setdefault("HOME", DEFAULT_HOME)
        out[PROCESS_TAG_ENV] = self.tag
        if _SOURCE_ROOT.name not in ("site-packages", "dist-packages"):
            parts = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p]
            if str(_SOURCE_ROOT) not in parts:
                out["PYTHONPATH"] = os.pathsep.join([*parts, str(_SOURCE_ROOT)])
        return out

    # ---- starting ----------------------------------------------------------------------------
    def _spawn(self, uid: str, name: str, target: PodTarget, cmd: Sequence[str], env: dict[str, str],
               cwd: str | None = None) -> int:
        if self.alive(uid, name):
            raise PodRuntimeError(f"pod {uid}: {name} is already running", hint="stop it first")
        pod = self.pod_dir(uid)
        for sub in ("logs", "pids"):
            (pod / sub).mkdir(parents=True, exist_ok=True)
        log_fd = os.open(self.log_path(uid, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            # detached: survives the agent, owns its process group
            proc = podexec.spawn(target, cmd, env, cwd=cwd, stdout=log_fd, stderr=subprocess.STDOUT, detach=True)
        except podexec.PodExecError as exc:
            raise PodRuntimeError(f"pod {uid}: {name}: {exc.message}") from None
        finally:
            os.close(log_fd)
        old = self._procs.pop((uid, name), None)
        if old is not None:
            self._retired.append(old)
        self._procs[(uid, name)] = proc
        stat = proc_stat(proc.pid)
        record = {
            "pid": proc.pid,
            "starttime": stat[2] if stat else 0,
            "argv": list(cmd),
            "started_at": time.time(),
        }
        _write_atomic(self._pid_path(uid, name), json.dumps(record))
        self._reap_retired()
        return proc.pid

    def _sleep_argv(self) -> list[str]:
        return ["/bin/sleep" if os.path.exists("/bin/sleep") else "sleep", "infinity"]

    def start_sandbox(self, uid: str, netns: str, hostname: str) -> int:
        """Start the pod's sandbox: `sleep infinity` in `netns` with a new UTS namespace named `hostname`."""
        pid = self._spawn(uid, SANDBOX, PodTarget(netns, new_uts_hostname=hostname), self._sleep_argv(),
                          self.process_env())
        # Containers join the sandbox's UTS namespace through /proc/PID/ns/uts: until the launcher has
        # unshared it and exec'd, that link still points at the agent's own (the host's) namespace.
        self._wait_launched(uid, SANDBOX, pid)
        return pid

    def _wait_launched(self, uid: str, name: str, pid: int, timeout: float = LAUNCH_TIMEOUT) -> None:
        launcher = os.path.realpath(sys.executable)
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive(uid, name):
                tail = self._log_tail(uid, name)
                raise PodRuntimeError(f"pod {uid}: {name} exited at start" + (f": {tail}" if tail else ""))
            exe = proc_exe(pid)
            if exe is not None and exe != launcher:
                return
            if time.monotonic() >= deadline:
                raise PodRuntimeError(f"pod {uid}: {name} did not start within {timeout:g}s")
            time.sleep(POLL_INTERVAL / 5)

    def _log_tail(self, uid: str, name: str) -> str:
        try:
            lines = self.log_path(uid, name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def start_container(self, uid: str, name: str, argv: Sequence[str], env: Mapping[str, str],
                        netns: str, cwd: str | None = None) -> int:
        """Start a container process in the pod; stdout+stderr append to log_path(uid, name)."""
        if name == SANDBOX:
            raise ValidationError(f"container name: {name!r} is reserved")
        if not argv:
            raise ValidationError(f"container {name}: empty command")
        return self._spawn(uid, name, self.exec_target(uid, netns), list(argv), self.process_env(env), cwd=cwd)

    def exec_target(self, uid: str, netns: str) -> PodTarget:
        """Where a process run in the running pod enters: the same netns, UTS and binds as containers."""
        sandbox = self.sandbox_pid(uid)
        if sandbox is None:
            raise PodRuntimeError(f"pod {uid}: sandbox is not running", hint="start the pod (its sandbox) first")
        return PodTarget(netns, uts_pid=sandbox, binds=tuple(self._binds(uid)))

    def exec(self, uid: str, netns: str, argv: Sequence[str], *, timeout: float | None,
             env: Mapping[str, str] | None = None, input: bytes | None = None, capture: bool = True,
             inherit_stdin: bool = False) -> ExecResult:
        """Run a command in the running pod and wait (exec probes, exec hooks, `netk8s exec`); `env` is the
        command's own environment, completed by process_env. See podexec.run for the streams."""
        return podexec.run(self.exec_target(uid, netns), argv, self.process_env(env), timeout=timeout,
                           input=input, capture=capture, inherit_stdin=inherit_stdin)

    def container_environ(self, uid: str, name: str) -> dict[str, str]:
        """The environment a running container was started with ({} when it does not run)."""
        info = self.process_info(uid, name)
        if info is None or not self.alive(uid, name):
            return {}
        return process_environ(int(info["pid"]))

    # ---- state -------------------------------------------------------------------------------
    def process_info(self, uid: str, name: str) -> dict | None:
        """The pid file of a process: {pid, starttime, argv, started_at}, or None."""
        try:
            data = json.loads(self._pid_path(uid, name).read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None

    def _same_process(self, info: Mapping) -> bool:
        stat = proc_stat(int(info["pid"]))
        return stat is not None and stat[2] == info.get("starttime") and stat[0] not in ("Z", "X")

    def alive(self, uid: str, name: str) -> bool:
        """The recorded process still runs: same pid and start time, not a zombie."""
        info = self.process_info(uid, name)
        if info is None:
            return False
        proc = self._procs.get((uid, name))
        if proc is not None and proc.pid == info["pid"] and proc.poll() is not None:
            return False
        return self._same_process(info)

    def exit_code(self, uid: str, name: str) -> int | None:
        """Exit status of a process this object started, once it exited (128+N for signal N, as
        container runtimes report it); None while running or for adopted processes."""
        proc = self._procs.get((uid, name))
        if proc is None:
            return None
        code = proc.poll()
        if code is None:
            return None
        return podexec.exit_status(code)

    def signal(self, uid: str, name: str, sig: int) -> bool:
        """Send `sig` to a pod process if it is (still) the recorded one; True if sent."""
        info = self.process_info(uid, name)
        if info is None or not self.alive(uid, name):
            return False
        try:
            os.kill(int(info["pid"]), sig)
        except ProcessLookupError:
            return False
        return True

    def sandbox_pid(self, uid: str) -> int | None:
        info = self.process_info(uid, SANDBOX)
        return int(info["pid"]) if info is not None and self.alive(uid, SANDBOX) else None

    def list_pods(self) -> list[str]:
        """Uids with state on disk."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _SAFE_NAME.match(p.name))

    def containers(self, uid: str) -> list[str]:
        """Names of the pod's containers that have a pid file (started at least once)."""
        pids = self.pod_dir(uid) / "pids"
        if not pids.is_dir():
            return []
        return sorted(p.stem for p in pids.glob("*.json") if p.stem != SANDBOX)

    # ---- stopping ----------------------------------------------------------------------------
    def _session_members(self, sid: int) -> list[int]:
        """Live processes of session `sid`, other than its leader, that carry our tag: what a container
        forked. Its session id is the leader's pid (setsid), which the kernel does not hand out again
        while any member is left; the tag check keeps unrelated processes out regardless."""
        entry = f"{PROCESS_TAG_ENV}={self.tag}".encode()
        members = []
        for pid in all_pids():
            if pid == sid:
                continue
            stat = proc_stat(pid)
            if stat is not None and stat[1] == sid and stat[0] not in ("Z", "X") and _has_env(pid, entry):
                members.append(pid)
        return members

    def _kill(self, uid: str, name: str, info: Mapping) -> None:
        """SIGKILL a process (if it is still the recorded one) and every member of its session."""
        sid = int(info["pid"])
        pids = self._session_members(sid)
        if self.alive(uid, name):
            pids.append(sid)
        for pid in pids:
            try:
                os.kill(pid, signals.SIGKILL)
            except ProcessLookupError:
                pass

    def _wait(self, uid: str, infos: Mapping[str, Mapping], deadline: float, members: bool) -> bool:
        """Poll until no process of `infos` is alive (and, with `members`, nothing is left of their
        sessions); True if all are gone before the deadline."""
        while True:
            left = [n for n in infos if self.alive(uid, n)]
            if members and not left:
                left = [n for n, i in infos.items() if self._session_members(int(i["pid"]))]
            if not left:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)

    def stop_pod(self, uid: str, grace_seconds: float) -> None:
        """SIGTERM every container, wait up to the grace period, SIGKILL what is left (with everything
        each container forked), then the sandbox. Already-dead processes are fine."""
        infos: dict[str, dict] = {}
        for name in self.containers(uid):
            info = self.process_info(uid, name)
            if info is not None:
                infos[name] = info
        for name in infos:
            self.signal(uid, name, signals.SIGTERM)  # only sent if still the recorded process
        self._wait(uid, infos, time.monotonic() + max(0.0, grace_seconds), members=False)
        sandbox = self.process_info(uid, SANDBOX)
        if sandbox is not None:
            infos[SANDBOX] = sandbox
        for name, info in infos.items():
            self._kill(uid, name, info)
        if not self._wait(uid, infos, time.monotonic() + KILL_WAIT, members=True):
            raise PodRuntimeError(f"pod {uid}: processes survived SIGKILL for {KILL_WAIT:g}s")
        self._reap_retired()

    def remove_pod_state(self, uid: str) -> None:
        """Forget a pod: delete its directory (pid files, logs, etc files). Stop it first."""
        for key in [k for k in self._procs if k[0] == uid]:
            self._retired.append(self._procs.pop(key))
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)
        self._reap_retired()

    def _reap_retired(self) -> None:
        # A Popen dropped before it is reaped leaves a zombie and a ResourceWarning; keep it until then.
        self._retired = [p for p in self._retired if p.poll() is None]
