"""Pod lifecycle on one node: start a pod (network, sandbox, pod files, containers), restart crashed
containers with kubelet's back-off, run probes, terminate gracefully (preStop, SIGTERM, grace, SIGKILL),
tear down, and adopt the pods still running after an agent restart.

The agent's loop calls `sync(now)` once per round; state per pod lives in status.PodState and the pod's
status is written from it (status.write_status). A kubelet API (exec, logs) reaches a running pod through
`find(namespace, name)` and the runtime (PodRuntime.exec, podexec.spawn, PodRuntime.log_path).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from netk8s.errors import Conflict, NetK8sError, NotFound
from netk8s.model import naming, svcenv
from netk8s.model.images import ImageUnsupported, container_argv, env_list_to_dict, field_context
from netk8s.model.ipam import POD_IP_ANNOTATION
from netk8s.node import podfiles, podnet
from netk8s.node.agentconfig import AgentConfig
from netk8s.node.hooks import run_pre_stop_hooks
from netk8s.node.probes import ProbeTracker, run_probe
from netk8s.node.runtime import PodRuntime
from netk8s.node.status import ContainerState, PodState, write_status
from netk8s.store.base import Store
from netk8s.store.informer import Informer

log = logging.getLogger("netk8s.node")

BACKOFF_START = 10.0  # kubelet's CrashLoopBackOff: 10 s doubling, capped at 5 min
BACKOFF_MAX = 300.0
PROBE_KINDS = ("readinessProbe", "livenessProbe")


class PodLifecycle:
    """The pods bound to this node: their processes, network, probes and status."""

    def __init__(self, store: Store, cfg: AgentConfig, runtime: PodRuntime, informer: Informer,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.cfg = cfg
        self.runtime = runtime
        self.informer = informer
        self.clock = clock
        self.pods: dict[str, PodState] = {}
        self.probes = ProbeTracker()
        self.inflight: dict[tuple[str, str, str], concurrent.futures.Future] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self.pod_cidr: str | None = None  # set once the node network is up; no pod starts before

    def my_pods(self) -> list[dict]:
        return [p for p in self.informer.list("Pod") if (p.get("spec") or {}).get("nodeName") == self.cfg.node]

    def find(self, namespace: str, name: str) -> PodState | None:
        """The state of a pod of this node by namespace/name (None when it is not here)."""
        return next((st for st in self.pods.values() if st.namespace == namespace and st.name == name), None)

    # ----- adoption and teardown ------------------------------------------------------------------
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
        """Graceful deletion in a thread: preStop, SIGTERM, grace, SIGKILL, network gone, object removed."""
        meta = pod["metadata"]
        uid = meta["uid"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        deadline = self.clock() + float(grace)
        st = self.pods.get(uid)
        if st is not None and st.netns and float(grace) > 0:
            run_pre_stop_hooks(self.runtime, pod, st, deadline, self.clock)
        self.teardown(uid, max(0.0, deadline - self.clock()))
        self.finalize_delete(pod)

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

    # ----- starting -------------------------------------------------------------------------------
    def start_pod(self, pod: dict, now: float) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        ip = meta["annotations"][POD_IP_ANNOTATION]
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

    # ----- running --------------------------------------------------------------------------------
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
        """Collect finished probe attempts (flip readiness, restart on liveness failure), start due ones."""
        for c in pod["spec"]["containers"]:
            cs = st.containers.get(c["name"])
            if cs is None or not cs.running or cs.started_at is None:
                continue
            for kind in PROBE_KINDS:
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

    def exec_probe_fn(self, st: PodState) -> Callable[[Sequence[str], float], int]:
        def run(argv: Sequence[str], timeout: float) -> int:
            # a timeout raises TimeoutError, which run_probe reports as a failed probe (kubelet's)
            return self.runtime.exec(st.uid, st.netns, argv, timeout=timeout).exit_code

        return run

    # ----- the round ------------------------------------------------------------------------------
    def sync(self, now: float) -> None:
        """One round over the pods bound to this node: start, check, probe, terminate, write status."""
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
            write_status(self.store, pod, st, self.cfg.node_ip, now)
        # pods that vanished from the store (force-deleted): tear them down
        for uid in list(self.pods):
            if uid not in seen:
                st = self.pods.pop(uid)
                if st.terminating is None:
                    log.info("pod %s/%s removed from the store; tearing down", st.namespace, st.name)
                    self.teardown(uid, grace=0)
                for key in [k for k in self.inflight if k[0] == uid]:
                    self.inflight.pop(key, None)

    def shutdown(self) -> None:
        """Stop the probe workers (pods keep running: they are detached from the agent)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
