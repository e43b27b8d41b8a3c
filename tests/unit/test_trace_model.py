"""The pure parts of `netk8s trace`: every path through the golden rules with its probability (the dry
run), picking the path the kernel's counters show, and the parsers and renderers."""

from __future__ import annotations

import json

import pytest

from netk8s.proxy.render_iptables import BUILTIN_JUMPS
from netk8s.proxy.testing.fake_iptables import Ruleset
from netk8s.proxy.testing.fake_nft import FakeNft
from netk8s.trace import paths as tp
from netk8s.trace.model import (
    Hop,
    MatchedRule,
    ResolvConf,
    Trace,
    expand_name,
    first_trace,
    flows_from_conntrack,
    parse_conntrack,
    parse_nft_trace,
    parse_resolv_conf,
    render_flows,
    render_svg,
    render_text,
)
from tests.unit.golden import GOLDEN_ROOT

NODE_IP = "192.168.56.11"
LOCAL = [NODE_IP, "10.244.1.1", "127.0.0.1"]
POD = "10.244.2.33"
EXTERNAL = "192.168.56.100"
THREE = {"10.244.1.5:8080": 1 / 3, "10.244.2.5:8080": 1 / 3, "10.244.3.5:8080": 1 / 3}


def iptables_golden(name: str) -> Ruleset:
    return Ruleset.parse((GOLDEN_ROOT / "iptables" / f"{name}.txt").read_text(), jumps=BUILTIN_JUMPS)


def nft_golden(name: str) -> FakeNft:
    fake = FakeNft()
    text = (GOLDEN_ROOT / "nftables" / f"{name}.nft").read_text()
    for batch in text.split("# ---- nft -f transaction")[1:]:
        fake.apply(batch.split("\n", 1)[1])
    return fake


# (golden scenario, src, dst, dport, hook, expected {endpoint or verdict: probability})
CASES = [
    ("clusterip_3_endpoints", POD, "10.96.0.20", 80, "PREROUTING", THREE),
    ("clusterip_3_endpoints", NODE_IP, "10.96.0.20", 80, "OUTPUT", THREE),
    ("no_endpoints", POD, "10.96.0.21", 80, "PREROUTING", {"REJECT": 1.0}),
    ("nodeport_cluster", EXTERNAL, NODE_IP, 30022, "PREROUTING", THREE),
    ("nodeport_local", EXTERNAL, NODE_IP, 30023, "PREROUTING", {"10.244.1.7:8080": 1.0}),
    ("nodeport_local_no_local_endpoints", EXTERNAL, NODE_IP, 30023, "PREROUTING", {"DROP": 1.0}),
    ("session_affinity", POD, "10.96.0.27", 80, "PREROUTING", None),  # a fresh client: spread like random
]


def approx(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 9) for k, v in d.items()}


@pytest.mark.parametrize("name,src,dst,dport,hook,want", CASES, ids=[f"{c[0]}-{c[4]}" for c in CASES])
def test_iptables_dry_run_over_golden_rules(name: str, src: str, dst: str, dport: int, hook: str,
                                            want: dict[str, float] | None) -> None:
    found = tp.iptables_paths(iptables_golden(name), src, "tcp", dst, dport, local_ips=LOCAL, hook=hook)
    probs = tp.endpoint_probabilities(found)
    assert abs(sum(probs.values()) - 1.0) < 1e-9
    if want is not None:
        assert approx(probs) == approx(want)
    else:
        assert len(probs) >= 2 and all(":" in k for k in probs)


@pytest.mark.parametrize("name,src,dst,dport,hook,want", CASES, ids=[f"{c[0]}-{c[4]}" for c in CASES])
def test_nft_dry_run_over_golden_rules_agrees_with_iptables(name: str, src: str, dst: str, dport: int, hook: str,
                                                             want: dict[str, float] | None) -> None:
    ipt = tp.endpoint_probabilities(tp.iptables_paths(iptables_golden(name), src, "tcp", dst, dport,
                                                      local_ips=LOCAL, hook=hook))
    nft = tp.endpoint_probabilities(tp.nft_paths(nft_golden(name), src, "tcp", dst, dport, local_ips=LOCAL,
                                                 hook=hook))
    assert abs(sum(nft.values()) - 1.0) < 1e-9
    assert approx(nft) == approx(ipt)


def test_affinity_paths_are_choice_points_when_asked() -> None:
    rs = iptables_golden("session_affinity")
    fresh = tp.iptables_paths(rs, POD, "tcp", "10.96.0.27", 80, local_ips=LOCAL)
    assert not any(p.affinity for p in fresh)
    every = tp.iptables_paths(rs, POD, "tcp", "10.96.0.27", 80, local_ips=LOCAL, affinity=True)
    sticky = [p for p in every if p.affinity]
    assert sticky and {p.dnat for p in sticky} <= {p.dnat for p in fresh}
    assert all(any("--rcheck" in text for _, _, text in p.rules) for p in sticky)


def test_observed_path_follows_the_counters() -> None:
    rs = iptables_golden("session_affinity")
    every = tp.iptables_paths(rs, POD, "tcp", "10.96.0.27", 80, local_ips=LOCAL, affinity=True)
    target = next(p for p in every if p.affinity)
    deltas = {r: 1 for r in target.rules}
    assert tp.observed_path(every, target.dnat, deltas) is target
    random_path = next(p for p in every if not p.affinity and p.dnat == target.dnat)
    assert tp.observed_path(every, target.dnat, {r: 1 for r in random_path.rules}) is random_path


def test_counter_deltas() -> None:
    before = Ruleset.parse("*nat\n:KUBE-X - [0:0]\n[3:180] -A KUBE-X -j RETURN\n[0:0] -A KUBE-X -j RETURN\nCOMMIT\n")
    after = Ruleset.parse("*nat\n:KUBE-X - [0:0]\n[4:240] -A KUBE-X -j RETURN\n[0:0] -A KUBE-X -j RETURN\nCOMMIT\n")
    assert tp.counter_deltas(before, after) == {("nat", "KUBE-X", "-A KUBE-X -j RETURN"): 1}


NFT_JSON = {"nftables": [
    {"map": {"name": "service-ips", "elem": [[{"concat": ["10.96.0.20", "tcp", 80]},
                                              {"goto": {"target": "service-A"}}]]}},
    {"map": {"name": "no-endpoint-services", "elem": [[{"concat": ["10.96.0.21", "tcp", 80]},
                                                       {"goto": {"target": "reject-chain"}}]]}},
    {"chain": {"name": "service-A"}},
    {"rule": {"chain": "service-A", "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.96.0.20"}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}},
        {"jump": {"target": "mark-for-masquerade"}}]}},
    {"rule": {"chain": "service-A", "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@affinity-x"}},
        {"goto": {"target": "endpoint-1"}}]}},
    {"rule": {"chain": "service-A", "expr": [
        {"vmap": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}},
                  "data": {"set": [[0, {"goto": {"target": "endpoint-1"}}], [1, {"goto": {"target": "endpoint-2"}}]]}}}]}},
    {"rule": {"chain": "endpoint-1", "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
        {"dnat": {"addr": "10.244.1.5", "port": 8080}}]}},
    {"rule": {"chain": "endpoint-2", "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
        {"dnat": {"addr": "10.244.2.5", "port": 8080}}]}},
]}


def test_nft_json_paths() -> None:
    found = tp.nft_json_paths(NFT_JSON, POD, "tcp", "10.96.0.20", 80, local_ips=LOCAL)
    assert tp.endpoint_probabilities(found) == {"10.244.1.5:8080": 0.5, "10.244.2.5:8080": 0.5}
    found = tp.nft_json_paths(NFT_JSON, POD, "tcp", "10.96.0.21", 80, local_ips=LOCAL)
    assert tp.endpoint_probabilities(found) == {"REJECT": 1.0}
    assert tp.endpoint_probabilities(tp.nft_json_paths(NFT_JSON, POD, "tcp", "10.96.0.99", 80,
                                                       local_ips=LOCAL)) == {"ACCEPT": 1.0}


def test_resolver_search_list() -> None:
    conf = parse_resolv_conf("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local "
                             "cluster.local\noptions ndots:5\n")
    assert conf == ResolvConf(["10.96.0.10"], ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"], 5)
    assert expand_name("web", conf)[0] == "web.default.svc.cluster.local."
    assert expand_name("web", conf)[-1] == "web."
    assert expand_name("web.", conf) == ["web."]
    assert expand_name("a.b.c.d.e.f", conf)[0] == "a.b.c.d.e.f."


CT = ("ipv4     2 tcp      6 117 TIME_WAIT src=10.244.1.3 dst=10.96.218.40 sport=40001 dport=80 packets=6 bytes=400 "
      "src=10.244.2.3 dst=10.244.1.3 sport=80 dport=40001 packets=4 bytes=900 [ASSURED] mark=0 use=1\n"
      "ipv4     2 udp      17 20 src=10.244.1.3 dst=10.244.2.9 sport=5353 dport=53 src=10.244.2.9 dst=10.244.1.3 "
      "sport=53 dport=5353 mark=0 use=1\n")


def test_conntrack_and_flows() -> None:
    a, b = parse_conntrack(CT)
    assert (a.state, a.dnat, a.translated, a.packets, a.bytes) == ("TIME_WAIT", "10.244.2.3:80", True, 10, 1300)
    assert a.flags == ("ASSURED",)
    assert (b.state, b.translated) == (None, False)
    flows = flows_from_conntrack("node1", [a, b], {"10.244.1.3": "default/client", "10.244.2.3": "default/web-1"},
                                 {"10.96.218.40:80": "default/web"})
    assert [(f.client_pod, f.service, f.endpoint_pod, f.bytes) for f in flows] == [
        ("default/client", "default/web", "default/web-1", 1300)]
    text = render_flows(flows)
    assert "default/client (10.244.1.3:40001)" in text and "default/web-1 (10.244.2.3:80)" in text


NFT_TRACE = """\
trace id 1 ip netk8s-trace pre packet: iif "cbr0" ip saddr 10.244.1.3 ip daddr 10.96.0.20 tcp sport 40001 tcp dport 80
trace id 1 ip kube-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips (verdict goto service-A)
trace id 1 ip kube-proxy endpoint-1 rule meta l4proto tcp dnat to 10.244.1.5:8080 (verdict accept)
trace id 2 ip netk8s-trace pre packet: iif "cbr0" ip saddr 10.244.1.3 ip daddr 10.96.0.20 tcp sport 40001 tcp dport 80
trace id 2 ip kube-proxy filter-forward rule ct state new jump x (verdict jump x)
trace id 1 ip kube-proxy nat-prerouting policy accept
"""


def test_nft_trace_first_packet() -> None:
    events = first_trace(parse_nft_trace(NFT_TRACE.splitlines()), "10.244.1.3", 40001, "kube-proxy")
    assert [(e.chain, e.kind, e.verdict, e.target) for e in events] == [
        ("services", "rule", "goto", "service-A"), ("endpoint-1", "rule", "accept", None),
        ("nat-prerouting", "policy", "accept", None)]
    assert first_trace(parse_nft_trace(NFT_TRACE.splitlines()), "10.244.1.3", 40002, "kube-proxy") == []


def test_renderers() -> None:
    t = Trace("pod/client", "web", "tcp", 80, "iptables", [
        Hop("dns", "node1", "web -> 10.96.0.20"),
        Hop("rules", "node1", "KUBE-SERVICES -> KUBE-SVC-X", rules=[MatchedRule("nat", "KUBE-SERVICES", "-A ... <b>", 1)]),
        Hop("delivery", "node2", "delivered")], verdict="delivered")
    text = render_text(t)
    assert text.index("dns") < text.index("rules") < text.index("delivery") and "=> DELIVERED" in text
    assert json.loads(json.dumps(t.to_dict()))["hops"][1]["rules"][0]["chain"] == "KUBE-SERVICES"
    svg = render_svg(t)
    assert svg.startswith("<svg") and svg.count("<rect") == 3 and "&lt;b&gt;" in svg
