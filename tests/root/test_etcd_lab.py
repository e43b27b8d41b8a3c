"""Issue 12 acceptance (etcd): a lab whose API server keeps every object in etcd survives etcd stopping
for 10 s under a request loop, then converges and has lost no object; resourceVersion is etcd's
revision and compaction answers watches with 410 Gone.

One small lab (2 nodes, `--store etcd`) for the module. etcd is stopped by its PID and started again
with the same argv (netk8s.lab.manager.stop_etcd / start_etcd, what `netk8s lab restart etcd` does)."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from netk8s.lab import procs
from netk8s.model.kinds import KINDS
from tests.root import manifests
from tests.root.labkit import Lab, is_ready, running, unique_name
from tests.root.loadkit import RequestLoop
from tests.root.svckit import HTTP_COUNT, http_counts, py_in_pod

pytestmark = pytest.mark.root

OUTAGE_S = 10.0

ECHO_SERVER = (
    "import socket, threading\n"
    "srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "srv.bind(('0.0.0.0', 9000)); srv.listen(16)\n"
    "def serve(c):\n"
    "    while (d := c.recv(4096)):\n"
    "        c.sendall(d)\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()\n"
)

# One TCP connection through the echo Service's ClusterIP: `first` before the outage, `second` once the
# file argv[2] exists (after etcd is back). Pods are host processes, so the pod sees the test's files.
HELD_CONNECTION = (
    "import os, socket, sys, time\nend = time.monotonic() + 30\nwhile True:\n"
    "    s = socket.create_connection((sys.argv[1], 9000), timeout=5); s.sendall(b'first')\n"
    "    a = s.recv(100).decode()\n    if a or time.monotonic() > end:\n        break\n"
    "    s.close(); time.sleep(0.2)\n"
    "print(a, flush=True)\nend = time.monotonic() + 300\n"
    "while not os.path.exists(sys.argv[2]) and time.monotonic() < end:\n    time.sleep(0.1)\n"
    "s.sendall(b'second'); print(s.recv(100).decode(), flush=True)\n"
)

MANIFEST = manifests.docs(
    manifests.netexec_backend("web", 2, grace_s=5, pre_stop_s=None),
    manifests.service("web"),
    f"""apiVersion: v1
kind: Pod
metadata: {{name: echo, labels: {{app: echo}}}}
spec:
  containers:
  - name: echo
    image: busybox
    command: [{json.dumps(sys.executable)}, "-c", {json.dumps(ECHO_SERVER)}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{{port: 9000}}]
""",
    manifests.client_pod())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running(Lab(unique_name("e"), tmp_path_factory.mktemp("state"), nodes=2, store="etcd"),
                 MANIFEST, ready=[("app=web", 2)], pods=["client", "echo"]) as lab:
        yield lab


@contextmanager
def lab_state(lab: Lab) -> Iterator[Any]:
    """netk8s.lab.manager with this lab's state directory (it reads NETK8S_STATE_DIR)."""
    from netk8s.lab import manager

    old = os.environ.get("NETK8S_STATE_DIR")
    os.environ["NETK8S_STATE_DIR"] = str(lab.state_dir)
    try:
        yield manager
    finally:
        if old is None:
            del os.environ["NETK8S_STATE_DIR"]
        else:
            os.environ["NETK8S_STATE_DIR"] = old


def raw_request(lab: Lab, method: str, path: str, body: dict | None = None,
                timeout: float = 20) -> tuple[int, dict[str, str], Any]:
    """One request to the lab's API server with the admin credential and no client-side retry:
    (status, headers, decoded body)."""
    pki = lab.state_dir / lab.name / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", lab.info()["api_port"], context=ctx, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        if "watch=true" in path:  # the first event of the stream is enough
            return resp.status, dict(resp.headers), json.loads(resp.readline())
        return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    finally:
        conn.close()


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return [a.decode() for a in fh.read().split(b"\0") if a]


def objects(lab: Lab) -> dict[tuple[str, str, str], str]:
    """Every object the API serves: (kind, namespace, name) -> uid."""
    store = lab.api_store()
    try:
        out = {}
        for kind in KINDS:
            for obj in store.list(kind)[0]:
                meta = obj["metadata"]
                out[(kind, meta.get("namespace", ""), meta["name"])] = meta["uid"]
        return out
    finally:
        store.close()


def endpoint_ips(lab: Lab, name: str) -> list[str]:
    ep = lab.get_json("endpoints", name)
    return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])


def wait_endpoints(lab: Lab, name: str, count: int, timeout: float = 60) -> list[str]:
    def check() -> list[str] | None:
        ips = endpoint_ips(lab, name)
        return ips if len(ips) == count else None

    ips: list[str] = lab.wait_for(f"{count} endpoints of {name}", check, timeout)
    return ips


def rules_follow(lab: Lab, ips: list[str]) -> bool:
    """Every node's proxy rules (iptables mode) DNAT to exactly these web endpoints (port 8080)."""
    for i in range(1, lab.nodes + 1):
        nat = lab.node_exec(f"node{i}", "iptables-legacy-save", "-t", "nat").stdout
        dnat = sorted({word.split(":")[0] for line in nat.splitlines() if "--to-destination" in line
                       for word in line.split() if word.endswith(":8080")})
        if dnat != ips:
            return False
    return True


def served_by(lab: Lab, vip: str, pods: set[str]) -> bool:
    res = http_counts(py_in_pod(lab, "client", HTTP_COUNT, f"http://{vip}/hostname", "60"))
    return res["failed"] == 0 and set(res["counts"]) == pods


def web_pods(lab: Lab) -> set[str]:
    return {p["metadata"]["name"] for p in lab.pods("app=web")}


def test_etcd_outage_keeps_traffic_then_converges_and_loses_nothing(lab: Lab) -> None:
    vip = lab.get_json("svc", "web")["spec"]["clusterIP"]
    echo_vip = lab.get_json("svc", "echo")["spec"]["clusterIP"]
    wait_endpoints(lab, "web", 2)
    wait_endpoints(lab, "echo", 1)
    lab.wait_for("web served by both pods", lambda: served_by(lab, vip, web_pods(lab)), timeout=60)
    before = objects(lab)

    back = lab.state_dir / "etcd-is-back"
    stop = lab.state_dir / "stop-loop"
    back.unlink(missing_ok=True)
    stop.unlink(missing_ok=True)
    conn = subprocess.Popen([sys.executable, "-m", "netk8s.cli.main", "exec", "client", "--", sys.executable, "-c",
                             HELD_CONNECTION, echo_vip, str(back)], env=lab.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    loop = RequestLoop(lab, "client", f"http://{vip}/hostname", stop, min_count=300)
    try:
        assert conn.stdout is not None
        first = conn.stdout.readline().strip()
        assert first == "first", f"the held connection carried no first message: {first!r}"
        loop.start()
        assert loop.answered.wait(60), f"the request loop never got an answer: {loop.failures[:3]} {loop.stderr}"
        with lab_state(lab) as manager:
            info = manager.load_lab(lab.name)
            pid = manager.read_pid(lab.name, "etcd")
            assert pid is not None and procs.alive(pid)
            argv = cmdline(pid)
            assert argv[0].endswith("etcd") and "--data-dir" in argv, argv
            manager.stop_etcd(lab.name)
            down_at = time.monotonic()
            assert not procs.alive(pid)
            # The API server answers at once, with kube-apiserver's Status for an unreachable store.
            t0 = time.monotonic()
            code, headers, body = raw_request(lab, "GET", "/api/v1/namespaces/default/pods")
            assert code == 500 and body["kind"] == "Status" and body["reason"] == "ServerTimeout", body
            assert headers.get("Retry-After") == "2" and body["details"]["retryAfterSeconds"] == 2, (headers, body)
            code, _, body = raw_request(lab, "POST", "/api/v1/namespaces/default/configmaps",
                                        {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "written-while-etcd-was-down"}})
            assert code == 500 and body["reason"] == "ServerTimeout", body
            assert time.monotonic() - t0 < OUTAGE_S / 2, "the API server took too long to answer"
            # the outage lasts OUTAGE_S (the scenario's length, not a wait for some state)
            time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
            assert loop.is_alive() and not loop.failures, loop.failures[:3]
            # started by a short-lived process, as `netk8s lab up` does (etcd must not be this test's child)
            start = "import sys; from netk8s.lab import manager; manager.start_etcd(manager.load_lab(sys.argv[1]))"
            subprocess.run([sys.executable, "-c", start, lab.name],
                           env=lab.env, check=True, timeout=120)
            new_pid = manager.read_pid(lab.name, "etcd")
            assert new_pid not in (None, pid) and procs.alive(new_pid)
            assert manager.load_lab(lab.name) == info and cmdline(new_pid) == argv  # the same command
        back.touch()
        out, err = conn.communicate(timeout=60)
        assert out.split() == ["second"], (out, err)  # the established connection carried on

        # A change after the outage: the controllers and agents follow it.
        lab.cli("scale", "deployment", "web", "--replicas", "3")
        lab.ready_pods("app=web", 3, timeout=120)
        ips = wait_endpoints(lab, "web", 3)
        lab.wait_for("every node's rules follow the endpoints", lambda: rules_follow(lab, ips), timeout=60)
        lab.wait_for("web served by all three pods", lambda: served_by(lab, vip, web_pods(lab)), timeout=60)
        nodes = lab.get_json("nodes")["items"]
        assert len(nodes) == 2 and all(is_ready(n) for n in nodes)
    finally:
        stop.touch()
        back.touch()
        if loop.ident is not None:
            loop.join(timeout=300)
        if conn.poll() is None:
            conn.kill()
            conn.communicate()
    loop.check(min_ok=300)  # not one request through the ClusterIP failed, across the outage

    after = objects(lab)
    lost = {k: uid for k, uid in before.items() if after.get(k) != uid}
    assert not lost, f"objects lost or replaced across the etcd outage: {lost}"
    assert ("ConfigMap", "default", "written-while-etcd-was-down") not in after  # refused means not applied


def test_resource_version_is_etcd_revision_and_compaction_is_410(lab: Lab) -> None:
    from netk8s.store.factory import open_store

    etcd = open_store(lab.info()["backend"])  # the API server's own store (root, in the cp namespace)
    api = lab.api_store()
    try:
        svc = api.get("Service", "default", "web")
        stored = etcd.try_get("Service", "default", "web")
        assert stored is not None and svc["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
        assert svc["metadata"]["uid"] == stored["metadata"]["uid"]
        _, listed = api.list("Service")
        assert 0 < listed <= etcd.revision()
        old = int(api.create({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "before-compaction"}})["metadata"]["resourceVersion"])
        for i in range(2):
            api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"after-{i}"}})
        head = etcd.revision()
        assert head > old + 1
        etcd.compact(head)
        code, _, event = raw_request(lab, "GET", f"/api/v1/namespaces/default/configmaps?watch=true"
                                                 f"&resourceVersion={old}")
        assert code == 200 and event["type"] == "ERROR", event
        assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired", event
        # from the head the watch is served (no 410)
        api.delete("ConfigMap", "default", "after-0")
        code, _, event = raw_request(lab, "GET", f"/api/v1/namespaces/default/configmaps?watch=true"
                                                 f"&resourceVersion={head}")
        assert event["type"] == "DELETED" and event["object"]["metadata"]["name"] == "after-0", event
        for name in ("before-compaction", "after-1"):
            api.delete("ConfigMap", "default", name)
    finally:
        api.close()
        etcd.close()
    # `netk8s lab restart etcd`: a new process, the same data
    before = (lab.state_dir / lab.name / "pids" / "etcd.pid").read_text()
    out = lab.cli("lab", "restart", "etcd").stdout
    after = (lab.state_dir / lab.name / "pids" / "etcd.pid").read_text()
    assert out.strip() == f"etcd restarted (pid {after})" and after != before
    assert f"etcd             pid {after}  running" in lab.cli("lab", "status").stdout
    # the components relist past the compaction (410 -> list again) and keep converging
    lab.cli("scale", "deployment", "web", "--replicas", "1")
    lab.ready_pods("app=web", 1, timeout=120)
    ips = wait_endpoints(lab, "web", 1)
    lab.wait_for("every node's rules follow the endpoints", lambda: rules_follow(lab, ips), timeout=60)
