"""Paths and defaults shared by every role: state directory per lab, address plan."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LAB = "netk8s"
CLUSTER_CIDR = ipaddress.ip_network("10.244.0.0/16")
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
UNDERLAY_CIDR = ipaddress.ip_network("192.168.56.0/24")
LB_POOL = (ipaddress.ip_address("192.168.56.200"), ipaddress.ip_address("192.168.56.250"))
KUBERNETES_SERVICE_IP = ipaddress.ip_address("10.96.0.1")
DNS_SERVICE_IP = ipaddress.ip_address("10.96.0.10")
NODEPORT_RANGE = (30000, 32767)
CLUSTER_DOMAIN = "cluster.local"
VXLAN_VNI = 1
VXLAN_PORT = 8472
VXLAN_DEV = "flannel.1"
UNDERLAY_MTU = 1500
VXLAN_OVERHEAD = 50
# The control plane on the underlay (the lab's control-plane namespace, the control-plane VM): the API
# server listens there on API_PORT for the nodes, and on 127.0.0.1:<a port per lab> for the host's kubectl.
CONTROL_PLANE_IP = ipaddress.ip_address("192.168.56.10")
API_PORT = 6443


def state_root() -> Path:
    """Root of all netk8s state; NETK8S_STATE_DIR overrides it (tests use a temporary one)."""
    return Path(os.environ.get("NETK8S_STATE_DIR", "/var/lib/netk8s"))


def lab_name() -> str:
    """The lab every command targets: `--lab`, else NETK8S_LAB, else `netk8s`."""
    return os.environ.get("NETK8S_LAB", DEFAULT_LAB)


@dataclass(frozen=True)
class LabPaths:
    """Where one lab keeps its files."""

    lab: str

    @property
    def root(self) -> Path:
        return state_root() / self.lab

    @property
    def store(self) -> Path:
        return self.root / "store.db"

    @property
    def lab_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def node_resolv(self) -> Path:
        """The nodes' resolver configuration (pods with dnsPolicy Default, the DNS pods' upstreams)."""
        return self.root / "resolv.conf"

    @property
    def pki(self) -> Path:
        """The lab's CA, serving certificate and client credentials (keys 0600)."""
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (context netk8s-LAB, server on 127.0.0.1): kubectl and the netk8s CLI."""
        return self.root / "kubeconfig"

    def role_kubeconfig(self, role: str) -> Path:
        """The kubeconfig of one component (controller, viewer, node-NAME), server on the underlay."""
        return self.root / "kubeconfigs" / f"{role}.kubeconfig"

    @property
    def kubelet_token(self) -> Path:
        """The bearer token the node agents' kubelet API accepts and the API server sends (0600)."""
        return self.root / "kubelet-token"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def pod_dir(self, node: str, pod_uid: str) -> Path:
        return self.node_dir(node) / "pods" / pod_uid
