"""Pure: a fake `nft -f` for the kube-proxy table that rejects what the kernel rejects, and a packet tracer
over what it holds, in the spirit of kube-proxy's nftables test helpers (pkg/proxy/nftables/helpers_test.go,
tracePacket).

FakeNft applies the command grammar the nftables renderer writes (add/flush/delete of table, chain, set,
map, rule, element), one transaction at a time, atomically: a transaction that fails changes nothing. It
refuses, like the kernel: a rule or element naming a missing chain, set or map; deleting a chain that
still has rules or is referenced (by a rule or a map element); deleting a set a rule uses; deleting a
missing chain, set or element; re-adding a set or map with different properties; adding an existing map
key with a different value. Rule syntax it does not model raises instead of being mis-evaluated.

`trace` walks a packet through the base chains of its hooks in priority order: prerouting (filter, then
nat) or output (filter, nat, filter post-DNAT), then input or forward (input when the translated
destination is local), then nat postrouting. Every packet is the first of a new connection.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from netk8s.errors import KernelError
from netk8s.model import naming

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
class _Table:
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


_CMD_RE = re.compile(r"^(add|flush|delete) (table|chain|set|map|rule|element) ip kube-proxy(?: (\S+))?(?: (.*))?$")


class FakeNft:
    """The kube-proxy table as the kernel would hold it after the transactions applied so far."""

    def __init__(self) -> None:
        self.table: _Table | None = None
        self.transactions: list[str] = []

    # ----- applying ------------------------------------------------------------------------------
    def apply(self, text: str) -> None:
        work = copy.deepcopy(self.table)
        for no, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                work = self._command(work, line.strip())
            except KernelError as exc:
                raise KernelError(f"nft -f: line {no}: {line!r}: {exc.message}") from None
        self.table = work
        self.transactions.append(text)

    def _command(self, t: _Table | None, line: str) -> _Table | None:
        m = _CMD_RE.match(line)
        if not m:
            raise KernelError("syntax error (not modelled)")
        verb, obj, name, rest = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        if obj == "table":
            if verb == "add":
                return t if t is not None else _Table()
            if t is None:
                raise KernelError("No such file or directory (table)")
            return None if verb == "delete" else _flush_table(t)
        if t is None:
            raise KernelError("No such file or directory (table)")
        assert name is not None
        if obj == "chain":
            self._chain(t, verb, name, rest)
        elif obj in ("set", "map"):
            self._container(t, verb, obj, name, rest)
        elif obj == "rule":
            chain = t.chains.get(name)
            if chain is None:
                raise KernelError(f"No such file or directory (chain {name})")
            rule = parse_rule(rest)
            for target in rule.targets():
                if target not in t.chains:
                    raise KernelError(f"No such file or directory (jump to chain {target})")
                if t.chains[target].hook:
                    raise KernelError(f"Operation not supported (jump to base chain {target})")
            for ref in rule.set_refs():
                if ref not in t.containers:
                    raise KernelError(f"No such file or directory (set {ref})")
            chain.rules.append(rule)
        else:
            self._element(t, verb, name, rest)
        return t

    def _chain(self, t: _Table, verb: str, name: str, rest: str) -> None:
        chain = t.chains.get(name)
        if verb == "add":
            m = re.search(r"type (\w+) hook (\w+) priority (-?\d+)", rest)
            if chain is None:
                chain = t.chains[name] = NChain(name)
                if m:
                    chain.kind, chain.hook, chain.priority = m.group(1), m.group(2), int(m.group(3))
            elif m and (chain.kind, chain.hook, chain.priority) != (m.group(1), m.group(2), int(m.group(3))):
                raise KernelError(f"Device or resource busy (chain {name} redefined)")
            return
        if chain is None:
            raise KernelError(f"No such file or directory (chain {name})")
        if verb == "flush":
            chain.rules = []
            return
        if chain.rules:
            raise KernelError(f"Device or resource busy (chain {name} is not empty)")
        users = [c.name for c in t.chains.values() for r in c.rules if name in r.targets()]
        users += [f"@{c.name}" for c in t.containers.values() if any(v.split()[-1:] == [name]
                                                                     for v in c.elements.values())]
        if users:
            raise KernelError(f"Device or resource busy (chain {name} is used by {users[0]})")
        del t.chains[name]

    def _container(self, t: _Table, verb: str, kind: str, name: str, rest: str) -> None:
        c = t.containers.get(name)
        if verb == "add":
            typ = re.search(r"type ([^;]+?) ;", rest)
            flags = re.search(r"flags ([^;]+?) ;", rest)
            timeout = re.search(r"timeout (\d+)s ;", rest)
            props = (typ.group(1) if typ else "", flags.group(1) if flags else "",
                     int(timeout.group(1)) if timeout else None)
            if c is None:
                t.containers[name] = NContainer(name, kind, props)
            elif c.props != props or c.kind != kind:
                raise KernelError(f"File exists ({kind} {name} has other properties)")
            return
        if c is None:
            raise KernelError(f"No such file or directory ({kind} {name})")
        if verb == "flush":
            c.elements.clear()
            c.dynamic.clear()
            return
        if any(name in r.set_refs() for ch in t.chains.values() for r in ch.rules):
            raise KernelError(f"Device or resource busy ({kind} {name} is used by a rule)")
        del t.containers[name]

    def _element(self, t: _Table, verb: str, name: str, rest: str) -> None:
        c = t.containers.get(name)
        if c is None:
            raise KernelError(f"No such file or directory (set {name})")
        m = re.match(r"^\{ (.*) \}$", rest)
        if not m:
            raise KernelError("syntax error in element")
        body = re.sub(r' comment "[^"]*"', "", m.group(1))
        key, _, value = body.partition(" : ")
        key, value = key.strip(), value.strip()
        if verb == "delete":
            if key not in c.elements:
                raise KernelError(f"No such file or directory (element {key} in {name})")
            del c.elements[key]
            return
        if c.kind == "map":
            words = value.split()
            if len(words) == 2 and words[0] in ("goto", "jump"):
                if words[1] not in t.chains:
                    raise KernelError(f"No such file or directory (chain {words[1]})")
            elif words not in (["drop"], ["accept"]):
                raise KernelError(f"unsupported verdict {value!r}")
        if key in c.elements and c.elements[key] != value:
            raise KernelError(f"File exists (element {key} in {name})")
        c.elements[key] = value

    # ----- reading -------------------------------------------------------------------------------
    def chains(self) -> set[str]:
        return set(self.table.chains) if self.table else set()

    def chain_rules(self, name: str) -> list[NRule]:
        return self.table.chains[name].rules if self.table and name in self.table.chains else []

    def elements(self, name: str) -> dict[str, str]:
        if self.table is None or name not in self.table.containers:
            return {}
        return dict(self.table.containers[name].elements)

    def sets(self) -> set[str]:
        return set(self.table.containers) if self.table else set()

    # ----- the NftKernel protocol (netk8s.proxy.backend_nftables), as netk8s.dataplane.nftables has it
    def chain_exists(self, table: str, chain: str) -> bool:
        return self.table is not None and table == naming.KUBE_PROXY_TABLE and chain in self.table.chains

    def list_names(self, table: str) -> set[str]:
        return self.chains() | self.sets() if table == naming.KUBE_PROXY_TABLE else set()

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.table.chains.values()) if self.table else 0


def _flush_table(t: _Table) -> _Table:
    for c in t.chains.values():
        c.rules = []
    for s in t.containers.values():
        s.elements.clear()
    return t


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


class _Tracer:
    def __init__(self, fake: FakeNft, local: set[ipaddress.IPv4Address], rand: Callable[[], float],
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


def trace(fake: FakeNft, src: str, proto: str, dst: str, dport: int, *, local_dst_ips: Iterable[str] = (),
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
