"""Per-namespace sysctls (net.*) and kernel module loading.

/proc/sys/net shows the namespace of the process that looks at it, so a named namespace is written
from a child that runs in it (`ip netns exec NAME sysctl -w`), never by switching our own threads.
Keys use dots ("net.ipv4.ip_forward") or slashes ("net/ipv4/conf/flannel.1/rp_filter") when a
component itself has a dot, as sysctl(8) accepts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from netk8s.dataplane.netns import run_in_netns
from netk8s.errors import KernelError

_loaded_modules: dict[str, bool] = {}


def _rel_path(key: str) -> str:
    if not key or key.startswith(("/", ".")) or ".." in key.split("/"):
        raise KernelError(f"sysctl key {key!r} is not valid")
    return key if "/" in key else key.replace(".", "/")


def set_sysctl(netns: str | None, key: str, value: str | int) -> None:
    """Set `key` to `value` in the named namespace, or in our own when netns is None.

    Never pass None from code that runs in the host namespace: it would change the host.
    """
    rel = _rel_path(key)
    text = str(value)
    if netns is None:
        try:
            Path("/proc/sys", rel).write_text(text + "\n")
        except OSError as exc:
            raise KernelError(f"set_sysctl {key}={text}: {exc.strerror or exc}") from exc
        return
    proc = run_in_netns(netns, ["sysctl", "-q", "-w", f"{rel}={text}"], check=False)
    if proc.returncode != 0:
        raise KernelError(f"set_sysctl {key}={text} in {netns}: {proc.stderr.strip()}")


def get_sysctl(netns: str | None, key: str) -> str:
    """Current value of `key` in the named namespace (or our own for None), stripped."""
    rel = _rel_path(key)
    if netns is None:
        try:
            return Path("/proc/sys", rel).read_text().strip()
        except OSError as exc:
            raise KernelError(f"get_sysctl {key}: {exc.strerror or exc}") from exc
    proc = run_in_netns(netns, ["sysctl", "-n", rel], check=False)
    if proc.returncode != 0:
        raise KernelError(f"get_sysctl {key} in {netns}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def sysctl_exists(netns: str | None, key: str) -> bool:
    """True when the key exists there (e.g. net.bridge.* only exists once br_netfilter is loaded)."""
    rel = _rel_path(key)
    if netns is None:
        return Path("/proc/sys", rel).exists()
    proc = run_in_netns(netns, ["sysctl", "-n", rel], check=False)
    return proc.returncode == 0


def load_module(name: str) -> bool:
    """Try `modprobe NAME` once per process; True when it is loaded or built in afterwards."""
    if name in _loaded_modules:
        return _loaded_modules[name]
    if Path("/sys/module", name).exists():
        _loaded_modules[name] = True
        return True
    try:
        proc = subprocess.run(["modprobe", name], capture_output=True, text=True, timeout=30, check=False)
        ok = proc.returncode == 0 or Path("/sys/module", name).exists()
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    _loaded_modules[name] = ok
    return ok
