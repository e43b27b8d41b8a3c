"""Issue 10 parts 4 and 5 in a real lab: every component is a client of the lab's API server, which
listens on 192.168.56.10:6443 in the control-plane namespace and on 127.0.0.1:PORT on the host, with a
per-lab CA; anonymous requests get 401, the node credential cannot delete a Namespace, the kubeconfig
is 0600, and a kill -9 of the API server loses nothing while the components resume and converge."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
from pathlib import Path

import pytest
import urllib3
import yaml

from netk8s.errors import Forbidden
from netk8s.model.kinds import KINDS
from tests.root import manifests
from tests.root.labkit import Lab, is_ready, running, unique_name

pytestmark = pytest.mark.root


def apps(replicas: int) -> str:
    return manifests.docs(
        manifests.deployment("web", replicas, [manifests.container("nginx", image="nginx:1.25", http_port=80)]),
        manifests.service("web", ports=[{"port": 80, "targetPort": 80}]),
        manifests.client_pod(image="busybox:1.36"))


APPS = apps(2)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with running(Lab(unique_name("a"), tmp_path_factory.mktemp("state"), nodes=2, dns=True), APPS,
                 ready=[("app=web", 2)], pods=["client"]) as lab:
        yield lab


def _pid(lab: Lab, role: str) -> int:
    return int((lab.state_dir / lab.name / "pids" / f"{role}.pid").read_text())


def _cmdline(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def _anonymous(lab: Lab, path: str) -> tuple[int, dict]:
    """A request that trusts the lab's CA but presents no credential."""
    ctx = ssl.create_default_context(cafile=str(lab.state_dir / lab.name / "pki" / "ca.crt"))
    http = urllib3.PoolManager(ssl_context=ctx)
    try:
        resp = http.request("GET", lab.api_server + path, retries=False, timeout=10)
        return resp.status, json.loads(resp.data)
    finally:
        http.clear()


def _http(lab: Lab, pod: str, url: str) -> str:
    """The body a pod gets from `url` (busybox wget), or "" while it fails."""
    p = lab.exec(pod, "wget", "-qO-", "-T", "3", url, check=False, timeout=30)
    return p.stdout if p.returncode == 0 else ""


def test_only_the_api_server_opens_the_store_and_every_component_is_its_client(lab: Lab) -> None:
    store_db = str(lab.state_dir / lab.name / "store.db")
    api = _cmdline(_pid(lab, "apiserver"))
    assert api[api.index("--store") + 1] == f"sqlite://{store_db}"
    assert "127.0.0.1:" + str(lab.info()["api_port"]) in api
    assert f"nk8s-{lab.name}-cp=192.168.56.10:6443" in api
    roles = {"controller": "controller"} | {f"agent-node{i}": f"node-node{i}" for i in (1, 2)}
    for role, cred in roles.items():
        argv = _cmdline(_pid(lab, role))
        url = argv[argv.index("--store") + 1]
        assert url.startswith("https://192.168.56.10:6443?kubeconfig="), (role, url)
        assert url.endswith(f"kubeconfigs%2F{cred}.kubeconfig"), (role, url)
        assert store_db not in " ".join(argv)
    dns = lab.get_json("deployment", "kube-dns", "-n", "kube-system")
    args = dns["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--store") + 1].endswith("kubeconfigs%2Fviewer.kubeconfig")
    assert lab.info()["store"].startswith(f"https://127.0.0.1:{lab.info()['api_port']}?kubeconfig=")
    # the node agents really reach it on the underlay: a TLS handshake from a node namespace
    out = lab.node_exec("node1", "curl", "-s", "--cacert", str(lab.state_dir / lab.name / "pki" / "ca.crt"),
                        "https://192.168.56.10:6443/version").stdout
    assert json.loads(out)["kind"] == "Status" and json.loads(out)["code"] == 401


def test_requests_without_credentials_get_401(lab: Lab) -> None:
    for path in ("/api/v1/namespaces", "/api/v1/pods", "/version", "/apis/apps/v1/deployments"):
        code, body = _anonymous(lab, path)
        assert (code, body["kind"], body["reason"]) == (401, "Status", "Unauthorized"), path


def test_the_node_credential_cannot_delete_a_namespace(lab: Lab) -> None:
    node = lab.api_store("node-node1")
    try:
        assert node.get("Namespace", "", "default")["metadata"]["name"] == "default"  # may read
        with pytest.raises(Forbidden, match='User "system:node:node1" cannot delete resource "namespaces"'):
            node.delete("Namespace", "", "default")
    finally:
        node.close()
    ns = lab.get_json("namespace", "default")
    assert not ns["metadata"].get("deletionTimestamp")


def test_lab_writes_a_0600_kubeconfig_with_its_context_and_merges_it(lab: Lab, tmp_path: Path) -> None:
    path = lab.kubeconfig
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for key in (lab.state_dir / lab.name / "pki").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    context = f"netk8s-{lab.name}"
    printed = yaml.safe_load(lab.cli("lab", "kubeconfig").stdout)
    assert printed == yaml.safe_load(path.read_text())
    assert printed["current-context"] == context
    assert [c["name"] for c in printed["contexts"]] == [context]
    assert printed["clusters"][0]["cluster"]["server"] == lab.api_server
    target = tmp_path / "merged" / "config"
    target.parent.mkdir()
    target.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "other",
                                      "contexts": [{"name": "other", "context": {"cluster": "o", "user": "o"}}],
                                      "clusters": [{"name": "o", "cluster": {"server": "https://10.0.0.1"}}],
                                      "users": [{"name": "o", "user": {"token": "x"}}]}))
    lab.env["KUBECONFIG"] = str(target)
    try:
        out = lab.cli("lab", "kubeconfig", "--merge").stdout
    finally:
        del lab.env["KUBECONFIG"]
    assert context in out
    merged = yaml.safe_load(target.read_text())
    assert merged["current-context"] == context
    assert {c["name"] for c in merged["contexts"]} == {"other", context}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_service_created_through_the_api_is_served_from_a_pod(lab: Lab) -> None:
    store = lab.api_store()
    try:
        store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-api"},
                      "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 80}]}})
        ip = store.get("Service", "default", "web-api")["spec"]["clusterIP"]
    finally:
        store.close()
    for node in ("node1", "node2"):
        lab.wait_for(f"rules for web-api on {node}",
                     lambda n=node: ip in lab.node_exec(n, "iptables", "-t", "nat", "-S", "KUBE-SERVICES").stdout)
    body = lab.wait_for("web-api answering by IP", lambda: _http(lab, "client", f"http://{ip}:8080/"))
    assert "Welcome to nginx" in body
    body = lab.wait_for("web-api answering by name", lambda: _http(lab, "client", "http://web-api:8080/"))
    assert "Welcome to nginx" in body


def _snapshot(lab: Lab) -> dict[tuple[str, str, str], tuple[str, str]]:
    store = lab.api_store()
    try:
        out = {}
        for kind in KINDS:
            for obj in store.list(kind)[0]:
                meta = obj["metadata"]
                out[(kind, meta.get("namespace", ""), meta["name"])] = (meta["uid"], meta["resourceVersion"])
        return out
    finally:
        store.close()


def test_kill_9_of_the_api_server_loses_nothing_and_the_components_resume(lab: Lab) -> None:
    before = _snapshot(lab)
    old = _pid(lab, "apiserver")
    os.kill(old, signal.SIGKILL)
    lab.wait_for("the killed API server gone", lambda: not Path(f"/proc/{old}").exists()
                 or "zombie" in Path(f"/proc/{old}/status").read_text())
    assert "restarted" in lab.cli("lab", "restart", "apiserver").stdout
    assert _pid(lab, "apiserver") != old
    after = _snapshot(lab)
    lost = sorted(k for k in before if k not in after or after[k][0] != before[k][0])
    assert not lost, f"objects lost or replaced across the restart: {lost}"
    # every component resumes its watch: a change made now reaches the controller (pods), the agents
    # (pods started, rules programmed) and DNS (a new name)
    lab.apply(apps(3)
              + "---\napiVersion: v1\nkind: Service\nmetadata: {name: after}\n"
                "spec: {selector: {app: web}, ports: [{port: 81, targetPort: 80}]}\n")
    pods = lab.ready_pods("app=web", 3, timeout=90)
    assert {p["spec"]["nodeName"] for p in pods} <= {"node1", "node2"}
    def three_endpoints() -> dict | None:
        e = lab.get_json("endpoints", "after")
        return e if sum(len(s.get("addresses") or []) for s in e.get("subsets") or []) == 3 else None

    eps = lab.wait_for("3 endpoints for after", three_endpoints)
    assert eps["metadata"]["name"] == "after"
    body = lab.wait_for("the new Service answering by name", lambda: _http(lab, "client", "http://after:81/"))
    assert "Welcome to nginx" in body
    nodes = lab.get_json("nodes")["items"]
    assert len(nodes) == 2 and all(is_ready(n) for n in nodes)
