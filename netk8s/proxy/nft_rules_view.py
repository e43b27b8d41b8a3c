"""Pure: the readable `netk8s rules` view of one node's nftables-mode table and its endpoint counters.

Input is the JSON of `python -m netk8s.dataplane.nftables dump --json` run in a node namespace:
{"json": <`nft -j list table ip kube-proxy`>, "rules": {handle: rule text as `nft -a list` prints it}}.
For each service port the view shows its elements in the dispatch maps (service-ips, service-nodeports,
no-endpoint-services, no-endpoint-nodeports), follows the verdicts through its `service-` / `external-` /
`local-` chains to the `endpoint-` chains, prints every rule (with its packet counter where it has one)
and how traffic spread: the packets each endpoint's DNAT rule counted (the first packet of each new
connection; conntrack handles the rest), as a share of the total.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from netk8s.proxy.model import ProxyState, ServicePort
from netk8s.proxy.rules_view import _title, _wanted, join_sections, spread_lines

MAPS = ("service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports")
FOLLOW_PREFIXES = ("service-", "external-", "local-", "endpoint-", "firewall-")


@dataclass(frozen=True)
class NftRule:
    chain: str
    text: str
    packets: int | None  # None: the rule has no counter
    targets: tuple[str, ...]
    dnat: str | None


def _walk_json(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk_json(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_json(v)


def _key_text(key: Any) -> str:
    if isinstance(key, dict) and "concat" in key:
        return " . ".join(str(k) for k in key["concat"])
    return str(key)


def _verdict_text(value: Any) -> str:
    if isinstance(value, dict):
        for verb in ("goto", "jump"):
            if verb in value:
                return f"{verb} {value[verb]['target']}"
        return " ".join(value)
    return str(value)


def parse_dump(dump: dict) -> tuple[dict[str, list[NftRule]], dict[str, dict[str, str]]]:
    """(chain -> rules, map -> {key text: verdict text}) from a dump."""
    texts = dump.get("rules") or {}
    chains: dict[str, list[NftRule]] = {}
    maps: dict[str, dict[str, str]] = {m: {} for m in MAPS}
    for obj in (dump.get("json") or {}).get("nftables", []):
        if "chain" in obj:
            chains.setdefault(obj["chain"]["name"], [])
        elif "rule" in obj:
            r = obj["rule"]
            packets: int | None = None
            targets: list[str] = []
            dnat = None
            for k, v in _walk_json(r.get("expr", [])):
                if k == "counter" and isinstance(v, dict):
                    packets = int(v.get("packets", 0))
                elif k in ("goto", "jump") and isinstance(v, dict) and "target" in v:
                    targets.append(v["target"])
                elif k == "dnat" and isinstance(v, dict):
                    dnat = f"{v.get('addr')}:{v.get('port')}" if v.get("port") else str(v.get("addr"))
            text = texts.get(str(r.get("handle")), f"(rule handle {r.get('handle')})")
            chains.setdefault(r["chain"], []).append(NftRule(r["chain"], text, packets, tuple(targets), dnat))
        elif "map" in obj and obj["map"]["name"] in maps:
            for elem in obj["map"].get("elem") or []:
                key, value = elem
                if isinstance(key, dict) and "elem" in key:  # an element with a comment
                    key = key["elem"].get("val")
                maps[obj["map"]["name"]][_key_text(key)] = _verdict_text(value)
    return chains, maps


def _port_elements(sp: ServicePort, maps: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """(map, key, verdict) of this service port."""
    proto = sp.proto_lower
    out = []
    for ip in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips):
        key = f"{ip} . {proto} . {sp.port}"
        out += [(m, key, maps[m][key]) for m in ("service-ips", "no-endpoint-services") if key in maps[m]]
    if sp.node_port:
        key = f"{proto} . {sp.node_port}"
        out += [(m, key, maps[m][key]) for m in ("service-nodeports", "no-endpoint-nodeports") if key in maps[m]]
    return out


def _follow(chains: dict[str, list[NftRule]], starts: list[str]) -> list[str]:
    seen: list[str] = []
    queue = list(starts)
    while queue:
        chain = queue.pop(0)
        if chain in seen or chain not in chains or not chain.startswith(FOLLOW_PREFIXES):
            continue
        seen.append(chain)
        for r in chains[chain]:
            queue.extend(r.targets)
    return seen


def _section(sp: ServicePort, chains: dict[str, list[NftRule]], maps: dict[str, dict[str, str]],
             endpoints: list[str]) -> tuple[list[str], int]:
    elements = _port_elements(sp, maps)
    visited = _follow(chains, [v.split()[-1] for _, _, v in elements])
    rules = [r for c in visited for r in chains[c]]
    width = max([len(str(r.packets)) for r in rules if r.packets is not None] + [4])
    lines = [_title(sp)]
    for m in MAPS:
        mine = [(k, v) for mm, k, v in elements if mm == m]
        if mine:
            lines.append(f"  map {m}")
            lines += [f"    {'':>{width}}  {k} : {v}" for k, v in mine]
    for chain in visited:
        lines.append(f"  chain {chain}")
        for r in chains[chain]:
            count = "" if r.packets is None else str(r.packets)
            lines.append(f"    {count:>{width}}  {r.text}")
    spread = [(r.dnat or "?", c, r.packets or 0) for c in visited if c.startswith("endpoint-")
              for r in chains[c] if r.dnat]
    total = sum(p for _, _, p in spread)
    if spread:
        lines += spread_lines(spread, width, chain_width=None)
    elif not elements:
        lines.append("  (no elements programmed for this service port on this node)")
    else:
        lines.append("  (no endpoint chains: traffic is rejected or dropped)")
    programmed = {a for a, _, _ in spread}
    missing = [e for e in endpoints if e not in programmed]
    if missing:
        lines.append(f"  endpoints not in the rules here (not ready, or not local): {', '.join(missing)}")
    return lines, total


def format_nft_rules(dump: dict, service: str | None, state: ProxyState) -> str:
    """The per-node view in nftables mode (the CLI prints the node header)."""
    chains, maps = parse_dump(dump)
    sections = []
    for key in sorted(state.services):
        sp = state.services[key]
        if not _wanted(key, service) or not sp.cluster_ip:
            continue
        eps = [ep.addr for ep in state.endpoints.get(key, ())]
        sections.append(_section(sp, chains, maps, eps))
    return join_sections(["(table ip kube-proxy, counters from nft -j)"], sections, service)
