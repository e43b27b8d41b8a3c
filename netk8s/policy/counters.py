"""Pure: per-policy and per-rule packet counters from the nodes' `ip netk8s-policy` tables (nft -j JSON),
and `check_step`, the kernel's side of one step of a `policy why` verdict.

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

from netk8s.policy.model import Step
from netk8s.policy.nftables import chain_name

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


# ---------------------------------------------------------------------------------------------------------
# `netk8s policy why`: does the kernel agree with the model's verdict?


@dataclass(frozen=True)
class RuleCounter:
    comment: str
    packets: int


@dataclass(frozen=True)
class KernelCheck:
    """The kernel's side of one step of a verdict (netk8s.policy.model.Step), on the step's node.

    agrees: the kernel has what the model says decides this direction (no chain for a pod the model
    leaves open; the deciding rules in the pod's chain otherwise) and, when a probe was sent
    (`after` given), the deciding rules' counter moved. `moved` is None without a probe."""

    step: Step
    chain: str
    agrees: bool
    text: str
    packets: int | None = None
    moved: int | None = None


def chain_counters(table: dict, chain: str) -> list[RuleCounter] | None:
    """The counted rules of `chain` in one node's `nft -j` table output; None when there is no such chain."""
    found = False
    out = []
    for obj in table.get("nftables") or []:
        if not isinstance(obj, dict):
            continue
        if isinstance(obj.get("chain"), dict) and obj["chain"].get("name") == chain:
            found = True
        rule = obj.get("rule")
        if isinstance(rule, dict) and rule.get("chain") == chain:
            found = True
            count = _counter(rule.get("expr") or [])
            if count is not None:
                out.append(RuleCounter(str(rule.get("comment") or ""), count[0]))
    return out if found else None


def _deciding(step: Step, rules: list[RuleCounter]) -> tuple[list[RuleCounter], str]:
    """The rules of the pod's chain the model's step names, and how to call them."""
    if step.outcome == "allowed":
        want = {ref.removeprefix("networkpolicy ") for ref in step.refs}
        return [r for r in rules if r.comment in want], "rule " + " / ".join(sorted(want))
    if step.outcome == "own-node":
        return [r for r in rules if r.comment == "own node"], "rule own node"
    want_by = set(step.refs)
    return ([r for r in rules if r.comment.startswith("isolated by ")
             and {p.strip() for p in r.comment.removeprefix("isolated by ").split(",")} == want_by],
            f"the drop (isolated by {', '.join(step.refs)})")


def check_step(step: Step, before: dict, after: dict | None = None) -> KernelCheck:
    """Compare one step with the node's table (`before`), and with `after` a probe's effect on it."""
    chain = chain_name(step.direction, step.pod)
    where = f"{step.direction} of {step.pod} on {step.node or '?'}"
    rules = chain_counters(before, chain)
    if rules is None:
        if step.outcome in ("open", "own-node"):
            return KernelCheck(step, chain, True, f"{where}: no chain, the kernel does not isolate it either")
        return KernelCheck(step, chain, False, f"{where}: the model isolates it but the kernel has no chain {chain} "
                                               "(not programmed yet?)")
    if step.outcome == "open":
        return KernelCheck(step, chain, False, f"{where}: the kernel still isolates it (chain {chain}), the model does not")
    deciding, name = _deciding(step, rules)
    if not deciding:
        return KernelCheck(step, chain, False, f"{where}: chain {chain} has no rule for {name}")
    packets = sum(r.packets for r in deciding)
    if after is None:
        seen = f"{packets} packet{'s' * (packets != 1)} matched so far" if packets else "no packet matched yet"
        return KernelCheck(step, chain, True, f"{where}: {name} in {chain}: {seen}", packets)
    later = chain_counters(after, chain)
    now = sum(r.packets for r in _deciding(step, later)[0]) if later is not None else 0
    moved = now - packets
    if moved > 0:
        return KernelCheck(step, chain, True, f"{where}: the probe moved {name} in {chain} by {moved} "
                                              f"packet{'s' * (moved != 1)}", now, moved)
    return KernelCheck(step, chain, False, f"{where}: the probe did not move {name} in {chain} "
                                           "(the kernel decided it elsewhere)", now, 0)
