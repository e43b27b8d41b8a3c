"""`netk8s trace` and `netk8s flows` on a real lab, in every proxy mode (one lab, modes switched with
`lab set-proxy-mode`): the hops in order, the endpoint the kernel chose (and whose log shows the
request), VXLAN only across nodes, the externalTrafficPolicy Local drop, REJECT without endpoints,
session affinity, the dry run against the pure tracer, flows, and no tracing rule left behind."""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from netk8s.model import naming
from netk8s.proxy.model import NodeContext, build_state
from netk8s.proxy.render_iptables import BUILTIN_JUMPS, render_full
from netk8s.proxy.render_nftables import render_full as nft_render_full
from netk8s.proxy.testing.fake_iptables import FakeRestore
from netk8s.proxy.testing.fake_nft import FakeNft
from netk8s.trace import paths as tp
from tests.root.labkit import Lab, running, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.root]

MODES = ["iptables", "nftables", "userspace"]
NODE1, NODE2 = "192.168.56.11", "192.168.56.12"

MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec: {nodeName: node1, containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: nginx-a, labels: {app: nginx, side: a}}
spec: {nodeName: node1, containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: nginx-b, labels: {app: nginx, side: b}}
spec: {nodeName: node2, containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: nginx-service}
spec: {selector: {app: nginx}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: nginx-same-node}
spec: {selector: {side: a}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: nginx-other-node}
spec: {selector: {side: b}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: nginx-local}
spec: {type: NodePort, externalTrafficPolicy: Local, selector: {side: b}, ports: [{port: 80, nodePort: 30880}]}
---
apiVersion: v1
kind: Service
metadata: {name: nobody-home}
spec: {selector: {app: none}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec: {selector: {app: nginx}, sessionAffinity: ClientIP, ports: [{port: 80}]}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    state = Path(tempfile.mkdtemp(prefix="nk8s-trace-"))
    lab = Lab(unique_name("tr"), state, nodes=2, proxy_mode="iptables", dns=True)
    with running(lab, MANIFEST, ready=[("app=nginx", 2), ("app=client", 1)]):
        yield lab


def trace(lab: Lab, *args: str, ok: bool = True) -> dict:
    p = lab.cli("trace", *args, "-o", "json", check=False, timeout=120)
    assert (p.returncode == 0) == ok, f"trace {args} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout)


def kinds(t: dict) -> list[str]:
    return [h["kind"] for h in t["hops"]]


def ruleset(lab: Lab) -> dict[str, str]:
    """What a trace must leave as it found: iptables (without counters) and nft rules of every node."""
    out = {}
    for node in ("node1", "node2"):
        ipt = lab.node_exec(node, "iptables-legacy-save").stdout
        out[f"{node}/iptables"] = re.sub(r"\[\d+:\d+\]", "", "\n".join(ln for ln in ipt.splitlines() if not ln.startswith("#")))
        nft = lab.node_exec(node, "nft", "list", "ruleset").stdout
        nft = re.sub(r"counter packets \d+ bytes \d+", "counter", nft)
        # affinity sets fill with the clients' addresses as traffic flows: kernel state, not rules
        out[f"{node}/nft"] = re.sub(r"\n\s*elements = \{[^}]*expires[^}]*\}", "", nft)
    return out


def same_rules(before: dict[str, str], after: dict[str, str]) -> None:
    for key, old in before.items():
        if old != after[key]:
            diff = "\n".join(difflib.unified_diff(old.splitlines(), after[key].splitlines(), lineterm=""))
            raise AssertionError(f"{key} changed:\n{diff}")


def monitor_processes() -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:3] == [b"nft", b"monitor", b"trace"]:
                found.append(int(d.name))
    return found


def kernel_names(lab: Lab, mode: str) -> str:
    if mode == "nftables":
        return lab.node_exec("node1", "nft", "list", "table", "ip", "kube-proxy").stdout
    return lab.node_exec("node1", "iptables", "-t", "nat", "-L", "-n").stdout + \
        lab.node_exec("node1", "iptables", "-t", "filter", "-L", "-n").stdout


def pure_probabilities(lab: Lab, mode: str, src: str, dst: str, port: int) -> dict[str, float]:
    """The pure tracer over the rules the renderer makes for the lab's own objects (node1)."""
    services = lab.get_json("services", "-A")["items"]
    slices = lab.get_json("endpointslices", "-A")["items"]
    node = NodeContext(node_name="node1", node_ips=(NODE1,))
    state = build_state(services, slices, "node1")
    local = [NODE1, "10.244.1.1", "127.0.0.1"]
    if mode == "nftables":
        fake = FakeNft()
        for batch in nft_render_full(state, node).batches:
            fake.apply(batch)
        return tp.endpoint_probabilities(tp.nft_paths(fake, src, "tcp", dst, port, local_ips=local))
    restore = FakeRestore()
    restore.ensure_rules(BUILTIN_JUMPS)
    restore.apply(render_full(state, node).text)
    return tp.endpoint_probabilities(tp.iptables_paths(restore.ruleset(), src, "tcp", dst, port, local_ips=local))


@pytest.mark.parametrize("mode", MODES)
def test_trace_in_every_mode(lab: Lab, mode: str) -> None:
    if mode != "iptables":
        lab.cli("lab", "set-proxy-mode", mode, timeout=180)
    pods = {p["metadata"]["name"]: p for p in lab.pods()}
    client_ip = pods["client"]["status"]["podIP"]
    nginx = {pods[n]["status"]["podIP"]: n for n in ("nginx-a", "nginx-b")}
    svc_ip = lab.get_json("service", "nginx-service")["spec"]["clusterIP"]
    lab.wait_for(f"{mode} rules for nginx-service", lambda: trace(lab, "pod/client", "nginx-service", "--dry-run"))
    before = ruleset(lab)

    # --- a request to the Service by name: DNS, the Service rule, the endpoint, the hop, delivery
    t = trace(lab, "pod/client", "nginx-service")
    k = kinds(t)
    assert k[0] == "dns" and t["hops"][0]["details"]["answer"] == svc_ip
    assert "kube-system/kube-dns" in t["hops"][0]["details"]["answered_by"]["pod"]
    assert k.index("rules") < k.index("dnat") < k.index("delivery") and t["verdict"] == "delivered"
    ep = t["endpoint"]
    assert ep["pod"] == f"default/{nginx[ep['ip']]}"
    path = next(h for h in t["hops"] if h["kind"] == "delivery")["details"]["request_path"]
    assert path in lab.cli("logs", nginx[ep["ip"]]).stdout  # the endpoint that served it logged it
    for other in set(nginx.values()) - {nginx[ep["ip"]]}:
        assert path not in lab.cli("logs", other).stdout
    assert ("vxlan" in k) == (ep["node"] != "node1") and ("bridge" in k) == (ep["node"] == "node1")
    # matched rules by the names the kernel's own listing shows
    listing = kernel_names(lab, mode)
    rule_hop = next(h for h in t["hops"] if h["kind"] == "rules")
    chains = {r["chain"] for r in rule_hop["rules"]}
    svc_chains = [c for c in chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-PORTALS", "service-", "endpoint-"))]
    assert svc_chains, rule_hop
    for c in svc_chains:
        assert c in listing
    if mode == "userspace":
        assert "proxy" in k

    # --- the same node / another node
    same = trace(lab, "pod/client", "nginx-same-node")
    assert same["endpoint"]["pod"] == "default/nginx-a" and "vxlan" not in kinds(same) and "bridge" in kinds(same)
    other = trace(lab, "pod/client", "nginx-other-node")
    assert other["endpoint"]["pod"] == "default/nginx-b" and "vxlan" in kinds(other)
    vx = next(h for h in other["hops"] if h["kind"] == "vxlan")["details"]
    assert vx["vni"] == 1 and vx["outer"] == [NODE1, NODE2] and vx["tx_packets"] > 0

    # --- externalTrafficPolicy Local: delivered where the endpoint is, dropped with the reason elsewhere
    ok = trace(lab, "external", f"{NODE2}:30880")
    assert ok["verdict"] == "delivered" and ok["endpoint"]["pod"] == "default/nginx-b"
    drop = trace(lab, "external", f"{NODE1}:30880", ok=False)
    # the userspace proxy has no DROP rule: its portal refuses the connection (a REJECT)
    assert drop["verdict"] == ("rejected" if mode == "userspace" else "dropped") and kinds(drop)[-1] == "drop"
    assert "externalTrafficPolicy Local" in drop["reason"] and "node1" in drop["reason"]
    assert "DROP" in drop["reason"] or "drop" in drop["reason"]

    # --- no endpoints: the REJECT rule
    rej = trace(lab, "pod/client", "nobody-home", ok=False)
    assert rej["verdict"] == "rejected" and "has no endpoints" in rej["reason"]
    assert re.search(r"reject", rej["reason"], re.IGNORECASE)

    # --- session affinity: same endpoint twice, the second by the affinity match
    first = trace(lab, "pod/client", "sticky")
    second = trace(lab, "pod/client", "sticky")
    assert first["endpoint"]["pod"] == second["endpoint"]["pod"]
    assert second["endpoint"]["choice"] == "affinity"

    # --- dry run: every endpoint, probabilities summing to 1, as the pure tracer says
    dry = trace(lab, "pod/client", "nginx-service", "--dry-run")
    eps = {e["endpoint"]: e["probability"] for e in dry["hops"][-1]["details"]["endpoints"]}
    assert set(eps) == {f"{ip}:80" for ip in nginx} and abs(sum(eps.values()) - 1) < 1e-9
    if mode != "userspace":
        pure = pure_probabilities(lab, mode, client_ip, svc_ip, 80)
        assert {k2: round(v, 6) for k2, v in pure.items()} == {k2: round(v, 6) for k2, v in eps.items()}

    # --- flows: the connection a trace just made, with names (traced again here: the first trace's
    # conntrack entry leaves TIME_WAIT after 120 s, which a loaded machine can spend on the steps above)
    ep = trace(lab, "pod/client", "nginx-service")["endpoint"]
    flows = json.loads(lab.cli("flows", "-o", "json").stdout)
    assert any(f["client_pod"] == "default/client" and f["service"] == "default/nginx-service"
               and f["endpoint_pod"] == ep["pod"] for f in flows), flows
    assert "default/client" in lab.cli("flows").stdout

    # --- nothing left behind
    same_rules(before, ruleset(lab))
    assert monitor_processes() == []
    svg = lab.cli("trace", "pod/client", "nginx-same-node", "-o", "svg").stdout
    assert svg.startswith("<svg") and "delivery" in svg
    same_rules(before, ruleset(lab))


def test_bad_input(lab: Lab) -> None:
    p = lab.cli("trace", "pod/nope", "nginx-service", check=False)
    assert p.returncode == 1 and "nope" in p.stderr
    p = lab.cli("trace", "pod/client", "no-such-service", check=False)
    assert p.returncode == 1 and "TO" in p.stderr
    p = lab.cli("trace", "deploy/x", "nginx-service", check=False)
    assert p.returncode == 1 and "FROM" in p.stderr
    assert os.geteuid() == 0 and naming.node_netns(lab.name, "node1")
