"""The node agent: kubelet + CNI role for the pods bound to this node, and the overlay role.

The agent treats the network namespace it runs in as its node (DESIGN.md): every dataplane call passes
netns=None. It watches the store through an Informer, keeps each local pod's sandbox, network and
containers in line with the pod object, runs probes, and writes pod status. Pod processes are detached;
a restarted agent adopts the ones still running.
"""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

from netk8s import config
from netk8s.errors import Conflict, NetK8sError, NotFound
from netk8s.model import naming, svcenv
from netk8s.model.images import ImageUnsupported, container_argv, env_list_to_dict, field_context
from netk8s.model.ipam import POD_IP_ANNOTATION
from netk8s.node import overlay, podfiles, podnet
from netk8s.node.probes import ProbeTracker, run_probe
from netk8s.node.runtime import PodRuntime
from netk8s.store.base import Store, mutate
from netk8s.store.informer import Informer

log = logging.getLogger("netk8s.node")

KUBELET_VERSION = "v1.30.0-netk8s"
HEARTBEAT_SECONDS = 10.0
BACKOFF_START = 10.0  # kubelet's CrashLoopBackOff: 10 s doubling, capped at 5 min
BACKOFF_MAX = 300.0
VTEP_ANNOTATION = "flannel.alpha.coreos.com/backend-data"
PUBLIC_IP_ANNOTATION = "flannel.alpha.coreos.com/public-ip"
WATCHED_KINDS = ["Node", "Pod", "Service", "Endpoints", "EndpointSlice", "Namespace", "NetworkPolicy"]


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AgentConfig:
    lab: str
    node: str
    node_ip: str
    state_dir: Path
    overlay: str = "vxlan"
    pod_cidr: str | None = None
    mtu: int = config.UNDERLAY_MTU - config.VXLAN_OVERHEAD
    node_resolv: str = "/etc/resolv.conf"


@dataclass
class ContainerState:
    name: str
    restart_count: int = 0
    started_at: float | None = None
    running: bool = False
    ready: bool = False
    waiting_reason: str | None = None
    waiting_message: str = ""
    last_exit: int | None = None
    terminated_at: float | None = None
    crashes: int = 0
    backoff_until: float = 0.0


@dataclass
class PodState:
    uid: str
    namespace: str
    name: str
    ip: str
    netns: str
    created_at: float
    containers: dict[str, ContainerState] = field(default_factory=dict)
    failed_reason: str | None = None
    failed_message: str = ""
    terminating: threading.Thread | None = None
    last_status: dict | None = None


class AgentPlugin(Protocol):
    """A role that rides the agent's informer (the proxy role, later DNS helpers)."""

    def sync(self, informer: Informer, events: list, now: float) -> None: ...


class NodeAgent:
    def __init__(self, store: Store, cfg: AgentConfig, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.runtime = PodRuntime(cfg.state_dir / "pods", cfg.lab)
        self.pods: dict[str, PodState] = {}
        self.probes = ProbeTracker()
        self.inflight: dict[tuple[str, str, str], concurrent.futures.Future] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self.plugins: list[AgentPlugin] = []
        self.informer = Informer(store, WATCHED_KINDS)
        self.overlay_state: overlay.OverlayState | None = None
        self.vtep_mac: str | None = None
        self.pod_cidr: str | None = None
        self.last_heartbeat = 0.0
        self.lock = threading.Lock()

    # ----- node registration -------------------------------------------------------------
    def node_object(self, now: float) -> dict:
        import platform

        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.cfg.node,
                "labels": {
                    "kubernetes.io/hostname": self.cfg.node,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
                "annotations": {PUBLIC_IP_ANNOTATION: self.cfg.node_ip},
            },
            "spec": ({"podCIDR": self.cfg.pod_cidr, "podCIDRs": [self.cfg.pod_cidr]} if self.cfg.pod_cidr else {}),
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": self.cfg.node_ip},
                    {"type": "Hostname", "address": self.cfg.node},
                ],
                "conditions": [self.ready_condition(now)],
                "nodeInfo": {
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": KUBELET_VERSION,
                    "osImage": "netk8s node (network namespace)",
                    "kernelVersion": platform.release(),
                    "containerRuntimeVersion": "netk8s://0.1",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }

    def ready_condition(self, now: float) -> dict:
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": rfc3339(now),
            "lastTransitionTime": rfc3339(now),
        }

    def register(self) -> None:
        now = self.clock()
        obj = self.node_object(now)
        existing = self.store.try_get("Node", "", self.cfg.node)
        if existing is None:
            try:
                self.store.create(obj)
                return
            except NetK8sError:
                pass

        def upd(cur: dict) -> dict:
            cur.setdefault("metadata", {}).setdefault("annotations", {}).update(obj["metadata"]["annotations"])
            cur["metadata"].setdefault("labels", {}).update(obj["metadata"]["labels"])
            if self.cfg.pod_cidr and not (cur.get("spec") or {}).get("podCIDR"):
                cur.setdefault("spec", {}).update(obj["spec"])
            cur["status"] = obj["status"]
            return cur

        mutate(self.store, "Node", "", self.cfg.node, upd)

    def heartbeat(self, now: float) -> None:
        def upd(cur: dict) -> dict:
            conds = [c for c in (cur.get("status") or {}).get("conditions") or [] if c.get("type") != "Ready"]
            old = next((c for c in (cur.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
            cond = self.ready_condition(now)
            if old and old.get("status") == "True":
                cond["lastTransitionTime"] = old.get("lastTransitionTime", cond["lastTransitionTime"])
            cur.setdefault("status", {})["conditions"] = conds + [cond]
            return cur

        if mutate(self.store, "Node", "", self.cfg.node, upd) is None and self.store.try_get("Node", "", self.cfg.node) is None:
            self.register()
        self.last_heartbeat = now

    # ----- node network ------------------------------------------------------------------------
    def setup_node_network(self, pod_cidr: str) -> None:
        import ipaddress

        net = ipaddress.ip_network(pod_cidr)
        gw = f"{net.network_address + 1}/{net.prefixlen}"
        podnet.ensure_node_bridge(None, gw, self.cfg.mtu)
        self.vtep_mac = overlay.ensure_overlay_device(None, self.cfg.overlay, self.cfg.node_ip, pod_cidr)
        overlay.ensure_ip_masq()
        if self.vtep_mac:
            import json

            data = json.dumps({"VNI": config.VXLAN_VNI, "VtepMAC": self.vtep_mac})

            def upd(cur: dict) -> dict:
                cur.setdefault("metadata", {}).setdefault("annotations", {})[VTEP_ANNOTATION] = data
                return cur

            mutate(self.store, "Node", "", self.cfg.node, upd)
        self.pod_cidr = pod_cidr

    def sync_overlay(self) -> None:
        import json

        nodes = []
        for n in self.informer.list("Node"):
            ip = next((a["address"] for a in (n.get("status") or {}).get("addresses") or []
                       if a.get("type") == "InternalIP"), None)
            cidr = (n.get("spec") or {}).get("podCIDR")
            mac = None
            raw = ((n.get("metadata") or {}).get("annotations") or {}).get(VTEP_ANNOTATION)
            if raw:
                try:
                    mac = json.loads(raw).get("VtepMAC")
                except ValueError:
                    mac = None
            if ip and cidr:
                nodes.append(overlay.NodeInfo(n["metadata"]["name"], ip, cidr, mac))
        state = overlay.desired_overlay(self.cfg.node, nodes, self.cfg.overlay)  # type: ignore[arg-type]
        if state != self.overlay_state:
            overlay.apply_overlay(None, state, self.overlay_state)
            self.overlay_state = state

    # ----- pods --------------------------------------------------------------------------------
    def my_pods(self) -> list[dict]:
        return [p for p in self.informer.list("Pod") if (p.get("spec") or {}).get("nodeName") == self.cfg.node]

    def adopt(self) -> None:
        """After a restart: keep pods whose sandbox still runs, clean up the rest."""
        by_uid = {p["metadata"]["uid"]: p for p in self.my_pods()}
        for uid in self.runtime.list_pods():
            pod = by_uid.get(uid)
            if pod is None or self.runtime.sandbox_pid(uid) is None:
                log.info("cleaning up stale pod state %s", uid)
                self.teardown(uid, grace=0)
                continue
            st = PodState(uid, pod["metadata"].get("namespace", "default"), pod["metadata"]["name"],
                          pod["metadata"]["annotations"][POD_IP_ANNOTATION], naming.pod_netns(self.cfg.lab, uid),
                          self.clock())
            statuses = {c["name"]: c for c in (pod.get("status") or {}).get("containerStatuses") or []}
            for c in pod["spec"]["containers"]:
                cs = ContainerState(c["name"])
                old = statuses.get(c["name"]) or {}
                cs.restart_count = int(old.get("restartCount", 0))
                cs.ready = bool(old.get("ready"))
                cs.running = self.runtime.alive(uid, c["name"])
                started = ((old.get("state") or {}).get("running") or {}).get("startedAt")
                cs.started_at = self.clock() if started else None
                if not cs.running and "waiting" in (old.get("state") or {}):
                    cs.waiting_reason = old["state"]["waiting"].get("reason")
                st.containers[c["name"]] = cs
            st.last_status = pod.get("status")
            self.pods[uid] = st
            log.info("adopted pod %s/%s", st.namespace, st.name)

    def teardown(self, uid: str, grace: float) -> None:
        try:
            self.runtime.stop_pod(uid, grace)
        except NetK8sError as e:
            log.warning("stopping pod %s: %s", uid, e)
        try:
            podnet.delete(None, naming.pod_netns(self.cfg.lab, uid), uid)
        except NetK8sError as e:
            log.warning("removing network of pod %s: %s", uid, e)
        self.runtime.remove_pod_state(uid)

    def terminate(self, pod: dict) -> None:
        """Graceful deletion in a thread: SIGTERM, grace, SIGKILL, network gone, object removed."""
        meta = pod["metadata"]
        uid = meta["uid"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        deadline = self.clock() + float(grace)
        st = self.pods.get(uid)
        if st is not None and st.netns and float(grace) > 0:
            self.run_pre_stop_hooks(pod, st, deadline)
        self.teardown(uid, max(0.0, deadline - self.clock()))
        self.finalize_delete(pod)

    def run_pre_stop_hooks(self, pod: dict, st: PodState, deadline: float) -> None:
        """lifecycle.preStop (exec, httpGet, sleep) before SIGTERM; it counts against the grace period,
        as in kubelet. The usual zero-downtime recipe (preStop sleep) relies on it."""
        import subprocess
        import urllib.request

        for c in pod["spec"]["containers"]:
            hook = ((c.get("lifecycle") or {}).get("preStop")) or {}
            left = deadline - self.clock()
            if not hook or left <= 0 or not self.runtime.alive(st.uid, c["name"]):
                continue
            try:
                if "sleep" in hook:
                    time.sleep(min(float(hook["sleep"].get("seconds", 0)), left))
                elif "exec" in hook:
                    subprocess.run(self.runtime.exec_argv(st.uid, st.netns, hook["exec"].get("command") or []),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=self.runtime.process_env(), timeout=left)
                elif "httpGet" in hook:
                    h = hook["httpGet"]
                    port = h.get("port")
                    if isinstance(port, str):
                        port = next((p["containerPort"] for p in c.get("ports") or [] if p.get("name") == port), 80)
                    url = f"http://{h.get('host') or st.ip}:{port}{h.get('path', '/')}"
                    urllib.request.urlopen(url, timeout=left).close()
            except (OSError, subprocess.SubprocessError) as e:
                log.info("preStop hook of %s/%s %s: %s", st.namespace, st.name, c["name"], e)

    def finalize_delete(self, pod: dict) -> None:
        meta = pod["metadata"]
        ns = meta.get("namespace", "default")
        for _ in range(20):
            cur = self.store.try_get("Pod", ns, meta["name"])
            if cur is None or cur["metadata"]["uid"] != meta["uid"]:
                return
            try:
                self.store.delete("Pod", ns, meta["name"], cur["metadata"]["resourceVersion"])
                log.info("pod %s/%s deleted", ns, meta["name"])
                return
            except Conflict:
                continue
            except NotFound:
                return

    def start_pod(self, pod: dict, now: float) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        ip = meta["annotations"][POD_IP_ANNOTATION]
        import ipaddress

        net = ipaddress.ip_network(self.pod_cidr or "")
        netns = naming.pod_netns(self.cfg.lab, uid)
        podnet.add(None, podnet.PodNetConfig(pod_netns=netns, pod_uid=uid, ip=ip, prefix_len=net.prefixlen,
                                             gateway=str(net.network_address + 1), mtu=self.cfg.mtu))
        try:
            node_resolv = Path(self.cfg.node_resolv).read_text()
        except OSError:
            node_resolv = ""
        hostname = podfiles.pod_hostname(pod)
        self.runtime.write_pod_files(uid, hostname, podfiles.resolv_conf(pod, node_resolv),
                                     podfiles.hosts_file(pod, ip))
        self.runtime.start_sandbox(uid, netns, hostname)
        st = PodState(uid, meta.get("namespace", "default"), meta["name"], ip, netns, now)
        self.pods[uid] = st
        for c in pod["spec"]["containers"]:
            st.containers[c["name"]] = ContainerState(c["name"])
            self.start_container(pod, st, c, now)
        log.info("pod %s/%s started with IP %s", st.namespace, st.name, ip)

    def container_env(self, pod: dict, st: PodState, c: dict) -> dict[str, str]:
        ctx = field_context(pod, self.cfg.node_ip)
        ctx["status.podIP"] = st.ip
        ctx["spec.nodeName"] = self.cfg.node
        base = {"HOSTNAME": podfiles.pod_hostname(pod)}
        base.update(self.service_env(pod))
        return env_list_to_dict(c.get("env") or [], ctx, base)

    def service_env(self, pod: dict) -> dict[str, str]:
        """kubelet's docker-links Service variables, from the Services that exist when the pod starts."""
        return svcenv.service_env(self.informer.list("Service"), pod["metadata"].get("namespace", "default"),
                                  bool((pod.get("spec") or {}).get("enableServiceLinks", True)))

    def start_container(self, pod: dict, st: PodState, c: dict, now: float) -> None:
        cs = st.containers[c["name"]]
        try:
            env = self.container_env(pod, st, c)
            argv = container_argv(c, sys.executable, env)
        except ImageUnsupported as e:
            cs.waiting_reason, cs.waiting_message, cs.running = "ImageUnsupported", e.message, False
            return
        except NetK8sError as e:
            cs.waiting_reason, cs.waiting_message, cs.running = "CreateContainerConfigError", e.message, False
            return
        try:
            self.runtime.start_container(st.uid, c["name"], argv, env, st.netns, cwd=c.get("workingDir"))
        except NetK8sError as e:
            cs.waiting_reason, cs.waiting_message, cs.running = "CreateContainerError", e.message, False
            return
        cs.running, cs.started_at, cs.waiting_reason, cs.waiting_message = True, now, None, ""
        cs.ready = not c.get("readinessProbe")
        self.probes.reset(st.uid, c["name"])

    def check_containers(self, pod: dict, st: PodState, now: float) -> None:
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        for c in pod["spec"]["containers"]:
            cs = st.containers.setdefault(c["name"], ContainerState(c["name"]))
            if cs.waiting_reason in ("ImageUnsupported", "CreateContainerConfigError"):
                continue
            if cs.running and not self.runtime.alive(st.uid, c["name"]):
                code = self.runtime.exit_code(st.uid, c["name"])
                cs.running, cs.ready, cs.last_exit, cs.terminated_at = False, False, code, now
                log.info("container %s of pod %s/%s exited (%s)", c["name"], st.namespace, st.name, code)
                restart = policy == "Always" or (policy == "OnFailure" and code != 0)
                if restart:
                    # The first crash restarts at once; later ones back off like kubelet.
                    delay = 0.0 if cs.crashes == 0 else min(BACKOFF_START * 2 ** (cs.crashes - 1), BACKOFF_MAX)
                    cs.crashes += 1
                    cs.backoff_until = now + delay
                    cs.waiting_reason = "CrashLoopBackOff" if delay else None
                    if delay:
                        cs.waiting_message = f"back-off {int(delay)}s restarting failed container={c['name']}"
                else:
                    cs.waiting_reason = None
            if not cs.running and cs.terminated_at is not None:
                restart = policy == "Always" or (policy == "OnFailure" and cs.last_exit != 0)
                if restart and now >= cs.backoff_until:
                    cs.restart_count += 1
                    self.start_container(pod, st, c, now)
                    if cs.running:
                        cs.terminated_at = None
            elif not cs.running and cs.started_at is None and cs.waiting_reason is None:
                self.start_container(pod, st, c, now)

    def run_probes(self, pod: dict, st: PodState, now: float) -> None:
        for c in pod["spec"]["containers"]:
            cs = st.containers.get(c["name"])
            if cs is None or not cs.running or cs.started_at is None:
                continue
            for kind in ("readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if not probe:
                    continue
                key = (st.uid, c["name"], kind)
                fut = self.inflight.get(key)
                if fut is not None:
                    if not fut.done():
                        continue
                    del self.inflight[key]
                    ok, msg = fut.result()
                    flipped = self.probes.record(key, probe, ok)
                    if kind == "readinessProbe" and flipped is not None:
                        cs.ready = bool(flipped)
                    elif kind == "livenessProbe" and flipped is False:
                        log.info("liveness probe failed for %s/%s %s: %s; restarting", st.namespace, st.name,
                                 c["name"], msg)
                        self.runtime.signal(st.uid, c["name"], signal.SIGKILL)
                    continue
                if self.probes.due(key, probe, cs.started_at, now):
                    exec_fn = self.exec_probe_fn(st)
                    self.inflight[key] = self.executor.submit(run_probe, probe, st.ip, c, exec_fn)

    def exec_probe_fn(self, st: PodState) -> Callable[[list[str], float], int]:
        import subprocess

        def run(argv: list[str], timeout: float) -> int:
            try:
                return subprocess.run(self.runtime.exec_argv(st.uid, st.netns, argv), stdin=subprocess.DEVNULL,
                                      env=self.runtime.process_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                return -1

        return run

    def pod_status(self, pod: dict, st: PodState, now: float) -> dict:
        old = pod.get("status") or {}
        statuses = []
        all_running, all_ready = True, True
        terminated_all = True
        failed_any = False
        for c in pod["spec"]["containers"]:
            cs = st.containers.get(c["name"]) or ContainerState(c["name"])
            if cs.running:
                state: dict = {"running": {"startedAt": rfc3339(cs.started_at or now)}}
                terminated_all = False
            elif cs.waiting_reason:
                state = {"waiting": {"reason": cs.waiting_reason, "message": cs.waiting_message}}
                terminated_all = False
            elif cs.terminated_at is not None:
                code = cs.last_exit if cs.last_exit is not None else 137
                state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                        "finishedAt": rfc3339(cs.terminated_at)}}
                failed_any = failed_any or code != 0
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
                terminated_all = False
            all_running = all_running and cs.running
            all_ready = all_ready and cs.running and cs.ready
            statuses.append({
                "name": c["name"], "image": c.get("image", ""), "imageID": "", "containerID":
                f"netk8s://{st.uid[:8]}-{c['name']}", "ready": bool(cs.running and cs.ready),
                "started": cs.running, "restartCount": cs.restart_count, "state": state,
            })
        if st.failed_reason:
            phase = "Failed"
        elif terminated_all and statuses:
            phase = "Failed" if failed_any else "Succeeded"
        elif any("running" in s["state"] for s in statuses) or all_running:
            phase = "Running"
        else:
            phase = "Pending"
        ready = all_ready and phase == "Running"
        old_conds = {c["type"]: c for c in old.get("conditions") or []}

        def cond(kind: str, value: bool) -> dict:
            text = "True" if value else "False"
            prev = old_conds.get(kind)
            ts = prev["lastTransitionTime"] if prev and prev.get("status") == text else rfc3339(now)
            return {"type": kind, "status": text, "lastProbeTime": None, "lastTransitionTime": ts}

        status = {
            "phase": phase,
            "conditions": [cond("Initialized", True), cond("Ready", ready), cond("ContainersReady", all_ready),
                           cond("PodScheduled", True)],
            "hostIP": self.cfg.node_ip,
            "hostIPs": [{"ip": self.cfg.node_ip}],
            "podIP": st.ip,
            "podIPs": [{"ip": st.ip}],
            "startTime": old.get("startTime") or rfc3339(st.created_at),
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }
        if st.failed_reason:
            status["reason"], status["message"] = st.failed_reason, st.failed_message
        return status

    def write_status(self, pod: dict, st: PodState, now: float) -> None:
        status = self.pod_status(pod, st, now)
        if status == st.last_status:
            return
        uid = st.uid

        def upd(cur: dict) -> dict | None:
            if cur["metadata"]["uid"] != uid:
                return None
            cur["status"] = status
            return cur

        mutate(self.store, "Pod", st.namespace, st.name, upd)
        st.last_status = status

    def sync_pods(self, now: float) -> None:
        seen: set[str] = set()
        for pod in self.my_pods():
            meta = pod["metadata"]
            uid = meta["uid"]
            seen.add(uid)
            st = self.pods.get(uid)
            if meta.get("deletionTimestamp"):
                if st is None or st.terminating is None:
                    t = threading.Thread(target=self.terminate, args=(pod,), name=f"terminate-{meta['name']}",
                                         daemon=True)
                    if st is None:
                        st = PodState(uid, meta.get("namespace", "default"), meta["name"], "", "", now)
                        self.pods[uid] = st
                    st.terminating = t
                    t.start()
                continue
            if st is not None and st.terminating is not None:
                continue
            if st is None:
                if POD_IP_ANNOTATION not in (meta.get("annotations") or {}) or not self.pod_cidr:
                    continue
                if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                    continue  # finished before this agent started; the owner replaces it
                try:
                    self.start_pod(pod, now)
                except NetK8sError as e:
                    log.error("starting pod %s/%s: %s", meta.get("namespace"), meta["name"], e)
                    self.teardown(uid, grace=0)
                    self.pods.pop(uid, None)
                    continue
                st = self.pods[uid]
            if st.failed_reason is None:
                if self.runtime.sandbox_pid(uid) is None:
                    # The pod sandbox (its pause process) died: the pod is gone for good; its owner
                    # (ReplicaSet) replaces it with a new pod.
                    st.failed_reason, st.failed_message = "SandboxDied", "the pod sandbox process exited"
                    log.info("pod %s/%s sandbox died", st.namespace, st.name)
                    for cs in st.containers.values():
                        cs.running, cs.ready, cs.terminated_at = False, False, now
                    self.teardown(uid, grace=0)
                else:
                    self.check_containers(pod, st, now)
                    self.run_probes(pod, st, now)
            self.write_status(pod, st, now)
        # pods that vanished from the store (force-deleted): tear them down
        for uid in list(self.pods):
            if uid not in seen:
                st = self.pods.pop(uid)
                if st.terminating is None:
                    log.info("pod %s/%s removed from the store; tearing down", st.namespace, st.name)
                    self.teardown(uid, grace=0)
                for key in [k for k in self.inflight if k[0] == uid]:
                    self.inflight.pop(key, None)

    # ----- main loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.register()
        self.informer.sync()
        while not stop.is_set():
            node = self.informer.get("Node", "", self.cfg.node)
            cidr = ((node or {}).get("spec") or {}).get("podCIDR")
            if cidr:
                break
            self.informer.poll(0.5)
        else:
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
            if now - self.last_heartbeat >= HEARTBEAT_SECONDS:
                self.heartbeat(now)
        self.executor.shutdown(wait=False, cancel_futures=True)
