"""The node agent: kubelet + CNI role for the pods bound to this node, the overlay role, and the roles
that ride its informer (kube-proxy).

The agent treats the network namespace it runs in as its node: every dataplane call passes netns=None.
It registers the Node (registration.py), brings up the node network (bridge, overlay device, masquerade),
then loops: it watches the store through one Informer, keeps the overlay routes in line with the other
Nodes, keeps each local pod's sandbox, network, containers and probes in line with the pod object and
writes its status (lifecycle.py, status.py, hooks.py), lets each plugin sync, and heartbeats.

Where new roles go:
- a role fed by store objects (kube-proxy today, NetworkPolicy next) is an AgentPlugin in `plugins`;
  the kinds it reads are in WATCHED_KINDS (the informer lists and watches them once for every role);
- a role that serves requests about this node's pods (a kubelet API: exec, logs) is started by `run`
  beside the loop and reaches pods through `self.lifecycle.find(ns, name)` and `self.runtime`
  (PodRuntime.exec, podexec.spawn for streams, PodRuntime.log_path).
Pod processes are detached; a restarted agent adopts the ones still running.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from netk8s.errors import NetK8sError
from netk8s.model import naming
from netk8s.node import overlay, podnet, registration
from netk8s.node.agentconfig import AgentConfig
from netk8s.node.kubelet_api import KubeletApi, KubeletServer, PodRef
from netk8s.node.lifecycle import PodLifecycle
from netk8s.node.registration import KUBELET_PORT
from netk8s.node.runtime import PodRuntime
from netk8s.node.status import PodState, pod_status
from netk8s.store.base import Store
from netk8s.store.informer import Informer

log = logging.getLogger("netk8s.node")

WATCHED_KINDS = ["Node", "Pod", "Service", "Endpoints", "EndpointSlice", "Namespace", "NetworkPolicy"]

__all__ = ["WATCHED_KINDS", "AgentConfig", "AgentPlugin", "NodeAgent"]


class AgentPlugin(Protocol):
    """A role that rides the agent's informer (the proxy role, later NetworkPolicy)."""

    def sync(self, informer: Informer, events: list, now: float) -> None: ...


def overlay_peers(nodes: Sequence[dict]) -> list[overlay.NodeInfo]:
    """The Nodes the overlay can route to: those with an InternalIP and a podCIDR (and their VTEP MAC)."""
    peers = []
    for n in nodes:
        ip = next((a["address"] for a in (n.get("status") or {}).get("addresses") or []
                   if a.get("type") == "InternalIP"), None)
        cidr = (n.get("spec") or {}).get("podCIDR")
        if ip and cidr:
            peers.append(overlay.NodeInfo(n["metadata"]["name"], ip, cidr, registration.vtep_mac_of(n)))
    return peers


class NodeAgent:
    def __init__(self, store: Store, cfg: AgentConfig, clock: Callable[[], float] = time.time,
                 plugins: Sequence[AgentPlugin] = ()) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.runtime = PodRuntime(cfg.state_dir / "pods", cfg.lab)
        self.informer = Informer(store, WATCHED_KINDS)
        self.lifecycle = PodLifecycle(store, cfg, self.runtime, self.informer, clock)
        self.plugins: list[AgentPlugin] = list(plugins)
        self.overlay_state: overlay.OverlayState | None = None
        self._uplink: str | None = None
        self.vtep_mac: str | None = None
        self.last_heartbeat = 0.0

    @property
    def pods(self) -> dict[str, PodState]:
        """The local pods this agent runs, by uid."""
        return self.lifecycle.pods

    @property
    def pod_cidr(self) -> str | None:
        return self.lifecycle.pod_cidr

    # ----- node registration ---------------------------------------------------------------------
    def node_object(self, now: float) -> dict:
        return registration.node_object(self.cfg.node, self.cfg.node_ip, self.cfg.pod_cidr, now)

    def register(self) -> None:
        registration.register(self.store, self.cfg.node, self.cfg.node_ip, self.cfg.pod_cidr, self.clock())

    def heartbeat(self, now: float) -> None:
        registration.heartbeat(self.store, self.cfg.node, self.cfg.node_ip, self.cfg.pod_cidr, now)
        self.last_heartbeat = now

    # ----- node network --------------------------------------------------------------------------
    def uplink(self) -> str:
        """The node's underlay interface: the one holding --node-ip (eth0 in a lab node or a QEMU guest,
        eth1 on a Vagrant VM), looked up once; naming.NODE_UPLINK when no interface holds it."""
        if self._uplink is None:
            from netk8s.dataplane import links

            self._uplink = links.link_with_address(None, self.cfg.node_ip) or naming.NODE_UPLINK
        return self._uplink

    def setup_node_network(self, pod_cidr: str) -> None:
        """cbr0 with the CIDR's first address, the overlay device (its VTEP published), masquerade."""
        net = ipaddress.ip_network(pod_cidr)
        podnet.ensure_node_bridge(None, f"{net.network_address + 1}/{net.prefixlen}", self.cfg.mtu)
        self.vtep_mac = overlay.ensure_overlay_device(None, self.cfg.overlay, self.cfg.node_ip, pod_cidr,
                                                      self.uplink())
        overlay.ensure_ip_masq()
        if self.vtep_mac:
            registration.publish_vtep(self.store, self.cfg.node, self.vtep_mac)
        self.lifecycle.pod_cidr = pod_cidr

    def sync_overlay(self) -> None:
        peers = overlay_peers(self.informer.list("Node"))
        state = overlay.desired_overlay(self.cfg.node, peers, self.cfg.overlay, self.uplink())
        if state != self.overlay_state:
            overlay.apply_overlay(None, state, self.overlay_state)
            self.overlay_state = state

    # ----- pods ----------------------------------------------------------------------------------
    def adopt(self) -> None:
        self.lifecycle.adopt()

    def sync_pods(self, now: float) -> None:
        self.lifecycle.sync(now)

    def pod_status(self, pod: dict, st: PodState, now: float) -> dict:
        return pod_status(pod, st, self.cfg.node_ip, now)

    # ----- main loop -----------------------------------------------------------------------------
    def _wait_for_pod_cidr(self, stop: threading.Event) -> str | None:
        """The podCIDR the controller assigns to this Node (None if stopped first)."""
        while not stop.is_set():
            node = self.informer.get("Node", "", self.cfg.node)
            cidr = ((node or {}).get("spec") or {}).get("podCIDR")
            if cidr:
                return str(cidr)
            self.informer.poll(0.5)
        return None

    # ----- kubelet API (pods/exec, pods/log for the API server) -----------------------------------
    def find_pod(self, namespace: str, name: str) -> PodRef | None:
        """Where a running local pod is, for the kubelet API's thread (a snapshot of the pod table)."""
        for st in list(self.lifecycle.pods.values()):
            if st.namespace == namespace and st.name == name and st.terminating is None:
                return PodRef(st.uid, st.netns)
        return None

    def start_kubelet_api(self, token: str, ssl_context: ssl.SSLContext | None = None,
                          port: int = KUBELET_PORT) -> KubeletServer:
        server = KubeletServer(KubeletApi(self.runtime, self.find_pod, token), self.cfg.node_ip, port, ssl_context)
        server.start()
        return server

    def run(self, stop: threading.Event) -> None:
        self.register()
        self.informer.sync()
        cidr = self._wait_for_pod_cidr(stop)
        if cidr is None:
            return
        self.setup_node_network(cidr)
        self.adopt()
        self.sync_overlay()
        while not stop.is_set():
            events = self.informer.poll(0.2)
            now = self.clock()
            if any(e.object.get("kind") == "Node" for e in events):
                try:
                    self.sync_overlay()
                except NetK8sError as e:
                    log.error("overlay: %s", e)
            self.sync_pods(now)
            for plugin in self.plugins:
                try:
                    plugin.sync(self.informer, events, now)
                except NetK8sError as e:
                    log.error("%s: %s", type(plugin).__name__, e)
            if now - self.last_heartbeat >= registration.HEARTBEAT_SECONDS:
                self.heartbeat(now)
        self.lifecycle.shutdown()
