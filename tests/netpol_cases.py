"""The NetworkPolicy truth-table cases (upstream test/e2e/network/netpol and cyclonus style), shared by the
pure model's tests and the real-lab probes.

The universe is upstream's: namespaces x, y, z (label ns=<name>), each with pods a, b, c (label pod=<name>)
serving TCP and UDP on 80 and 81 with container ports named serve-80-tcp, serve-80-udp, serve-81-tcp,
serve-81-udp. A case is a list of policies plus an expectation written independently of the model
(`expect(src, dst, port, proto) -> bool`, pods as "x/a"); a pod reaching itself is loopback and always
allowed (upstream ignores loopback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PODS = tuple(f"{ns}/{p}" for ns in NAMESPACES for p in POD_NAMES)
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP")

Expect = Callable[[str, str, int, str], bool]


def container_ports() -> list[dict]:
    return [{"name": f"serve-{port}-{proto.lower()}", "containerPort": port, "protocol": proto}
            for port in PORTS for proto in PROTOCOLS]


def np(name: str, spec: dict, namespace: str = "x") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def ns_of(pod: str) -> str:
    return pod.split("/")[0]


def name_of(pod: str) -> str:
    return pod.split("/")[1]


@dataclass(frozen=True)
class Case:
    name: str
    policies: tuple[dict, ...]
    expect: Expect


def case(name: str, policies: list[dict], expect: Expect) -> Case:
    return Case(name, tuple(policies), lambda s, d, port, proto: s == d or expect(s, d, port, proto))


ALL = {"podSelector": {}}
XA = {"podSelector": {"matchLabels": {"pod": "a"}}}
DENY_IN = np("deny-in", {**ALL, "policyTypes": ["Ingress"]})
DENY_OUT = np("deny-out", {**ALL, "policyTypes": ["Egress"]})


def into_xa(s: str, d: str) -> bool:
    return d == "x/a"


CASES: tuple[Case, ...] = (
    case("no-policy", [], lambda s, d, p, q: True),
    case("default-deny-ingress", [DENY_IN], lambda s, d, p, q: ns_of(d) != "x"),
    case("default-deny-egress", [DENY_OUT], lambda s, d, p, q: ns_of(s) != "x"),
    case("default-deny-both", [np("deny", {**ALL, "policyTypes": ["Ingress", "Egress"]})],
         lambda s, d, p, q: ns_of(s) != "x" and ns_of(d) != "x"),
    case("allow-all-ingress", [np("allow", {**ALL, "ingress": [{}]})], lambda s, d, p, q: True),
    case("deny-then-allow-all-is-additive", [DENY_IN, np("allow", {**ALL, "ingress": [{}]})],
         lambda s, d, p, q: True),
    case("allow-all-egress", [np("allow", {**ALL, "policyTypes": ["Egress"], "egress": [{}]})],
         lambda s, d, p, q: True),
    case("pod-selector", [np("from-b", {**XA, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})],
         lambda s, d, p, q: d != "x/a" or s == "x/b"),
    case("namespace-selector", [np("from-y", {**XA, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})],
         lambda s, d, p, q: d != "x/a" or ns_of(s) == "y"),
    case("namespace-and-pod-in-one-peer", [np("and", {**XA, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "c"}}}]}]})],
         lambda s, d, p, q: d != "x/a" or s == "y/c"),
    case("namespace-or-pod-in-two-peers", [np("or", {**XA, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "c"}}}]}]})],
         lambda s, d, p, q: d != "x/a" or ns_of(s) == "y" or s == "x/c"),
    case("match-expressions-in", [np("in", {**XA, "ingress": [{"from": [{"namespaceSelector": {
        "matchExpressions": [{"key": "ns", "operator": "In", "values": ["y", "z"]}]}}]}]})],
         lambda s, d, p, q: d != "x/a" or ns_of(s) in ("y", "z")),
    case("match-expressions-notin", [np("notin", {**XA, "ingress": [{"from": [{"namespaceSelector": {
        "matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]}}]}]})],
         lambda s, d, p, q: d != "x/a" or ns_of(s) != "y"),
    case("match-expressions-exists", [np("exists", {**XA, "ingress": [{"from": [{"podSelector": {
        "matchExpressions": [{"key": "pod", "operator": "Exists"}]}}]}]})],
         lambda s, d, p, q: d != "x/a" or ns_of(s) == "x"),
    case("match-expressions-doesnotexist", [np("dne", {**XA, "ingress": [{"from": [{"podSelector": {
        "matchExpressions": [{"key": "pod", "operator": "DoesNotExist"}]}}]}]})],
         lambda s, d, p, q: d != "x/a"),
    case("pod-selector-in-and-notin", [np("in-notin", {"podSelector": {"matchExpressions": [
        {"key": "pod", "operator": "In", "values": ["a", "b"]}]}, "ingress": [{"from": [{"podSelector": {
            "matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a", "b"]}]}}]}]})],
         lambda s, d, p, q: d not in ("x/a", "x/b") or s == "x/c"),
    case("all-namespaces", [np("all-ns", {**XA, "ingress": [{"from": [{"namespaceSelector": {}}]}]})],
         lambda s, d, p, q: True),
    case("empty-pod-selector-peer-is-own-namespace", [np("own-ns", {**XA, "ingress": [{"from": [{"podSelector": {}}]}]})],
         lambda s, d, p, q: d != "x/a" or ns_of(s) == "x"),
    case("default-namespace-name-label", [np("by-name", {**XA, "ingress": [{"from": [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}]})],
         lambda s, d, p, q: d != "x/a" or ns_of(s) == "z"),
    case("port-80-tcp", [np("p80", {**XA, "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]})],
         lambda s, d, p, q: d != "x/a" or (p, q) == (80, "TCP")),
    case("udp-only", [np("udp81", {**XA, "ingress": [{"ports": [{"port": 81, "protocol": "UDP"}]}]})],
         lambda s, d, p, q: d != "x/a" or (p, q) == (81, "UDP")),
    case("protocol-without-port", [np("tcp", {**XA, "ingress": [{"ports": [{"protocol": "TCP"}]}]})],
         lambda s, d, p, q: d != "x/a" or q == "TCP"),
    case("sctp-only-isolates-tcp-and-udp", [np("sctp", {**XA, "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]})],
         lambda s, d, p, q: d != "x/a"),
    case("named-port", [np("named", {**XA, "ingress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]})],
         lambda s, d, p, q: d != "x/a" or (p, q) == (81, "UDP")),
    case("named-port-wrong-protocol", [np("named-tcp", {**XA, "ingress": [{"ports": [{"port": "serve-80-udp"}]}]})],
         lambda s, d, p, q: d != "x/a"),
    case("named-port-from-namespace", [np("named-ns", {**XA, "ingress": [{
        "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": "serve-80-tcp"}]}]})],
         lambda s, d, p, q: d != "x/a" or (ns_of(s) == "y" and (p, q) == (80, "TCP"))),
    case("end-port-range", [np("range", {**XA, "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "TCP"}]}]})],
         lambda s, d, p, q: d != "x/a" or q == "TCP"),
    case("end-port-partial", [np("range81", {**XA, "ingress": [{"ports": [{"port": 81, "endPort": 90, "protocol": "UDP"}]}]})],
         lambda s, d, p, q: d != "x/a" or (p, q) == (81, "UDP")),
    case("two-rules-one-policy", [np("two", {**XA, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 81, "protocol": "UDP"}]}]})],
         lambda s, d, p, q: d != "x/a" or (s == "x/b" and (p, q) == (80, "TCP"))
         or (ns_of(s) == "y" and (p, q) == (81, "UDP"))),
    case("stacked-policies-overlapping-selectors", [
        np("from-y-80", {**XA, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                                            "ports": [{"port": 80}]}]}),
        np("from-z-81", {**ALL, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
                                             "ports": [{"port": 81}]}]})],
         lambda s, d, p, q: ns_of(d) != "x" or (q == "TCP" and (
             (d == "x/a" and ns_of(s) == "y" and p == 80) or (ns_of(s) == "z" and p == 81)))),
    case("egress-to-namespace", [np("to-y", {**XA, "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})],
         lambda s, d, p, q: s != "x/a" or ns_of(d) == "y"),
    case("egress-named-port", [np("to-named", {**XA, "policyTypes": ["Egress"], "egress": [
        {"ports": [{"port": "serve-80-tcp"}]}]})],
         lambda s, d, p, q: s != "x/a" or (p, q) == (80, "TCP")),
    case("egress-denied-even-if-server-allows", [
        np("deny-out", {**XA, "policyTypes": ["Egress"]}),
        np("allow-in", {**ALL, "ingress": [{}]}, namespace="y")],
         lambda s, d, p, q: s != "x/a"),
    case("egress-pod-and-namespace", [np("to-zb", {**XA, "policyTypes": ["Egress"], "egress": [{"to": [
        {"namespaceSelector": {"matchLabels": {"ns": "z"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]})],
         lambda s, d, p, q: s != "x/a" or d == "z/b"),
    case("egress-ports-only-dns", [np("dns-only", {**ALL, "policyTypes": ["Egress"], "egress": [
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]})],
         lambda s, d, p, q: ns_of(s) != "x"),
    case("ingress-and-egress-independent", [np("both", {**XA, "policyTypes": ["Ingress", "Egress"],
                                                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                                                         "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]})],
         lambda s, d, p, q: (d != "x/a" or s == "x/b") and (s != "x/a" or d == "x/c")),
    case("policy-types-ingress-ignores-egress-rules", [np("in-only", {**XA, "policyTypes": ["Ingress"],
                                                                      "egress": [{"to": [{"podSelector": {}}]}]})],
         lambda s, d, p, q: d != "x/a"),
    case("selects-only-its-namespace", [np("y-deny", {**XA, "policyTypes": ["Ingress"]}, namespace="y")],
         lambda s, d, p, q: d != "y/a"),
    case("multiple-egress-allow-all-wins", [
        np("to-y", {**XA, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        np("all-out", {**XA, "policyTypes": ["Egress"], "egress": [{}]})],
         lambda s, d, p, q: True),
    case("ingress-from-pod-in-other-namespace-only", [np("from-za", {**ALL, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "z"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]})],
         lambda s, d, p, q: ns_of(d) != "x" or s == "z/a"),
)


def ip_cases(ip_of: Callable[[str], str]) -> tuple[Case, ...]:
    """ipBlock cases: they name pod addresses, so they are made once the pods have theirs."""
    xb, ya, zb = ip_of("x/b"), ip_of("y/a"), ip_of("z/b")
    return (
        case("ipblock-ingress-except", [np("cidr-in", {**XA, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{xb}/32"]}}]}]})],
             lambda s, d, p, q: d != "x/a" or s != "x/b"),
        case("ipblock-egress-except", [np("cidr-out", {**XA, "policyTypes": ["Egress"], "egress": [{"to": [
            {"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{ya}/32", f"{zb}/32"]}}]}]})],
             lambda s, d, p, q: s != "x/a" or d not in ("y/a", "z/b")),
        case("ipblock-except-allowed-by-other-peer", [np("overlap", {**XA, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{xb}/32"]}},
            {"podSelector": {"matchLabels": {"pod": "b"}}}]}]})],
             lambda s, d, p, q: True),
        case("ipblock-single-address-egress", [np("to-one", {**XA, "policyTypes": ["Egress"], "egress": [{
            "to": [{"ipBlock": {"cidr": f"{ya}/32"}}], "ports": [{"port": 81, "protocol": "TCP"}]}]})],
             lambda s, d, p, q: s != "x/a" or (d == "y/a" and (p, q) == (81, "TCP"))),
    )
