"""The lab's etcd server (Debian's etcd-server 3.4): its argv, and waiting until it answers.

etcd runs in the lab's control-plane namespace with its data under the lab's state directory; only the
API server talks to it. The argv is pure so the Vagrant provisioning and the lab start the same command.
"""

from __future__ import annotations

import time
from pathlib import Path

from netk8s.errors import LabError
from netk8s.store.base import Store

ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380


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


def wait_ready(store: Store, timeout: float = 30.0, alive: object = None) -> None:
    """Poll until etcd answers a read, or raise LabError. `alive` (a callable) says whether the
    process still runs, so a crashed etcd fails fast."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            store.revision()
            return
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"; the last one is reported
            last = e
        if callable(alive) and not alive():
            raise LabError(f"etcd exited during start-up ({last})", hint="see the lab's etcd log")
        time.sleep(0.1)
    raise LabError(f"etcd did not answer within {timeout:.0f}s ({last})", hint="see the lab's etcd log")
