"""iptables renderer: golden files per scenario, kube-proxy's names and rule shapes, FakeRestore
acceptance of full and partial renders, partial-sync scope, cleanup text, speed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from netk8s.errors import KernelError
from netk8s.proxy.model import Endpoint, NodeContext, ProxyState, ServicePort, build_state
from netk8s.proxy.render_iptables import (
    BUILTIN_JUMPS,
    chains_for_cleanup,
    jumps_text,
    probability,
    render_full,
    render_partial,
    sep_chain,
    svc_chain,
)
from netk8s.proxy.testing.fake_iptables import FakeRestore
from tests.unit.golden import GOLDEN_ROOT, check_golden

GOLDEN_DIR = GOLDEN_ROOT / "iptables"
NODE = NodeContext(node_name="node1", node_ips=("192.168.56.11",))


def kernel() -> FakeRestore:
    """A fake kernel as a full sync leaves it before the restore: the built-in chains' jumps ensured."""
    fake = FakeRestore()
    fake.ensure_rules(BUILTIN_JUMPS)
    return fake


# ---------------------------------------------------------------------------------------------------------
# Objects in Kubernetes shape, fed through build_state (the real path)


def svc(name: str, ip: str, ports: list[dict[str, Any]], ns: str = "default", **spec: Any) -> dict:
    status = spec.pop("status", {})
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports, **spec}, "status": status}


def ep(ip: str, node: str, ready: bool | None = True, serving: bool | None = None,
       terminating: bool | None = None) -> dict:
    conds: dict[str, bool] = {}
    for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if v is not None:
            conds[k] = v
    return {"addresses": [ip], "nodeName": node, "conditions": conds}


def eps_slice(service: str, endpoints: list[dict], ports: list[dict[str, Any]], ns: str = "default",
              name: str | None = None) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name or f"{service}-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "endpoints": endpoints, "ports": ports}


HTTP = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
HTTP_EP = [{"name": "http", "port": 8080, "protocol": "TCP"}]
THREE = [ep("10.244.1.5", "node1"), ep("10.244.2.5", "node2"), ep("10.244.3.5", "node3")]


def scenario(name: str) -> tuple[list[dict], list[dict]]:
    """Services and slices of one named scenario (the golden file name)."""
    if name == "clusterip_3_endpoints":
        return [svc("web", "10.96.0.20", HTTP)], [eps_slice("web", THREE, HTTP_EP)]
    if name == "no_endpoints":
        return [svc("empty", "10.96.0.21", [{**HTTP[0], "nodePort": 30021}], type="NodePort",
                    externalIPs=["192.168.56.150"])], []
    if name == "nodeport_cluster":
        return ([svc("np", "10.96.0.22", [{**HTTP[0], "nodePort": 30022}], type="NodePort")],
                [eps_slice("np", THREE, HTTP_EP)])
    if name == "nodeport_local":
        return ([svc("npl", "10.96.0.23", [{**HTTP[0], "nodePort": 30023}], type="NodePort",
                     externalTrafficPolicy="Local")],
                [eps_slice("npl", [ep("10.244.1.7", "node1"), ep("10.244.2.7", "node2")], HTTP_EP)])
    if name == "nodeport_local_no_local_endpoints":
        return ([svc("npl", "10.96.0.23", [{**HTTP[0], "nodePort": 30023}], type="NodePort",
                     externalTrafficPolicy="Local")],
                [eps_slice("npl", [ep("10.244.2.7", "node2")], HTTP_EP)])
    if name == "loadbalancer":
        return ([svc("lb", "10.96.0.24", [{**HTTP[0], "nodePort": 30024}], type="LoadBalancer",
                     status={"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}]}})],
                [eps_slice("lb", THREE[:2], HTTP_EP)])
    if name == "loadbalancer_local":
        return ([svc("lbl", "10.96.0.25", [{**HTTP[0], "nodePort": 30025}], type="LoadBalancer",
                     externalTrafficPolicy="Local", healthCheckNodePort=32000,
                     status={"loadBalancer": {"ingress": [{"ip": "192.168.56.201"}]}})],
                [eps_slice("lbl", [ep("10.244.2.9", "node2")], HTTP_EP)])
    if name == "external_ips":
        return ([svc("ext", "10.96.0.26", HTTP, externalIPs=["192.168.56.150", "192.168.56.151"])],
                [eps_slice("ext", THREE[:1], HTTP_EP)])
    if name == "session_affinity":
        return ([svc("sticky", "10.96.0.27", HTTP, sessionAffinity="ClientIP",
                     sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})],
                [eps_slice("sticky", THREE, HTTP_EP)])
    if name == "multiport_udp":
        ports = [{"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"},
                 {"name": "dns-tcp", "port": 53, "targetPort": 5353, "protocol": "TCP"},
                 {"name": "metrics", "port": 9153, "protocol": "TCP"}]
        ep_ports = [{"name": "dns", "port": 5353, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                    {"name": "metrics", "port": 9153, "protocol": "TCP"}]
        return ([svc("kube-dns", "10.96.0.10", ports, ns="kube-system")],
                [eps_slice("kube-dns", THREE[:2], ep_ports, ns="kube-system")])
    if name == "internal_traffic_policy_local":
        return ([svc("itp", "10.96.0.28", HTTP, internalTrafficPolicy="Local"),
                 svc("itp-none", "10.96.0.29", HTTP, internalTrafficPolicy="Local")],
                [eps_slice("itp", THREE, HTTP_EP), eps_slice("itp-none", THREE[1:], HTTP_EP)])
    if name == "terminating_fallback":
        terminating = [ep("10.244.1.8", "node1", ready=False, serving=True, terminating=True),
                       ep("10.244.2.8", "node2", ready=False, serving=True, terminating=True),
                       ep("10.244.3.8", "node3", ready=False, serving=False, terminating=True)]
        return [svc("term", "10.96.0.30", HTTP)], [eps_slice("term", terminating, HTTP_EP)]
    raise KeyError(name)


SCENARIOS = [
    "clusterip_3_endpoints", "no_endpoints", "nodeport_cluster", "nodeport_local",
    "nodeport_local_no_local_endpoints", "loadbalancer", "loadbalancer_local", "external_ips",
    "session_affinity", "multiport_udp", "internal_traffic_policy_local", "terminating_fallback",
]


def state_of(name: str, node: NodeContext = NODE) -> ProxyState:
    services, slices = scenario(name)
    return build_state(services, slices, node.node_name)


# ---------------------------------------------------------------------------------------------------------
# Golden files


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden(name: str) -> None:
    text = render_full(state_of(name), NODE).text
    check_golden(GOLDEN_DIR / f"{name}.txt", text)


@pytest.mark.parametrize("name", SCENARIOS)
def test_full_render_applies_twice(name: str) -> None:
    """Every full render is accepted by the fake kernel, and a second full sync (jumps ensured again, then
    the restore) leaves the same state (no duplicated built-in jumps)."""
    fake = kernel()
    r = render_full(state_of(name), NODE)
    fake.apply(r.text)
    first = fake.save()
    assert fake.ensure_rules(BUILTIN_JUMPS) == []
    fake.apply(r.text)
    assert fake.save() == first
    assert fake.rule_count() == r.rule_count
    assert r.chains["nat"] <= fake.chains("nat")


# ---------------------------------------------------------------------------------------------------------
# kube-proxy fidelity


def test_chain_names_match_kube_proxy() -> None:
    # Values from kube-proxy's proxier_test.go (ns1/svc1:p80 tcp, endpoint 10.180.0.1:80).
    sp = ServicePort("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, 80)
    e = Endpoint("10.180.0.1", 80, None, True, True, False, False)
    assert svc_chain(sp) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert sep_chain(sp, e) == "KUBE-SEP-SXIVWICOYRO3J4NJ"


def test_probabilities_printed_like_kube_proxy() -> None:
    assert [probability(n) for n in (2, 3, 4)] == ["0.5000000000", "0.3333333333", "0.2500000000"]
    text = render_full(state_of("clusterip_3_endpoints"), NODE).text
    chain = svc_chain(state_of("clusterip_3_endpoints").services["default/web:http"])
    ladder = [ln for ln in text.splitlines() if ln.startswith(f"-A {chain} ") and "->" in ln]
    assert ["--probability 0.3333333333" in ladder[0], "--probability 0.5000000000" in ladder[1],
            "statistic" not in ladder[2]] == [True, True, True]


def test_cluster_ip_rule_shapes() -> None:
    st = state_of("clusterip_3_endpoints")
    sp = st.services["default/web:http"]
    text = render_full(st, NODE).text
    svc = svc_chain(sp)
    assert (f'-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
            f'-d 10.96.0.20 --dport 80 -j {svc}') in text
    assert (f'-A {svc} -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 '
            f'--dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ') in text
    for e in st.endpoints["default/web:http"]:
        sep = sep_chain(sp, e)
        assert f"-A {sep} -m comment --comment default/web:http -s {e.ip} -j KUBE-MARK-MASQ" in text
        assert (f"-A {sep} -m comment --comment default/web:http -m tcp -p tcp -j DNAT "
                f"--to-destination {e.ip}:8080") in text
    lines = text.splitlines()
    nat = lines[lines.index("*nat"):]
    services_rules = [ln for ln in nat if ln.startswith("-A KUBE-SERVICES ")]
    assert "-j KUBE-NODEPORTS" in services_rules[-1] and "--dst-type LOCAL" in services_rules[-1]
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000" in text
    assert "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN" in text
    assert "MASQUERADE --random-fully" in text
    assert text.count("COMMIT") == 2 and text.rstrip().endswith("COMMIT")


def test_no_endpoints_rejects_in_filter_only() -> None:
    text = render_full(state_of("no_endpoints"), NODE).text
    assert ('-A KUBE-SERVICES -m comment --comment "default/empty:http has no endpoints" -m tcp -p tcp '
            '-d 10.96.0.21 --dport 80 -j REJECT') in text
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/empty:http has no endpoints" '
            '-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30021 -j REJECT') in text
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/empty:http has no endpoints" '
            '-m tcp -p tcp -d 192.168.56.150 --dport 80 -j REJECT') in text
    assert not re.search(r"KUBE-(SVC|SEP|EXT)-", text)


def test_local_policy_without_local_endpoints_drops_external() -> None:
    text = render_full(state_of("loadbalancer_local"), NODE).text
    assert '"default/lbl:http has no local endpoints"' in text
    assert "--dport 30025 -j DROP" in text and "-d 192.168.56.201 --dport 80 -j DROP" in text
    assert ('-A KUBE-NODEPORTS -m comment --comment "default/lbl:http health check node port" '
            '-m tcp -p tcp --dport 32000 -j ACCEPT') in text
    assert "KUBE-SVL-" not in text  # no local endpoints: no local chain
    assert '"pod traffic for default/lbl:http external destinations" -s 10.244.0.0/16' in text


def test_internal_policy_local_uses_svl_chain_or_drops() -> None:
    st = state_of("internal_traffic_policy_local")
    text = render_full(st, NODE).text
    assert re.search(r'"default/itp:http cluster IP" .* -j KUBE-SVL-', text)
    assert "KUBE-SVC-" not in text  # internal Local and not externally accessible: no cluster chain
    assert ('-A KUBE-SERVICES -m comment --comment "default/itp-none:http has no local endpoints" '
            '-m tcp -p tcp -d 10.96.0.29 --dport 80 -j DROP') in text
    assert text.count("-j DNAT") == 1  # only the local endpoint of itp


def test_affinity_rules_precede_random_ladder() -> None:
    st = state_of("session_affinity")
    sp = st.services["default/sticky:http"]
    lines = [ln for ln in render_full(st, NODE).text.splitlines() if ln.startswith(f"-A {svc_chain(sp)} ")]
    recent = [i for i, ln in enumerate(lines) if "--rcheck --seconds 60 --reap" in ln]
    stats = [i for i, ln in enumerate(lines) if "-m statistic" in ln]
    assert len(recent) == 3 and max(recent) < min(stats)
    for e in st.endpoints["default/sticky:http"]:
        sep = sep_chain(sp, e)
        assert f"-m recent --name {sep} --set -m tcp -p tcp -j DNAT --to-destination {e.addr}" in \
            render_full(st, NODE).text


def test_multiport_udp_chains_per_port_and_protocol() -> None:
    st = state_of("multiport_udp")
    r = render_full(st, NODE)
    assert set(r.service_chains) == {"kube-system/kube-dns:dns", "kube-system/kube-dns:dns-tcp",
                                     "kube-system/kube-dns:metrics"}
    assert "-m udp -p udp -d 10.96.0.10 --dport 53" in r.text
    assert "-m tcp -p tcp -d 10.96.0.10 --dport 53" in r.text
    assert "-m udp -p udp -j DNAT --to-destination 10.244.1.5:5353" in r.text
    assert "-m tcp -p tcp -j DNAT --to-destination 10.244.1.5:9153" in r.text


def test_terminating_fallback_uses_serving_terminating_only() -> None:
    text = render_full(state_of("terminating_fallback"), NODE).text
    assert "--to-destination 10.244.1.8:8080" in text and "--to-destination 10.244.2.8:8080" in text
    assert "10.244.3.8" not in text  # not serving


def test_builtin_jumps_in_kube_proxy_order() -> None:
    fake = FakeRestore()
    fake.ensure_rules(BUILTIN_JUMPS)
    rs = fake.ruleset()
    assert [r.target for r in rs.rules("filter", "FORWARD")] == [
        "KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"]
    assert [r.target for r in rs.rules("filter", "INPUT")] == [
        "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"]
    saved = fake.save()
    assert '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in saved
    assert '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in saved
    assert '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING' in saved
    on_empty = FakeRestore()
    on_empty.apply(jumps_text())
    assert on_empty.save() == saved


def test_render_never_touches_builtin_chains() -> None:
    """kube-proxy never flushes or declares PREROUTING, POSTROUTING, INPUT...: someone else's rules there
    survive every sync (the jumps are ensured apart, by the proxier)."""
    for name in SCENARIOS:
        text = render_full(state_of(name), NODE).text
        for chain in ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"):
            assert f":{chain} " not in text and f"-F {chain}" not in text and f"-A {chain} " not in text


def test_someone_elses_postrouting_rule_survives_full_syncs() -> None:
    fake = FakeRestore()
    theirs = "*nat\n-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n"
    fake.apply(theirs)
    for _ in range(2):  # two full syncs: ensure the jumps, then restore
        fake.ensure_rules(BUILTIN_JUMPS)
        fake.apply(render_full(state_of("clusterip_3_endpoints"), NODE).text)
    post = [r.target for r in fake.ruleset().rules("nat", "POSTROUTING")]
    assert post == ["KUBE-POSTROUTING", "MASQUERADE"]


# ---------------------------------------------------------------------------------------------------------
# Partial sync


def _all_services() -> tuple[list[dict], list[dict]]:
    services: list[dict] = []
    slices: list[dict] = []
    for name in ("clusterip_3_endpoints", "nodeport_cluster", "session_affinity", "multiport_udp",
                 "loadbalancer", "external_ips"):
        s, sl = scenario(name)
        services += s
        slices += sl
    return services, slices


def _declared(text: str) -> set[str]:
    return {ln[1:].split()[0] for ln in text.splitlines() if ln.startswith(":")}


def test_partial_changes_only_changed_service_chains() -> None:
    services, slices = _all_services()
    before = build_state(services, slices, "node1")
    full = render_full(before, NODE)
    fake = kernel()
    fake.apply(full.text)

    # web loses one endpoint and gains another.
    slices2 = [s for s in slices if s["metadata"]["labels"]["kubernetes.io/service-name"] != "web"]
    slices2.append(eps_slice("web", [THREE[0], ep("10.244.2.99", "node2")], HTTP_EP))
    after = build_state(services, slices2, "node1")
    part = render_partial(after, NODE, {"default/web"}, full)
    fake.apply(part.text)

    web = after.services["default/web:http"]
    web_chains = set(part.service_chains["default/web:http"])
    top = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-EXTERNAL-SERVICES",
           "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"}
    removed = {sep_chain(web, e) for e in before.endpoints["default/web:http"]} - web_chains
    assert len(removed) == 2
    assert _declared(part.text) == top | web_chains | removed
    assert {ln.split()[1] for ln in part.text.splitlines() if ln.startswith("-X ")} == removed
    # Rules in per-service chains of other services are not in the text at all.
    other = set().union(*(set(c) for k, c in part.service_chains.items() if k != "default/web:http"))
    assert not any(ln.split()[1] in other for ln in part.text.splitlines() if ln.startswith("-A "))
    # Applied on top of the previous state it equals a fresh full render.
    fresh = kernel()
    fresh.apply(render_full(after, NODE).text)
    assert fake.save() == fresh.save()
    assert part.chains == render_full(after, NODE).chains
    assert part.rule_count == fake.rule_count()


def test_partial_removing_a_service_deletes_its_chains() -> None:
    services, slices = _all_services()
    full = render_full(build_state(services, slices, "node1"), NODE)
    fake = FakeRestore()
    fake.apply(full.text)
    remaining = [s for s in services if s["metadata"]["name"] != "np"]
    after = build_state(remaining, slices, "node1")
    part = render_partial(after, NODE, {"default/np"}, full)
    fake.apply(part.text)
    gone = set(full.service_chains["default/np:http"])
    assert gone and not (gone & fake.chains("nat"))
    assert set(part.deleted_chains) == gone


def test_partial_with_nothing_changed_rewrites_top_level_only() -> None:
    services, slices = _all_services()
    st = build_state(services, slices, "node1")
    full = render_full(st, NODE)
    part = render_partial(st, NODE, set(), full)
    assert not any(d.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-")) for d in _declared(part.text))
    assert "-X " not in part.text and ":INPUT" not in part.text and "-F " not in part.text
    fake = FakeRestore()
    fake.apply(full.text)
    before = fake.save()
    fake.apply(part.text)
    assert fake.save() == before


def test_partial_rewrites_service_whose_chains_are_missing() -> None:
    st = state_of("clusterip_3_endpoints")
    empty_prev = render_full(ProxyState(), NODE)
    part = render_partial(st, NODE, set(), empty_prev)
    fake = FakeRestore()
    fake.apply(empty_prev.text)
    fake.apply(part.text)  # would fail with a jump to a missing chain if web's chains were skipped
    assert svc_chain(st.services["default/web:http"]) in fake.chains("nat")


def test_full_render_deletes_existing_stale_chains() -> None:
    services, slices = _all_services()
    old = render_full(build_state(services, slices, "node1"), NODE)
    fake = FakeRestore()
    fake.apply(old.text)
    new = render_full(build_state(services[:1], slices, "node1"), NODE, existing=fake.chains("nat"))
    fake.apply(new.text)
    assert fake.chains("nat") == new.chains["nat"] | {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}


# ---------------------------------------------------------------------------------------------------------
# FakeRestore rejects what the kernel rejects


@pytest.mark.parametrize("text, fragment", [
    ("*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j KUBE-MISSING\nCOMMIT\n", "KUBE-MISSING"),
    ("*nat\n-A KUBE-NOPE -j ACCEPT\nCOMMIT\n", "KUBE-NOPE"),
    ("*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j ACCEPT\n", "COMMIT expected"),
    ("*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\n-X KUBE-B\nCOMMIT\n", "referenced"),
    ("*nat\n:KUBE-A ACCEPT [0:0]\nCOMMIT\n", "policy"),
    ("-A KUBE-A -j ACCEPT\n", "outside a table"),
    ("*bogus\nCOMMIT\n", "unknown table"),
    ("*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j PREROUTING\nCOMMIT\n", "built-in"),
])
def test_fake_restore_rejects(text: str, fragment: str) -> None:
    fake = FakeRestore()
    before = fake.save()
    with pytest.raises(KernelError) as exc:
        fake.apply(text)
    assert fragment in str(exc.value)
    assert fake.save() == before  # nothing committed


def test_fake_restore_rejects_deleting_chain_still_used_by_unchanged_rules() -> None:
    fake = FakeRestore()
    full = render_full(state_of("clusterip_3_endpoints"), NODE)
    fake.apply(full.text)
    sep = next(c for c in full.chains["nat"] if c.startswith("KUBE-SEP-"))
    with pytest.raises(KernelError, match="referenced"):
        fake.apply(f"*nat\n:{sep} - [0:0]\n-X {sep}\nCOMMIT\n")


def test_fake_restore_noflush_keeps_undeclared_chains() -> None:
    fake = FakeRestore()
    fake.apply("*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j ACCEPT\n-A KUBE-B -j ACCEPT\nCOMMIT\n")
    fake.apply("*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j DROP\nCOMMIT\n")
    rs = fake.ruleset()
    assert [r.target for r in rs.rules("nat", "KUBE-A")] == ["DROP"]
    assert [r.target for r in rs.rules("nat", "KUBE-B")] == ["ACCEPT"]
    fake.apply("*nat\n:KUBE-A - [0:0]\nCOMMIT\n", noflush=False)
    assert fake.chains("nat") == {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "KUBE-A"}


def test_cleanup_removes_everything_but_others_rules() -> None:
    services, slices = _all_services()
    fake = kernel()
    fake.apply("*nat\n-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n")
    fake.apply(render_full(build_state(services, slices, "node1"), NODE).text)
    fake.apply(chains_for_cleanup(saved={"nat": fake.save(), "filter": fake.save()}))
    assert not any(c.startswith("KUBE-") for t in ("nat", "filter") for c in fake.chains(t))
    assert [r.target for r in fake.ruleset().rules("nat", "POSTROUTING")] == ["MASQUERADE"]
    assert fake.rule_count() == 1
    # On a clean table (and on a second run) it still applies: only present jumps are deleted.
    fake.apply(chains_for_cleanup(saved={"nat": fake.save(), "filter": fake.save()}))
    fake.apply(chains_for_cleanup(saved={"nat": fake.save(), "filter": fake.save()}))


def test_cleanup_with_chain_list_and_no_saved_rules_assumes_jumps_present() -> None:
    services, slices = _all_services()
    fake = kernel()
    fake.apply(render_full(build_state(services, slices, "node1"), NODE).text)
    fake.apply(chains_for_cleanup({"nat": fake.chains("nat"), "filter": fake.chains("filter")}))
    assert fake.rule_count() == 0 and not any(c.startswith("KUBE-") for c in fake.chains("nat"))


def test_cleanup_without_chain_list_cannot_drop_mark_masq_in_use() -> None:
    fake = kernel()
    fake.apply(render_full(state_of("clusterip_3_endpoints"), NODE).text)
    with pytest.raises(KernelError, match="referenced"):
        fake.apply(chains_for_cleanup(saved={"nat": "", "filter": ""}))


# ---------------------------------------------------------------------------------------------------------
# Speed


def test_render_10000_services_large_cluster_mode() -> None:
    """10,000 x 5 renders completely, without per-endpoint comments (kube-proxy's large-cluster mode).
    Its speed is measured by the benchmarks in scripts/, not asserted here."""
    st = ProxyState()
    for i in range(10_000):
        sp = ServicePort("bench", f"s{i}", "http", "TCP", f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                         80, 8080)
        st.services[sp.key] = sp
        st.endpoints[sp.key] = tuple(
            Endpoint(f"10.244.{j}.{i % 250 + 1}", 8080, f"node{j}", True, True, False, j == 1)
            for j in range(1, 6))
    r = render_full(st, NODE)
    assert r.rule_count > 10_000 * 13
    # Large-cluster mode (kube-proxy: > 1000 endpoints) drops per-endpoint comments.
    assert "-> 10.244." not in r.text


def test_kube_chain_hash_is_base32_of_sha256() -> None:
    import base64
    import hashlib

    from netk8s.model.naming import kube_chain_hash

    for text in ("", "default/web:httptcp", "default/web:httptcp10.244.1.5:8080", "x" * 500, "ü"):
        for prefix in ("KUBE-SVC-", "KUBE-SEP-"):
            want = prefix + base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]
            assert kube_chain_hash(prefix, text) == want
