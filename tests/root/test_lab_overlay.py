"""Both overlays carry pod traffic across nodes; a capture on the underlay shows how (VXLAN vs routed)."""

from __future__ import annotations

import subprocess
import time

import pytest

from netk8s.model import naming
from tests.root.labkit import Lab, is_ready, unique_name

pytestmark = pytest.mark.root

PODS = """
apiVersion: v1
kind: Pod
metadata:
  name: server
  labels: {app: server}
spec:
  nodeName: node1
  containers:
  - name: web
    image: nginx
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: node2
  containers:
  - name: c
    image: busybox
    command: ["sleep", "infinity"]
"""


def capture(lab: Lab, bpf: str, count: int, trigger, timeout: float = 20, decode: list[str] | None = None) -> str:
    """tcpdump on the underlay switch bridge (inside the lab's switch namespace) while `trigger` runs."""
    argv = ["ip", "netns", "exec", naming.switch_netns(lab.name), "tcpdump", "-i", "br0", "-nn", "-l", "-v",
            *(decode or []), "-c", str(count), bpf]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 5
        # tcpdump prints "listening on br0" to stderr once the capture is armed
        line = proc.stderr.readline() if proc.stderr else ""
        assert "listening" in line or time.monotonic() < deadline, line
        trigger()
        out, _ = proc.communicate(timeout=timeout)
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("overlay", ["vxlan", "host-gw"])
def test_cross_node_traffic_per_overlay(overlay: str, tmp_path) -> None:
    lab = Lab(unique_name("o"), tmp_path, nodes=2, overlay=overlay)
    try:
        lab.up()
        lab.apply(PODS)
        def both_ready() -> list | None:
            ps = lab.pods()
            return ps if len(ps) == 2 and all(map(is_ready, ps)) else None

        pods = lab.wait_for("both pods ready", both_ready, timeout=60)
        ip = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
        fetch = lambda: lab.exec("client", "wget", "-qO-", f"http://{ip['server']}/")
        if overlay == "vxlan":
            # tcpdump calls UDP 8472 "OTV" by default; -T vxlan decodes it as VXLAN (RFC 7348)
            out = capture(lab, "udp port 8472", 2, fetch, decode=["-T", "vxlan"])
            assert "VXLAN" in out and "vni 1" in out, out
            assert ip["client"] in out and ip["server"] in out  # the inner packet is pod to pod
        else:
            out = capture(lab, "tcp port 80", 2, fetch)
            assert f"{ip['client']}." in out and f"{ip['server']}.80" in out, out
            assert "VXLAN" not in out
            routes = lab.node_exec("node2", "ip", "route").stdout
            assert "10.244.1.0/24 via 192.168.56.11 dev eth0" in routes, routes
        page = fetch().stdout
        assert "Welcome to nginx!" in page
        lab.wait_for("no NAT", lambda: ip["client"] in lab.cli("logs", "server").stdout)
    finally:
        lab.down()
