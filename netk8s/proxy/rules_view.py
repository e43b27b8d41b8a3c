"""Pure: the readable `netk8s rules` view of one node's programmed rules and their packet counters.

Input is the JSON of `python -m netk8s.dataplane.iptables dump --json` run in a node namespace:
{table: {chain: [{"rule": "-A ...", "packets": n, "bytes": n}]}, "_source": ...}. For each service
port the view follows the jumps that are really programmed, starting at the port's rules in
KUBE-SERVICES / KUBE-NODEPORTS, through KUBE-SVC / KUBE-EXT / KUBE-SVL / KUBE-FW to the KUBE-SEP
chains, prints every rule with its packet counter, and then how traffic actually spread: the packets
each endpoint's DNAT rule took, as a share of the total. nat rules see only the first packet of each
connection (conntrack handles the rest), so these are counts of new connections (UDP flows).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from netk8s.model import naming
from netk8s.proxy.model import ProxyState, ServicePort

# userspace mode: its redirect chains are the entry chains (netk8s.proxy.userspace_rules)
ENTRY_CHAINS = (naming.KUBE_SERVICES, naming.KUBE_NODEPORTS, naming.KUBE_PORTALS_CONTAINER,
                naming.KUBE_PORTALS_HOST, naming.KUBE_NODEPORT_CONTAINER, naming.KUBE_NODEPORT_HOST)
# filter chains holding a port's REJECT (no endpoints) / DROP (no local endpoints) / health check rules
FILTER_CHAINS = (naming.KUBE_SERVICES, naming.KUBE_EXTERNAL_SERVICES, naming.KUBE_NODEPORTS, naming.KUBE_PORTALS_REJECT)
FOLLOW_PREFIXES = (naming.SVC_PREFIX, naming.EXT_PREFIX, naming.SVL_PREFIX, naming.SEP_PREFIX, naming.FW_PREFIX,
                   naming.XLB_PREFIX)


@dataclass(frozen=True)
class Rule:
    chain: str
    text: str
    packets: int
    target: str | None
    dst: str | None
    dport: str | None
    proto: str | None
    comment: str | None
    to_destination: str | None


def parse_rule(entry: dict) -> Rule:
    """A dump entry {"rule", "packets"} with the fields the view needs pulled out of the rule text."""
    text = str(entry.get("rule", ""))
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    opts: dict[str, str] = {}
    for i, word in enumerate(words[:-1]):
        if word in ("-j", "-g", "-d", "--dport", "-p", "--comment", "--to-destination") and word not in opts:
            opts[word] = words[i + 1]
    return Rule(
        chain=words[1] if len(words) > 1 else "",
        text=text,
        packets=int(entry.get("packets", 0) or 0),
        target=opts.get("-j") or opts.get("-g"),
        dst=opts.get("-d"),
        dport=opts.get("--dport"),
        proto=opts.get("-p"),
        comment=opts.get("--comment"),
        to_destination=opts.get("--to-destination"),
    )


def table_rules(dump: dict, table: str = "nat") -> dict[str, list[Rule]]:
    return {chain: [parse_rule(e) for e in entries] for chain, entries in (dump.get(table) or {}).items()}


def _comment_key(rule: Rule) -> str | None:
    """The service port key a kube-proxy comment starts with ("default/web:http cluster IP")."""
    if not rule.comment:
        return None
    first = rule.comment.split()[0]
    return first if "/" in first else None


def _matches_port(rule: Rule, sp: ServicePort) -> bool:
    if _comment_key(rule) == sp.key:
        return True
    if rule.proto is not None and rule.proto.lower() != sp.protocol.lower():
        return False
    if rule.chain == naming.KUBE_NODEPORTS:
        return sp.node_port is not None and rule.dport == str(sp.node_port)
    ips = {ip for ip in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips) if ip}
    dst = (rule.dst or "").removesuffix("/32")
    return dst in ips and rule.dport == str(sp.port)


def _walk(rules: dict[str, list[Rule]], entries: list[Rule]) -> list[str]:
    """Chains reachable from the entry rules through KUBE-SVC/EXT/SVL/SEP/FW jumps, in visit order."""
    seen: list[str] = []
    queue = [r.target for r in entries if r.target]
    while queue:
        chain = queue.pop(0)
        if chain is None or chain in seen or not chain.startswith(FOLLOW_PREFIXES) or chain not in rules:
            continue
        seen.append(chain)
        queue.extend(r.target for r in rules[chain] if r.target)
    return seen


def _rule_lines(rules: Iterable[Rule], width: int) -> list[str]:
    return [f"    {r.packets:>{width}}  {r.text}" for r in rules]


def _spread(rules: dict[str, list[Rule]], chains: list[str]) -> list[tuple[str, str, int]]:
    """(endpoint ip:port, SEP chain, packets its DNAT rule took) for each endpoint chain."""
    out = []
    for chain in chains:
        if not chain.startswith(naming.SEP_PREFIX):
            continue
        dnat = [r for r in rules[chain] if r.target == "DNAT"]
        addr = next((r.to_destination for r in dnat if r.to_destination), "?")
        out.append((addr, chain, sum(r.packets for r in dnat)))
    return out


def spread_lines(spread: list[tuple[str, str, int]], width: int, chain_width: int | None) -> list[str]:
    """"traffic by endpoint": each (address, chain, packets) with its share of the new connections, and the
    total; the chain column only when `chain_width` is given."""
    total = sum(p for _, _, p in spread)
    addr_w = max(len(a) for a, _, _ in spread)
    lines = ["  traffic by endpoint (new connections):"]
    for addr, chain, packets in spread:
        share = f"{100.0 * packets / total:5.1f}%" if total else "    -"
        column = "" if chain_width is None else f"{chain:<{chain_width}} "
        lines.append(f"    {addr:<{addr_w}}  {column}{packets:>{width}}  {share}")
    column = "" if chain_width is None else f"{'':<{chain_width}} "
    lines.append(f"    {'total':<{addr_w}}  {column}{total:>{width}}")
    return lines


def _section(title: str, rules: dict[str, list[Rule]], entries: list[Rule],
             state_eps: list[str] | None, filter_entries: Sequence[Rule] = ()) -> tuple[list[str], int]:
    chains = _walk(rules, entries)
    all_rules = entries + list(filter_entries) + [r for c in chains for r in rules[c]]
    width = max([len(str(r.packets)) for r in all_rules] + [4])
    lines = [title]
    for filter_chain in FILTER_CHAINS:
        mine = [r for r in filter_entries if r.chain == filter_chain]
        if mine:
            lines.append(f"  filter {filter_chain}")
            lines += _rule_lines(mine, width)
    for entry_chain in ENTRY_CHAINS:
        mine = [r for r in entries if r.chain == entry_chain]
        if mine:
            lines.append(f"  {entry_chain}")
            lines += _rule_lines(mine, width)
    for chain in chains:
        lines.append(f"  {chain}")
        lines += _rule_lines(rules[chain], width) or [f"    {'':>{width}}  (empty)"]
    spread = _spread(rules, chains)
    total = sum(p for _, _, p in spread)
    if spread:
        lines += spread_lines(spread, width, chain_width=25)
    elif not entries and not filter_entries:
        lines.append("  (no rules programmed for this service port on this node)")
    elif any(r.target == "REDIRECT" or r.chain.endswith("-HOST") for r in entries):
        lines.append("  (redirected to the userspace proxy's socket, which spreads connections round-robin)")
        # the nat table sees a connection's first packet only: each redirect's counter is its connections
        total = sum(r.packets for r in entries if r.target in ("REDIRECT", "DNAT"))
        if state_eps:
            lines.append(f"  endpoints known here (the proxy picks among the ready ones): {', '.join(state_eps)}")
        return lines, total
    else:
        lines.append("  (no endpoint chains: traffic is rejected or dropped)")
    if state_eps is not None:
        programmed = {a for a, _, _ in spread}
        missing = [e for e in state_eps if e not in programmed]
        if missing:
            lines.append(f"  endpoints not in the rules here (not ready, or not local): {', '.join(missing)}")
    return lines, total


def _title(sp: ServicePort) -> str:
    parts = [f"{sp.key}  {sp.protocol} {sp.cluster_ip}:{sp.port}"]
    if sp.node_port:
        parts.append(f"nodePort {sp.node_port}")
    if sp.load_balancer_ips:
        parts.append(f"loadBalancer {','.join(sp.load_balancer_ips)}")
    if sp.external_ips:
        parts.append(f"externalIPs {','.join(sp.external_ips)}")
    if sp.external_policy_local:
        parts.append("externalTrafficPolicy Local")
    if sp.affinity_timeout is not None:
        parts.append(f"affinity ClientIP {sp.affinity_timeout}s")
    return "  ".join(parts)


def _wanted(key: str, service: str | None) -> bool:
    return service is None or key == service or key.startswith(service + ":")


def format_rules(dump: dict, service: str | None, state: ProxyState | None) -> str:
    """The per-node view (the CLI prints the node header): each service port (or only `service`,
    ns/name) with its chains, every rule's packet counter and the spread over endpoints; then totals."""
    rules = table_rules(dump, "nat")
    filters = table_rules(dump, "filter")
    sections: list[tuple[list[str], int]] = []
    if state is not None:
        for key in sorted(state.services):
            sp = state.services[key]
            if not _wanted(key, service) or not sp.cluster_ip:
                continue
            entries = [r for c in ENTRY_CHAINS for r in rules.get(c, []) if _matches_port(r, sp)]
            filter_entries = [r for c in FILTER_CHAINS for r in filters.get(c, []) if _matches_port(r, sp)]
            eps = [ep.addr for ep in state.endpoints.get(key, ())]
            sections.append(_section(_title(sp), rules, entries, eps, filter_entries))
    else:
        groups: dict[str, list[Rule]] = {}
        for chain in ENTRY_CHAINS:
            for r in rules.get(chain, []):
                if not (r.target or "").startswith(FOLLOW_PREFIXES):
                    continue
                groups.setdefault(_comment_key(r) or r.target or "?", []).append(r)
        for key in sorted(groups):
            if _wanted(key, service):
                sections.append(_section(key, rules, groups[key], None))
    lines: list[str] = []
    source = dump.get("_source")
    if source:
        lines.append(f"(counters read with {source})")
    return join_sections(lines, sections, service)


def join_sections(lines: list[str], sections: Sequence[tuple[list[str], int]], service: str | None) -> str:
    """The view's text: a header, each service port's section (its lines, its connection total), a summary.
    Shared by every mode's view."""
    lines = list(lines)
    if not sections:
        lines.append(f"no proxied service port{' matches ' + service if service else 's'}")
        return "\n".join(lines) + "\n"
    for body, _ in sections:
        lines += body
        lines.append("")
    total = sum(t for _, t in sections)
    lines.append(f"{len(sections)} service port(s), {total} connection(s) sent to endpoints")
    return "\n".join(lines) + "\n"
