"""The node agent's pure parts: pod status from PodState, the Node object and heartbeat, overlay peers."""

from __future__ import annotations

from pathlib import Path

import pytest

from netk8s.node import registration
from netk8s.node.agent import NodeAgent, overlay_peers
from netk8s.node.agentconfig import AgentConfig
from netk8s.node.status import ContainerState, PodState, pod_status, rfc3339, write_status
from netk8s.store.memory import MemoryStore

NOW = 1_700_000_000.0
POD = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
       "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}}


def state(**containers: ContainerState) -> PodState:
    return PodState("u1", "default", "web", "10.244.1.5", "nk8s-x", NOW - 60, containers=dict(containers))


def conditions(status: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


@pytest.mark.parametrize(
    ("a", "b", "phase", "ready"),
    [
        (ContainerState("a"), ContainerState("b"), "Pending", "False"),
        (ContainerState("a", running=True, ready=True, started_at=NOW), ContainerState("b"), "Running", "False"),
        (ContainerState("a", running=True, ready=True, started_at=NOW),
         ContainerState("b", running=True, ready=True, started_at=NOW), "Running", "True"),
        (ContainerState("a", running=True, ready=False, started_at=NOW),
         ContainerState("b", running=True, ready=True, started_at=NOW), "Running", "False"),
        (ContainerState("a", last_exit=0, terminated_at=NOW), ContainerState("b", last_exit=0, terminated_at=NOW),
         "Succeeded", "False"),
        (ContainerState("a", last_exit=0, terminated_at=NOW), ContainerState("b", last_exit=2, terminated_at=NOW),
         "Failed", "False"),
        (ContainerState("a", waiting_reason="ImageUnsupported", waiting_message="no"),
         ContainerState("b", last_exit=0, terminated_at=NOW), "Pending", "False"),
    ],
    ids=["creating", "one-running", "all-ready", "one-unready", "succeeded", "failed", "waiting"],
)
def test_phase_and_ready(a: ContainerState, b: ContainerState, phase: str, ready: str) -> None:
    status = pod_status(POD, state(a=a, b=b), "192.168.56.11", NOW)
    assert status["phase"] == phase
    assert conditions(status)["Ready"] == ready
    assert status["hostIP"] == "192.168.56.11" and status["podIP"] == "10.244.1.5"
    assert status["startTime"] == rfc3339(NOW - 60)


def test_container_states_and_sandbox_death() -> None:
    st = state(a=ContainerState("a", running=True, started_at=NOW, restart_count=2),
               b=ContainerState("b", waiting_reason="CrashLoopBackOff", waiting_message="back-off 10s"))
    status = pod_status(POD, st, "192.168.56.11", NOW)
    a, b = status["containerStatuses"]
    assert a["state"] == {"running": {"startedAt": rfc3339(NOW)}} and a["restartCount"] == 2
    assert b["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    st.failed_reason, st.failed_message = "SandboxDied", "the pod sandbox process exited"
    failed = pod_status(POD, st, "192.168.56.11", NOW)
    assert (failed["phase"], failed["reason"]) == ("Failed", "SandboxDied")


def test_transition_time_kept_while_the_condition_holds() -> None:
    running = ContainerState("a", running=True, ready=True, started_at=NOW)
    st = state(a=running, b=ContainerState("b", running=True, ready=True, started_at=NOW))
    first = pod_status(POD, st, "192.168.56.11", NOW)
    later = pod_status({**POD, "status": first}, st, "192.168.56.11", NOW + 30)
    ready = next(c for c in later["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == rfc3339(NOW)
    running.ready = False
    flipped = pod_status({**POD, "status": later}, st, "192.168.56.11", NOW + 40)
    assert next(c for c in flipped["conditions"] if c["type"] == "Ready")["lastTransitionTime"] == rfc3339(NOW + 40)


def test_write_status_only_when_changed_and_only_same_uid() -> None:
    store = MemoryStore()
    store.create({"apiVersion": "v1", "kind": "Pod", **POD})
    pod = store.get("Pod", "default", "web")  # the store gives the pod its own uid
    st = state(a=ContainerState("a"), b=ContainerState("b"))
    st.uid = pod["metadata"]["uid"]
    write_status(store, pod, st, "192.168.56.11", NOW)
    rev = store.get("Pod", "default", "web")["metadata"]["resourceVersion"]
    assert store.get("Pod", "default", "web")["status"]["phase"] == "Pending"
    write_status(store, pod, st, "192.168.56.11", NOW)  # unchanged: no write
    assert store.get("Pod", "default", "web")["metadata"]["resourceVersion"] == rev
    other = PodState("u2", "default", "web", "10.244.1.6", "nk8s-y", NOW, containers={"a": ContainerState("a")})
    write_status(store, pod, other, "192.168.56.11", NOW)  # a different pod of the same name: untouched
    assert store.get("Pod", "default", "web")["status"]["podIP"] == "10.244.1.5"


def test_register_and_heartbeat_keep_transition_time() -> None:
    store = MemoryStore()
    registration.register(store, "node1", "192.168.56.11", "10.244.1.0/24", NOW)
    node = store.get("Node", "", "node1")
    assert node["spec"]["podCIDR"] == "10.244.1.0/24"
    assert node["metadata"]["annotations"][registration.PUBLIC_IP_ANNOTATION] == "192.168.56.11"
    registration.heartbeat(store, "node1", "192.168.56.11", None, NOW + 10)
    ready = next(c for c in store.get("Node", "", "node1")["status"]["conditions"] if c["type"] == "Ready")
    assert ready["lastHeartbeatTime"] == rfc3339(NOW + 10) and ready["lastTransitionTime"] == rfc3339(NOW)
    store.delete("Node", "", "node1")
    registration.heartbeat(store, "node1", "192.168.56.11", None, NOW + 20)  # vanished: registers again
    assert store.get("Node", "", "node1")["status"]["addresses"][0]["address"] == "192.168.56.11"


def test_overlay_peers_read_vtep_annotations() -> None:
    store = MemoryStore()
    registration.register(store, "node1", "192.168.56.11", "10.244.1.0/24", NOW)
    registration.register(store, "node2", "192.168.56.12", None, NOW)  # no podCIDR yet: not a peer
    registration.publish_vtep(store, "node1", "0a:58:0a:f4:01:00")
    nodes, _ = store.list("Node")
    peers = overlay_peers(nodes)
    assert [(p.name, p.ip, p.pod_cidr, p.vtep_mac) for p in peers] == [
        ("node1", "192.168.56.11", "10.244.1.0/24", "0a:58:0a:f4:01:00")]


def test_agent_finds_its_pods_by_name(tmp_path: Path) -> None:
    agent = NodeAgent(MemoryStore(), AgentConfig(lab="t", node="node1", node_ip="192.168.56.11", state_dir=tmp_path))
    try:
        st = state(a=ContainerState("a"))
        agent.pods[st.uid] = st
        assert agent.lifecycle.find("default", "web") is st
        assert agent.lifecycle.find("other", "web") is None
    finally:
        agent.lifecycle.shutdown()
