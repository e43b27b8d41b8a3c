"""Per-policy / per-rule counters from nft JSON, and how `describe networkpolicy` shows them."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from netk8s.cli.describe import describe
from netk8s.policy.counters import chain_counters, check_step, policy_counters
from netk8s.policy.model import Step
from netk8s.policy.nftables import chain_name


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


# ----- `policy why`: the kernel's side of each step (netk8s.policy.counters.check_step)


A_IN = chain_name("ingress", "x/a")


def table_with(*rules: dict, chain: str = A_IN) -> dict:
    return {"nftables": [{"chain": {"family": "ip", "table": "netk8s-policy", "name": chain}}, *rules]}


def a_table(allowed: int = 0, other: int = 0, dropped: int = 0) -> dict:
    return table_with(rule(A_IN, "own node", 0, 0), rule(A_IN, "x/web ingress[0]", allowed, allowed * 60),
                      rule(A_IN, "x/web ingress[1]", other, other * 60),
                      rule(A_IN, "isolated by x/web", dropped, dropped * 60, "drop"))


ALLOWED = Step("ingress", "x/a", "node1", "allowed", ("networkpolicy x/web ingress[0]",))
DROPPED = Step("ingress", "x/a", "node1", "dropped", ("x/web",))
OPEN = Step("ingress", "x/a", "node1", "open")


def test_chain_counters_reads_one_chain_and_tells_a_missing_one() -> None:
    t = a_table(3)
    assert [(r.comment, r.packets) for r in chain_counters(t, A_IN) or []][1] == ("x/web ingress[0]", 3)
    assert chain_counters(t, "in-nothere") is None
    assert chain_counters({"nftables": []}, A_IN) is None


@pytest.mark.parametrize("name, step, before, after, agrees, moved, says", [
    ("allowed, counted so far", ALLOWED, a_table(4), None, True, None, "4 packets matched so far"),
    ("allowed, nothing yet", ALLOWED, a_table(0), None, True, None, "no packet matched yet"),
    ("allowed, the probe moved its rule", ALLOWED, a_table(4), a_table(5), True, 1, "moved rule x/web ingress[0]"),
    ("allowed, the probe moved another rule", ALLOWED, a_table(4), a_table(4, other=1), False, 0,
     "did not move"),
    ("dropped, the probe moved the drop", DROPPED, a_table(dropped=2), a_table(dropped=5), True, 3, "by 3 packets"),
    ("dropped, the probe did not", DROPPED, a_table(dropped=2), a_table(1, dropped=2), False, 0, "did not move"),
    ("dropped by other policies than the kernel's", Step("ingress", "x/a", "node1", "dropped", ("x/web", "x/db")),
     a_table(), None, False, None, "has no rule for the drop"),
    ("open, no chain", OPEN, {"nftables": []}, None, True, None, "the kernel does not isolate it either"),
    ("open, but the kernel isolates", OPEN, a_table(), None, False, None, "still isolates"),
    ("isolated, but no chain yet", ALLOWED, {"nftables": []}, None, False, None, "not programmed yet"),
    ("own node", Step("ingress", "x/a", "node1", "own-node"), a_table(), None, True, None, "rule own node"),
])
def test_check_step(name: str, step: Step, before: dict, after: dict | None, agrees: bool, moved: int | None,
                    says: str) -> None:
    got = check_step(step, before, after)
    assert (got.agrees, got.moved) == (agrees, moved), (name, got)
    assert says in got.text, (name, got.text)
    assert got.chain == A_IN
