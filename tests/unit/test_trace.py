"""Packet tracer over rendered rules: ClusterIP, NodePort and LoadBalancer paths, masquerade,
hairpin, REJECT/DROP, random balancing, session affinity, partial syncs; Ruleset parsing."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from netk8s.errors import ValidationError
from netk8s.proxy.model import NodeContext, build_state
from netk8s.proxy.render_iptables import BUILTIN_JUMPS, render_full, render_partial
from netk8s.proxy.testing.fake_iptables import FakeRestore, Ruleset, trace
from tests.unit.test_iptables_render import HTTP_EP, NODE, THREE, ep, eps_slice, scenario, state_of

NODE_IP = "192.168.56.11"
LOCAL = {NODE_IP}
POD = "10.244.2.33"  # a pod on another node, reaching this node's rules through the overlay
EXTERNAL = "192.168.56.100"  # the external client, outside the cluster CIDR


def kernel() -> FakeRestore:
    """A fake kernel with the built-in chains' jumps, as the proxier's full sync ensures them."""
    fake = FakeRestore()
    fake.ensure_rules(BUILTIN_JUMPS)
    return fake


def rules_for(name: str, node: NodeContext = NODE) -> Ruleset:
    fake = kernel()
    fake.apply(render_full(state_of(name, node), node).text)
    return fake.ruleset()


def test_cluster_ip_from_pod_dnat_per_rand_without_masquerade() -> None:
    rs = rules_for("clusterip_3_endpoints")
    picks = {
        0.0: "10.244.1.5:8080",
        (0.5, 0.0): "10.244.2.5:8080",  # 0.5 >= 1/3: skip the first; 0.0 < 1/2: take the second
        (0.5, 0.9): "10.244.3.5:8080",
    }
    for rand, want in picks.items():
        r = trace(rs, POD, "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL, rand=rand)
        assert (r.verdict, r.dnat, r.masquerade) == ("DNAT", want, False)
    r = trace(rs, POD, "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL)
    assert r.chains[:3] == ["PREROUTING", "KUBE-SERVICES", r.chains[2]] and r.chains[2].startswith("KUBE-SVC-")
    assert r.chains[3].startswith("KUBE-SEP-")
    assert "FORWARD" in r.chains  # translated to a pod IP: forwarded, not delivered locally


def test_cluster_ip_wrong_port_or_proto_is_untouched() -> None:
    rs = rules_for("clusterip_3_endpoints")
    for proto, port in (("tcp", 81), ("udp", 80)):
        r = trace(rs, POD, proto, "10.96.0.20", port, local_dst_ips=LOCAL)
        assert (r.verdict, r.dnat) == ("ACCEPT", None)


def test_cluster_ip_from_outside_cluster_cidr_is_masqueraded() -> None:
    rs = rules_for("clusterip_3_endpoints")
    r = trace(rs, EXTERNAL, "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL)
    assert (r.verdict, r.masquerade) == ("DNAT", True)
    assert "KUBE-MARK-MASQ" in r.chains


def test_cluster_ip_from_the_node_itself() -> None:
    rs = rules_for("clusterip_3_endpoints")
    r = trace(rs, NODE_IP, "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL, hook="OUTPUT")
    assert (r.verdict, r.dnat, r.masquerade) == ("DNAT", "10.244.1.5:8080", True)
    assert r.chains[0] == "OUTPUT"


def test_hairpin_is_masqueraded() -> None:
    rs = rules_for("clusterip_3_endpoints")
    r = trace(rs, "10.244.1.5", "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL, rand=0.0)
    assert (r.dnat, r.masquerade) == ("10.244.1.5:8080", True)
    r = trace(rs, "10.244.1.5", "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL, rand=(0.5, 0.0))
    assert (r.dnat, r.masquerade) == ("10.244.2.5:8080", False)


def test_nodeport_cluster_policy_masquerades_external_clients() -> None:
    rs = rules_for("nodeport_cluster")
    seen = set()
    for rand in (0.0, (0.5, 0.0), (0.5, 0.9)):
        r = trace(rs, EXTERNAL, "tcp", NODE_IP, 30022, local_dst_ips=LOCAL, rand=rand)
        assert (r.verdict, r.masquerade) == ("DNAT", True)
        assert "KUBE-NODEPORTS" in r.chains and any(c.startswith("KUBE-EXT-") for c in r.chains)
        seen.add(r.dnat)
    assert seen == {"10.244.1.5:8080", "10.244.2.5:8080", "10.244.3.5:8080"}
    # Not a local address: the NodePort does not apply.
    r = trace(rs, EXTERNAL, "tcp", "192.168.56.99", 30022, local_dst_ips=LOCAL)
    assert r.dnat is None


def test_nodeport_local_policy_keeps_source_and_uses_local_endpoints() -> None:
    rs = rules_for("nodeport_local")
    gen = random.Random(1)
    for _ in range(50):
        r = trace(rs, EXTERNAL, "tcp", NODE_IP, 30023, local_dst_ips=LOCAL, rand=gen.random)
        assert (r.verdict, r.dnat, r.masquerade) == ("DNAT", "10.244.1.7:8080", False)
        assert any(c.startswith("KUBE-SVL-") for c in r.chains)


def test_nodeport_local_policy_short_circuits_pods_and_host() -> None:
    rs = rules_for("nodeport_local")
    # A pod reaching the NodePort uses every endpoint (cluster chain), source kept.
    r = trace(rs, POD, "tcp", NODE_IP, 30023, local_dst_ips=LOCAL, rand=0.9)
    assert (r.dnat, r.masquerade) == ("10.244.2.7:8080", False)
    # The node itself: masqueraded, cluster chain.
    r = trace(rs, NODE_IP, "tcp", NODE_IP, 30023, local_dst_ips=LOCAL, rand=0.9, hook="OUTPUT")
    assert (r.dnat, r.masquerade) == ("10.244.2.7:8080", True)


def test_nodeport_local_policy_drops_on_node_without_local_endpoints() -> None:
    rs = rules_for("nodeport_local_no_local_endpoints")
    r = trace(rs, EXTERNAL, "tcp", NODE_IP, 30023, local_dst_ips=LOCAL)
    assert (r.verdict, r.dnat) == ("DROP", None)
    assert "KUBE-EXTERNAL-SERVICES" in r.chains
    # The ClusterIP still works from pods: it uses cluster endpoints.
    r = trace(rs, POD, "tcp", "10.96.0.23", 80, local_dst_ips=LOCAL)
    assert (r.verdict, r.dnat) == ("DNAT", "10.244.2.7:8080")
    # And pods may still use the NodePort (short-circuit to the cluster chain).
    r = trace(rs, POD, "tcp", NODE_IP, 30023, local_dst_ips=LOCAL)
    assert (r.verdict, r.dnat) == ("DNAT", "10.244.2.7:8080")


def test_loadbalancer_ip_from_external_client() -> None:
    rs = rules_for("loadbalancer")
    r = trace(rs, EXTERNAL, "tcp", "192.168.56.200", 80, local_dst_ips=LOCAL | {"192.168.56.200"})
    assert (r.verdict, r.dnat, r.masquerade) == ("DNAT", "10.244.1.5:8080", True)
    # The LB IP does not need to be local to this node (ARP may be answered elsewhere).
    r = trace(rs, EXTERNAL, "tcp", "192.168.56.200", 80, local_dst_ips=LOCAL, rand=0.9)
    assert (r.verdict, r.dnat) == ("DNAT", "10.244.2.5:8080")


def test_loadbalancer_local_without_local_endpoints_and_health_check() -> None:
    rs = rules_for("loadbalancer_local")
    r = trace(rs, EXTERNAL, "tcp", "192.168.56.201", 80, local_dst_ips=LOCAL)
    assert r.verdict == "DROP"
    r = trace(rs, EXTERNAL, "tcp", NODE_IP, 30025, local_dst_ips=LOCAL)
    assert r.verdict == "DROP"
    r = trace(rs, EXTERNAL, "tcp", NODE_IP, 32000, local_dst_ips=LOCAL)
    assert (r.verdict, r.dnat) == ("ACCEPT", None)
    assert "filter:KUBE-NODEPORTS" in r.path


def test_external_ips() -> None:
    rs = rules_for("external_ips")
    for ip in ("192.168.56.150", "192.168.56.151"):
        r = trace(rs, EXTERNAL, "tcp", ip, 80, local_dst_ips=LOCAL)
        assert (r.verdict, r.dnat, r.masquerade) == ("DNAT", "10.244.1.5:8080", True)


def test_no_endpoints_rejects_every_destination() -> None:
    rs = rules_for("no_endpoints")
    for src, dst, port in ((POD, "10.96.0.21", 80), (EXTERNAL, NODE_IP, 30021),
                           (EXTERNAL, "192.168.56.150", 80)):
        r = trace(rs, src, "tcp", dst, port, local_dst_ips=LOCAL)
        assert (r.verdict, r.dnat) == ("REJECT", None), (dst, port)
    r = trace(rs, NODE_IP, "tcp", "10.96.0.21", 80, local_dst_ips=LOCAL, hook="OUTPUT")
    assert r.verdict == "REJECT"


def test_multiport_udp() -> None:
    rs = rules_for("multiport_udp")
    r = trace(rs, POD, "udp", "10.96.0.10", 53, local_dst_ips=LOCAL)
    assert (r.verdict, r.dnat) == ("DNAT", "10.244.1.5:5353")
    r = trace(rs, POD, "tcp", "10.96.0.10", 9153, local_dst_ips=LOCAL, rand=0.9)
    assert (r.verdict, r.dnat) == ("DNAT", "10.244.2.5:9153")


def test_internal_traffic_policy_local() -> None:
    rs = rules_for("internal_traffic_policy_local")
    gen = random.Random(3)
    for _ in range(20):
        r = trace(rs, POD, "tcp", "10.96.0.28", 80, local_dst_ips=LOCAL, rand=gen.random)
        assert r.dnat == "10.244.1.5:8080"
    r = trace(rs, POD, "tcp", "10.96.0.29", 80, local_dst_ips=LOCAL)
    assert (r.verdict, r.dnat) == ("DROP", None)


def test_terminating_fallback() -> None:
    rs = rules_for("terminating_fallback")
    got = {trace(rs, POD, "tcp", "10.96.0.30", 80, local_dst_ips=LOCAL, rand=x).dnat for x in (0.0, 0.9)}
    assert got == {"10.244.1.8:8080", "10.244.2.8:8080"}


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_random_balancing_is_uniform(n: int) -> None:
    endpoints = [ep(f"10.244.{i % 3 + 1}.{i + 10}", f"node{i % 3 + 1}") for i in range(n)]
    st = build_state(*_web(endpoints), "node1")
    rs = Ruleset.parse(render_full(st, NODE).text, jumps=BUILTIN_JUMPS)
    # Exact: p_i = prob_i * prod(1 - prob_j, j < i) == 1/n for the ladder as rendered.
    ladder = [r for r in rs.rules("nat", next(c for c in rs.tables["nat"] if c.startswith("KUBE-SVC-")))
              if r.target and r.target.startswith("KUBE-SEP-")]
    remaining, shares = 1.0, []
    for r in ladder:
        p = r.probability if r.probability is not None else 1.0
        shares.append(remaining * p)
        remaining *= 1 - p
    assert shares == pytest.approx([1 / n] * n, abs=1e-9)
    # Sampled: independent uniform draws for each statistic decision.
    gen = random.Random(42)
    samples = 6_000
    counts = Counter(trace(rs, POD, "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL, rand=gen.random).dnat
                     for _ in range(samples))
    assert len(counts) == n
    for dnat, c in counts.items():
        assert abs(c / samples - 1 / n) < 0.02, (dnat, c)


def _web(endpoints: list[dict]) -> tuple[list[dict], list[dict]]:
    services, _ = scenario("clusterip_3_endpoints")
    return services, [eps_slice("web", endpoints, HTTP_EP)]


def test_session_affinity_sticks_then_expires() -> None:
    rs = rules_for("session_affinity")
    recent: dict[str, dict[str, float]] = {}
    first = trace(rs, POD, "tcp", "10.96.0.27", 80, local_dst_ips=LOCAL, rand=(0.5, 0.9), recent=recent, now=0)
    assert first.dnat == "10.244.3.5:8080"
    gen = random.Random(5)
    for t in range(1, 60, 7):
        r = trace(rs, POD, "tcp", "10.96.0.27", 80, local_dst_ips=LOCAL, rand=gen.random, recent=recent, now=t)
        assert r.dnat == first.dnat
    other = trace(rs, "10.244.3.77", "tcp", "10.96.0.27", 80, local_dst_ips=LOCAL, rand=0.0, recent=recent,
                  now=30)
    assert other.dnat == "10.244.1.5:8080"
    # The last hit for POD was at t=57; after 60 s without traffic the entry is reaped.
    late = trace(rs, POD, "tcp", "10.96.0.27", 80, local_dst_ips=LOCAL, rand=0.0, recent=recent, now=57 + 61)
    assert late.dnat == "10.244.1.5:8080"


def test_trace_after_partial_sync_sees_new_endpoints() -> None:
    services, slices = scenario("clusterip_3_endpoints")
    st = build_state(services, slices, "node1")
    full = render_full(st, NODE)
    fake = kernel()
    fake.apply(full.text)
    st2 = build_state(services, [eps_slice("web", [ep("10.244.3.42", "node3")], HTTP_EP)], "node1")
    fake.apply(render_partial(st2, NODE, {"default/web:http"}, full).text)
    r = trace(fake.ruleset(), POD, "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL)
    assert r.dnat == "10.244.3.42:8080"


def test_ruleset_parses_iptables_save_output() -> None:
    saved = """# Generated by iptables-save v1.8.9 on Mon
*nat
:PREROUTING ACCEPT [10:600]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAA - [0:0]
:KUBE-SEP-BBBB - [0:0]
:KUBE-MARK-MASQ - [0:0]
[3:180] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
[3:180] -A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m comment --comment "a/b cluster IP" -m tcp --dport 80 -j KUBE-SVC-AAAA
[0:0] -A KUBE-SVC-AAAA ! -s 10.244.0.0/16 -d 10.96.0.5/32 -p tcp -m comment --comment "a/b cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
[3:180] -A KUBE-SVC-AAAA -m comment --comment "a/b -> 10.244.1.2:80" -j KUBE-SEP-BBBB
[0:0] -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
[3:180] -A KUBE-SEP-BBBB -p tcp -m comment --comment a/b -m tcp -j DNAT --to-destination 10.244.1.2:80
COMMIT
"""
    rs = Ruleset.parse(saved)
    assert rs.rules("nat", "KUBE-SERVICES")[0].packets == 3
    assert rs.rules("nat", "KUBE-SERVICES")[0].comment == "a/b cluster IP"
    r = trace(rs, "192.168.56.100", "tcp", "10.96.0.5", 80)
    assert (r.verdict, r.dnat, r.masquerade) == ("DNAT", "10.244.1.2:80", True)
    r = trace(rs, "10.244.2.2", "tcp", "10.96.0.5", 80)
    assert (r.dnat, r.masquerade) == ("10.244.1.2:80", False)


def test_unmodelled_option_raises_instead_of_guessing() -> None:
    rs = Ruleset.parse("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i eth0 -j ACCEPT\nCOMMIT\n")
    with pytest.raises(ValidationError, match="-i"):
        trace(rs, POD, "tcp", "10.96.0.1", 443)


def test_rand_sequence_exhausted_raises() -> None:
    rs = rules_for("clusterip_3_endpoints")
    with pytest.raises(ValidationError, match="ran out"):
        trace(rs, POD, "tcp", "10.96.0.20", 80, rand=[0.9])


def test_uses_all_three_endpoints_of_scenario() -> None:
    # Guard for the scenario data the tests above rely on.
    assert [e["addresses"][0] for e in THREE] == ["10.244.1.5", "10.244.2.5", "10.244.3.5"]
