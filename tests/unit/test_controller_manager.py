"""The controller loop against a real MemoryStore in a thread, and the `python -m netk8s.controller` entry."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netk8s.controller.manager import run_controller
from netk8s.controller.reconcile import FuncReconciler, rfc3339
from netk8s.model.ipam import POD_IP_ANNOTATION
from netk8s.store.base import Op
from netk8s.store.memory import MemoryStore

REPO = Path(__file__).resolve().parents[2]


def wait_for(what: str, fn: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ready_node(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
                       "conditions": [{"type": "Ready", "status": "True",
                                       "lastHeartbeatTime": rfc3339(time.time())}]}}


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}


@pytest.fixture
def running() -> Iterator[tuple[MemoryStore, list[BaseException]]]:
    store = MemoryStore()
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_controller(store, stop, resync=0.3)
        except Exception as exc:  # surfaced by the test (errors list), not swallowed
            errors.append(exc)
            raise

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield store, errors
    finally:
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive(), "controller did not stop"
        store.close()


def test_deployment_gets_scheduled_pods_with_distinct_ips(running: tuple[MemoryStore, list]) -> None:
    store, errors = running
    store.create(ready_node("node1"))
    store.create(ready_node("node2"))
    store.create(deployment(3))

    def placed() -> bool:
        pods, _ = store.list("Pod", "default")
        return len(pods) == 3 and all(p["spec"].get("nodeName") and
                                      (p["metadata"].get("annotations") or {}).get(POD_IP_ANNOTATION)
                                      for p in pods)
    wait_for("3 scheduled pods with IPs", placed)
    pods, _ = store.list("Pod", "default")
    ips = [p["metadata"]["annotations"][POD_IP_ANNOTATION] for p in pods]
    assert len(set(ips)) == 3
    nodes = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in store.list("Node")[0]}
    assert sorted(nodes.values()) == ["10.244.1.0/24", "10.244.2.0/24"]
    for p in pods:
        prefix = nodes[p["spec"]["nodeName"]].rsplit(".", 1)[0]
        assert p["metadata"]["annotations"][POD_IP_ANNOTATION].startswith(prefix + ".")
    assert {p["spec"]["nodeName"] for p in pods} == {"node1", "node2"}
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert store.get("Namespace", "", ns)["status"]["phase"] == "Active"
    # Level-triggered and idempotent: once converged, resync passes write nothing.
    wait_for("deployment status", lambda: store.get("Deployment", "default", "web")
             .get("status", {}).get("replicas") == 3)
    time.sleep(0.4)
    rev = store.revision()
    time.sleep(1.0)  # three resync periods
    assert store.revision() == rev
    assert not errors


def test_pluggable_reconcilers_and_races_are_survived() -> None:
    store = MemoryStore()
    stop = threading.Event()
    calls: list[int] = []

    def label_nodes(snapshot, now: float) -> list[Op]:  # type: ignore[no-untyped-def]
        calls.append(1)
        ops = []
        for node in snapshot.list("Node"):
            if "seen" not in (node["metadata"].get("labels") or {}):
                node["metadata"]["labels"] = {"seen": "yes"}
                ops.append(Op("update", node))
                stale = dict(node, metadata={**node["metadata"], "resourceVersion": "1"})
                ops.append(Op("update", stale))  # loses the race: Conflict, logged and skipped
        return ops

    thread = threading.Thread(target=run_controller, args=(store, stop),
                              kwargs={"resync": 0.2, "reconcilers": [FuncReconciler("labels", label_nodes)]},
                              daemon=True)
    thread.start()
    try:
        store.create(ready_node("node1"))
        wait_for("label", lambda: store.get("Node", "", "node1")["metadata"].get("labels") == {"seen": "yes"})
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert calls


@pytest.mark.integration
def test_python_m_controller_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    log = tmp_path / "controller.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "netk8s.controller", "--store", f"sqlite://{db}",
                                 "--log-level", "debug"], cwd=REPO, stdout=log_file, stderr=log_file)
    try:
        wait_for("controller started", lambda: "controller started" in log.read_text(), timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "controller stopped" in text
