"""Pure: every path a new connection can take through a node's rules, with its probability.

The product's packet tracers, which the proxy tests' fakes use too (netk8s.proxy.tracer_iptables.trace
over an iptables-save text, netk8s.proxy.tracer_nft.trace over the renderer's nft commands) are driven here with a
`chooser` that decides every random draw (`-m statistic`, `numgen`) and every affinity check (`-m
recent`, the nft affinity sets), depth first, so one tracer answers both the tests and `netk8s trace
--dry-run`. The live tracer uses the same enumeration in iptables mode: the path whose rules all
counted the probe and whose DNAT is the one conntrack recorded is the path the kernel took.

For nftables' live rules (`nft -j list table ip kube-proxy`, whose printed syntax is not the
renderer's), `nft_json_paths` walks the JSON from the service maps to the endpoint chains' `dnat`, with
numgen's vmaps as the choice points.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netk8s.errors import ValidationError
from netk8s.model import naming
from netk8s.proxy.tracer_iptables import Rule, Ruleset
from netk8s.proxy.tracer_iptables import trace as trace_iptables
from netk8s.proxy.tracer_nft import HoldsTable
from netk8s.proxy.tracer_nft import trace as trace_nft

_MAX_PATHS = 4096


@dataclass
class Path:
    verdict: str  # DNAT | ACCEPT | REJECT | DROP | REDIRECT
    dnat: str | None
    masquerade: bool
    probability: float
    rules: list[tuple[str, str, str]] = field(default_factory=list)  # (table, chain, rule text) matched
    chains: list[str] = field(default_factory=list)
    affinity: bool = False  # an affinity check matched on the way
    choices: list[tuple[str, str, bool | int]] = field(default_factory=list)  # (kind, rule, taken)


def _explore(run: Any, branches: Any) -> list[Path]:
    """Depth-first over the choice points `run(prefix)` meets: it returns (path, draws) where draws are
    (kind, name, n_or_p, taken); `branches(draw)` lists the alternatives of a draw."""
    out: list[Path] = []
    stack: list[tuple[Any, ...]] = [()]
    while stack:
        prefix = stack.pop()
        path, draws = run(prefix)
        for i in range(len(prefix), len(draws)):
            for alt in branches(draws[i]):
                if alt != draws[i][3]:
                    stack.append(tuple(d[3] for d in draws[:i]) + (alt,))
        if path.probability > 0:
            out.append(path)
        if len(out) > _MAX_PATHS:
            raise ValidationError("trace: too many paths through the rules")
    return out


def iptables_paths(rs: Ruleset, src: str, proto: str, dst: str, dport: int, *, local_ips: Iterable[str],
                   hook: str = "PREROUTING", affinity: bool = False) -> list[Path]:
    """Every path through iptables rules. affinity=False: a client with no affinity yet (every `-m recent
    --rcheck` misses, as for `--dry-run`); True: affinity checks are choice points too (probability
    unknown, counted as 1), for matching against what the kernel did."""
    local = list(local_ips)

    def run(prefix: tuple[Any, ...]) -> tuple[Path, list[tuple[str, str, Any, Any]]]:
        draws: list[tuple[str, str, Any, Any]] = []

        def chooser(kind: str, rule: Rule, p: float | None) -> bool:
            if kind == "recent" and not affinity:
                return False
            i = len(draws)
            take = bool(prefix[i]) if i < len(prefix) else True
            draws.append((kind, rule.text, p, take))
            return take

        r = trace_iptables(rs, src, proto, dst, dport, local_dst_ips=local, hook=hook, chooser=chooser)
        prob = 1.0
        for kind, _, p, take in draws:
            if kind == "statistic" and p is not None:
                prob *= p if take else 1.0 - p
        verdict = r.verdict
        if r.verdict == "ACCEPT" and any(t == "nat" and rule.target == "REDIRECT" for t, rule in r.matched_rules):
            verdict = "REDIRECT"
        path = Path(verdict, r.dnat, r.masquerade, prob,
                    [(t, rule.chain, rule.text) for t, rule in r.matched_rules], list(r.path),
                    any(k == "recent" and take for k, _, _, take in draws),
                    [(k, text, take) for k, text, _, take in draws])
        return path, draws

    return _explore(run, lambda d: (True, False))


def nft_paths(fake: HoldsTable, src: str, proto: str, dst: str, dport: int, *, local_ips: Iterable[str],
              hook: str = "PREROUTING", affinity: bool = False) -> list[Path]:
    """Every path through the nft rules of a table (e.g. the renderer's text applied to
    netk8s.proxy.testing.fake_nft.FakeNft), numgen draws branching."""
    local = list(local_ips)

    def run(prefix: tuple[Any, ...]) -> tuple[Path, list[tuple[str, str, Any, Any]]]:
        draws: list[tuple[str, str, Any, Any]] = []

        def chooser(kind: str, name: str, n: int) -> int:
            if kind == "affinity" and not affinity:
                return 0
            i = len(draws)
            take = int(prefix[i]) if i < len(prefix) else 0
            draws.append((kind, name, n, take))
            return take

        r = trace_nft(fake, src, proto, dst, dport, local_dst_ips=local, hook=hook, chooser=chooser)
        prob = 1.0
        for kind, _, n, _ in draws:
            if kind == "numgen":
                prob /= n
        path = Path(r.verdict, r.dnat, r.masquerade, prob, [(naming.KUBE_PROXY_TABLE, c, t) for c, t in r.matched],
                    list(r.chains), any(k == "affinity" and take for k, _, _, take in draws),
                    [(k, name, take) for k, name, _, take in draws])
        return path, draws

    return _explore(run, lambda d: range(d[2]) if d[0] == "numgen" else (0, 1))


def endpoint_probabilities(paths: Sequence[Path]) -> dict[str, float]:
    """{endpoint "ip:port" or the verdict (REJECT/DROP/ACCEPT): probability}, summing to 1."""
    out: dict[str, float] = {}
    for p in paths:
        key = p.dnat or p.verdict
        out[key] = out.get(key, 0.0) + p.probability
    return out


def observed_path(paths: Sequence[Path], dnat: str | None, deltas: Mapping[tuple[str, str, str], int]) -> Path | None:
    """The path the kernel took: its DNAT is the one conntrack recorded (None: no translation), and most
    of its rules counted the probe (`deltas`: (table, chain, rule text) -> packets during the probe);
    ties go to the path with the fewest rules that did not count."""
    best: tuple[int, int, int] | None = None
    chosen: Path | None = None
    for p in paths:
        if p.dnat != dnat and not (dnat is None and p.verdict in ("REJECT", "DROP", "ACCEPT", "REDIRECT")):
            continue
        hit = sum(1 for r in p.rules if deltas.get(r, 0) > 0)
        miss = len(p.rules) - hit
        score = (-miss, hit, -len(p.rules))
        if best is None or score > best:
            best, chosen = score, p
    return chosen


def counter_deltas(before: Ruleset, after: Ruleset) -> dict[tuple[str, str, str], int]:
    """(table, chain, rule text) -> packets counted between two `iptables-save -c` snapshots."""
    def counts(rs: Ruleset) -> dict[tuple[str, str, str], int]:
        out: dict[tuple[str, str, str], int] = {}
        for table, chains in rs.tables.items():
            for name, chain in chains.items():
                for r in chain.rules:
                    key = (table, name, r.text)
                    out[key] = out.get(key, 0) + r.packets
        return out

    a, b = counts(before), counts(after)
    return {k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0) > 0}


# ---------------------------------------------------------------------------------------------------------
# nftables live rules (nft -j)


def _nft_index(doc: Mapping[str, Any]) -> tuple[dict[str, list[list[dict]]], dict[str, Any]]:
    chains: dict[str, list[list[dict]]] = {}
    maps: dict[str, Any] = {}
    for item in doc.get("nftables", []):
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(item["rule"].get("expr", []))
        elif "map" in item or "set" in item:
            m = item.get("map") or item.get("set")
            maps[m["name"]] = m.get("elem", [])
    return chains, maps


def _key(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict) and "concat" in value:
        return tuple(str(v) for v in value["concat"])
    return (str(value),)


def _verdict_of(value: Any) -> tuple[str, str | None] | None:
    if isinstance(value, dict):
        for verb in ("goto", "jump"):
            if verb in value:
                return verb, value[verb]["target"]
        for verb in ("drop", "reject", "accept", "return"):
            if verb in value:
                return verb, None
    return None


def _match_ok(m: Mapping[str, Any], src: ipaddress.IPv4Address, proto: str, local: set[str],
              sets: Mapping[str, Any], affinity: bool, dst: ipaddress.IPv4Address | None = None,
              dport: int | None = None) -> bool:
    left, right, op = m.get("left", {}), m.get("right"), m.get("op", "==")
    if isinstance(left, dict) and "fib" in left:
        result = str(src) in local or src.is_loopback
        return result == (op in ("==", "in"))
    if isinstance(left, dict) and left.get("meta", {}).get("key") == "l4proto":
        return (str(right) == proto) == (op in ("==", "in"))
    payload = left.get("payload", {}) if isinstance(left, dict) else {}
    if payload.get("field") == "dport" and dport is not None:
        return (str(right) == str(dport)) == (op in ("==", "in"))
    if payload.get("protocol") == "ip" and payload.get("field") in ("saddr", "daddr"):
        if payload["field"] == "daddr":
            if dst is None:
                raise ValidationError("trace --dry-run: a daddr match needs the destination")
            src = dst
        if isinstance(right, str) and right.startswith("@"):
            if right.startswith("@affinity-"):
                hit = affinity
            else:
                hit = any(str(src) == str(e) for e in sets.get(right[1:], []))
        elif isinstance(right, dict) and "prefix" in right:
            net = ipaddress.IPv4Network(f"{right['prefix']['addr']}/{right['prefix']['len']}")
            hit = src in net
        else:
            hit = str(src) == str(right)
        return hit == (op in ("==", "in"))
    raise ValidationError(f"trace --dry-run: nft match {m!r} is not modelled")


def nft_json_paths(doc: Mapping[str, Any], src: str, proto: str, dst: str, dport: int, *,
                   local_ips: Iterable[str]) -> list[Path]:
    """Every path from the service maps of a live `nft -j list table ip kube-proxy` to a `dnat` (or the
    no-endpoints verdict), numgen vmaps branching with probability 1/mod each."""
    chains, maps = _nft_index(doc)
    local = set(local_ips)
    sip = ipaddress.IPv4Address(src)

    def lookup(name: str, key: tuple[str, ...]) -> tuple[str, str | None] | None:
        for elem in maps.get(name, []):
            if isinstance(elem, list) and len(elem) == 2 and _key(elem[0]) == key:
                return _verdict_of(elem[1])
        return None

    start = lookup("service-ips", (dst, proto, str(dport)))
    if start is None and dst in local:
        start = lookup("service-nodeports", (proto, str(dport)))
    if start is None:
        v = lookup("no-endpoint-services", (dst, proto, str(dport)))
        if v is None and dst in local:
            v = lookup("no-endpoint-nodeports", (proto, str(dport)))
        if v is None:
            return [Path("ACCEPT", None, False, 1.0)]
        if v[1] == "reject-chain":
            return [Path("REJECT", None, False, 1.0, [(naming.KUBE_PROXY_TABLE, "service-endpoints-check", "reject")])]
        return [Path(v[0].upper(), None, False, 1.0, [(naming.KUBE_PROXY_TABLE, "service-endpoints-check", v[0])])]
    out: list[Path] = []

    def walk(chain: str, prob: float, seen: list[str], depth: int = 0) -> None:
        if depth > 16:
            raise ValidationError(f"trace --dry-run: chain loop at {chain}")
        seen = [*seen, chain]
        for exprs in chains.get(chain, []):
            ok = True
            for e in exprs:
                if "match" in e and not _match_ok(e["match"], sip, proto, local, maps, False,
                                                     ipaddress.IPv4Address(dst), dport):
                    ok = False
                    break
            if not ok:
                continue
            for e in exprs:
                if "dnat" in e:
                    d = e["dnat"]
                    out.append(Path("DNAT", f"{d['addr']}:{d.get('port', dport)}", False, prob, [], seen))
                    return
                if "vmap" in e and isinstance(e["vmap"].get("key"), dict) and "numgen" in e["vmap"]["key"]:
                    n = int(e["vmap"]["key"]["numgen"]["mod"])
                    for entry in e["vmap"]["data"]["set"]:
                        v = _verdict_of(entry[1])
                        if v and v[1]:
                            walk(v[1], prob / n, seen, depth + 1)
                    return
                v = _verdict_of(e)
                if v is not None:
                    verb, target = v
                    if verb == "goto" and target:
                        walk(target, prob, seen, depth + 1)
                        return
                    if verb == "jump" and target and target != "mark-for-masquerade":
                        walk(target, prob, seen, depth + 1)
                    if verb in ("drop", "reject"):
                        out.append(Path(verb.upper(), None, False, prob, [], seen))
                        return
                    if verb in ("accept", "return"):
                        return
        return

    walk(start[1] or "", 1.0, [])
    return out
