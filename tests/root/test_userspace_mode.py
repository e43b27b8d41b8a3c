"""Issue 5 acceptance for the userspace proxy mode on a real 2-node lab: many concurrent connections
through one Service keep their data intact, and half-closed connections work through the netfilter
redirect to the agent's socket."""

from __future__ import annotations

import json
import sys

import pytest

from tests.root.labkit import Lab, unique_name
from tests.root.svckit import py_in_pod, py_outside

pytestmark = pytest.mark.root

# Port 9000 echoes (half-close passed on); port 9001 answers only after the client's EOF.
SERVER = r"""
import hashlib, socket, threading
def echo(c):
    try:
        while (d := c.recv(65536)):
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        c.close()
def digest(c):
    try:
        h, n = hashlib.sha256(), 0
        while (d := c.recv(65536)):
            h.update(d); n += len(d)
        c.sendall(f"{h.hexdigest()} {n}\n".encode() + b"z" * 300000)
    except OSError:
        pass
    finally:
        c.close()
def serve(port, fn):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(512)
    while True:
        threading.Thread(target=fn, args=(s.accept()[0],), daemon=True).start()
threading.Thread(target=serve, args=(9001, digest), daemon=True).start()
serve(9000, echo)
"""

# N concurrent connections, each with its own random payload; prints how many came back intact.
MANY = r"""
import asyncio, hashlib, json, random, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def one(i):
    rnd = random.Random(i)
    payload = rnd.randbytes(rnd.randint(64 * 1024, 256 * 1024))
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
    async def send():
        for off in range(0, len(payload), 65536):
            w.write(payload[off:off + 65536]); await w.drain()
        w.write_eof()
    sender = asyncio.ensure_future(send())
    got = await asyncio.wait_for(r.read(), 120)
    await sender
    w.close()
    return hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
async def main():
    res = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    print(json.dumps({"intact": sum(r is True for r in res), "corrupt": sum(r is False for r in res),
                      "errors": [repr(r) for r in res if isinstance(r, BaseException)][:5]}))
asyncio.run(main())
"""

HALF_CLOSE = r"""
import hashlib, random, socket, sys
payload = random.Random(7).randbytes(500000)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
buf = b""
while (d := s.recv(65536)):
    buf += d
head, _, bulk = buf.partition(b"\n")
digest, n = head.decode().split()
print("ok" if digest == hashlib.sha256(payload).hexdigest() and int(n) == len(payload)
      and bulk == b"z" * 300000 else f"bad {head!r} {len(bulk)}")
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = Lab(unique_name("u"), tmp_path_factory.mktemp("state"), nodes=2, proxy_mode="userspace")
    try:
        lab.up()
        lab.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers:
      - name: echo
        image: busybox
        command: [{json.dumps(sys.executable)}, "-c", {json.dumps(SERVER)}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  type: NodePort
  selector: {{app: echo}}
  ports:
  - {{name: echo, port: 9000}}
  - {{name: digest, port: 9001}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  containers:
  - {{name: c, image: busybox, command: ["sleep", "infinity"]}}
""")
        lab.ready_pods("app=echo", 3)
        lab.wait_for("client ready", lambda: any(p["metadata"]["name"] == "client" and p["status"].get("podIP")
                                                  for p in lab.pods()))
        lab.wait_for("3 endpoints", lambda: len([a for s in lab.get_json("endpoints", "echo").get("subsets") or []
                                                 for a in s.get("addresses") or []]) == 3)
        yield lab
    finally:
        lab.down()


def vip(lab: Lab) -> str:
    return lab.get_json("svc", "echo")["spec"]["clusterIP"]


def until_served(lab: Lab, run) -> dict:
    """Endpoints reach the store before every node's proxy has its portals: poll, never sleep."""
    def served() -> dict | None:
        res = json.loads(run("1").strip().splitlines()[-1])
        return res if res["intact"] == 1 else None

    return lab.wait_for("echo served", served, timeout=30)


def test_redirect_rules_point_at_the_agents_socket(lab: Lab) -> None:
    ip = vip(lab)
    out = lab.node_exec("node1", "iptables-legacy", "-t", "nat", "-S", "KUBE-PORTALS-CONTAINER").stdout
    line = lab.wait_for("redirect rule", lambda: next(
        (ln for ln in lab.node_exec("node1", "iptables-legacy", "-t", "nat", "-S", "KUBE-PORTALS-CONTAINER")
         .stdout.splitlines() if f"-d {ip}/32" in ln and "--dport 9000" in ln), None), timeout=20)
    assert "-j REDIRECT --to-ports" in line, out
    port = line.split()[-1]
    listening = lab.node_exec("node1", "ss", "-ltnH", f"sport = :{port}").stdout
    assert f":{port}" in listening, listening  # the agent itself listens there


def test_200_concurrent_connections_from_a_pod_keep_their_data(lab: Lab) -> None:
    ip = vip(lab)
    until_served(lab, lambda n: py_in_pod(lab, "client", MANY, ip, "9000", n))
    res = json.loads(py_in_pod(lab, "client", MANY, ip, "9000", "200", timeout=300).strip().splitlines()[-1])
    assert res == {"intact": 200, "corrupt": 0, "errors": []}, res


def test_concurrent_connections_from_outside_through_a_nodeport(lab: Lab) -> None:
    np = next(p["nodePort"] for p in lab.get_json("svc", "echo")["spec"]["ports"] if p["name"] == "echo")
    until_served(lab, lambda n: py_outside(lab, MANY, "192.168.56.12", str(np), n))
    res = json.loads(py_outside(lab, MANY, "192.168.56.12", str(np), "100", timeout=300).strip().splitlines()[-1])
    assert res == {"intact": 100, "corrupt": 0, "errors": []}, res


def test_half_closed_connection_is_delivered(lab: Lab) -> None:
    ip = vip(lab)
    until_served(lab, lambda n: py_in_pod(lab, "client", MANY, ip, "9000", n))
    for target in (ip, "192.168.56.11"):
        port = "9001"
        if target != ip:
            port = str(next(p["nodePort"] for p in lab.get_json("svc", "echo")["spec"]["ports"]
                            if p["name"] == "digest"))
        out = py_in_pod(lab, "client", HALF_CLOSE, target, port).strip()
        assert out == "ok", (target, out)


CLEANUP = "from netk8s.proxy.userspace import cleanup_rules; cleanup_rules(); cleanup_rules()"


def test_cleanup_removes_the_mode_and_a_full_sync_restores_it(lab: Lab) -> None:
    """What a mode switch runs (twice: it is idempotent); the agent's periodic full sync then repairs
    the rules it finds missing. Runs last: the lab's redirects are gone for a while."""
    lab.node_exec("node2", "iptables-legacy", "-t", "nat", "-N", "KEEP-ME")  # not ours: must survive
    lab.node_exec("node2", sys.executable, "-c", CLEANUP)
    saved = lab.node_exec("node2", "iptables-legacy-save").stdout
    assert "KUBE-PORTALS" not in saved and "KUBE-NODEPORT" not in saved, saved
    assert ":KEEP-ME" in saved
    lab.wait_for("rules restored by a full sync", lambda: "KUBE-PORTALS-CONTAINER" in lab.node_exec(
        "node2", "iptables-legacy-save", "-t", "nat").stdout, timeout=60, interval=1)
    ip = vip(lab)
    until_served(lab, lambda n: py_in_pod(lab, "client", MANY, ip, "9000", n))
