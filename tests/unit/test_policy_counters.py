"""Per-policy / per-rule counters from nft JSON, and how `describe networkpolicy` shows them."""

from __future__ import annotations

from dataclasses import asdict

from netk8s.cli.describe import describe
from netk8s.policy.counters import policy_counters


def rule(chain: str, comment: str, packets: int, size: int, verdict: str = "return") -> dict:
    return {"rule": {"family": "ip", "table": "netk8s-policy", "chain": chain, "comment": comment,
                     "expr": [{"counter": {"packets": packets, "bytes": size}}, {verdict: None}]}}


NODE1 = {"nftables": [
    {"table": {"family": "ip", "name": "netk8s-policy"}},
    {"rule": {"chain": "in-aaaa", "comment": "own node", "expr": [{"return": None}]}},
    rule("in-aaaa", "x/web ingress[0]", 5, 300),
    rule("in-aaaa", "x/web ingress[1]", 1, 60),
    rule("in-aaaa", "x/other ingress[0]", 7, 420),
    rule("in-aaaa", "isolated by x/other, x/web", 3, 180, "drop"),
    rule("out-bbbb", "isolated by x/web", 2, 120, "drop"),
]}
NODE2 = {"nftables": [rule("in-cccc", "x/web ingress[0]", 4, 240), rule("in-cccc", "isolated by x/web", 1, 60, "drop")]}


def test_rules_and_drops_are_summed_over_nodes_per_policy() -> None:
    c = policy_counters([NODE1, NODE2], "x/web")
    assert c.nodes == 2
    assert (c.rules["ingress[0]"].packets, c.rules["ingress[0]"].bytes) == (9, 540)
    assert c.rules["ingress[1]"].packets == 1 and "egress[0]" not in c.rules
    assert c.dropped["ingress"].packets == 4 and c.dropped["egress"].packets == 2


def test_a_drop_shared_by_two_isolating_policies_shows_under_both_and_other_rules_do_not() -> None:
    other = policy_counters([NODE1], "x/other")
    assert other.rules["ingress[0]"].packets == 7 and set(other.rules) == {"ingress[0]"}
    assert other.dropped["ingress"].packets == 3 and "egress" not in other.dropped
    assert policy_counters([NODE1], "y/web").rules == {}


NP = {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
      "metadata": {"name": "web", "namespace": "x", "creationTimestamp": "2024-05-01T11:55:00Z"},
      "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
               "ingress": [{"from": [{"podSelector": {}}]}, {"ports": [{"port": 80}]}]}}


def test_describe_adds_selected_pods_and_counters_after_kubectls_text() -> None:
    pods = [{"metadata": {"name": n, "namespace": "x"}} for n in ("web-2", "web-1")]
    text = describe(NP, {"Pod": pods, "PolicyCounters": [asdict(policy_counters([NODE1, NODE2], "x/web"))]}, 0)
    lines = text.splitlines()
    tail = lines[lines.index(next(ln for ln in lines if ln.strip().startswith("Policy Types"))) + 1:]
    assert tail[0].split() == ["Selected", "Pods:", "web-1,", "web-2"]
    assert tail[1].strip() == "Packet Counters (new connections, 2 nodes):"
    assert tail[2].split() == ["ingress[0]:", "allowed", "9", "packets", "(540", "bytes)"]
    assert tail[3].split() == ["ingress[1]:", "allowed", "1", "packets", "(60", "bytes)"]
    assert [ln.split(":")[0].strip() for ln in tail[4:]] == ["dropped (egress, pods it isolates)",
                                                             "dropped (ingress, pods it isolates)"]


def test_describe_says_why_counters_are_missing_and_works_without_them() -> None:
    text = describe(NP, {"Pod": [], "PolicyCounters": [{"error": "reading the nodes' kernels needs root"}]}, 0)
    assert "Selected Pods: <none>" in text
    assert "Packet Counters: <unavailable: reading the nodes' kernels needs root>" in text
    assert "Packet Counters" not in describe(NP, {}, 0) and "Selected Pods" not in describe(NP, {}, 0)
