"""Runs INSIDE a VM node (tests/root/test_vm.py sends it through the guest control server): pods and proxy syncs.

`python -m tests.root.vm_guest pods N` wires N pods on the guest's cbr0 with the agent's CNI code
(netk8s.node.podnet) and starts a tiny HTTP server in each (busybox httpd serving the pod's name);
`python -m tests.root.vm_guest sync MODE < objects.json` does what a node agent does at start in MODE
(netk8s.node.__main__.proxy_plugins: refuse a mode the kernel cannot run, clean up every other mode,
build the kernel proxier) and one sync of the Services and EndpointSlices on stdin, then prints the
sync's stats as JSON. It refuses to run outside a netk8s guest: on the host it would wire the root
namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

NODE = "node1"
NODE_IP = "192.168.56.11"
POD_CIDR_GW = "10.244.1.1"
PREFIX = "nk8s-vmt-p-"  # pod namespaces of this test (the guest's own kernel)


def pod_ip(i: int) -> str:
    return f"10.244.1.{10 + i}"


def pod_netns(i: int) -> str:
    return f"{PREFIX}{i}"


class Informer:
    """The agent's informer, holding the objects given on stdin."""

    def __init__(self, objs: dict[str, list[dict]]) -> None:
        self.objs = {"Service": objs.get("services", []), "EndpointSlice": objs.get("slices", []), "Node": []}
        self.revision = 1

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return self.objs.get(kind, [])


def pods(n: int) -> dict:
    from netk8s.node import podnet

    podnet.ensure_node_bridge(None, f"{POD_CIDR_GW}/24", 1500)
    out = {}
    for i in range(n):
        cfg = podnet.PodNetConfig(pod_netns=pod_netns(i), pod_uid=f"vmt-pod-{i}", ip=pod_ip(i), prefix_len=24,
                                  gateway=POD_CIDR_GW, mtu=1500)
        podnet.add(None, cfg)
        www = Path(f"/tmp/www-{i}")
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(f"pod-{i}\n")
        subprocess.Popen(["ip", "netns", "exec", cfg.pod_netns, "busybox", "httpd", "-f", "-p", "8080", "-h", str(www)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        out[cfg.pod_netns] = cfg.ip
    return out


def sync(mode: str, objs: dict) -> dict:
    from netk8s.node.__main__ import proxy_plugins

    (proxier,) = proxy_plugins(mode, SimpleNamespace(node=NODE, node_ip=NODE_IP))  # type: ignore[arg-type]
    proxier.sync(Informer(objs), [], time.monotonic())
    st = proxier.last_sync_stats
    proxier.close()
    return {"mode": proxier.mode, "ok": getattr(st, "ok", None), "error": getattr(st, "error", None),
            "rules": getattr(st, "rules", None)}


def main(argv: list[str]) -> int:
    if "netk8s.guest=" not in Path("/proc/cmdline").read_text():
        print("tests.root.vm_guest: not a netk8s VM guest; refusing", file=sys.stderr)
        return 2
    if argv[0] == "pods":
        print(json.dumps(pods(int(argv[1]))))
    elif argv[0] == "sync":
        out = sync(argv[1], json.loads(sys.stdin.read()))
        print(json.dumps(out))
        return 0 if out["ok"] else 1
    else:
        print(f"unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
