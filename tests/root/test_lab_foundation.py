"""Issue 2 acceptance, on a real 3-node lab: pods, IP per pod without NAT, overlay, controllers, restarts."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.root.labkit import REPO, Lab, is_ready, unique_name

pytestmark = pytest.mark.root

NGINX_DEPLOYMENT = (REPO / "examples" / "nginx-deployment.yaml").read_text()

CLIENT_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: {node}
  containers:
  - name: c
    image: busybox
    command: ["sleep", "infinity"]
"""

TWO_CONTAINERS = """
apiVersion: v1
kind: Pod
metadata:
  name: duo
spec:
  containers:
  - name: web
    image: nginx
    ports:
    - containerPort: 8080
  - name: sidecar
    image: busybox
    command: ["sh", "-c", "while true; do wget -qO- http://localhost:8080/ && exit 0; sleep 0.2; done; "]
  restartPolicy: OnFailure
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = Lab(unique_name("f"), tmp_path_factory.mktemp("state"), nodes=3, overlay="vxlan")
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def test_nginx_deployment_three_ready_pods_on_two_nodes(lab: Lab) -> None:
    out = lab.apply(NGINX_DEPLOYMENT)
    assert "deployment.apps/nginx-deployment created" in out
    pods = lab.ready_pods("app=nginx", 3)
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert len(nodes) >= 2, nodes
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 3
    table = lab.cli("get", "pods", "-o", "wide").stdout
    for p in pods:
        assert p["metadata"]["name"] in table and p["status"]["podIP"] in table


def test_cross_node_pod_to_pod_without_nat(lab: Lab) -> None:
    pods = lab.ready_pods("app=nginx", 3)
    server = pods[0]
    other_node = next(n for n in ("node1", "node2", "node3") if n != server["spec"]["nodeName"])
    lab.apply(CLIENT_POD.format(node=other_node))
    client = lab.wait_for("client ready", lambda: next((p for p in lab.pods() if p["metadata"]["name"] == "client"
                                                        and is_ready(p)), None))
    assert client["spec"]["nodeName"] != server["spec"]["nodeName"]
    page = lab.exec("client", "wget", "-qO-", f"http://{server['status']['podIP']}/").stdout
    assert "Welcome to nginx!" in page
    # The server saw the client's own pod IP: no NAT between pods.
    client_ip = client["status"]["podIP"]
    lab.wait_for("access log line", lambda: client_ip in lab.cli("logs", server["metadata"]["name"]).stdout)
    # The pod's IP inside the pod equals what `get -o wide` shows.
    inside = lab.exec("client", "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert f"inet {client_ip}/24" in inside
    assert client_ip in lab.cli("get", "pod", "client", "-o", "wide").stdout
    # hostname is the pod name (own UTS namespace)
    assert lab.exec("client", "hostname").stdout.strip() == "client"


def test_node_reaches_its_pods(lab: Lab) -> None:
    pods = lab.ready_pods("app=nginx", 3)
    for p in pods:
        out = lab.node_exec(p["spec"]["nodeName"], "curl", "-s", "-m", "5", f"http://{p['status']['podIP']}/").stdout
        assert "Welcome to nginx!" in out


def test_two_containers_share_localhost(lab: Lab) -> None:
    lab.apply(TWO_CONTAINERS)
    lab.wait_for("sidecar fetched the page over localhost",
                 lambda: "Welcome to nginx!" in lab.cli("logs", "duo", "-c", "sidecar", check=False).stdout)
    lab.cli("delete", "pod", "duo", "--grace-period", "1")


def test_deleted_pod_is_replaced_with_new_name(lab: Lab) -> None:
    before = {p["metadata"]["name"] for p in lab.ready_pods("app=nginx", 3)}
    victim = min(before)
    lab.cli("delete", "pod", victim)
    after = lab.ready_pods("app=nginx", 3)
    names = {p["metadata"]["name"] for p in after}
    assert victim not in names and len(names - before) == 1


def sandbox_and_container_pids(lab: Lab, pod: dict) -> tuple[int, int]:
    import json

    root = lab.state_dir / lab.name / "nodes" / pod["spec"]["nodeName"] / "pods" / pod["metadata"]["uid"] / "pids"
    files = {f.stem: json.loads(f.read_text())["pid"] for f in root.glob("*.json")}
    container = files[pod["spec"]["containers"][0]["name"]]
    sandbox = next(v for k, v in files.items() if k != pod["spec"]["containers"][0]["name"])
    return sandbox, container


def test_killed_container_restarts_and_killed_sandbox_yields_new_pod(lab: Lab) -> None:
    pods = lab.ready_pods("app=nginx", 3)
    pod = pods[0]
    sandbox, container = sandbox_and_container_pids(lab, pod)
    os.kill(container, signal.SIGKILL)  # a process we started (through the lab), by PID

    def restarted() -> bool:
        p = next((x for x in lab.pods("app=nginx") if x["metadata"]["uid"] == pod["metadata"]["uid"]), None)
        return bool(p and p["status"]["containerStatuses"][0]["restartCount"] >= 1 and is_ready(p))

    lab.wait_for("container restarted", restarted, timeout=30)
    os.kill(sandbox, signal.SIGKILL)
    lab.wait_for("replacement pod", lambda: pod["metadata"]["name"] not in
                 {p["metadata"]["name"] for p in lab.ready_pods("app=nginx", 3, timeout=60)}, timeout=60)


def test_scale_converges_and_ips_reused_without_collision(lab: Lab) -> None:
    lab.cli("scale", "deployment", "nginx-deployment", "--replicas", "5")
    five = lab.ready_pods("app=nginx", 5)
    assert len({p["status"]["podIP"] for p in five}) == 5
    lab.cli("scale", "deployment", "nginx-deployment", "--replicas", "1")
    one = lab.ready_pods("app=nginx", 1)
    lab.wait_for("terminated pods gone", lambda: len(lab.pods("app=nginx")) == 1)
    lab.cli("scale", "deployment", "nginx-deployment", "--replicas", "5")
    again = lab.ready_pods("app=nginx", 5)
    ips = [p["status"]["podIP"] for p in again]
    assert len(set(ips)) == 5
    # released addresses were handed out again (lowest free first), never twice at once
    all_ips = [p["status"]["podIP"] for p in lab.pods()]
    assert len(all_ips) == len(set(all_ips))
    assert set(ips) & {p["status"]["podIP"] for p in five}
    assert one[0]["status"]["podIP"] in ips
    lab.cli("scale", "deployment", "nginx-deployment", "--replicas", "3")
    lab.ready_pods("app=nginx", 3)


STATEFULSET = """
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: sts
  ports:
  - port: 80
    name: web
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: sts
  template:
    metadata:
      labels:
        app: sts
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
"""


def test_statefulset_ordinal_names_in_order(lab: Lab) -> None:
    lab.apply(STATEFULSET)
    pods = lab.ready_pods("app=sts", 3, timeout=90)
    assert sorted(p["metadata"]["name"] for p in pods) == ["web-0", "web-1", "web-2"]
    created = {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in pods}
    started = {p["metadata"]["name"]: p["status"]["startTime"] for p in pods}
    assert created["web-0"] <= created["web-1"] <= created["web-2"]
    assert started["web-0"] <= started["web-1"] <= started["web-2"]
    assert lab.exec("web-1", "hostname").stdout.strip() == "web-1"
    hosts = lab.exec("web-1", "cat", "/etc/hosts").stdout
    assert "web-1.web.default.svc.cluster.local" in hosts
    lab.cli("delete", "statefulset", "web")
    lab.wait_for("statefulset pods gone", lambda: not lab.pods("app=sts"), timeout=60)


def test_agent_restart_adopts_running_pods(lab: Lab) -> None:
    pods = lab.ready_pods("app=nginx", 3)
    node = pods[0]["spec"]["nodeName"]
    mine = [p for p in pods if p["spec"]["nodeName"] == node]
    pids_before = {p["metadata"]["uid"]: sandbox_and_container_pids(lab, p) for p in mine}
    restarts_before = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"] for p in mine}
    pidfile = lab.state_dir / lab.name / "pids" / f"agent-{node}.pid"
    agent = int(pidfile.read_text())
    os.kill(agent, signal.SIGKILL)
    lab.wait_for("agent gone", lambda: not Path(f"/proc/{agent}").exists() or
                 Path(f"/proc/{agent}/stat").read_text().split(") ")[1][0] == "Z", timeout=10)
    from netk8s.lab import manager

    os.environ["NETK8S_STATE_DIR"] = str(lab.state_dir)
    try:
        manager.start_agent(manager.load_lab(lab.name), int(node.removeprefix("node")))
    finally:
        del os.environ["NETK8S_STATE_DIR"]
    time.sleep(2)  # let the new agent run several sync rounds before we compare
    after = lab.ready_pods("app=nginx", 3)
    for p in after:
        if p["metadata"]["uid"] in pids_before:
            assert sandbox_and_container_pids(lab, p) == pids_before[p["metadata"]["uid"]]
            assert p["status"]["containerStatuses"][0]["restartCount"] == restarts_before[p["metadata"]["uid"]]
    assert {p["metadata"]["uid"] for p in after} >= set(pids_before)
    page = lab.node_exec(node, "curl", "-s", "-m", "5", f"http://{mine[0]['status']['podIP']}/").stdout
    assert "Welcome to nginx!" in page


def test_controller_restart_loses_nothing(lab: Lab) -> None:
    before = {(o["kind"], o["metadata"]["name"], o["metadata"]["uid"])
              for kind in ("deployments", "replicasets", "pods", "nodes") for o in lab.get_json(kind)["items"]}
    pidfile = lab.state_dir / lab.name / "pids" / "controller.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    from netk8s.lab import manager

    os.environ["NETK8S_STATE_DIR"] = str(lab.state_dir)
    try:
        manager.start_controller(manager.load_lab(lab.name))
    finally:
        del os.environ["NETK8S_STATE_DIR"]
    after = {(o["kind"], o["metadata"]["name"], o["metadata"]["uid"])
             for kind in ("deployments", "replicasets", "pods", "nodes") for o in lab.get_json(kind)["items"]}
    assert before == after
    lab.cli("scale", "deployment", "nginx-deployment", "--replicas", "4")
    lab.ready_pods("app=nginx", 4)
    lab.cli("scale", "deployment", "nginx-deployment", "--replicas", "3")
    lab.ready_pods("app=nginx", 3)


def test_unsupported_image_is_a_pod_error(lab: Lab) -> None:
    lab.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: redis\nspec:\n  containers:\n"
              "  - name: r\n    image: redis:7\n")
    lab.wait_for("ImageUnsupported status",
                 lambda: "ImageUnsupported" in lab.cli("get", "pod", "redis").stdout)
    assert "not supported" in lab.cli("describe", "pod", "redis").stdout
    lab.cli("delete", "pod", "redis", "--grace-period", "0")
