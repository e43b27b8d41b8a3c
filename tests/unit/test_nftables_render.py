"""nftables renderer: golden files per scenario, kube-proxy's layout and names, a fake nft that rejects what
the kernel rejects, packet traces for every Service feature, partial syncs and batching, the proxier in
nftables mode, mode cleanup."""

from __future__ import annotations

import pytest

from netk8s.errors import KernelError
from netk8s.proxy import modes
from netk8s.proxy import render_nftables as nft
from netk8s.proxy.backend_nftables import NftablesBackend
from netk8s.proxy.model import NodeContext, ProxyState, build_state
from netk8s.proxy.proxier import Proxier
from netk8s.proxy.testing.fake_nft import FakeNft, trace
from tests.unit.golden import GOLDEN_ROOT, check_golden
from tests.unit.test_iptables_render import (
    HTTP,
    HTTP_EP,
    NODE,
    SCENARIOS,
    THREE,
    ep,
    eps_slice,
    state_of,
    svc,
)
from tests.unit.test_proxier import FakeInformer, FakeKernel

GOLDEN_DIR = GOLDEN_ROOT / "nftables"
NODE_IP = "192.168.56.11"
LOCAL = {NODE_IP}
POD = "10.244.2.33"  # a pod on another node
EXTERNAL = "192.168.56.100"  # the external client, outside the cluster CIDR


def golden_text(r: nft.Rendered) -> str:
    return "".join(f"# ---- nft -f transaction {i + 1} of {len(r.batches)}\n{b}" for i, b in enumerate(r.batches))


def applied(r: nft.Rendered, fake: FakeNft | None = None) -> FakeNft:
    fake = fake or FakeNft()
    for batch in r.batches:
        fake.apply(batch)
    return fake


def table_for(name: str, node: NodeContext = NODE) -> FakeNft:
    return applied(nft.render_full(state_of(name, node), node))


# ---------------------------------------------------------------------------------------------------------
# Golden files and the fake kernel


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden(name: str) -> None:
    text = golden_text(nft.render_full(state_of(name), NODE))
    check_golden(GOLDEN_DIR / f"{name}.nft", text)


@pytest.mark.parametrize("name", SCENARIOS)
def test_full_render_applies_twice(name: str) -> None:
    r = nft.render_full(state_of(name), NODE)
    fake = applied(r)
    first = (fake.chains(), {c: [x.text for x in fake.chain_rules(c)] for c in fake.chains()},
             {s: fake.elements(s) for s in fake.sets()})
    applied(r, fake)
    assert (fake.chains(), {c: [x.text for x in fake.chain_rules(c)] for c in fake.chains()},
            {s: fake.elements(s) for s in fake.sets()}) == first
    assert fake.rule_count() == r.rule_count
    assert fake.chains() == r.chains["kube-proxy"]
    for container, elements in r.elements.items():
        assert fake.elements(container) == elements


@pytest.mark.parametrize("text, fragment", [
    ("add rule ip kube-proxy nowhere drop\n", "No such file"),
    ("add table ip kube-proxy\nadd chain ip kube-proxy a\nadd rule ip kube-proxy a goto missing\n", "missing"),
    (("add table ip kube-proxy\nadd chain ip kube-proxy a\nadd rule ip kube-proxy a drop\n"
      "delete chain ip kube-proxy a\n"), "not empty"),
    (("add table ip kube-proxy\nadd chain ip kube-proxy a\nadd chain ip kube-proxy b\n"
      "add rule ip kube-proxy b jump a\ndelete chain ip kube-proxy a\n"), "used by b"),
    (("add table ip kube-proxy\nadd map ip kube-proxy m { type inet_proto . inet_service : verdict ; }\n"
      "add chain ip kube-proxy a\nadd element ip kube-proxy m { tcp . 80 : goto a }\n"
      "delete chain ip kube-proxy a\n"), "used by @m"),
    (("add table ip kube-proxy\nadd map ip kube-proxy m { type inet_proto . inet_service : verdict ; }\n"
      "delete element ip kube-proxy m { tcp . 80 }\n"), "No such file"),
    ("add table ip kube-proxy\nadd chain ip kube-proxy a\nadd rule ip kube-proxy a ip saddr @nope drop\n",
     "set nope"),
    ("add table ip kube-proxy\nadd chain ip kube-proxy a\nadd rule ip kube-proxy a tcp flags syn drop\n",
     "syntax"),
])
def test_fake_nft_rejects_what_the_kernel_rejects(text: str, fragment: str) -> None:
    fake = FakeNft()
    with pytest.raises(KernelError, match=fragment):
        fake.apply(text)
    assert fake.table is None  # a failed transaction changes nothing


# ---------------------------------------------------------------------------------------------------------
# kube-proxy fidelity


def test_names_match_kube_proxy_examples() -> None:
    """pkg/proxy/nftables/proxier.go: "ULMVA6XW-ns1/svc1/tcp/p80", "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"."""
    state = build_state([svc("svc1", "172.30.0.41", [{"name": "p80", "port": 80}], ns="ns1")],
                        [eps_slice("svc1", [ep("10.180.0.1", "node2")], [{"name": "p80", "port": 80}], ns="ns1")],
                        "node1")
    sp = state.services["ns1/svc1:p80"]
    (e,) = state.endpoints["ns1/svc1:p80"]
    assert nft.service_chain(sp) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert nft.external_chain(sp) == "external-ULMVA6XW-ns1/svc1/tcp/p80"
    assert nft.endpoint_chain(sp, e) == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    assert nft.affinity_set(sp, e) == "affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"


def test_layout_of_the_base_transaction() -> None:
    base = nft.render_full(ProxyState(), NODE).batches[0]
    for line in (
        'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }",
        "add chain ip kube-proxy filter-forward { type filter hook forward priority -110 ; }",
        "add rule ip kube-proxy nat-postrouting jump masquerading",
        "add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check",
        "add rule ip kube-proxy mark-for-masquerade mark set mark or 0x00004000",
        "add rule ip kube-proxy masquerading mark and 0x00004000 == 0 return",
        "add rule ip kube-proxy masquerading masquerade fully-random",
        ('add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; '
         'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }'),
        ('add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; '
         'comment "NodePort traffic" ; }'),
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips",
        "add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        "add rule ip kube-proxy reject-chain reject",
    ):
        assert line in base.splitlines(), line
    # maps are declared, never flushed, before the element transaction: services keep answering
    assert "flush map" not in base


@pytest.mark.parametrize("name, must", [
    ("clusterip_3_endpoints", ["numgen random mod 3 vmap { 0 : goto endpoint-",
                               "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
                               "ip saddr 10.244.1.5 jump mark-for-masquerade",
                               "meta l4proto tcp counter dnat to 10.244.1.5:8080",
                               "add element ip kube-proxy cluster-ips { 10.96.0.20 }"]),
    ("no_endpoints", [('add element ip kube-proxy no-endpoint-services { 10.96.0.21 . tcp . 80 comment '
                       '"default/empty:http" : goto reject-chain }'),
                      ('add element ip kube-proxy no-endpoint-nodeports { tcp . 30021 comment "default/empty:http" '
                       ': goto reject-chain }')]),
    ("nodeport_local_no_local_endpoints", ['no-endpoint-nodeports { tcp . 30023 comment "default/npl:http" : drop }']),
    ("session_affinity", ["flags dynamic,timeout ; timeout 60s ;", "update @affinity-",
                          "ip saddr @affinity-"]),
    ("loadbalancer_local", ['fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
                            "service-ips { 192.168.56.201 . tcp . 80 : goto external-"]),
])
def test_rule_shapes(name: str, must: list[str]) -> None:
    text = nft.render_full(state_of(name), NODE).text
    for fragment in must:
        assert fragment in text, fragment


def test_health_check_node_port_left_to_the_health_server() -> None:
    assert "32000" not in nft.render_full(state_of("loadbalancer_local"), NODE).text


# ---------------------------------------------------------------------------------------------------------
# Packet traces: (src, proto, dst, dport) -> endpoint, masquerade


TRACES = [
    # name, scenario, src, proto, dst, dport, hook, rand, (verdict, dnat, masquerade)
    ("pod to ClusterIP, first endpoint", "clusterip_3_endpoints", POD, "tcp", "10.96.0.20", 80, "PREROUTING", 0.0,
     ("DNAT", "10.244.1.5:8080", False)),
    ("pod to ClusterIP, third endpoint", "clusterip_3_endpoints", POD, "tcp", "10.96.0.20", 80, "PREROUTING", 0.9,
     ("DNAT", "10.244.3.5:8080", False)),
    ("off-cluster source to ClusterIP is masqueraded", "clusterip_3_endpoints", EXTERNAL, "tcp", "10.96.0.20", 80,
     "PREROUTING", 0.5, ("DNAT", "10.244.2.5:8080", True)),
    ("node itself to ClusterIP", "clusterip_3_endpoints", NODE_IP, "tcp", "10.96.0.20", 80, "OUTPUT", 0.0,
     ("DNAT", "10.244.1.5:8080", True)),
    ("hairpin: endpoint to itself", "clusterip_3_endpoints", "10.244.1.5", "tcp", "10.96.0.20", 80, "PREROUTING",
     0.0, ("DNAT", "10.244.1.5:8080", True)),
    ("hairpin: endpoint to another", "clusterip_3_endpoints", "10.244.1.5", "tcp", "10.96.0.20", 80, "PREROUTING",
     0.5, ("DNAT", "10.244.2.5:8080", False)),
    ("wrong port of a ClusterIP", "clusterip_3_endpoints", POD, "tcp", "10.96.0.20", 81, "PREROUTING", 0.0,
     ("REJECT", None, False)),
    ("no endpoints: ClusterIP rejected", "no_endpoints", POD, "tcp", "10.96.0.21", 80, "PREROUTING", 0.0,
     ("REJECT", None, False)),
    ("no endpoints: nodePort rejected", "no_endpoints", EXTERNAL, "tcp", NODE_IP, 30021, "PREROUTING", 0.0,
     ("REJECT", None, False)),
    ("no endpoints: externalIP rejected", "no_endpoints", EXTERNAL, "tcp", "192.168.56.150", 80, "PREROUTING", 0.0,
     ("REJECT", None, False)),
    ("nodePort, Cluster policy: masqueraded", "nodeport_cluster", EXTERNAL, "tcp", NODE_IP, 30022, "PREROUTING",
     0.9, ("DNAT", "10.244.3.5:8080", True)),
    ("nodePort on another address is not captured", "nodeport_cluster", EXTERNAL, "tcp", "192.168.56.12", 30022,
     "PREROUTING", 0.0, ("ACCEPT", None, False)),
    ("nodePort, Local policy: local endpoint, client IP kept", "nodeport_local", EXTERNAL, "tcp", NODE_IP, 30023,
     "PREROUTING", 0.9, ("DNAT", "10.244.1.7:8080", False)),
    ("nodePort, Local policy, pod client uses every endpoint", "nodeport_local", POD, "tcp", NODE_IP, 30023,
     "PREROUTING", 0.9, ("DNAT", "10.244.2.7:8080", False)),
    ("nodePort, Local policy, no local endpoint: dropped", "nodeport_local_no_local_endpoints", EXTERNAL, "tcp",
     NODE_IP, 30023, "PREROUTING", 0.0, ("DROP", None, False)),
    ("LoadBalancer IP, Cluster policy", "loadbalancer", EXTERNAL, "tcp", "192.168.56.200", 80, "PREROUTING", 0.9,
     ("DNAT", "10.244.2.5:8080", True)),
    ("LoadBalancer IP, Local policy, none here: dropped", "loadbalancer_local", EXTERNAL, "tcp", "192.168.56.201", 80,
     "PREROUTING", 0.0, ("DROP", None, False)),
    # kube-proxy's nftables mode filters before DNAT, so even the node's own traffic is dropped here
    ("LoadBalancer IP, Local policy, none here: node's own traffic dropped too", "loadbalancer_local", NODE_IP,
     "tcp", "192.168.56.201", 80, "OUTPUT", 0.0, ("DROP", None, False)),
    ("nodePort, Local policy, node itself short-circuits to every endpoint", "nodeport_local", NODE_IP, "tcp",
     NODE_IP, 30023, "OUTPUT", 0.9, ("DNAT", "10.244.2.7:8080", True)),
    ("externalIP", "external_ips", EXTERNAL, "tcp", "192.168.56.151", 80, "PREROUTING", 0.0,
     ("DNAT", "10.244.1.5:8080", True)),
    ("UDP port of a multi-port Service", "multiport_udp", POD, "udp", "10.96.0.10", 53, "PREROUTING", 0.9,
     ("DNAT", "10.244.2.5:5353", False)),
    ("TCP port of the same number", "multiport_udp", POD, "tcp", "10.96.0.10", 53, "PREROUTING", 0.0,
     ("DNAT", "10.244.1.5:5353", False)),
    ("internal policy Local: local endpoint only", "internal_traffic_policy_local", POD, "tcp", "10.96.0.28", 80,
     "PREROUTING", 0.9, ("DNAT", "10.244.1.5:8080", False)),
    ("internal policy Local, none here: dropped", "internal_traffic_policy_local", POD, "tcp", "10.96.0.29", 80,
     "PREROUTING", 0.0, ("DROP", None, False)),
    ("only terminating endpoints: serving ones used", "terminating_fallback", POD, "tcp", "10.96.0.30", 80,
     "PREROUTING", 0.9, ("DNAT", "10.244.2.8:8080", False)),
]


@pytest.mark.parametrize("name, scen, src, proto, dst, dport, hook, rand, want", TRACES, ids=[t[0] for t in TRACES])
def test_trace(name: str, scen: str, src: str, proto: str, dst: str, dport: int, hook: str, rand: float,
               want: tuple) -> None:
    r = trace(table_for(scen), src, proto, dst, dport, local_dst_ips=LOCAL, hook=hook, rand=rand)
    assert (r.verdict, r.dnat, r.masquerade) == want, r.chains


def test_session_affinity_sticks_then_expires() -> None:
    fake = table_for("session_affinity")
    first = trace(fake, POD, "tcp", "10.96.0.27", 80, local_dst_ips=LOCAL, rand=0.9, now=0.0)
    assert first.dnat == "10.244.3.5:8080"
    again = trace(fake, POD, "tcp", "10.96.0.27", 80, local_dst_ips=LOCAL, rand=0.0, now=59.0)
    assert again.dnat == "10.244.3.5:8080" and not any(c.startswith("endpoint-") and "10.244.1.5" in c
                                                       for c in again.chains)
    other = trace(fake, "10.244.2.34", "tcp", "10.96.0.27", 80, local_dst_ips=LOCAL, rand=0.0, now=59.0)
    assert other.dnat == "10.244.1.5:8080"  # another client is balanced on its own
    later = trace(fake, POD, "tcp", "10.96.0.27", 80, local_dst_ips=LOCAL, rand=0.0, now=3600.0)
    assert later.dnat == "10.244.1.5:8080"  # the 60 s timeout passed


def test_random_spread_reaches_every_endpoint() -> None:
    fake = table_for("clusterip_3_endpoints")
    seen = {trace(fake, POD, "tcp", "10.96.0.20", 80, local_dst_ips=LOCAL, rand=i / 30).dnat for i in range(30)}
    assert seen == {"10.244.1.5:8080", "10.244.2.5:8080", "10.244.3.5:8080"}


# ---------------------------------------------------------------------------------------------------------
# Partial syncs and batches


def many(n: int, eps_per: int = 5) -> tuple[list[dict], list[dict]]:
    services, slices = [], []
    for i in range(n):
        ip = f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{(i & 255) or 250}"
        services.append(svc(f"s{i}", ip, HTTP))
        slices.append(eps_slice(f"s{i}", [ep(f"10.244.{(i * eps_per + j) >> 8 & 255}.{(i * eps_per + j) & 255}",
                                             f"node{j % 3 + 1}") for j in range(eps_per)], HTTP_EP))
    return services, slices


def test_partial_for_one_endpoint_among_1000_services_names_only_that_service() -> None:
    services, slices = many(1000)
    fake = FakeNft()
    full = nft.render_full(build_state(services, slices, "node1"), NODE)
    applied(full, fake)
    assert len(full.batches) == 3  # base; the 1,000 services' chains; the elements (nothing stale)
    slices[417]["endpoints"] = slices[417]["endpoints"][:4]  # one endpoint of s417 goes away
    part = nft.render_partial(build_state(services, slices, "node1"), NODE, {"default/s417"}, full)
    assert len(part.batches) == 1
    text = part.batches[0]
    names = {word for line in text.splitlines() for word in line.split() if "/" in word and "default/" in word}
    assert names and all("/s417/" in n for n in names), names
    assert "add element" not in text and "delete element" not in text  # the ClusterIP still goes to service-
    # 4 endpoint chains + service- rewritten; the removed endpoint's chain flushed (deleted later)
    assert text.count("delete chain") == 0 and text.count("add chain") == 6 and text.count("flush chain") == 6
    applied(part, fake)
    assert fake.rule_count() == part.rule_count
    assert fake.chains() == part.chains["kube-proxy"]


def test_partial_element_changes_when_service_loses_all_endpoints() -> None:
    services, slices = many(3)
    full = nft.render_full(build_state(services, slices, "node1"), NODE)
    fake = applied(full)
    slices[1]["endpoints"] = []
    part = nft.render_partial(build_state(services, slices, "node1"), NODE, {"default/s1"}, full)
    lines = part.text.splitlines()
    assert "delete element ip kube-proxy service-ips { 10.96.0.1 . tcp . 80 }" in lines
    assert any(line.startswith("add element ip kube-proxy no-endpoint-services { 10.96.0.1 . tcp . 80") for line in lines)
    assert sum(line.startswith("flush chain") for line in lines) == 6  # service- and 5 endpoint- chains
    assert part.stale_chains and not any(line.startswith("delete chain") for line in lines)
    applied(part, fake)
    fake.apply(nft.delete_chains_text(part.stale_chains))
    assert not set(part.stale_chains) & fake.chains()
    assert trace(fake, POD, "tcp", "10.96.0.1", 80, local_dst_ips=LOCAL).verdict == "REJECT"


def test_partial_affinity_toggle_and_timeout_change() -> None:
    base = svc("sticky", "10.96.0.27", HTTP)
    slices = [eps_slice("sticky", THREE, HTTP_EP)]
    r0 = nft.render_full(build_state([base], slices, "node1"), NODE)
    fake = applied(r0)
    on = svc("sticky", "10.96.0.27", HTTP, sessionAffinity="ClientIP",
             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    r1 = nft.render_partial(build_state([on], slices, "node1"), NODE, {"default/sticky"}, r0)
    applied(r1, fake)
    assert len([s for s in fake.sets() if s.startswith("affinity-")]) == 3
    longer = svc("sticky", "10.96.0.27", HTTP, sessionAffinity="ClientIP",
                 sessionAffinityConfig={"clientIP": {"timeoutSeconds": 90}})
    r2 = nft.render_partial(build_state([longer], slices, "node1"), NODE, {"default/sticky"}, r1)
    applied(r2, fake)  # a set's timeout cannot change in place: re-created
    r3 = nft.render_partial(build_state([base], slices, "node1"), NODE, {"default/sticky"}, r2)
    applied(r3, fake)
    assert not [s for s in fake.sets() if s.startswith("affinity-")]
    assert fake.rule_count() == r3.rule_count


def test_full_render_batches_and_deletes_existing_stale_chains() -> None:
    services, slices = many(25, eps_per=2)
    full = nft.render_full(build_state(services, slices, "node1"), NODE, batch_services=10)
    assert len(full.batches) == 1 + 3 + 1  # base, 3 chain batches, elements (and stale flushes)
    assert all("add element" not in b for b in full.batches[:-1])
    fake = applied(full)
    # an agent restart with 5 services gone: the kernel's chains are listed and the stale ones deleted
    again = nft.render_full(build_state(services[:20], slices[:20], "node1"), NODE,
                            existing=fake.chains() | fake.sets(), batch_services=10)
    assert len(again.batches) == 1 + 2 + 1
    assert len(again.stale_chains) == 5 * 3
    applied(again, fake)
    assert fake.chains() == again.chains["kube-proxy"]
    fake.apply(nft.delete_chains_text(again.stale_chains))
    assert fake.chains() == again.chains["kube-proxy"] - set(again.stale_chains)


def test_cleanup_text_deletes_the_table_even_when_absent() -> None:
    fake = FakeNft()
    fake.apply(nft.chains_for_cleanup())
    assert fake.table is None
    fake = table_for("clusterip_3_endpoints")
    fake.apply(nft.chains_for_cleanup())
    assert fake.table is None


# ---------------------------------------------------------------------------------------------------------
# The proxier in nftables mode (the shared syncer with nft transactions)


class SendingNft:
    """The NftKernel a test proxier drives: a FakeNft, keeping every transaction sent to it."""

    def __init__(self, fake: FakeNft, sent: list[str]) -> None:
        self.fake, self.sent = fake, sent

    def apply(self, text: str) -> None:
        self.sent.append(text)
        self.fake.apply(text)

    def chain_exists(self, table: str, chain: str) -> bool:
        return self.fake.chain_exists(table, chain)

    def list_names(self, table: str) -> set[str]:
        return self.fake.list_names(table)


def nft_proxier(fake: FakeNft, sent: list[str], kernel: FakeKernel) -> Proxier:
    return Proxier(NODE, NftablesBackend(SendingNft(fake, sent)), conntrack=kernel,  # type: ignore[arg-type]
                   healthcheck=kernel, announcer=kernel)  # type: ignore[arg-type]


def test_proxier_one_endpoint_change_among_1000_services_sends_one_small_transaction() -> None:
    services, slices = many(1000)
    inf = FakeInformer()
    for obj in services + slices:
        inf.put(obj)
    fake, sent, kernel = FakeNft(), [], FakeKernel()
    p = nft_proxier(fake, sent, kernel)
    p.sync(inf, [], 0.0)
    assert p.last_sync_stats is not None and p.last_sync_stats.mode == "full" and len(sent) == 3
    sent.clear()
    changed = dict(slices[517], endpoints=slices[517]["endpoints"][1:])
    p.sync(inf, [inf.put(changed)], 1.0)
    assert p.last_sync_stats.mode == "partial" and len(sent) == 1
    names = {w for w in sent[0].split() if w.count("/") >= 3}
    assert names and all("default/s517/" in n for n in names), names
    assert fake.rule_count() == p.rendered.rule_count
    (stale,) = p.rendered.stale_chains
    p.sync(inf, [], 1.5)  # kube-proxy deletes flushed chains a second later, in their own transaction
    assert stale in fake.chains() and len(sent) == 1
    p.sync(inf, [], 2.1)
    assert stale not in fake.chains() and len(sent) == 2 and "delete chain" in sent[1]
    # the canary probes the table's services chain and a service- chain
    p.sync(inf, [], 10.0)
    assert p.canary()
    fake.apply(f"flush chain ip kube-proxy {nft.service_chain(p.seen.services['default/s3:http'])}\n"
               f"delete element ip kube-proxy service-ips {{ 10.96.0.3 . tcp . 80 }}\n"
               f"delete chain ip kube-proxy {nft.service_chain(p.seen.services['default/s3:http'])}\n")
    for _ in range(1000):
        if not p.canary():
            break
    assert p.need_full


def test_proxier_failed_transaction_forces_full_sync() -> None:
    inf = FakeInformer()
    services, slices = many(2)
    for obj in services + slices:
        inf.put(obj)
    fake, sent, kernel = FakeNft(), [], FakeKernel()
    p = nft_proxier(fake, sent, kernel)
    p.sync(inf, [], 0.0)
    fake.table = None  # someone deleted the table: the partial's `add chain` fails, no table
    p.sync(inf, [inf.put(dict(slices[0], endpoints=slices[0]["endpoints"][:1]))], 1.0)
    assert p.need_full and p.failures == 1
    p.sync(inf, [], 5.0)
    assert p.last_sync_stats is not None and p.last_sync_stats.mode == "full" and p.last_sync_stats.ok
    assert trace(fake, POD, "tcp", "10.96.0.250", 80, local_dst_ips=LOCAL).dnat == "10.244.0.0:8080"


def test_proxier_cleanup_deletes_the_table() -> None:
    inf = FakeInformer()
    services, slices = many(1)
    for obj in services + slices:
        inf.put(obj)
    fake, sent, kernel = FakeNft(), [], FakeKernel()
    p = nft_proxier(fake, sent, kernel)
    p.sync(inf, [], 0.0)
    p.cleanup()
    assert fake.table is None and p.rendered is None


# ---------------------------------------------------------------------------------------------------------
# Mode switching


def test_cleanup_other_modes_runs_every_other_cleanup_and_survives_errors() -> None:
    calls: list[str] = []

    def ok(name: str, found: bool):  # type: ignore[no-untyped-def]
        return lambda: calls.append(name) or found

    def broken() -> bool:
        calls.append("userspace")
        raise KernelError("nft: boom")

    done = modes.cleanup_other_modes("nftables", {"iptables": ok("iptables", True), "nftables": ok("nftables", True),
                                                  "userspace": broken})
    assert calls == ["iptables", "userspace"] and done == ["iptables"]



def test_rules_view_follows_elements_to_endpoint_counters() -> None:
    from netk8s.proxy.nft_rules_view import format_nft_rules

    state = state_of("clusterip_3_endpoints")
    sp = state.services["default/web:http"]
    eps = state.endpoints["default/web:http"]
    chain = nft.service_chain(sp)
    vmap = [[i, {"goto": {"target": nft.endpoint_chain(sp, e)}}] for i, e in enumerate(eps)]
    objs: list[dict] = [
        {"map": {"name": "service-ips", "elem": [[{"concat": ["10.96.0.20", "tcp", 80]}, {"goto": {"target": chain}}]]}},
        {"chain": {"name": chain}},
        {"rule": {"chain": chain, "handle": 1, "expr": [{"vmap": {"key": {"numgen": {}}, "data": {"set": vmap}}}]}},
    ]
    for i, e in enumerate(eps):
        c = nft.endpoint_chain(sp, e)
        objs += [{"chain": {"name": c}},
                 {"rule": {"chain": c, "handle": 10 + i, "expr": [{"counter": {"packets": 3 * i, "bytes": 0}},
                                                                  {"dnat": {"addr": e.ip, "port": e.port}}]}}]
    text = format_nft_rules({"json": {"nftables": objs}, "rules": {"1": "numgen random mod 3 vmap { ... }"}},
                            "default/web", state)
    assert f"10.96.0.20 . tcp . 80 : goto {chain}" in text
    assert "numgen random mod 3 vmap { ... }" in text and "(rule handle 12)" in text
    assert "10.244.3.5:8080" in text and "66.7%" in text
    assert text.rstrip().endswith("1 service port(s), 9 connection(s) sent to endpoints")


# ---------------------------------------------------------------------------------------------------------
# Partial renders touch only the changed service ports, and add up to a full render


@pytest.mark.parametrize("seed", [1, 2])
def test_partial_renders_in_sequence_leave_what_a_full_render_would(seed: int) -> None:
    """Each partial render starts from the previous one's summaries and re-renders only the changed service
    ports; applied one after the other (stale chains deleted as the proxier does), the table matches a
    fresh full render: chains, rules, map and set elements."""
    import random

    rnd = random.Random(seed)
    services, slices = many(40)
    prev = nft.render_full(build_state(services, slices, "node1"), NODE)
    fake = applied(prev)
    for _ in range(25):
        i = rnd.randrange(40)
        what = rnd.random()
        name = f"s{i}"
        if what < 0.5:
            slices[i]["endpoints"] = [ep(f"10.244.9.{rnd.randrange(2, 60)}", f"node{rnd.randrange(1, 4)}")
                                      for _ in range(rnd.randrange(0, 4))]
        elif what < 0.7:
            services[i] = svc(name, services[i]["spec"]["clusterIP"], HTTP, type="NodePort")
            services[i]["spec"]["ports"] = [dict(HTTP[0], nodePort=30000 + i)]
        elif what < 0.85:
            services[i] = svc(name, services[i]["spec"]["clusterIP"], HTTP, sessionAffinity="ClientIP")
        else:
            services[i] = svc(name, services[i]["spec"]["clusterIP"], HTTP)
        state = build_state(services, slices, "node1")
        part = nft.render_partial(state, NODE, {f"default/{name}"}, prev)
        applied(part, fake)
        if part.stale_chains:
            fake.apply(nft.delete_chains_text(part.stale_chains))
            part.chains["kube-proxy"] -= set(part.stale_chains)
        prev = part
        full = nft.render_full(state, NODE)
        fresh = applied(full)
        assert fake.chains() == fresh.chains() == prev.chains["kube-proxy"]
        assert fake.rule_count() == fresh.rule_count() == prev.rule_count
        for container in nft.CONTAINERS:
            assert fake.elements(container) == fresh.elements(container), container
        for chain in fresh.chains():
            got = [r.text for r in fake.chain_rules(chain)]
            assert got == [r.text for r in fresh.chain_rules(chain)], chain
        assert prev.elements == full.elements and prev.sets == full.sets
        assert prev.service_chains == full.service_chains


def test_partial_render_does_not_render_unchanged_service_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    services, slices = many(200)
    full = nft.render_full(build_state(services, slices, "node1"), NODE)
    slices[7]["endpoints"] = slices[7]["endpoints"][:2]
    rendered: list[str] = []
    real = nft._render_service
    monkeypatch.setattr(nft, "_render_service",
                        lambda sp, eps, node: rendered.append(sp.key) or real(sp, eps, node))
    nft.render_partial(build_state(services, slices, "node1"), NODE, {"default/s7"}, full)
    assert rendered == ["default/s7:http"]


def test_kube_nft_name_is_hash_and_truncate() -> None:
    import base64
    import hashlib

    from netk8s.model.naming import kube_nft_name

    for base in ("ns1/svc1/tcp/p80", "default/s1/tcp/http__10.244.1.5/8080", "x" * 300, "ü/ß"):
        for prefix in ("service-", "endpoint-"):
            name = base64.b32encode(hashlib.sha256(base.encode()).digest()).decode()[:8] + "-" + base
            want = prefix + (name if len(name) <= 240 else name[:237] + "...")
            assert kube_nft_name(prefix, base) == want
