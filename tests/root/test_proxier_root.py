"""The iptables proxier against a real kernel: one namespace, real restore, canary repair, real traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netk8s.dataplane import netns
from netk8s.model import naming
from netk8s.proxy.model import build_state
from netk8s.proxy.rules_view import format_rules

pytestmark = pytest.mark.root

NS = f"{naming.NETNS_PREFIX}t{os.getpid()}-px"
ENDPOINTS = ("10.244.1.5", "10.244.1.6")

SERVICES = [{
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
    "spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}]},
}]
SLICES = [{
    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
    "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    "endpoints": [{"addresses": [ip], "nodeName": "node1", "conditions": {"ready": True}} for ip in ENDPOINTS],
}]

# The child runs in NS: the Proxier with the iptables backend over the real kernel, fed from a static informer,
# driven by "sync T" lines on stdin; it answers each with the sync stats as JSON.
DRIVER = r"""
import json, sys
from netk8s.proxy.model import NodeContext
from netk8s.dataplane import iptables
from netk8s.proxy.backend_iptables import IptablesBackend
from netk8s.proxy.proxier import Proxier, SyncConfig

objs = json.loads(sys.argv[1])

class Informer:
    revision = 7
    def list(self, kind, namespace=None):
        return objs.get(kind, [])

class Null:
    def update(self, services): pass
    def close(self): pass
    def sync(self, lb_map): return set()

p = Proxier(NodeContext("node1", ("192.168.56.11",)), IptablesBackend(iptables), SyncConfig(canary_period=1.0),
            healthcheck=Null(), announcer=Null())
for line in sys.stdin:
    cmd, t = line.split()
    p.sync(Informer(), [], float(t))
    s = p.last_sync_stats
    print(json.dumps(None if s is None else {"mode": s.mode, "ok": s.ok, "rules": s.rules, "error": s.error,
                                             "count": p.sync_count}), flush=True)
"""

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = sys.argv[1].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer((sys.argv[1], 8080), H)
print("ready", flush=True)
srv.serve_forever()
"""

CLIENT = r"""
import collections, urllib.request
seen = collections.Counter()
for _ in range(40):
    with urllib.request.urlopen("http://10.96.0.20:80/", timeout=5) as r:
        seen[r.read().decode()] += 1
print(dict(seen))
"""


def run(argv: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return netns.run_in_netns(NS, argv, input=input, check=check, timeout=60)


@pytest.fixture
def ns() -> Iterator[str]:
    netns.create_netns(NS)
    try:
        run(["ip", "link", "set", "lo", "up"])
        # endpoints live on a link in the same namespace (a veth pair with both ends here: the kernel has
        # no dummy module everywhere); the service CIDR routes there too
        run(["ip", "link", "add", "nk8spx0", "type", "veth", "peer", "name", "nk8spx1"])
        run(["ip", "link", "set", "nk8spx1", "up"])
        for ip in ENDPOINTS:
            run(["ip", "addr", "add", f"{ip}/24", "dev", "nk8spx0"])
        run(["ip", "link", "set", "nk8spx0", "up"])
        run(["ip", "route", "add", "10.96.0.0/12", "dev", "nk8spx0"])
        yield NS
    finally:
        netns.delete_netns(NS)


class Driver:
    def __init__(self) -> None:
        objs = json.dumps({"Service": SERVICES, "EndpointSlice": SLICES})
        self.proc = subprocess.Popen(netns.exec_argv(NS, [sys.executable, "-c", DRIVER, objs]),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=str(Path(__file__).resolve().parents[2]))

    def sync(self, t: float) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"sync {t}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"driver died: {self.proc.stderr.read() if self.proc.stderr else ''}"
        return json.loads(line)

    def close(self) -> None:
        for stream in (self.proc.stdin,):
            if stream is not None:
                stream.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def nat_services() -> str:
    return run(["iptables-legacy", "-w", "-t", "nat", "-L", "KUBE-SERVICES", "-n"]).stdout


def test_proxier_programs_repairs_and_routes(ns: str, tmp_path: Path) -> None:
    driver = Driver()
    servers: list[subprocess.Popen[str]] = []
    try:
        first = driver.sync(0.0)
        assert first["ok"] and first["mode"] == "full", first
        listing = nat_services()
        assert "10.96.0.20" in listing and "default/web:http cluster IP" in listing
        assert "DNAT" in run(["iptables-legacy-save", "-t", "nat"]).stdout

        # `iptables` on the legacy PATH shim shows the same rules (what `netk8s lab exec node1 -- iptables` runs)
        from netk8s.dataplane.iptables import bin_dir_for_legacy

        bin_dir = bin_dir_for_legacy(tmp_path / "bin")
        shim = run(["env", f"PATH={bin_dir}:{os.environ.get('PATH', '')}", "iptables", "-t", "nat", "-L",
                    "KUBE-SERVICES", "-n"]).stdout
        assert "default/web:http cluster IP" in shim

        # nothing changed: no sync
        assert driver.sync(0.5)["count"] == 1

        # someone wipes the nat table behind the proxier's back; the canary (1 s) notices, a full sync repairs
        run(["iptables-legacy", "-w", "-t", "nat", "-F"])
        run(["iptables-legacy", "-w", "-t", "nat", "-X"])
        assert run(["iptables-legacy", "-w", "-t", "nat", "-S", "KUBE-SERVICES"], check=False).returncode != 0
        repaired = driver.sync(2.0)
        assert repaired["ok"] and repaired["mode"] == "full" and repaired["count"] == 2, repaired
        assert "default/web:http cluster IP" in nat_services()

        # real traffic through the ClusterIP reaches both endpoints
        for ip in ENDPOINTS:
            srv = subprocess.Popen(netns.exec_argv(NS, [sys.executable, "-u", "-c", SERVER, ip]),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            servers.append(srv)
            assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        seen = eval(run([sys.executable, "-c", CLIENT]).stdout)  # a dict literal printed by CLIENT
        assert sum(seen.values()) == 40 and set(seen) == set(ENDPOINTS), seen

        # the rules view over the real dump shows the spread of those 40 connections
        dump = json.loads(run([sys.executable, "-m", "netk8s.dataplane.iptables", "dump", "--json"]).stdout)
        assert dump["_source"] in ("python-iptables", "iptables-legacy-save")
        view = format_rules(dump, "default/web", build_state(SERVICES, SLICES, "node1"))
        total = [line for line in view.splitlines() if line.split()[:1] == ["total"]]
        assert total and total[0].split()[-1] == "40", view
        for ip in ENDPOINTS:
            assert f"{ip}:8080" in view
    finally:
        driver.close()
        for srv in servers:
            srv.terminate()
            srv.wait(5)
            for stream in (srv.stdout, srv.stderr):
                if stream is not None:
                    stream.close()


def test_broken_restore_names_the_failing_line(ns: str) -> None:
    code = (
        "from netk8s.dataplane.iptables import restore\n"
        "from netk8s.errors import KernelError\n"
        "try:\n"
        "    restore('*nat\\n:KUBE-SVC-X - [0:0]\\n-A KUBE-SVC-X -j KUBE-SEP-MISSING\\nCOMMIT\\n')\n"
        "except KernelError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    print('no error')\n"
    )
    out = run([sys.executable, "-c", code]).stdout
    assert "line 3" in out and "-A KUBE-SVC-X -j KUBE-SEP-MISSING" in out, out
    assert ":KUBE-SVC-X - [0:0]" in out and "COMMIT" in out  # two lines of context around it
    # nothing was applied: the table is all-or-nothing
    assert run(["iptables-legacy", "-w", "-t", "nat", "-S", "KUBE-SVC-X"], check=False).returncode != 0


def test_full_syncs_leave_other_rules_in_builtin_chains(ns: str) -> None:
    """kube-proxy never flushes the built-in chains: a neighbour's masquerade rule in nat POSTROUTING
    survives full syncs, and a jump someone deleted comes back (at the top) on the next full sync."""
    theirs = ["-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-j", "MASQUERADE"]
    run(["iptables-legacy", "-w", "-t", "nat", "-A", "POSTROUTING", *theirs])
    run(["iptables-legacy", "-w", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22",
         "-j", "ACCEPT"])
    driver = Driver()
    try:
        first = driver.sync(0.0)
        assert first["ok"] and first["mode"] == "full", first
        run(["iptables-legacy", "-w", "-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment",
             "kubernetes service portals", "-j", "KUBE-SERVICES"])
        for t in (61.0, 122.0):  # two periodic full syncs (full_sync_period 60 s)
            s = driver.sync(t)
            assert s["ok"] and s["mode"] == "full", s
        post = run(["iptables-legacy", "-w", "-t", "nat", "-S", "POSTROUTING"]).stdout.splitlines()
        ours = '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
        assert post == ["-P POSTROUTING ACCEPT", ours,
                        "-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE"], post
        pre = run(["iptables-legacy", "-w", "-t", "nat", "-S", "PREROUTING"]).stdout.splitlines()
        jump = '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
        assert pre == ["-P PREROUTING ACCEPT", jump], pre
        inp = run(["iptables-legacy", "-w", "-t", "filter", "-S", "INPUT"]).stdout.splitlines()
        assert [line.rsplit(" ", 1)[1] for line in inp[1:]] == [
            "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "ACCEPT"], inp
        saved = run(["iptables-legacy-save"]).stdout
        assert s["rules"] == sum(1 for line in saved.splitlines() if line.startswith("-A ")) - 2
    finally:
        driver.close()
