"""Pure: per-policy and per-rule packet counters from the nodes' `ip netk8s-policy` tables (nft -j JSON).

The renderer (netk8s.policy.nftables) puts a counter on every allowing rule, commented
`NS/NAME ingress[i]` / `NS/NAME egress[i]`, and on every per-pod drop, commented `isolated by NS/A,
NS/B`, in a chain named `in-...` (ingress) or `out-...` (egress). Only the first packet of a
connection reaches these chains (established traffic is accepted before the dispatch), so a counter
counts new connections (for UDP: new flows) that rule allowed or the isolation dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_RULE_REF = re.compile(r"^(?P<policy>[^ ]+/[^ ]+) (?P<rule>(?:ingress|egress)\[\d+\])$")


@dataclass
class Count:
    packets: int = 0
    bytes: int = 0

    def add(self, packets: int, size: int) -> None:
        self.packets += packets
        self.bytes += size


@dataclass
class PolicyCounters:
    """One policy's counters summed over the nodes that were read."""

    rules: dict[str, Count] = field(default_factory=dict)  # "ingress[0]" -> allowed
    dropped: dict[str, Count] = field(default_factory=dict)  # "ingress"/"egress" -> dropped in pods it isolates
    nodes: int = 0


def _counter(expr: list) -> tuple[int, int] | None:
    for e in expr:
        if isinstance(e, dict) and isinstance(e.get("counter"), dict):
            return int(e["counter"].get("packets", 0)), int(e["counter"].get("bytes", 0))
    return None


def policy_counters(tables: Iterable[dict], policy: str) -> PolicyCounters:
    """Counters of policy `NS/NAME` from each node's `nft -j list table ip netk8s-policy` output.

    A drop is shared: when several policies isolate a pod, its drop counter shows under each of them."""
    out = PolicyCounters()
    for table in tables:
        out.nodes += 1
        for obj in table.get("nftables") or []:
            rule = obj.get("rule") if isinstance(obj, dict) else None
            if not rule:
                continue
            count = _counter(rule.get("expr") or [])
            comment = rule.get("comment") or ""
            if count is None or not comment:
                continue
            m = _RULE_REF.match(comment)
            if m and m.group("policy") == policy:
                out.rules.setdefault(m.group("rule"), Count()).add(*count)
            elif comment.startswith("isolated by "):
                isolating = [p.strip() for p in comment.removeprefix("isolated by ").split(",")]
                if policy in isolating:
                    direction = "egress" if str(rule.get("chain", "")).startswith("out-") else "ingress"
                    out.dropped.setdefault(direction, Count()).add(*count)
    return out
