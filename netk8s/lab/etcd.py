"""The lab's etcd server (Debian's etcd-server 3.4): its argv, and waiting until it answers.

etcd runs in the lab's control-plane namespace with its data under the lab's state directory; only the
API server talks to it. The argv is pure so the Vagrant provisioning and the lab start the same command.

In the lab etcd listens on 127.0.0.1 *of the control-plane namespace* (client 2379, peer 2380), as
kubeadm's stacked etcd listens on the control plane's loopback: nothing on the underlay (the nodes, the
external client) can reach it, and nothing in the host's root namespace listens. The API server runs in
the host's namespace but opens its etcd connections inside the control-plane namespace
(`etcd://127.0.0.1:2379?netns=nk8s-LAB-cp`, store/factory.py), as it does its 192.168.56.10:6443 listener.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from netk8s.config import LabPaths
from netk8s.errors import LabError
from netk8s.model import naming
from netk8s.store.base import Store

ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
LAB_ETCD_IP = "127.0.0.1"  # inside the lab's control-plane namespace


def check_installed(binary: str = "etcd") -> None:
    """Refuse `--store etcd` before anything is built when Debian's etcd-server is missing."""
    if shutil.which(binary) is None:
        raise LabError(f"--store etcd: the {binary!r} program is not installed",
                       hint="install Debian's etcd-server (scripts/install-deps.sh does)")


def data_dir(lab: str) -> Path:
    """etcd's data directory, under the lab's state directory (0700, as etcd requires)."""
    return LabPaths(lab).root / "etcd"


def backend_url(lab: str) -> str:
    """The store URL the lab's API server opens: etcd on the control-plane namespace's loopback."""
    return f"etcd://{LAB_ETCD_IP}:{ETCD_CLIENT_PORT}?netns={naming.control_plane_netns(lab)}"


def lab_etcd_argv(lab: str) -> list[str]:
    """The lab's etcd command (run inside the control-plane namespace); the same on every restart."""
    return etcd_argv(data_dir(lab), LAB_ETCD_IP, name=lab)


def etcd_argv(data_dir: Path, ip: str, name: str = "netk8s", client_port: int = ETCD_CLIENT_PORT,
              peer_port: int = ETCD_PEER_PORT, binary: str = "etcd") -> list[str]:
    """A one-member etcd listening on `ip` (inside the namespace it runs in)."""
    client = f"http://{ip}:{client_port}"
    peer = f"http://{ip}:{peer_port}"
    return [binary, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{name}={peer}", "--initial-cluster-state", "new",
            # The API server compacts (as kube-apiserver does); etcd's own auto-compaction stays off.
            "--auto-compaction-retention", "0", "--logger", "zap", "--log-outputs", "stderr"]


def wait_ready(store: Store, timeout: float = 30.0, alive: object = None, log: Path | None = None) -> None:
    """Poll until etcd answers a read, or raise LabError. `alive` (a callable) says whether the
    process still runs, so a crashed etcd fails fast; `log` is named in the hint."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            store.revision()
            return
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"; the last one is reported
            last = e
        if callable(alive) and not alive():
            raise LabError(f"etcd exited during start-up ({last})", hint=f"see {log or 'the lab etcd log'}")
        time.sleep(0.1)
    raise LabError(f"etcd did not answer within {timeout:.0f}s ({last})", hint=f"see {log or 'the lab etcd log'}")
