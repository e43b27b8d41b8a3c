"""The pure NetworkPolicy model against the upstream-style truth tables (tests/netpol_cases.py)."""

from __future__ import annotations

import pytest

from netk8s.policy.model import Model, Peer, build
from tests.netpol_cases import (
    CASES,
    NAMESPACES,
    PODS,
    PORTS,
    PROTOCOLS,
    Case,
    container_ports,
    ip_cases,
    name_of,
    np,
    ns_of,
)

NODES = ("node-1", "node-2")


def ip_of(pod: str) -> str:
    i = PODS.index(pod)
    return f"10.244.{i % 2 + 1}.{10 + i}"


def pod_objects(labels: dict[str, dict] | None = None) -> list[dict]:
    out = []
    for i, pod in enumerate(PODS):
        out.append({"kind": "Pod", "metadata": {
            "name": name_of(pod), "namespace": ns_of(pod), "labels": (labels or {}).get(pod, {"pod": name_of(pod)}),
            "annotations": {"netk8s.io/pod-ip": ip_of(pod)}},
            "spec": {"nodeName": NODES[i % 2], "containers": [{"name": "c", "image": "agnhost",
                                                                "ports": container_ports()}]}})
    return out


def ns_objects(extra: dict[str, dict] | None = None) -> list[dict]:
    return [{"kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns, **(extra or {}).get(ns, {})}}}
            for ns in NAMESPACES]


NODE_OBJECTS = [{"kind": "Node", "metadata": {"name": n}, "spec": {"podCIDR": f"10.244.{i + 1}.0/24"},
                 "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.56.{11 + i}"}]}}
                for i, n in enumerate(NODES)]


def model_of(policies: tuple[dict, ...] | list[dict], **kw: dict) -> Model:
    return build(pod_objects(kw.get("labels")), policies, ns_objects(kw.get("ns_labels")), NODE_OBJECTS)


def mismatches(model: Model, c: Case) -> list[str]:
    out = []
    for s in PODS:
        for d in PODS:
            for port in PORTS:
                for proto in PROTOCOLS:
                    got = model.check(ip_of(s), ip_of(d), port, proto).allowed
                    if got != c.expect(s, d, port, proto):
                        out.append(f"{s} -> {d} {port}/{proto}: model {got}")
    return out


ALL_CASES = CASES + ip_cases(ip_of)


def test_at_least_forty_cases() -> None:
    assert len(ALL_CASES) >= 40
    assert len({c.name for c in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("c", ALL_CASES, ids=[c.name for c in ALL_CASES])
def test_truth_table(c: Case) -> None:
    bad = mismatches(model_of(c.policies), c)
    assert not bad, "\n".join(bad[:20])


def test_pod_relabelled_into_and_out_of_a_selector() -> None:
    pol = [np("from-b", {"podSelector": {"matchLabels": {"pod": "a"}},
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})]
    before = model_of(pol)
    assert not before.check(ip_of("x/c"), ip_of("x/a"), 80).allowed
    labels = {p: {"pod": name_of(p)} for p in PODS} | {"x/c": {"pod": "c", "role": "client"}}
    after = model_of(pol, labels=labels)
    assert after.check(ip_of("x/c"), ip_of("x/a"), 80).allowed
    # relabelling the target out of the policy's podSelector lifts its isolation
    labels["x/a"] = {"pod": "other"}
    assert model_of(pol, labels=labels).check(ip_of("y/b"), ip_of("x/a"), 80).allowed


def test_namespace_relabelled() -> None:
    pol = [np("from-team", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "t"}}}]}]})]
    assert not model_of(pol).check(ip_of("z/a"), ip_of("x/a"), 80).allowed
    assert model_of(pol, ns_labels={"z": {"team": "t"}}).check(ip_of("z/a"), ip_of("x/a"), 80).allowed


def test_new_pod_matching_a_selector_joins_the_peer_set() -> None:
    pol = [np("from-b", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})]
    pods = pod_objects() + [{"kind": "Pod", "metadata": {"name": "b2", "namespace": "x", "labels": {"pod": "b"},
                                                         "annotations": {"netk8s.io/pod-ip": "10.244.1.99"}},
                             "spec": {"nodeName": "node-1", "containers": []}}]
    model = build(pods, pol, ns_objects(), NODE_OBJECTS)
    assert model.check("10.244.1.99", ip_of("x/a"), 80).allowed
    assert "10.244.1.99" in model.policies["x/a"].ingress[0].peers[0].ips  # type: ignore[index]


def test_own_node_is_always_allowed_and_outside_addresses_follow_ipblocks() -> None:
    model = model_of([np("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})])
    xa_node_ip = "192.168.56.11"  # x/a is on node-1
    assert model.check(xa_node_ip, ip_of("x/a"), 80).allowed
    assert model.check("10.244.1.1", ip_of("x/a"), 80).allowed  # its cbr0 address
    assert not model.check("192.168.56.12", ip_of("x/a"), 80).allowed  # another node
    assert not model.check("192.168.56.100", ip_of("x/a"), 80).allowed
    allow_lan = model_of([np("lan", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "192.168.56.0/24"}}]}]})])
    assert allow_lan.check("192.168.56.100", ip_of("x/a"), 80).allowed


def test_verdict_names_the_deciding_rules() -> None:
    c = next(c for c in CASES if c.name == "two-rules-one-policy")
    model = model_of(c.policies)
    ok = model.check(ip_of("y/a"), ip_of("x/a"), 81, "UDP")
    assert ok.allowed and ok.deciding == ("networkpolicy x/two ingress[1]",)
    no = model.check(ip_of("y/a"), ip_of("x/a"), 80, "TCP")
    assert not no.allowed and no.deciding == ("x/two",)
    assert "isolated by networkpolicy x/two and no rule allows it: dropped" in str(no)
    assert str(model.check(ip_of("x/a"), ip_of("y/b"), 80)).startswith("ALLOWED")


def test_peer_ranges_cut_out_the_excepts() -> None:
    import ipaddress

    net = ipaddress.IPv4Network
    p = Peer("t", cidr=net("10.0.0.0/24"), excepts=(net("10.0.0.0/26"), net("10.0.0.128/25")))
    assert p.ranges() == [net("10.0.0.64/26")]
    assert not p.matches("10.0.0.5") and p.matches("10.0.0.70")


@pytest.mark.parametrize("c", CASES[:12] + ip_cases(ip_of), ids=lambda c: c.name)
def test_build_for_one_node_matches_the_whole_model(c: Case) -> None:
    """The agent builds only its node's pods (only_node): same allow-sets for them, every pod a peer."""
    whole = model_of(c.policies)
    for node in NODES:
        part = build(pod_objects(), c.policies, ns_objects(), NODE_OBJECTS, only_node=node)
        assert set(part.policies) == {k for k, pp in whole.policies.items() if pp.pod.node == node}
        assert all(part.policies[k] == whole.policies[k] for k in part.policies)
