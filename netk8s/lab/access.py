"""Access to a lab's API server: its PKI, the kubeconfig of every role, and the store URL each role uses.

Who reaches the API server where (docs/architecture.md, "Access"):
| role                 | address                         | credential (CN / O)                                       |
|----------------------|---------------------------------|-----------------------------------------------------------|
| kubectl, netk8s CLI  | https://127.0.0.1:PORT (host)   | admin: kubernetes-admin / system:masters                  |
| controller           | https://192.168.56.10:6443      | controller: system:kube-controller-manager / system:masters |
| node agent nodeN     | https://192.168.56.10:6443      | node-nodeN: system:node:nodeN / system:nodes              |
| kube-dns pods        | https://192.168.56.10:6443      | viewer: netk8s:viewer / netk8s:viewers (read-only)        |
| ingress-nginx pods   | https://192.168.56.10:6443      | controller (they write Ingress status)                    |
"""

from __future__ import annotations

import socket
import urllib.parse
from pathlib import Path

from netk8s import config
from netk8s.config import LabPaths
from netk8s.lab.pki import Credential, LabPki, lab_credentials
from netk8s.store import kubeconfig

CONTROL_PLANE_SERVER = f"https://{config.CONTROL_PLANE_IP}:{config.API_PORT}"


def loopback_server(port: int) -> str:
    return f"https://127.0.0.1:{port}"


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick), for the lab's host-side API listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def store_url(server: str, kubeconfig_path: Path) -> str:
    """The store URL of an API client (store/apiclient.py)."""
    return f"{server}?{urllib.parse.urlencode({'kubeconfig': str(kubeconfig_path)})}"


def _write_kubeconfig(lab: str, path: Path, server: str, ca: Credential, cred: Credential) -> None:
    kubeconfig.write(path, kubeconfig.build(lab, server, ca.cert.read_bytes(), cred.cert.read_bytes(),
                                            cred.key.read_bytes()))


def setup(lab: str, nodes: list[str], port: int) -> dict[str, Credential]:
    """Make the lab's PKI and write every kubeconfig (0600): the admin one for 127.0.0.1:PORT and one
    per component for the control-plane address. Returns the credentials by role."""
    paths = LabPaths(lab)
    pki = LabPki(paths.pki)
    creds = lab_credentials(pki, lab, ["127.0.0.1", str(config.CONTROL_PLANE_IP),
                                       str(config.KUBERNETES_SERVICE_IP)], nodes)
    _write_kubeconfig(lab, paths.kubeconfig, loopback_server(port), pki.ca, creds["admin"])
    for role in ("controller", "viewer", *(f"node-{n}" for n in nodes)):
        _write_kubeconfig(lab, paths.role_kubeconfig(role), CONTROL_PLANE_SERVER, pki.ca, creds[role])
    paths.role_kubeconfig("controller").parent.chmod(0o700)
    return creds


def admin_url(lab: str, port: int) -> str:
    """What the CLI (and a test) opens: the API server on 127.0.0.1 with the admin kubeconfig."""
    return store_url(loopback_server(port), LabPaths(lab).kubeconfig)


def role_url(lab: str, role: str) -> str:
    """What a component opens: the API server on the control-plane address with its own kubeconfig."""
    return store_url(CONTROL_PLANE_SERVER, LabPaths(lab).role_kubeconfig(role))


def apiserver_argv(python: str, lab: str, backend: str, port: int, control_plane_netns: bool = True) -> list[str]:
    """`python -m netk8s.apiserver` for a lab: the backend store, 127.0.0.1:PORT on this machine and
    192.168.56.10:6443 for the nodes, TLS from the lab's PKI. With control_plane_netns (the one-machine
    lab) the underlay address is inside the lab's control-plane namespace and so are the connections to
    the agents' kubelet API; without (a control-plane machine, netk8s.lab.machines) it is this machine's."""
    from netk8s.model import naming

    pki = LabPki(LabPaths(lab).pki)
    serving = pki.credential("apiserver")
    underlay = f"{config.CONTROL_PLANE_IP}:{config.API_PORT}"
    if control_plane_netns:
        where = ["--listen-netns", f"{naming.control_plane_netns(lab)}={underlay}"]
        # exec, logs and port-forward: the agents' kubelet API, dialled from the control-plane namespace
        kubelet = ["--kubelet-netns", naming.control_plane_netns(lab)]
    else:
        where, kubelet = ["--listen", underlay], []
    return [python, "-m", "netk8s.apiserver", "--store", backend,
            "--listen", f"127.0.0.1:{port}", *where, "--advertise", underlay,
            "--tls-cert", str(serving.cert), "--tls-key", str(serving.key), "--client-ca", str(pki.ca.cert),
            *kubelet, "--kubelet-token-file", str(LabPaths(lab).kubelet_token)]


def write_role_kubeconfig(lab: str, role: str, path: Path, server: str = CONTROL_PLANE_SERVER) -> None:
    """The kubeconfig of `role` (admin, controller, viewer, node-NAME) for `server`, from the lab's PKI,
    written to `path` (0600): e.g. the admin kubeconfig a control-plane machine exports to its host."""
    pki = LabPki(LabPaths(lab).pki)
    _write_kubeconfig(lab, path, server, pki.ca, pki.credential(role))
