"""NetworkPolicy on a real lab: a truth table of real probes compared cell by cell with the pure model.

Namespaces x, y, z with pods a, b, c (agnhost serving TCP and UDP on 80 and 81, tests/netpol_cases.py)
spread over two nodes. For each policy case every (source pod, destination, port, protocol) is probed
for real: by pod IP (same node: bridged; other node: VXLAN), through a ClusterIP to x/a and x/b, and
from the external client through an externalTrafficPolicy Local NodePort of x/a (the policy sees the
client's address). Probes run in parallel from the test process, with sockets opened inside each pod's
namespace. A cell that disagrees with the model is probed again until a deadline (the agents program
the change asynchronously); the tables are printed side by side when they still disagree.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dnslib import DNSRecord

from netk8s.dataplane import netns
from netk8s.model import naming
from netk8s.policy.model import Model, build
from tests.netpol_cases import (
    CASES,
    DENY_IN,
    NAMESPACES,
    POD_NAMES,
    PODS,
    PORTS,
    PROTOCOLS,
    Case,
    container_ports,
    ip_cases,
    np,
)
from tests.root.labkit import Lab, running, unique_name

pytestmark = pytest.mark.root

PROBE_TIMEOUT = 1.5
CONVERGE = 30.0
EXTERNAL = "external"
NODEPORT = 30480
DNS_VIP = "10.96.0.10"


def manifest() -> str:
    docs: list[dict] = []
    for ns in NAMESPACES:
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}})
    for i, pod in enumerate(PODS):
        ns, name = pod.split("/")
        ports = container_ports()
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
                     "spec": {"nodeName": naming.node_name(i % 2 + 1), "containers": [
                         {"name": f"c{port}", "image": "registry.k8s.io/e2e-test-images/agnhost:2.39",
                          "args": ["netexec", f"--http-port={port}", f"--udp-port={port}"],
                          "ports": [p for p in ports if p["containerPort"] == port]} for port in PORTS]}})
    for name in ("a", "b"):
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{name}", "namespace": "x"},
                     "spec": {"selector": {"pod": name}, "ports": [
                         {"name": f"{proto.lower()}{port}", "port": port, "protocol": proto}
                         for port in PORTS for proto in PROTOCOLS]}})
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np-a", "namespace": "x"},
                 "spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "selector": {"pod": "a"},
                          "ports": [{"port": 80, "nodePort": NODEPORT, "protocol": "TCP"}]}})
    return "\n---\n".join(json.dumps(d) for d in docs)


@dataclass(frozen=True)
class Cell:
    """One probe: from a pod (or the external client) to an address, and what the policy sees."""

    src: str  # "x/a" or EXTERNAL
    dst: str  # "x/b", "svc:x/a", "nodeport:x/a", "dns"
    addr: str
    port: int
    proto: str
    seen_src: str  # the source address the destination's node judges
    seen_dst: tuple[str, ...]  # the endpoint pod address(es) after DNAT


# kube-proxy's iptables and nftables modes; in the userspace mode the node itself connects to the
# endpoints, so egress rules do not see Service traffic (docs/networkpolicy.md).
@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running(Lab(unique_name("np"), tmp_path_factory.mktemp("state"), nodes=2, dns=True,
                     proxy_mode=request.param), manifest()) as lab:
        for ns in NAMESPACES:
            lab.wait_for(f"pods of {ns} ready", lambda ns=ns: len([p for p in lab.pods(namespace=ns)
                                                                  if _ready(p)]) == len(POD_NAMES), timeout=180)
        yield lab


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def all_pods(lab: Lab) -> dict[str, dict]:
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in lab.get_json("pods", "-A")["items"]}


def live_model(lab: Lab) -> Model:
    return build(lab.get_json("pods", "-A")["items"], lab.get_json("networkpolicies", "-A")["items"],
                 lab.get_json("namespaces")["items"], lab.get_json("nodes")["items"])


def cells(lab: Lab, with_dns: bool = False) -> list[Cell]:
    pods = all_pods(lab)
    ip = {k: p["metadata"]["annotations"]["netk8s.io/pod-ip"] for k, p in pods.items()}
    out = [Cell(s, d, ip[d], port, proto, ip[s], (ip[d],))
           for s in PODS for d in PODS if s != d for port in PORTS for proto in PROTOCOLS]
    for name in ("a", "b"):
        vip = lab.get_json("svc", f"svc-{name}", "-n", "x")["spec"]["clusterIP"]
        out += [Cell(s, f"svc:x/{name}", vip, port, proto, ip[s], (ip[f"x/{name}"],))
                for s in PODS if s != f"x/{name}" for port in PORTS for proto in PROTOCOLS]
    node = int(pods["x/a"]["spec"]["nodeName"].removeprefix("node"))
    out.append(Cell(EXTERNAL, "nodeport:x/a", str(naming.node_ip(node)), NODEPORT, "TCP", str(naming.EXTERNAL_IP),
                    (ip["x/a"],)))
    if with_dns:
        dns = tuple(v for k, v in ip.items() if k.startswith("kube-system/"))
        out += [Cell(s, "dns", DNS_VIP, 53, "UDP", ip[s], dns) for s in PODS]
    return out


def expected(model: Model, c: Cell) -> bool:
    verdicts = {model.check(c.seen_src, d, c.port if not c.dst.startswith("nodeport") else 80, c.proto).allowed
                for d in c.seen_dst}
    assert len(verdicts) == 1, f"{c}: endpoints disagree"
    return verdicts.pop()


def probe(lab: Lab, pods: dict[str, dict], c: Cell) -> bool:
    where = naming.external_netns(lab.name) if c.src == EXTERNAL else \
        naming.pod_netns(lab.name, pods[c.src]["metadata"]["uid"])
    kind = socket.SOCK_STREAM if c.proto == "TCP" else socket.SOCK_DGRAM
    sock = netns.open_socket(where, socket.AF_INET, kind)
    try:
        sock.settimeout(PROBE_TIMEOUT)
        if c.proto == "TCP":
            return sock.connect_ex((c.addr, c.port)) == 0
        payload = DNSRecord.question("kubernetes.default.svc.cluster.local").pack() if c.dst == "dns" else b"hostname"
        sock.sendto(payload, (c.addr, c.port))
        try:
            return bool(sock.recv(4096))
        except OSError:  # timeout (a drop), or ICMP unreachable
            return False
    finally:
        sock.close()


def probe_all(lab: Lab, todo: list[Cell]) -> dict[Cell, bool]:
    pods = all_pods(lab)
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        return dict(zip(todo, pool.map(lambda c: probe(lab, pods, c), todo)))


def side_by_side(want: dict[Cell, bool], got: dict[Cell, bool]) -> str:
    lines = [f"{'cell':<44} model  probe"]
    for c in sorted(want, key=lambda c: (c.src, c.dst, c.port, c.proto)):
        mark = "" if want[c] == got[c] else "   <-- differs"
        lines.append(f"{c.src + ' -> ' + c.dst + f' {c.port}/{c.proto}':<44} {'.' if want[c] else 'X':<6} "
                     f"{'.' if got[c] else 'X'}{mark}")
    return "\n".join(lines)


def converge(lab: Lab, with_dns: bool = False) -> float:
    """Probe until every cell agrees with the live model (or fail at the deadline); seconds taken."""
    start = time.monotonic()
    todo = cells(lab, with_dns)
    model = live_model(lab)
    want = {c: expected(model, c) for c in todo}
    got = probe_all(lab, todo)
    while True:
        bad = [c for c in todo if got[c] != want[c]]
        if not bad:
            return time.monotonic() - start
        if time.monotonic() - start > CONVERGE:
            raise AssertionError(f"{len(bad)} of {len(todo)} cells disagree with the model\n"
                                 f"{side_by_side(want, got)}\n{lab.logs_tail(10)}")
        got.update(probe_all(lab, bad))


def apply_policies(lab: Lab, policies: tuple[dict, ...] | list[dict]) -> None:
    if policies:
        lab.apply("\n---\n".join(json.dumps(p) for p in policies))


def delete_policies(lab: Lab) -> None:
    for ns in NAMESPACES:
        for item in lab.get_json("networkpolicies", "-n", ns)["items"]:
            lab.cli("delete", "networkpolicy", item["metadata"]["name"], "-n", ns)


ROOT_CASES = ("no-policy", "default-deny-ingress", "default-deny-egress", "default-deny-both", "pod-selector",
              "namespace-selector", "namespace-and-pod-in-one-peer", "namespace-or-pod-in-two-peers",
              "match-expressions-notin", "named-port", "end-port-partial", "udp-only", "egress-named-port",
              "stacked-policies-overlapping-selectors")


def _ip_of(lab: Lab) -> dict[str, str]:
    return {k: p["metadata"]["annotations"]["netk8s.io/pod-ip"] for k, p in all_pods(lab).items()}


@pytest.mark.parametrize("name", ROOT_CASES + ("ipblock-ingress-except", "ipblock-egress-except"))
def test_truth_table(lab: Lab, name: str) -> None:
    ips = _ip_of(lab)
    c: Case = next(c for c in CASES + ip_cases(ips.__getitem__) if c.name == name)
    apply_policies(lab, c.policies)
    try:
        took = converge(lab)
        print(f"case {name}: matrix agreed with the model after {took:.1f}s")
    finally:
        delete_policies(lab)


def test_egress_deny_with_dns_allowed(lab: Lab) -> None:
    apply_policies(lab, [np("dns-only", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]})])
    try:
        converge(lab, with_dns=True)
        model = live_model(lab)
        dns_ip = next(v for k, v in _ip_of(lab).items() if k.startswith("kube-system/"))
        xa, yb = _ip_of(lab)["x/a"], _ip_of(lab)["y/b"]
        assert model.check(xa, dns_ip, 53, "UDP").allowed and not model.check(xa, yb, 80).allowed
    finally:
        delete_policies(lab)


def test_nodeport_from_outside_follows_ipblock(lab: Lab) -> None:
    apply_policies(lab, [np("from-lan", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "192.168.56.0/24", "except": ["192.168.56.0/28"]}}]}]})])
    try:
        converge(lab)
        assert live_model(lab).check(str(naming.EXTERNAL_IP), _ip_of(lab)["x/a"], 80).allowed
    finally:
        delete_policies(lab)


def test_label_changes_update_enforcement_and_deleting_restores(lab: Lab) -> None:
    apply_policies(lab, [np("from-client", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}},
                   "podSelector": {"matchLabels": {"role": "client"}}}]}]})])
    try:
        converge(lab)
        ips = _ip_of(lab)
        assert not live_model(lab).check(ips["y/c"], ips["x/a"], 80).allowed
        lab.relabel("Namespace", "", "y", "team", "blue")
        lab.relabel("Pod", "y", "c", "role", "client")
        converge(lab)
        assert live_model(lab).check(ips["y/c"], ips["x/a"], 80).allowed
        lab.relabel("Pod", "y", "c", "role", None)
        converge(lab)
        assert not live_model(lab).check(ips["y/c"], ips["x/a"], 80).allowed
    finally:
        delete_policies(lab)
        lab.relabel("Namespace", "", "y", "team", None)
    converge(lab)
    model = live_model(lab)
    assert all(expected(model, c) for c in cells(lab))  # full reachability again


def test_policy_why_agrees_with_the_probes(lab: Lab) -> None:
    c = next(c for c in CASES if c.name == "two-rules-one-policy")
    apply_policies(lab, c.policies)
    try:
        converge(lab)
        todo = [cell for cell in cells(lab) if cell.dst in PODS and cell.port in (80, 81) and
                (cell.port, cell.proto) in ((80, "TCP"), (81, "UDP"))]
        got = probe_all(lab, todo)

        def why(cell: Cell) -> bool:
            out = lab.cli("policy", "why", cell.src, cell.dst, str(cell.port), "--proto", cell.proto.lower()).stdout
            return out.splitlines()[0] == "ALLOWED"

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            said = dict(zip(todo, pool.map(why, todo)))
        assert said == got, side_by_side(said, got)
        assert not all(said.values()) and any(said.values())
    finally:
        delete_policies(lab)


def _http_on(sock: socket.socket) -> bool:
    """One keep-alive request on an open connection, read to the end of its body."""
    try:
        sock.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += sock.recv(4096)
        return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_established_connections_survive_a_new_policy_new_ones_follow_it(lab: Lab) -> None:
    pods, ips = all_pods(lab), _ip_of(lab)
    sock = netns.open_socket(naming.pod_netns(lab.name, pods["y/b"]["metadata"]["uid"]), socket.AF_INET,
                             socket.SOCK_STREAM)
    sock.settimeout(PROBE_TIMEOUT * 2)
    try:
        sock.connect((ips["x/a"], 80))
        assert _http_on(sock)
        apply_policies(lab, [DENY_IN])
        converge(lab)  # new connections into x are dropped now
        assert _http_on(sock), "the connection established before the policy must keep working"
    finally:
        sock.close()
        delete_policies(lab)


def test_a_new_pod_matching_a_selector_is_let_in(lab: Lab) -> None:
    apply_policies(lab, [np("from-b", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})])
    try:
        converge(lab)
        lab.apply(json.dumps({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "b2", "namespace": "x", "labels": {"pod": "b"}},
                              "spec": {"nodeName": naming.node_name(2), "containers": [
                                  {"name": "c", "image": "busybox", "command": ["sleep", "infinity"]}]}}))
        lab.wait_for("x/b2 ready", lambda: _ready(all_pods(lab).get("x/b2") or {}), timeout=90)
        model = live_model(lab)
        pods, ips = all_pods(lab), _ip_of(lab)
        new = Cell("x/b2", "x/a", ips["x/a"], 80, "TCP", ips["x/b2"], (ips["x/a"],))
        assert expected(model, new)
        other = Cell("x/b2", "x/c", ips["x/c"], 80, "TCP", ips["x/b2"], (ips["x/c"],))
        deadline = time.monotonic() + CONVERGE
        while not probe(lab, pods, new) and time.monotonic() < deadline:
            pass
        assert probe(lab, pods, new) and probe(lab, pods, other) == expected(model, other)
    finally:
        lab.cli("delete", "pod", "b2", "-n", "x", check=False)
        delete_policies(lab)
        lab.wait_for("x/b2 gone", lambda: "x/b2" not in all_pods(lab), timeout=90)
