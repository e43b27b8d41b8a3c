"""Runs INSIDE a VM node (scripts/bench/vm.py sends it through the guest control server): the data plane through a ClusterIP.

* `setup '{"mode": "ipvs", "prefix": "nk8s-vmb-ipvs"}'` runs in a fresh node namespace of the guest's
  kernel: the node bridge and two pods wired with the agent's CNI code (netk8s.node.podnet), a server
  in the server pod (iperf3 -s and an HTTP server; Python stand-ins when iperf3/nginx are missing),
  then the agent's kernel proxier of MODE (netk8s.proxy.modes.kernel_proxier: its real renderer and
  applier) syncs one Service whose ClusterIP fronts the server pod. Prints JSON: the sync's seconds and
  the server PIDs (the driver stops them).
* `client '{"kind": "bulk"|"conn", "ip": ..., "seconds": ...}'` runs in the client pod: TCP throughput
  (iperf3 -c, one stream; or a Python bulk sender) or the short-connection rate (wrk -c16 with
  `Connection: close`; or a Python connect/request/close loop). Prints JSON {"value": ...}.
* `serve` is the Python server stand-in (bulk sink on BULK_PORT, HTTP on HTTP_PORT).
It refuses to run outside a netk8s guest: on the host it would wire the root namespace of whatever runs it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scripts.bench.common import nginx_argv, nginx_config

NODE = "node1"
NODE_IP = "192.168.56.11"
GATEWAY = "10.244.1.1"
SERVER_IP, CLIENT_IP = "10.244.1.10", "10.244.1.11"
CLUSTER_IP = "10.96.0.50"
BULK_PORT, HTTP_PORT = 5201, 8080
CHUNK = 1 << 20


def in_guest() -> bool:
    return "netk8s.guest=" in Path("/proc/cmdline").read_text()


def pod_names(prefix: str) -> tuple[str, str]:
    return f"{prefix}-srv", f"{prefix}-cli"


def objects() -> dict[str, list[dict]]:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench", "namespace": "vmb"},
           "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IP, "selector": {"app": "bench"},
                    "ports": [{"name": "bulk", "port": BULK_PORT, "protocol": "TCP", "targetPort": BULK_PORT},
                              {"name": "http", "port": HTTP_PORT, "protocol": "TCP", "targetPort": HTTP_PORT}]}}
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "bench-abcde", "namespace": "vmb", "labels": {"kubernetes.io/service-name": "bench"}},
           "addressType": "IPv4",
           "ports": [{"name": "bulk", "port": BULK_PORT, "protocol": "TCP"},
                     {"name": "http", "port": HTTP_PORT, "protocol": "TCP"}],
           "endpoints": [{"addresses": [SERVER_IP], "nodeName": NODE, "conditions": {"ready": True}}]}
    return {"Service": [svc], "EndpointSlice": [eps], "Node": []}


class Informer:
    def __init__(self, objs: dict[str, list[dict]]) -> None:
        self.objs, self.revision = objs, 1

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return self.objs.get(kind, [])


def _detach(argv: list[str]) -> int:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True).pid


def start_servers(server_ns: str, workdir: Path) -> tuple[list[int], dict[str, str]]:
    """The servers in the server pod; (PIDs, which tool serves what)."""
    pids, tools = [], {}
    ns = ["ip", "netns", "exec", server_ns]
    if shutil.which("iperf3"):
        pids.append(_detach([*ns, "iperf3", "-s", "-p", str(BULK_PORT)]))
        tools["bulk"] = "iperf3"
    if shutil.which("nginx"):
        pids.append(_detach([*ns, *nginx_argv(nginx_config(workdir / "nginx", HTTP_PORT))]))
        tools["conn"] = "nginx"
    if len(tools) < 2:
        pids.append(_detach([*ns, sys.executable, "-m", "scripts.bench.vm_worker", "serve",
                             json.dumps({"bulk": "bulk" not in tools, "http": "conn" not in tools})]))
        tools.setdefault("bulk", "python")
        tools.setdefault("conn", "python")
    return pids, tools


def wait_connect(client_ns: str, ip: str, port: int, deadline: float) -> None:
    probe = f"import socket; socket.create_connection(({ip!r}, {port}), 2).close()"
    while True:
        p = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", probe], capture_output=True,
                           text=True, check=False)
        if p.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{ip}:{port} not reachable from {client_ns}: {p.stderr.strip()[-300:]}")
        time.sleep(0.5)


def setup(opts: dict) -> dict:
    from netk8s.node import podnet
    from netk8s.proxy.model import NodeContext
    from netk8s.proxy.modes import kernel_proxier

    server_ns, client_ns = pod_names(opts["prefix"])
    workdir = Path(f"/tmp/{opts['prefix']}")
    workdir.mkdir(parents=True, exist_ok=True)
    podnet.ensure_node_bridge(None, f"{GATEWAY}/24", 1500)
    for ns, ip in ((server_ns, SERVER_IP), (client_ns, CLIENT_IP)):
        podnet.add(None, podnet.PodNetConfig(pod_netns=ns, pod_uid=ns, ip=ip, prefix_len=24, gateway=GATEWAY,
                                             mtu=1500))
    pids, tools = start_servers(server_ns, workdir)
    proxier = kernel_proxier(opts["mode"], NodeContext(node_name=NODE, node_ips=(NODE_IP,)), "rr")
    t = time.perf_counter()
    proxier.sync(Informer(objects()), [], time.monotonic())
    sync_s = time.perf_counter() - t
    st = proxier.last_sync_stats
    if not getattr(st, "ok", False):
        raise SystemExit(f"sync failed: {getattr(st, 'error', None)}")
    deadline = time.monotonic() + 120
    for ip in (SERVER_IP, CLUSTER_IP):
        for port in (BULK_PORT, HTTP_PORT):
            wait_connect(client_ns, ip, port, deadline)
    return {"sync_s": sync_s, "pids": pids, "tools": tools, "server_ns": server_ns, "client_ns": client_ns}


# ------------------------------------------------------------------------------------------ clients
def bulk(ip: str, seconds: float) -> float:
    """Bits per second the receiver got: iperf3 (one stream) or a Python sender of 1 MiB writes."""
    if shutil.which("iperf3"):
        p = subprocess.run(["iperf3", "-c", ip, "-p", str(BULK_PORT), "-t", str(int(seconds)), "-J"],
                           capture_output=True, text=True, timeout=seconds + 60, check=False)
        try:
            return float(json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"])
        except (ValueError, KeyError) as exc:
            raise SystemExit(f"iperf3: {(p.stdout + p.stderr).strip()[-300:]}") from exc
    buf = b"\0" * CHUNK
    with socket.create_connection((ip, BULK_PORT), 10) as s:
        sent, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            s.sendall(buf)
            sent += CHUNK
        s.shutdown(socket.SHUT_WR)
        got = int(s.makefile().readline() or 0)  # the sink answers with the bytes it read, at EOF
        dt = time.perf_counter() - t0
    return got * 8 / dt if got else sent * 8 / dt


def conn(ip: str, seconds: float) -> float:
    """New connections per second, one request each: wrk -t1 -c16 `Connection: close`, or a Python loop."""
    url = f"http://{ip}:{HTTP_PORT}/"
    if shutil.which("wrk"):
        p = subprocess.run(["wrk", "-t1", "-c16", f"-d{int(seconds)}s", "-H", "Connection: close", url],
                           capture_output=True, text=True, timeout=seconds + 60, check=False)
        m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
        if not m:
            raise SystemExit(f"wrk: {(p.stdout + p.stderr).strip()[-300:]}")
        return float(m.group(1))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        with socket.create_connection((ip, HTTP_PORT), 5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            while s.recv(4096):
                pass
        n += 1
    return n / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------ server
def _sink(c: socket.socket) -> None:
    with c:
        n = 0
        while data := c.recv(CHUNK):
            n += len(data)
        c.sendall(f"{n}\n".encode())


def _http(c: socket.socket) -> None:
    with c:
        c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")


def _listen(port: int, handle: Any, threaded: bool) -> None:
    srv = socket.create_server(("0.0.0.0", port), backlog=128, reuse_port=True)
    while True:
        c, _ = srv.accept()
        if threaded:
            threading.Thread(target=handle, args=(c,), daemon=True).start()
        else:
            handle(c)


def serve(opts: dict) -> None:
    threads = []
    if opts.get("bulk", True):
        threads.append(threading.Thread(target=_listen, args=(BULK_PORT, _sink, True), daemon=True))
    if opts.get("http", True):
        threads.append(threading.Thread(target=_listen, args=(HTTP_PORT, _http, False), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: list[str]) -> int:
    if not in_guest():
        print("scripts.bench.vm_worker: not a netk8s VM guest; refusing", file=sys.stderr)
        return 2
    cmd, opts = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    if cmd == "setup":
        print(json.dumps(setup(opts)))
    elif cmd == "client":
        fn = {"bulk": bulk, "conn": conn}[opts["kind"]]
        print(json.dumps({"value": fn(opts["ip"], float(opts["seconds"]))}))
    elif cmd == "serve":
        serve(opts)
    else:
        print(f"unknown command {cmd!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
