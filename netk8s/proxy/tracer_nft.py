"""Pure: the kube-proxy nftables table as the kernel holds it (chains, sets, maps, rules parsed from the
grammar the nftables renderer writes) and a packet tracer through it, in the spirit of kube-proxy's
nftables test helpers (pkg/proxy/nftables/helpers_test.go, tracePacket): the one tracer `netk8s trace`
and the proxy tests share (netk8s.proxy.testing.fake_nft's fake `nft -f` fills an NftTable). Rule
syntax the parser does not model raises instead of being mis-evaluated.

`trace` walks a packet through the base chains of its hooks in priority order: prerouting (filter, then
nat) or output (filter, nat, filter post-DNAT), then input or forward (input when the translated
destination is local), then nat postrouting. Every packet is the first of a new connection.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from netk8s.errors import KernelError

_TOKEN_RE = re.compile(r'"[^"]*"|[{},]|[^\s{},]+')
_VERDICTS = ("accept", "drop", "reject", "return")


@dataclass
class NRule:
    text: str
    exprs: list[tuple]
    packets: int = 0

    def targets(self) -> list[str]:
        out = []
        for e in self.exprs:
            if e[0] == "verdict" and e[1] in ("jump", "goto"):
                out.append(e[2])
            elif e[0] == "numgen":
                out.extend(t for _, t in e[2].values())
        return out

    def set_refs(self) -> list[str]:
        return [e[-1] for e in self.exprs if e[0] in ("addr_set", "vmap", "port_vmap", "update")]


@dataclass
class NChain:
    name: str
    hook: str | None = None
    kind: str | None = None
    priority: int = 0
    rules: list[NRule] = field(default_factory=list)


@dataclass
class NContainer:
    name: str
    kind: str  # set | map
    props: tuple[str, str, int | None]  # type, flags, timeout
    elements: dict[str, str] = field(default_factory=dict)
    dynamic: dict[str, float] = field(default_factory=dict)  # element -> expiry (update from the packet path)


@dataclass
class NftTable:
    """One table: its chains and its sets/maps."""

    chains: dict[str, NChain] = field(default_factory=dict)
    containers: dict[str, NContainer] = field(default_factory=dict)


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def _net(text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError as exc:
        raise KernelError(f"nft: bad address {text!r}") from exc


def parse_rule(text: str) -> NRule:
    """Parse a rule body (what follows `add rule ip kube-proxy CHAIN`) into expressions."""
    tok = _tokens(text)
    exprs: list[tuple] = []
    i, n = 0, len(tok)

    def need(*words: str) -> None:
        nonlocal i
        for w in words:
            if i >= n or tok[i] != w:
                raise KernelError(f"nft: syntax error in rule {text!r}: expected {w!r} at {' '.join(tok[i:i + 3])!r}")
            i += 1

    def take() -> str:
        nonlocal i
        if i >= n:
            raise KernelError(f"nft: syntax error in rule {text!r}: unexpected end")
        i += 1
        return tok[i - 1]

    while i < n:
        t = take()
        if t == "ct":
            need("state")
            exprs.append(("ct_state", take()))
        elif t == "ip":
            fld = take()
            if fld not in ("saddr", "daddr"):
                raise KernelError(f"nft: unsupported ip field {fld!r} in {text!r}")
            if i < n and tok[i] == ".":
                need(".", "meta", "l4proto", ".", "th", "dport", "vmap")
                exprs.append(("vmap", fld, take().lstrip("@")))
                continue
            neg = False
            if i < n and tok[i] == "!=":
                neg = True
                i += 1
            value = take()
            if value.startswith("@"):
                exprs.append(("addr_set", fld, neg, value[1:]))
            else:
                exprs.append(("addr", fld, neg, _net(value)))
        elif t == "meta":
            need("l4proto")
            if i < n and tok[i] == ".":
                need(".", "th", "dport", "vmap")
                exprs.append(("port_vmap", take().lstrip("@")))
            else:
                exprs.append(("l4proto", take()))
        elif t in ("tcp", "udp", "sctp"):
            need("dport")
            exprs.append(("dport", t, int(take())))
        elif t == "fib":
            fld = take()
            need("type", "local")
            exprs.append(("fib_local", fld))
        elif t == "mark":
            if i < n and tok[i] == "and":
                need("and")
                mask = int(take(), 0)
                need("==")
                exprs.append(("mark_eq", mask, int(take(), 0)))
            else:
                need("set", "mark")
                op = take()
                if op not in ("or", "xor"):
                    raise KernelError(f"nft: unsupported mark operation {op!r} in {text!r}")
                exprs.append(("mark_" + op, int(take(), 0)))
        elif t == "masquerade":
            if i < n and tok[i] == "fully-random":
                i += 1
            exprs.append(("masquerade",))
        elif t == "numgen":
            need("random", "mod")
            mod = int(take())
            need("vmap", "{")
            table: dict[int, tuple[str, str]] = {}
            while True:
                idx = int(take())
                need(":")
                verb = take()
                table[idx] = (verb, take())
                sep = take()
                if sep == "}":
                    break
                if sep != ",":
                    raise KernelError(f"nft: syntax error in vmap of {text!r}")
            exprs.append(("numgen", mod, table))
        elif t == "update":
            name = take().lstrip("@")
            need("{", "ip", "saddr", "}")
            exprs.append(("update", name))
        elif t == "counter":
            exprs.append(("counter",))
        elif t == "dnat":
            need("to")
            exprs.append(("dnat", take()))
        elif t in ("jump", "goto"):
            exprs.append(("verdict", t, take()))
        elif t in _VERDICTS:
            exprs.append(("verdict", t, None))
        elif t == "comment":
            take()
        else:
            raise KernelError(f"nft: unsupported expression {t!r} in rule {text!r}")
    return NRule(text=text, exprs=exprs)

# ---------------------------------------------------------------------------------------------------------
# Tracing


@dataclass
class NftTrace:
    verdict: str  # DNAT | ACCEPT | DROP | REJECT
    dnat: str | None
    masquerade: bool
    chains: list[str]
    mark: int
    matched: list[tuple[str, str]] = field(default_factory=list)  # (chain, rule) with a verdict, in order


@dataclass
class _Packet:
    src: ipaddress.IPv4Address
    proto: str
    dst: ipaddress.IPv4Address
    dport: int
    mark: int = 0
    dnat: str | None = None
    masquerade: bool = False


# chooser(kind, name, n) -> index (numgen) or member (affinity set): see trace
NftChooser = Callable[[str, str, int], int]


def _rand_source(rand: float | Sequence[float] | Callable[[], float]) -> Callable[[], float]:
    if callable(rand):
        return rand
    values = [rand] if isinstance(rand, (int, float)) else list(rand)
    it = iter(values)
    last = values[-1] if values else 0.0
    return lambda: next(it, last)


class HoldsTable(Protocol):
    """What the tracer reads: a table, or None when there is none (netk8s.proxy.testing.fake_nft.FakeNft)."""

    table: NftTable | None


class _Tracer:
    def __init__(self, fake: HoldsTable, local: set[ipaddress.IPv4Address], rand: Callable[[], float],
                 now: float, chooser: NftChooser | None = None) -> None:
        if fake.table is None:
            raise KernelError("nft: no table ip kube-proxy")
        self.t = fake.table
        self.local = local
        self.rand = rand
        self.now = now
        self.chooser = chooser
        self.visited: list[str] = []
        self.matched: list[tuple[str, str]] = []  # (chain, rule text) of every rule with a verdict

    def hook(self, hook: str, kind: str, pkt: _Packet, after: int | None = None) -> str | None:
        chains = sorted((c for c in self.t.chains.values() if c.hook == hook and c.kind == kind
                         and (after is None or c.priority > after)), key=lambda c: c.priority)
        for c in chains:
            v = self.run(c.name, pkt)
            if v in ("drop", "reject"):
                return v
        return None

    def run(self, name: str, pkt: _Packet, depth: int = 0) -> str | None:
        if depth > 32:
            raise KernelError(f"nft: chain loop at {name}")
        self.visited.append(name)
        for rule in self.t.chains[name].rules:
            verdict = self.rule(rule, pkt)
            if verdict is None:
                continue
            self.matched.append((name, rule.text))
            verb, target = verdict
            if verb == "jump":
                v = self.run(str(target), pkt, depth + 1)
                if v is not None:
                    return v
                continue
            if verb == "goto":
                return self.run(str(target), pkt, depth + 1)
            if verb == "return":
                return None
            return verb  # accept | drop | reject
        return None

    def _addr(self, pkt: _Packet, fld: str) -> ipaddress.IPv4Address:
        return pkt.src if fld == "saddr" else pkt.dst

    def _in_set(self, name: str, ip: ipaddress.IPv4Address) -> bool:
        c = self.t.containers[name]
        return str(ip) in c.elements or c.dynamic.get(str(ip), float("-inf")) > self.now

    def rule(self, rule: NRule, pkt: _Packet) -> tuple[str, str | None] | None:
        """The rule's verdict, or None when it does not match or has none (statements are applied)."""
        for e in rule.exprs:
            kind = e[0]
            if kind == "ct_state":
                if e[1] != "new":
                    return None
            elif kind == "addr":
                if (self._addr(pkt, e[1]) in e[3]) == e[2]:
                    return None
            elif kind == "addr_set":
                if self.chooser is not None and e[3].startswith("affinity-"):
                    if self.chooser("affinity", e[3], 0) == e[2]:
                        return None
                elif self._in_set(e[3], self._addr(pkt, e[1])) == e[2]:
                    return None
            elif kind == "vmap":
                value = self.t.containers[e[2]].elements.get(f"{self._addr(pkt, e[1])} . {pkt.proto} . {pkt.dport}")
                if value is None:
                    return None
                verb, _, target = value.partition(" ")
                return verb, target or None
            elif kind == "port_vmap":
                value = self.t.containers[e[1]].elements.get(f"{pkt.proto} . {pkt.dport}")
                if value is None:
                    return None
                verb, _, target = value.partition(" ")
                return verb, target or None
            elif kind == "l4proto":
                if pkt.proto != e[1]:
                    return None
            elif kind == "dport":
                if pkt.proto != e[1] or pkt.dport != e[2]:
                    return None
            elif kind == "fib_local":
                if self._addr(pkt, e[1]) not in self.local:
                    return None
            elif kind == "mark_eq":
                if pkt.mark & e[1] != e[2]:
                    return None
            elif kind == "mark_or":
                pkt.mark |= e[1]
            elif kind == "mark_xor":
                pkt.mark ^= e[1]
            elif kind == "masquerade":
                pkt.masquerade = True
                return "accept", None
            elif kind == "numgen":
                if self.chooser is not None:
                    index = self.chooser("numgen", rule.text, e[1])
                else:
                    index = min(int(self.rand() * e[1]), e[1] - 1)
                if index not in e[2]:
                    return None
                return e[2][index]
            elif kind == "update":
                c = self.t.containers[e[1]]
                c.dynamic[str(pkt.src)] = self.now + float(c.props[2] or 0)
            elif kind == "counter":
                rule.packets += 1
            elif kind == "dnat":
                pkt.dnat = e[1]
                ip, _, port = e[1].partition(":")
                pkt.dst, pkt.dport = ipaddress.IPv4Address(ip), int(port or pkt.dport)
                return "accept", None
            elif kind == "verdict":
                return e[1], e[2]
        return None


def trace(fake: HoldsTable, src: str, proto: str, dst: str, dport: int, *, local_dst_ips: Iterable[str] = (),
          hook: str = "PREROUTING", rand: float | Sequence[float] | Callable[[], float] = 0.0,
          now: float = 0.0, chooser: NftChooser | None = None) -> NftTrace:
    """Where a new connection's first packet goes. `local_dst_ips`: the node's own addresses; `hook`:
    PREROUTING (arriving) or OUTPUT (sent by the node itself); `rand`: the numgen draws in [0, 1);
    `now`: seconds, for affinity timeouts (the tracer updates the affinity sets like the kernel);
    `chooser`: decides every draw instead of `rand` and the affinity sets: chooser("numgen", rule text, n)
    -> index in [0, n), chooser("affinity", set name, 0) -> member (netk8s.trace.paths)."""
    local = {ipaddress.IPv4Address(ip) for ip in local_dst_ips}
    pkt = _Packet(ipaddress.IPv4Address(src), proto.lower(), ipaddress.IPv4Address(dst), dport)
    tr = _Tracer(fake, local, _rand_source(rand), now, chooser)
    first = "prerouting" if hook == "PREROUTING" else "output"
    v = tr.hook(first, "filter", pkt) if first == "prerouting" else _output_filter(tr, pkt)
    if v is None:
        v = tr.hook(first, "nat", pkt)
    if v is None and first == "output":
        v = tr.hook("output", "filter", pkt, after=-100)
    if v is None and first == "prerouting":
        v = tr.hook("input" if pkt.dst in local else "forward", "filter", pkt)
    if v is None:
        tr.hook("postrouting", "nat", pkt)
    verdict = {"drop": "DROP", "reject": "REJECT"}.get(v or "", "DNAT" if pkt.dnat else "ACCEPT")
    return NftTrace(verdict, pkt.dnat, pkt.masquerade and v is None, tr.visited, pkt.mark, tr.matched)


def _output_filter(tr: _Tracer, pkt: _Packet) -> str | None:
    """Filter output chains that run before DNAT (priority below dstnat = -100)."""
    chains = sorted((c for c in tr.t.chains.values() if c.hook == "output" and c.kind == "filter"
                     and c.priority < -100), key=lambda c: c.priority)
    for c in chains:
        v = tr.run(c.name, pkt)
        if v in ("drop", "reject"):
            return v
    return None
