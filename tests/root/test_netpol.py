"""NetworkPolicy on a real lab: a truth table of real probes compared cell by cell with the pure model.

Namespaces x, y, z with pods a, b, c (agnhost serving TCP and UDP on 80 and 81, tests/netpol_cases.py)
spread over two nodes, in ONE lab for the whole module. For each policy case every (source pod,
destination, port, protocol) is probed for real: by pod IP (same node: bridged; other node: VXLAN),
through a ClusterIP to x/a and x/b, and from the external client through an externalTrafficPolicy
Local NodePort of x/a. Every probe of a matrix runs at once (one thread each, sockets opened inside the
pods' namespaces); a TCP probe needs an HTTP answer, a UDP probe agnhost's reply. The source address the destination's node judges is observed, not assumed: before
the cases, each client asks agnhost's `clientip` through the Service (the pod's own address in the
iptables and nftables modes, the node's in the userspace mode, the client's through the Local
NodePort). A cell that disagrees with the model is probed again until a deadline (the agents program
a change asynchronously); the tables are printed side by side when they still disagree. The time each
case took (apply to agreement, and one full probe round) is printed and recorded (junit properties),
never asserted. The last tests switch the lab's proxy mode (iptables, nftables, userspace) and run
the Service cases in each.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner
from dnslib import DNSRecord

from netk8s.cli.main import cli
from netk8s.dataplane import netns
from netk8s.model import naming
from netk8s.policy.model import Model, build
from netk8s.store.factory import open_store
from tests.netpol_cases import (
    CASES,
    DENY_IN,
    NAMESPACES,
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
    target_port: int = 0  # the port on the endpoint (0: the same as port)


@dataclass
class World:
    """What the cells are made of, read once per matrix: pod objects and addresses, Service VIPs, and the
    source address each Service path shows its endpoint (observed with no policy in place)."""

    lab: Lab
    pods: dict[str, dict] = field(default_factory=dict)
    ip: dict[str, str] = field(default_factory=dict)
    vip: dict[str, str] = field(default_factory=dict)
    seen: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (src, dst, proto) -> address seen

    def refresh(self) -> World:
        objs = read_store(self.lab, "Pod", "Service")
        self.pods = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in objs["Pod"]}
        self.ip = {k: (p["metadata"].get("annotations") or {}).get("netk8s.io/pod-ip", "") for k, p in self.pods.items()}
        self.vip = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s["spec"].get("clusterIP", "")
                    for s in objs["Service"]}
        return self


# One lab for the whole module (kube-proxy's iptables mode first; the proxy-mode tests at the end
# switch it with `netk8s lab set-proxy-mode`).
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Lab]:
    with running(Lab(unique_name("np"), tmp_path_factory.mktemp("state"), nodes=2, dns=True,
                     proxy_mode="iptables"), manifest()) as lab:
        lab.wait_for("every matrix pod ready", lambda: sum(
            _ready(p) for p in read_store(lab, "Pod")["Pod"] if p["metadata"]["namespace"] in NAMESPACES)
            == len(PODS), timeout=180)
        yield lab
    report = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if report is not None and capture is not None and TIMES:
        with capture.global_and_fixture_disabled():  # shown without -s too
            report.write_line("\nNetworkPolicy cases (apply -> matrix agrees with the model; one full probe round):")
            for name, (took, round_s, n) in TIMES.items():
                report.write_line(f"  {name:<52} {took:6.1f} s   round {round_s:5.1f} s   {n} cells")


@pytest.fixture(scope="module")
def world(lab: Lab) -> World:
    """The matrix universe, with the Service source addresses observed in the lab's current mode."""
    w = World(lab).refresh()
    w.seen = observe_sources(w)
    return w


TIMES: dict[str, tuple[float, float, int]] = {}


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def read_store(lab: Lab, *kinds: str) -> dict[str, list[dict]]:
    """Objects straight from the lab's store (what `netk8s get` would print, without a process each)."""
    info = json.loads((lab.state_dir / lab.name / "lab.json").read_text())
    store = open_store(info["store"])
    try:
        return {k: store.list(k)[0] for k in kinds}
    finally:
        store.close()


def live_model(lab: Lab) -> Model:
    objs = read_store(lab, "Pod", "NetworkPolicy", "Namespace", "Node")
    return build(objs["Pod"], objs["NetworkPolicy"], objs["Namespace"], objs["Node"])


def where(w: World, src: str) -> str:
    return naming.external_netns(w.lab.name) if src == EXTERNAL else naming.pod_netns(w.lab.name, w.pods[src]["metadata"]["uid"])


def ask_client_ip(w: World, src: str, addr: str, port: int, proto: str) -> str:
    """agnhost's `clientip` through one path: the source address the endpoint sees ("" if no answer)."""
    kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
    sock = netns.open_socket(where(w, src), socket.AF_INET, kind)
    try:
        sock.settimeout(3.0)
        if proto == "UDP":
            sock.sendto(b"clientip", (addr, port))
            return sock.recv(4096).decode().rsplit(":", 1)[0]
        sock.connect((addr, port))
        sock.sendall(b"GET /clientip HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data.partition(b"\r\n\r\n")[2].decode().strip().rsplit(":", 1)[0]
    except OSError:
        return ""
    finally:
        sock.close()


def service_paths(w: World) -> list[tuple[str, str, str, int, str]]:
    """(src, dst, addr, port, proto) of every Service path a matrix probes (port 80 and 81 alike)."""
    out = [(s, f"svc:x/{n}", w.vip[f"x/svc-{n}"], 80, proto)
           for n in ("a", "b") for s in PODS if s != f"x/{n}" for proto in PROTOCOLS]
    node = int(w.pods["x/a"]["spec"]["nodeName"].removeprefix("node"))
    out.append((EXTERNAL, "nodeport:x/a", str(naming.node_ip(node)), NODEPORT, "TCP"))
    return out


def observe_sources(w: World) -> dict[tuple[str, str, str], str]:
    """Ask every Service path, with no policy in place, which source address its endpoint sees."""
    assert not read_store(w.lab, "NetworkPolicy")["NetworkPolicy"], "observe the sources with no policy"
    paths = service_paths(w)

    def one(path: tuple[str, str, str, int, str]) -> str:
        deadline = time.monotonic() + CONVERGE
        while not (got := ask_client_ip(w, path[0], path[2], path[3], path[4])) and time.monotonic() < deadline:
            pass
        return got

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(paths)) as pool:
        seen = dict(zip([(p[0], p[1], p[4]) for p in paths], pool.map(one, paths)))
    assert all(seen.values()), f"paths with no answer: {[k for k, v in seen.items() if not v]}"
    return seen


def cells(w: World, with_dns: bool = False, services_only: bool = False) -> list[Cell]:
    ip = w.ip
    out = [] if services_only else [
        Cell(s, d, ip[d], port, proto, ip[s], (ip[d],))
        for s in PODS for d in PODS if s != d for port in PORTS for proto in PROTOCOLS]
    for name in ("a", "b"):
        out += [Cell(s, f"svc:x/{name}", w.vip[f"x/svc-{name}"], port, proto, w.seen[(s, f"svc:x/{name}", proto)],
                     (ip[f"x/{name}"],))
                for s in PODS if s != f"x/{name}" for port in PORTS for proto in PROTOCOLS]
    node = int(w.pods["x/a"]["spec"]["nodeName"].removeprefix("node"))
    out.append(Cell(EXTERNAL, "nodeport:x/a", str(naming.node_ip(node)), NODEPORT, "TCP",
                    w.seen[(EXTERNAL, "nodeport:x/a", "TCP")], (ip["x/a"],), target_port=80))
    if with_dns:
        dns = tuple(v for k, v in ip.items() if k.startswith("kube-system/") and v)
        out += [Cell(s, "dns", DNS_VIP, 53, "UDP", ip[s], dns) for s in PODS]
    return out


def expected(model: Model, c: Cell) -> bool:
    verdicts = {model.check(c.seen_src, d, c.target_port or c.port, c.proto).allowed for d in c.seen_dst}
    assert len(verdicts) == 1, f"{c}: endpoints disagree"
    return verdicts.pop()


def probe(w: World, c: Cell) -> bool:
    kind = socket.SOCK_STREAM if c.proto == "TCP" else socket.SOCK_DGRAM
    sock = netns.open_socket(where(w, c.src), socket.AF_INET, kind)
    try:
        sock.settimeout(PROBE_TIMEOUT)
        if c.proto == "TCP":
            # An answer, not just a handshake: in the userspace mode the node's proxy accepts the
            # connection itself and only then connects to the endpoint, which the policy may drop.
            if sock.connect_ex((c.addr, c.port)) != 0:
                return False
            try:
                sock.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
                return sock.recv(4096).startswith(b"HTTP/")
            except OSError:
                return False
        payload = DNSRecord.question("kubernetes.default.svc.cluster.local").pack() if c.dst == "dns" else b"hostname"
        sock.sendto(payload, (c.addr, c.port))
        try:
            return bool(sock.recv(4096))
        except OSError:  # timeout (a drop), or ICMP unreachable
            return False
    finally:
        sock.close()


def probe_all(w: World, todo: list[Cell]) -> dict[Cell, bool]:
    """Every cell at once (one thread each): a matrix costs about one probe timeout, not one per cell."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(len(todo), 400))) as pool:
        return dict(zip(todo, pool.map(lambda c: probe(w, c), todo)))


def side_by_side(want: dict[Cell, bool], got: dict[Cell, bool], left: str = "model", right: str = "probe") -> str:
    lines = [f"{'cell':<44} {left:<6} {right}"]
    for c in sorted(want, key=lambda c: (c.src, c.dst, c.port, c.proto)):
        mark = "" if want[c] == got[c] else "   <-- differs"
        lines.append(f"{c.src + ' -> ' + c.dst + f' {c.port}/{c.proto}':<44} {'.' if want[c] else 'X':<6} "
                     f"{'.' if got[c] else 'X'}{mark}")
    return "\n".join(lines)


def converge(w: World, with_dns: bool = False, services_only: bool = False) -> tuple[float, float, int]:
    """Probe until every cell agrees with the live model (or fail at the deadline).

    Returns (seconds until agreement, seconds of the first full probe round, cells)."""
    start = time.monotonic()
    w.refresh()
    todo = cells(w, with_dns, services_only)
    model = live_model(w.lab)
    want = {c: expected(model, c) for c in todo}
    got = probe_all(w, todo)
    round_s = time.monotonic() - start
    while True:
        bad = [c for c in todo if got[c] != want[c]]
        if not bad:
            return time.monotonic() - start, round_s, len(todo)
        if time.monotonic() - start > CONVERGE:
            raise AssertionError(f"{len(bad)} of {len(todo)} cells disagree with the model\n"
                                 f"{side_by_side(want, got)}\n{w.lab.logs_tail(10)}")
        got.update(probe_all(w, bad))


def netk8s(lab: Lab, *args: str, input: str | None = None) -> str:
    """The real `netk8s` command, run in this process (click's runner): 44 cases x apply + delete would
    otherwise spend most of their time starting Python."""
    env: dict[str, str | None] = {k: v for k, v in lab.env.items() if k.startswith("NETK8S_")}
    env.setdefault("NETK8S_TAG", None)  # as Lab.cli: the lab's own tag, not the caller's
    res = CliRunner().invoke(cli, list(args), input=input, env=env)
    assert res.exit_code == 0, f"netk8s {' '.join(args)} -> {res.exit_code}: {res.output}{res.exception or ''}"
    return res.output


def apply_policies(lab: Lab, policies: tuple[dict, ...] | list[dict]) -> None:
    if policies:
        netk8s(lab, "apply", "-f", "-", input="\n---\n".join(json.dumps(p) for p in policies))


def delete_policies(lab: Lab) -> None:
    items = read_store(lab, "NetworkPolicy")["NetworkPolicy"]
    if items:
        netk8s(lab, "delete", "-f", "-", input="\n---\n".join(json.dumps(
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": i["metadata"]["name"], "namespace": i["metadata"]["namespace"]}}) for i in items))
    lab.wait_for("policies gone", lambda: not read_store(lab, "NetworkPolicy")["NetworkPolicy"])


def run_case(w: World, name: str, policies: tuple[dict, ...] | list[dict], **kw: Any) -> None:
    apply_policies(w.lab, policies)
    try:
        took = converge(w, **kw)
        TIMES[name] = took
        print(f"case {name}: matrix of {took[2]} cells agreed with the model after {took[0]:.1f}s "
              f"(one full probe round {took[1]:.1f}s)")
    finally:
        delete_policies(w.lab)


def _ip_of(w: World) -> dict[str, str]:
    return w.refresh().ip


def every_case(w: World) -> dict[str, Case]:
    return {c.name: c for c in CASES + ip_cases(w.ip.__getitem__)}


CASE_NAMES = tuple(c.name for c in CASES) + ("ipblock-ingress-except", "ipblock-egress-except",
                                             "ipblock-except-allowed-by-other-peer", "ipblock-single-address-egress")


def test_the_matrix_has_at_least_forty_cases() -> None:
    assert len(CASE_NAMES) >= 40 and len(set(CASE_NAMES)) == len(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_truth_table(world: World, name: str, record_property: Any) -> None:
    world.refresh()
    c = every_case(world)[name]
    model = build(list(world.pods.values()), list(c.policies), read_store(world.lab, "Namespace")["Namespace"],
                  read_store(world.lab, "Node")["Node"])
    # the model itself agrees with the case's independent expectation (tests/netpol_cases.py)
    wrong = [(s, d, port, proto) for s in PODS for d in PODS for port in PORTS for proto in PROTOCOLS
             if s != d and model.check(world.ip[s], world.ip[d], port, proto).allowed != c.expect(s, d, port, proto)]
    assert not wrong, f"model disagrees with the case's expectation: {wrong[:10]}"
    run_case(world, name, c.policies)
    record_property("seconds_to_agree", round(TIMES[name][0], 2))
    record_property("seconds_probe_round", round(TIMES[name][1], 2))


def test_egress_deny_with_dns_allowed(world: World) -> None:
    dns_only = np("dns-only", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]})
    apply_policies(world.lab, [dns_only])
    try:
        took = converge(world, with_dns=True)
        TIMES["egress-to-dns-only (+ DNS cells)"] = took
        model = live_model(world.lab)
        ips = _ip_of(world)
        dns_ip = next(v for k, v in ips.items() if k.startswith("kube-system/") and v)
        assert model.check(ips["x/a"], dns_ip, 53, "UDP").allowed and not model.check(ips["x/a"], ips["y/b"], 80).allowed
        dns = [c for c in cells(world, with_dns=True) if c.dst == "dns" and c.src.startswith("x/")]
        assert all(probe_all(world, dns).values()), "x's pods still resolve names"
    finally:
        delete_policies(world.lab)


def test_nodeport_from_outside_follows_ipblock(world: World) -> None:
    policy = np("from-lan", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "192.168.56.0/24", "except": ["192.168.56.0/28"]}}]}]})
    apply_policies(world.lab, [policy])
    try:
        TIMES["nodeport-from-outside-ipblock"] = converge(world)
        assert live_model(world.lab).check(str(naming.EXTERNAL_IP), _ip_of(world)["x/a"], 80).allowed
    finally:
        delete_policies(world.lab)


def test_pod_relabelled_into_and_out_of_a_selector(world: World) -> None:
    lab = world.lab
    apply_policies(lab, [np("from-client", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})])
    try:
        converge(world)
        ips = _ip_of(world)
        assert not live_model(lab).check(ips["x/c"], ips["x/a"], 80).allowed
        lab.relabel("Pod", "x", "c", "role", "client")
        TIMES["pod-relabelled-into-selector"] = converge(world)
        assert live_model(lab).check(ips["x/c"], ips["x/a"], 80).allowed
        lab.relabel("Pod", "x", "c", "role", None)
        TIMES["pod-relabelled-out-of-selector"] = converge(world)
        assert not live_model(lab).check(ips["x/c"], ips["x/a"], 80).allowed
    finally:
        lab.relabel("Pod", "x", "c", "role", None)
        delete_policies(lab)


def test_namespace_relabelled(world: World) -> None:
    lab = world.lab
    apply_policies(lab, [np("from-blue", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}},
                   "podSelector": {"matchLabels": {"pod": "c"}}}]}]})])
    try:
        converge(world)
        ips = _ip_of(world)
        assert not live_model(lab).check(ips["y/c"], ips["x/a"], 80).allowed
        lab.relabel("Namespace", "", "y", "team", "blue")
        TIMES["namespace-relabelled-into-selector"] = converge(world)
        assert live_model(lab).check(ips["y/c"], ips["x/a"], 80).allowed
        assert not live_model(lab).check(ips["y/b"], ips["x/a"], 80).allowed
        lab.relabel("Namespace", "", "y", "team", None)
        TIMES["namespace-relabelled-out-of-selector"] = converge(world)
        assert not live_model(lab).check(ips["y/c"], ips["x/a"], 80).allowed
    finally:
        lab.relabel("Namespace", "", "y", "team", None)
        delete_policies(lab)
    converge(world)
    model = live_model(lab)
    assert all(expected(model, c) for c in cells(world))  # full reachability again


def test_policy_why_agrees_with_the_probes(world: World) -> None:
    """`netk8s policy why` (the real command, in process) for every cell of one case vs the probes."""
    c = every_case(world)["two-rules-one-policy"]
    apply_policies(world.lab, c.policies)
    try:
        converge(world)
        todo = [cell for cell in cells(world) if cell.dst in PODS]
        got = probe_all(world, todo)

        def why(cell: Cell) -> bool:
            out = netk8s(world.lab, "policy", "why", cell.src, cell.dst, str(cell.port), "--proto", cell.proto.lower(),
                         "--no-kernel")
            first = out.splitlines()[0]
            assert first in ("ALLOWED", "DROPPED"), out
            return first == "ALLOWED"

        said = {cell: why(cell) for cell in todo}
        assert said == got, side_by_side(said, got, left="why")
        assert not all(said.values()) and any(said.values())
    finally:
        delete_policies(world.lab)


def test_describe_shows_the_selected_pods_and_counters_that_follow_the_probes(world: World) -> None:
    """`describe netpol`: the pods it selects and, per rule, the new connections the kernel let through;
    per direction, the drops in the pods it isolates. Counters only grow, so the test reads before and
    after a known batch of probes."""
    c = every_case(world)["two-rules-one-policy"]
    apply_policies(world.lab, c.policies)

    def counters() -> dict[str, int]:
        out = world.lab.cli("describe", "netpol", "two", "-n", "x").stdout
        lines = out.splitlines()
        assert any(ln.split() == ["Selected", "Pods:", "a"] for ln in lines), out
        got = {}
        for ln in lines:
            key, _, rest = ln.strip().partition(":")
            if key in ("ingress[0]", "ingress[1]", "dropped (ingress, pods it isolates)"):
                got[key] = int(rest.split("packets")[0].split()[-1])
        return got

    try:
        converge(world)
        before = counters()
        ips = _ip_of(world)
        batch = [Cell("x/b", "x/a", ips["x/a"], 80, "TCP", ips["x/b"], (ips["x/a"],)),  # ingress[0]
                 Cell("y/c", "x/a", ips["x/a"], 81, "UDP", ips["y/c"], (ips["x/a"],)),  # ingress[1]
                 Cell("z/c", "x/a", ips["x/a"], 80, "TCP", ips["z/c"], (ips["x/a"],))]  # dropped
        assert list(probe_all(world, batch).values()) == [True, True, False]
        after = counters()
        assert after["ingress[0]"] > before.get("ingress[0]", 0)
        assert after["ingress[1]"] > before.get("ingress[1]", 0)
        assert after["dropped (ingress, pods it isolates)"] > before.get("dropped (ingress, pods it isolates)", 0)
    finally:
        delete_policies(world.lab)


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


def test_policy_added_and_removed_while_traffic_flows(world: World) -> None:
    """Established connections keep going through a policy's arrival and removal; new ones follow it."""
    lab, ips = world.lab, _ip_of(world)
    flows = []
    try:
        for src, dst in (("y/b", "x/a"), ("x/c", "x/b"), ("z/a", "x/c")):  # VXLAN and bridged paths
            sock = netns.open_socket(where(world, src), socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(PROBE_TIMEOUT * 2)
            flows.append(sock)
            sock.connect((ips[dst], 80))
            assert _http_on(sock)
        apply_policies(lab, [DENY_IN])
        TIMES["policy-added-while-traffic-flows"] = converge(world)  # new connections into x are dropped now
        assert all(_http_on(s) for s in flows), "connections established before the policy must keep working"
        delete_policies(lab)
        TIMES["policy-removed-while-traffic-flows"] = converge(world)  # and allowed again
        assert all(_http_on(s) for s in flows)
    finally:
        for sock in flows:
            sock.close()
        delete_policies(lab)


def test_a_new_pod_matching_a_selector_is_let_in(world: World) -> None:
    lab = world.lab
    apply_policies(lab, [np("from-b", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})])
    try:
        converge(world)
        lab.apply(json.dumps({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "b2", "namespace": "x", "labels": {"pod": "b"}},
                              "spec": {"nodeName": naming.node_name(2), "containers": [
                                  {"name": "c", "image": "busybox", "command": ["sleep", "infinity"]}]}}))
        lab.wait_for("x/b2 ready", lambda: _ready(world.refresh().pods.get("x/b2") or {}), timeout=90)
        model = live_model(lab)
        ips = world.ip
        new = [Cell("x/b2", d, ips[d], port, proto, ips["x/b2"], (ips[d],))
               for d in PODS for port in PORTS for proto in PROTOCOLS]
        want = {c: expected(model, c) for c in new}
        outsider = Cell("x/c", "x/a", ips["x/a"], 80, "TCP", ips["x/c"], (ips["x/a"],))
        assert want[new[0]] and not expected(model, outsider)  # x/a lets the new pod in, not a pod without the label
        deadline = time.monotonic() + CONVERGE
        got = probe_all(world, new)
        while got != want and time.monotonic() < deadline:
            got.update(probe_all(world, [c for c in new if got[c] != want[c]]))
        assert got == want, side_by_side(want, got)
    finally:
        lab.cli("delete", "pod", "b2", "-n", "x", check=False)
        delete_policies(lab)
        lab.wait_for("x/b2 gone", lambda: "x/b2" not in world.refresh().pods, timeout=90)


def annotate_namespace(lab: Lab, name: str, key: str, value: str | None) -> None:
    """Set (or remove) one annotation of a Namespace through the lab's store, as `kubectl annotate` would."""
    from netk8s.store.base import mutate

    def change(obj: dict) -> dict:
        notes = obj["metadata"].setdefault("annotations", {})
        if value is None:
            notes.pop(key, None)
        else:
            notes[key] = value
        return obj

    info = json.loads((lab.state_dir / lab.name / "lab.json").read_text())
    store = open_store(info["store"])
    try:
        mutate(store, "Namespace", "", name, change)
    finally:
        store.close()


def policy_table(lab: Lab, node: str) -> str:
    return netns.run_in_netns(naming.node_netns(lab.name, node), ["nft", "list", "table", "ip", "netk8s-policy"],
                              timeout=30).stdout


FROM_B = np("from-b", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
    {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})


def test_drops_are_logged_with_the_pods_and_policy_once_the_namespace_asks(world: World) -> None:
    """Off by default: no log statement. With netk8s.io/log-drops=true on x, a denied probe into x/a
    shows in `policy drops` (5-tuple, both pods, the isolating policy); an allowed one does not."""
    lab = world.lab
    node = world.pods["x/a"]["spec"]["nodeName"]
    apply_policies(lab, [FROM_B])
    try:
        converge(world)
        assert "log group" not in policy_table(lab, node) and "isolated by x/from-b" in policy_table(lab, node)
        annotate_namespace(lab, "x", "netk8s.io/log-drops", "true")
        lab.wait_for("the drop rule logs", lambda: 'log prefix "netk8s-drop in-' in policy_table(lab, node), timeout=30)
        ips = _ip_of(world)
        denied = Cell("x/c", "x/a", ips["x/a"], 80, "TCP", ips["x/c"], (ips["x/a"],))
        allowed = Cell("x/b", "x/a", ips["x/a"], 80, "TCP", ips["x/b"], (ips["x/a"],))
        started = time.time()
        assert probe_all(world, [denied, allowed]) == {denied: False, allowed: True}

        def logged() -> list[dict]:
            out = netk8s(lab, "policy", "drops", "--node", node, "-o", "json", "--tail", "-1")
            return [d for d in map(json.loads, out.splitlines()) if d["time"] >= started - 1]

        lab.wait_for("the denied probe in the drop log", lambda: any(d["src_pod"] == "x/c" for d in logged()), timeout=30)
        got = [d for d in logged() if d["src_pod"] == "x/c"]
        assert {(d["dst_pod"], d["dst"], d["dport"], d["protocol"], d["direction"], d["pod"], tuple(d["isolated_by"]))
                for d in got} == {("x/a", ips["x/a"], 80, "TCP", "ingress", "x/a", ("x/from-b",))}, got
        assert all(d["src"] == ips["x/c"] and d["sport"] > 0 for d in got)
        assert not [d for d in logged() if d["src_pod"] == "x/b"], "an allowed connection is not a drop"
        text = netk8s(lab, "policy", "drops", "--node", node, "-n", "x")
        assert "x/c (" in text and "-> x/a (" in text and "isolated by x/from-b" in text
    finally:
        annotate_namespace(lab, "x", "netk8s.io/log-drops", None)
        delete_policies(lab)
    lab.wait_for("no log rule left", lambda: "log group" not in policy_table(lab, node), timeout=30)


def test_policy_why_probe_kernel_agrees_for_an_allowed_and_a_denied_pair(world: World) -> None:
    """`policy why --probe`: one real connection moves the counter of the rule the model says decides
    (the allowing rule on x/a's node, and the source's egress rule on its own node; the drop)."""
    lab = world.lab
    egress = np("c-out", {"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"podSelector": {"matchLabels": {"pod": "a"}}}], "ports": [{"port": 80}]}]})
    apply_policies(lab, [FROM_B, egress])
    try:
        converge(world)

        def why(src: str, dst: str) -> dict:
            return json.loads(netk8s(lab, "policy", "why", src, dst, "80", "-n", "x", "--probe", "-o", "json"))

        ok = why("b", "a")  # x/b (egress isolated, node2) -> x/a (ingress isolated, node1)
        assert ok["allowed"] and ok["probe"]["ok"] and ok["agrees"], ok
        assert [(k["direction"], k["outcome"], k["node"]) for k in ok["kernel"]] == [
            ("egress", "allowed", world.pods["x/b"]["spec"]["nodeName"]),
            ("ingress", "allowed", world.pods["x/a"]["spec"]["nodeName"])], ok
        assert all(k["moved"] >= 1 for k in ok["kernel"]), ok
        no = why("c", "a")
        assert not no["allowed"] and not no["probe"]["ok"] and no["agrees"], no
        # x/c's egress is open (no chain to count), x/a's drop rule counted the probe's SYN (and retries)
        assert [(k["direction"], k["outcome"], k["agrees"]) for k in no["kernel"]] == [
            ("egress", "open", True), ("ingress", "dropped", True)], no
        assert no["kernel"][0]["moved"] is None and no["kernel"][1]["moved"] >= 1, no
        text = netk8s(lab, "policy", "why", "c", "a", "80", "-n", "x")
        assert text.splitlines()[0] == "DROPPED" and "kernel: ingress of x/a" in text and "kernel agrees" in text, text
    finally:
        delete_policies(lab)


# Service traffic to a protected pod in every proxy mode this kernel runs (IPVS needs the ip_vs module,
# which the host kernel lacks: `netk8s lab up --proxy-mode ipvs` refuses it). These run last: they switch
# the module's lab. In the userspace mode the node's proxy connects to the endpoint, so the endpoint
# sees the node's address (observed), and a client pod's egress rules do not apply to Service traffic.
MODE_CASES = ("default-deny-ingress", "pod-selector", "namespace-selector", "port-80-tcp", "ipblock-ingress-except")


@pytest.mark.parametrize("mode", ["iptables", "nftables", "userspace"])
def test_service_traffic_to_a_protected_pod_in_every_proxy_mode(world: World, mode: str) -> None:
    world.lab.cli("lab", "set-proxy-mode", mode, timeout=180)
    world.refresh()
    world.seen = observe_sources(world)
    if mode == "userspace":  # the node is the client: its own address reaches the endpoint
        assert {world.seen[k] for k in world.seen if k[0] != EXTERNAL} - set(world.ip.values()), world.seen
    cases = every_case(world)
    for name in MODE_CASES:
        run_case(world, f"{name} [{mode}, Service paths]", cases[name].policies, services_only=True)
    policy = np("from-lan", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "192.168.56.96/28"}}]}]})
    run_case(world, f"nodeport-ipblock [{mode}, Service paths]", [policy], services_only=True)
