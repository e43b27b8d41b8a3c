"""The pure parts of `netk8s trace` in IPVS mode: every real server with its probability, read back from what
the IPVS backend programmed (render_ipvs through the fake IPVS kernel), agreeing with the fake's own packet
tracer; the connection table parsers; and a whole trace (dry run and probe) over a runner that answers as a
node would, printed as text, JSON and SVG."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import pytest

from netk8s.model import naming
from netk8s.proxy import tracer_ipvs as tv
from netk8s.proxy.testing.fake_ipvs import FakeIpvs, trace
from netk8s.trace import ipvs as ti
from netk8s.trace.model import Trace, hop_kinds, render_svg, render_text
from tests.unit.test_ipvs_mode import NODE, OUTSIDE, POD, first_sync

NODE_IP = NODE.node_ips[0]
THREE = {"10.244.1.5:8080": 1 / 3, "10.244.2.5:8080": 1 / 3, "10.244.3.5:8080": 1 / 3}


def state(k: FakeIpvs) -> tv.IpvsState:
    """The node's state as `netk8s trace` reads it back (the listings, not the fake's objects)."""
    return tv.IpvsState.parse(k.ipvsadm_list(), k.ipset_save(), k.save("nat"), k.device_addresses() or set(),
                              k.node_ips)


# (scenario, src, dst, dport, expected {real or verdict: probability})
CASES = [
    ("clusterip_3_endpoints", POD, "10.96.0.20", 80, THREE),
    ("clusterip_3_endpoints", OUTSIDE, "10.96.0.20", 80, THREE),
    ("no_endpoints", POD, "10.96.0.21", 80, {"REJECT": 1.0}),
    ("nodeport_cluster", OUTSIDE, NODE_IP, 30022, THREE),
    ("nodeport_local", OUTSIDE, NODE_IP, 30023, {"10.244.1.7:8080": 1.0}),
    ("nodeport_local_no_local_endpoints", OUTSIDE, NODE_IP, 30023, {"REJECT": 1.0}),
    ("loadbalancer", OUTSIDE, "192.168.56.200", 80, {"10.244.1.5:8080": 0.5, "10.244.2.5:8080": 0.5}),
    ("loadbalancer_local", OUTSIDE, "192.168.56.201", 80, {"REJECT": 1.0}),  # no local endpoint on node1
    ("session_affinity", POD, "10.96.0.27", 80, THREE),  # a client without a template: as rr
    ("clusterip_3_endpoints", POD, "10.96.0.99", 80, {"ACCEPT": 1.0}),  # no Service there
]


@pytest.mark.parametrize(("name", "src", "dst", "dport", "want"), CASES,
                         ids=[f"{c[0]}-{c[2]}:{c[3]}-from-{c[1]}" for c in CASES])
def test_dry_run_over_the_read_back_agrees_with_the_fakes_tracer(name: str, src: str, dst: str, dport: int,
                                                                  want: dict[str, float]) -> None:
    k, _ = first_sync(name)
    got = tv.plan(state(k), src, "tcp", dst, dport).probabilities()
    assert got == pytest.approx(want)
    assert sum(got.values()) == pytest.approx(1.0)
    # the fake kernel, one connection at a time (rr in order), sends them the same way
    n = 6
    seen = Counter(t.real or {"NO-DESTINATION": "REJECT"}.get(t.verdict, t.verdict)
                   for t in (trace(k, f"10.244.{i}.99" if src == POD else src, "tcp", dst, dport, now=float(i))
                             for i in range(n)))
    assert {key: count / n for key, count in seen.items()} == pytest.approx(want)


def test_the_rules_and_sets_that_decide_are_named() -> None:
    k, _ = first_sync("clusterip_3_endpoints")
    p = tv.plan(state(k), OUTSIDE, "tcp", "10.96.0.20", 80)
    assert p.local_by == naming.KUBE_IPVS_DEVICE and p.virtual == ("TCP", "10.96.0.20", 80) and p.scheduler == "rr"
    hits = [(m.set, m.entry) for m in p.set_matches if m.hit]
    assert (naming.IPSET_CLUSTER_IP, "10.96.0.20,tcp:80") in hits
    chains = [c for _, c, _ in p.nat_rules]
    assert naming.KUBE_SERVICES in chains and naming.KUBE_MARK_MASQ in chains  # off-cluster: marked
    assert all(r.masquerade for r in p.reals)
    from_pod = tv.plan(state(k), POD, "tcp", "10.96.0.20", 80)
    assert not any(r.masquerade for r in from_pod.reals) and naming.KUBE_MARK_MASQ not in \
        [c for _, c, _ in from_pod.nat_rules]
    hairpin = tv.plan(state(k), "10.244.1.5", "tcp", "10.96.0.20", 80)
    assert {r.real: r.masquerade for r in hairpin.reals}["10.244.1.5:8080"]  # KUBE-LOOP-BACK
    np = tv.plan(state(k), OUTSIDE, "tcp", NODE_IP, 30020)
    assert np.verdict == "ACCEPT" and np.virtual is None  # no NodePort in this scenario


def test_weights_connections_and_persistence() -> None:
    k, _ = first_sync("clusterip_3_endpoints")
    svc = k.services[("TCP", "10.96.0.20", 80)]
    reals = sorted(svc.reals)
    svc.reals[reals[0]].weight = 0  # draining (graceful removal): takes no new connection
    assert tv.plan(state(k), POD, "tcp", "10.96.0.20", 80).probabilities() == \
        pytest.approx({"10.244.2.5:8080": 0.5, "10.244.3.5:8080": 0.5})
    svc.reals[reals[0]].weight = 1
    svc.reals[reals[1]].weight = 3
    svc.scheduler = "wrr"
    assert tv.plan(state(k), POD, "tcp", "10.96.0.20", 80).probabilities() == \
        pytest.approx({"10.244.1.5:8080": 0.2, "10.244.2.5:8080": 0.6, "10.244.3.5:8080": 0.2})
    svc.scheduler = "rr"  # ip_vs_rr: weights above 0 do not matter
    assert tv.plan(state(k), POD, "tcp", "10.96.0.20", 80).probabilities() == pytest.approx(THREE)
    svc.scheduler = "lc"
    k.connections("10.96.0.20", 80, "10.244.1.5:8080", 2)
    assert tv.plan(state(k), POD, "tcp", "10.96.0.20", 80).probabilities() == \
        pytest.approx({"10.244.2.5:8080": 0.5, "10.244.3.5:8080": 0.5})
    svc.scheduler = "wlc"  # connections per unit of weight: 512/1, 0/3, 256/1
    k.connections("10.96.0.20", 80, "10.244.3.5:8080", 1)
    assert tv.plan(state(k), POD, "tcp", "10.96.0.20", 80).probabilities() == \
        pytest.approx({"10.244.2.5:8080": 1.0})
    svc.scheduler = "sh"
    p = tv.plan(state(k), POD, "tcp", "10.96.0.20", 80)
    assert p.probabilities() == pytest.approx({"10.244.1.5:8080": 0.2, "10.244.2.5:8080": 0.6, "10.244.3.5:8080": 0.2})
    assert "source hashing" in p.note
    sticky, _ = first_sync("session_affinity")
    tmpl = tv.IpvsConn("TCP", (POD, 0), ("10.96.0.27", 80), "10.244.3.5:8080", "NONE", 42)
    assert tmpl.template
    p = tv.plan(state(sticky), POD, "tcp", "10.96.0.27", 80, templates=[tmpl])
    assert p.affinity == "10.244.3.5:8080" and p.probabilities() == {"10.244.3.5:8080": 1.0}
    assert "persistent 60" in p.note
    other = tv.plan(state(sticky), "10.244.2.9", "tcp", "10.96.0.27", 80, templates=[tmpl])
    assert other.affinity is None and other.probabilities() == pytest.approx(THREE)


PROC = """Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP 0AF4010D B26E 0A600014 0050 0AF4010A 1F90 TIME_WAIT       119
TCP 0AF4010D 0000 0A600015 0050 0AF4010B 1F90 ASSURED          59
"""
IPVSADM_C = """IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:59  TIME_WAIT   10.244.1.13:45678  10.96.0.20:80      10.244.1.10:8080
TCP 00:59  NONE        10.244.1.13:0      10.96.0.21:80      10.244.1.11:8080
"""


@pytest.mark.parametrize("text", [PROC, IPVSADM_C], ids=["proc", "ipvsadm-Lnc"])
def test_connection_table_parsers(text: str) -> None:
    conns = tv.parse_ip_vs_conn(text)
    c = tv.connection_of(conns, "10.244.1.13", 45678, "tcp")
    assert c is not None and c.real == "10.244.1.10:8080" and c.virtual == ("10.96.0.20", 80)
    assert c.state == "TIME_WAIT" and c.expires == 119
    t = tv.live_template(conns, "10.244.1.13", "10.96.0.21")
    assert t is not None and t.real == "10.244.1.11:8080" and t.expires == 59
    assert tv.connection_of(conns, "10.244.1.13", 1, "tcp") is None
    assert tv.live_template(conns, "10.244.1.13", "10.96.0.20") is None


def hx(ip: str, port: int) -> str:
    """An address and port as /proc/net/ip_vs_conn prints them."""
    return "".join(f"{int(o):02X}" for o in ip.split(".")) + f" {port:04X}"


class FakeNode:
    """A runner answering as a node in IPVS mode would, over a FakeIpvs; the probe adds the connection the
    fake kernel chose to a connection table in /proc's format, and counts the nat rules it matched."""

    def __init__(self, k: FakeIpvs, client: str) -> None:
        self.k, self.client = k, client
        self.conns: list[str] = []
        self.asked: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str]) -> str:
        self.asked.append(tuple(argv))
        cmd = tuple(argv[:2])
        if cmd == ("ipvsadm", "-L"):
            return self.k.ipvsadm_list()
        if cmd == ("ipset", "save"):
            return self.k.ipset_save()
        if argv[0] == "iptables-legacy-save":
            return self.k.save("nat")
        if cmd == ("ip", "-j") and "addr" in argv:
            return json.dumps([{"ifname": naming.KUBE_IPVS_DEVICE, "addr_info": [
                {"family": "inet", "local": ip} for ip in sorted(self.k.device or ())]},
                {"ifname": "eth0", "addr_info": [{"family": "inet", "local": ip} for ip in sorted(self.k.node_ips)]}])
        if cmd == ("ip", "-j"):
            return json.dumps([{"dst": argv[-1], "dev": naming.BRIDGE}])
        if cmd == ("cat", ti.CONN_TABLE):
            return "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n" + "".join(self.conns)
        raise AssertionError(f"unexpected command {argv}")

    def probe(self, dst: str, port: int, sport: int) -> dict:
        t = trace(self.k, self.client, "tcp", dst, port)
        if t.real is None:
            return {"ok": False, "error": "refused"}

        rip, _, rport = t.real.rpartition(":")
        self.conns.append(f"TCP {hx(self.client, sport)} {hx(dst, port)} {hx(rip, int(rport))} TIME_WAIT 119\n")
        return {"ok": True, "status": "HTTP/1.1 200 OK", "body": t.real}


NAMES = {"10.244.1.5": ("default/web-a", "node1"), "10.244.2.5": ("default/web-b", "node2"),
         "10.244.3.5": ("default/web-c", "node3"), POD: ("default/client", "node1")}


def test_a_whole_trace_over_a_node_runner() -> None:
    k, _ = first_sync("clusterip_3_endpoints")
    node = FakeNode(k, POD)
    dry = ti.dry_run(Trace("pod/client", "10.96.0.20", "tcp", 80, "ipvs", service="default/web"),
                     ti.read_state(node.run), POD, "10.96.0.20", 80, NAMES, node="node1")
    (hop,) = dry.hops
    assert hop.kind == "rules" and dry.verdict == "dry-run"
    eps = hop.details["endpoints"]
    assert sum(Fraction(e["probability"]).limit_denominator(100) for e in eps) == 1
    assert {e["endpoint"]: e["pod"] for e in eps} == {"10.244.1.5:8080": "default/web-a",
                                                      "10.244.2.5:8080": "default/web-b",
                                                      "10.244.3.5:8080": "default/web-c"}
    assert any(r.table == "ipvs" and r.chain == "TCP 10.96.0.20:80" for r in hop.rules)
    assert any(r.table == "ipset" and r.chain == naming.IPSET_CLUSTER_IP for r in hop.rules)
    seen = set()
    for sport in (40001, 40002, 40003):
        t = ti.live(Trace("pod/client", "10.96.0.20", "tcp", 80, "ipvs", service="default/web"), node.run,
                    lambda s=sport: node.probe("10.96.0.20", 80, s), POD, sport, "10.96.0.20", 80, NAMES, node="node1")
        assert hop_kinds(t) == ["rules", "ipvs", "dnat", "bridge", "delivery", "reply"]
        assert t.verdict == "delivered" and t.endpoint is not None and t.endpoint["choice"] == "rr"
        assert f"{t.endpoint['ip']}:{t.endpoint['port']}" == t.hops[-2].details["probe"]["body"]
        assert t.endpoint["pod"] == NAMES[t.endpoint["ip"]][0]
        seen.add(t.endpoint["pod"])
        text = render_text(t)
        assert "kube-ipvs0" in text and "IPVS connection table" in text and "=> DELIVERED" in text
        assert json.loads(json.dumps(t.to_dict()))["hops"][1]["kind"] == "ipvs"
        assert render_svg(t).startswith("<svg") and "ipvs" in render_svg(t)
    assert seen == {"default/web-a", "default/web-b", "default/web-c"}  # rr
    # tracing asks, never changes: every command was a read
    assert {a[:2] for a in node.asked} <= {("ipvsadm", "-L"), ("ipset", "save"), ("iptables-legacy-save", "-c"),
                                           ("ip", "-j"), ("cat", ti.CONN_TABLE)}


def test_a_service_without_endpoints_is_rejected() -> None:
    k, _ = first_sync("no_endpoints")
    node = FakeNode(k, POD)
    t = ti.live(Trace("pod/client", "10.96.0.21", "tcp", 80, "ipvs", service="default/empty"), node.run,
                lambda: node.probe("10.96.0.21", 80, 40010), POD, 40010, "10.96.0.21", 80, NAMES, node="node1")
    assert hop_kinds(t) == ["rules", "drop"] and t.verdict == "rejected"
    assert t.reason is not None and "has no endpoints" in t.reason and "REJECT" in t.reason
    assert "no real server" in t.reason


def test_a_live_template_makes_the_choice_affinity() -> None:
    k, _ = first_sync("session_affinity")
    node = FakeNode(k, POD)
    picks = []
    for sport in (40021, 40022):
        t = ti.live(Trace("pod/client", "10.96.0.27", "tcp", 80, "ipvs", service="default/sticky"), node.run,
                    lambda s=sport: node.probe("10.96.0.27", 80, s), POD, sport, "10.96.0.27", 80, NAMES, node="node1")
        assert t.endpoint is not None
        picks.append(t)
        real = f"{t.endpoint['ip']}:{t.endpoint['port']}"
        rip, _, rport = real.rpartition(":")
        node.conns.append(f"TCP {hx(POD, 0)} {hx('10.96.0.27', 80)} {hx(rip, int(rport))} ASSURED 59\n")  # template
    first, second = picks
    assert first.endpoint and second.endpoint and first.endpoint["choice"] == "rr"
    assert second.endpoint["choice"] == "affinity" and second.endpoint["pod"] == first.endpoint["pod"]
    assert "persistence template" in second.hops[1].summary
