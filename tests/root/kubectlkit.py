"""A lab for the real clients (kubectl, helm, the Python `kubernetes` client), reached as a user would.

`api_cluster()` brings up a normal lab (`netk8s lab up`, which starts the lab's API server on
127.0.0.1:PORT and writes the admin kubeconfig: context netk8s-LAB, client certificate from the lab's
CA) and points every client at that kubeconfig. Nothing else stands between the clients and the lab:
no second API server, no token of the test's own.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from netk8s.store.apiclient import ssl_context
from netk8s.store.kubeconfig import read
from tests.root.labkit import REPO, Lab

VENV_BIN = Path(sys.executable).parent
KUBECTL = str(VENV_BIN / "kubectl")
HELM = str(VENV_BIN / "helm")


@dataclass
class ApiCluster:
    """A lab whose own API server the real clients reach through the kubeconfig `lab up` wrote."""

    lab: Lab
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.lab.kubeconfig

    @property
    def server(self) -> str:
        return self.lab.api_server

    def admin_ssl_context(self) -> ssl.SSLContext:
        """TLS as kubectl does it with the admin kubeconfig: the lab's CA, the admin client certificate."""
        return ssl_context(read(self.kubeconfig))

    def restart(self) -> None:
        """Restart the lab's API server (`netk8s lab restart apiserver`: same argv, same store)."""
        out = self.lab.cli("lab", "restart", "apiserver").stdout
        assert out.startswith("apiserver restarted (pid "), out

    def logs(self) -> str:
        log = self.lab.state_dir / self.lab.name / "logs" / "apiserver.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        except OSError as exc:
            return f"(no API server log: {exc})"

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


@contextmanager
def api_cluster(name: str, state_dir: Path, work: Path, nodes: int = 2, dns: bool = True) -> Iterator[ApiCluster]:
    """A running lab, its clients pointed at the kubeconfig `lab up` wrote; always torn down."""
    lab = Lab(name, state_dir, nodes=nodes, dns=dns)
    try:
        lab.up()
        home = work / "home"
        home.mkdir(exist_ok=True)
        # a private HOME and caches: no ~/.kube/config, helm repositories or discovery cache of the
        # machine's user can change what the clients do
        env = dict(os.environ, KUBECONFIG=str(lab.kubeconfig), HOME=str(home),
                   HELM_CACHE_HOME=str(home / "helm-cache"), HELM_CONFIG_HOME=str(home / "helm-config"),
                   HELM_DATA_HOME=str(home / "helm-data"), KUBECACHEDIR=str(home / "kube-cache"))
        yield ApiCluster(lab, home, env)
    finally:
        lab.down()
