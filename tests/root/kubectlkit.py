"""An API server in front of a lab for the real clients (kubectl, helm, the Python `kubernetes` client).

`api_cluster()` is the ONE place that decides how the tests reach a cluster: today it brings up a normal
lab and starts `python -m netk8s.apiserver` itself on 127.0.0.1 (a free port) over the lab's store, with
an admin token, TLS from a throwaway CA, the lab's kubelet token and --kubelet-netns set to the lab's
external client namespace (on the underlay, where node IPs are reachable), and writes a kubeconfig.
When `lab up` starts its own API server and writes its kubeconfig, only this function changes.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from netk8s.model import naming
from tests.root.conftest import Proc
from tests.root.labkit import REPO, Lab
from tests.unit.apiserver_util import make_test_pki

VENV_BIN = Path(sys.executable).parent
KUBECTL = str(VENV_BIN / "kubectl")
HELM = str(VENV_BIN / "helm")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiCluster:
    """A lab plus an API server the real clients reach through `kubeconfig`."""

    lab: Lab
    dir: Path
    port: int
    token: str
    argv: list[str]
    proc: Proc | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = Proc(self.argv)
        self.proc.wait_for(rf"serving https://127.0.0.1:{self.port}", timeout=60, stream="stderr")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return "\n".join(self.proc.stderr[-40:]) if self.proc else ""

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return self._run([KUBECTL, *args], input, check, timeout, env)

    def helm(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        return self._run([HELM, *args], None, check, timeout, None)

    def _run(self, argv: list[str], input: str | None, check: bool, timeout: float,
             env: dict[str, str] | None) -> subprocess.CompletedProcess:
        p = subprocess.run(argv, env=dict(self.env, **(env or {})), cwd=REPO, capture_output=True, text=True,
                           input=input, timeout=timeout, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}\n"
                                 f"--- apiserver\n{self.logs()}")
        return p


def write_kubeconfig(path: Path, server: str, ca: Path, token: str, name: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin",
                                                "namespace": "default"}}],
        "current-context": name,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh)


@contextmanager
def api_cluster(name: str, state_dir: Path, work: Path, nodes: int = 2, dns: bool = True) -> Iterator[ApiCluster]:
    """A running lab and an API server for it (see the module docstring); always torn down."""
    lab = Lab(name, state_dir, nodes=nodes, dns=dns)
    cluster: ApiCluster | None = None
    try:
        lab.up()
        make_test_pki(work)
        token = secrets.token_urlsafe(24)
        (work / "tokens.csv").write_text(f'{token},kubernetes-admin,1,"system:masters"\n')
        port = free_port()
        argv = [sys.executable, "-m", "netk8s.apiserver", "--store", f"sqlite://{state_dir / name / 'store.db'}",
                "--listen", f"127.0.0.1:{port}", "--tls-cert", str(work / "srv.crt"),
                "--tls-key", str(work / "srv.key"), "--client-ca", str(work / "ca.crt"),
                "--token-file", str(work / "tokens.csv"),
                "--kubelet-token-file", str(state_dir / name / "kubelet-token"),
                "--kubelet-netns", naming.external_netns(name)]
        cluster = ApiCluster(lab, work, port, token, argv)
        write_kubeconfig(cluster.kubeconfig, cluster.server, work / "ca.crt", token, f"netk8s-{name}")
        home = work / "home"
        home.mkdir(exist_ok=True)
        cluster.env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), HOME=str(home),
                           HELM_CACHE_HOME=str(home / "helm-cache"), HELM_CONFIG_HOME=str(home / "helm-config"),
                           HELM_DATA_HOME=str(home / "helm-data"), KUBECACHEDIR=str(home / "kube-cache"))
        cluster.start()
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        lab.down()
