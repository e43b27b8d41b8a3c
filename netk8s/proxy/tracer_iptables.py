"""Pure: iptables rules as the kernel holds them (parsed from iptables-restore input or iptables-save
output, with counters) and a packet tracer through them: the one tracer `netk8s trace` and the proxy
tests share (netk8s.proxy.testing.fake_iptables builds its fake iptables-restore on these tables).

The tracer follows what kube-proxy's rules use, in the spirit of kube-proxy's own test tracer
(pkg/proxy/iptables/proxier_test.go tracePacket): the nat hook (PREROUTING or OUTPUT) with jumps,
RETURN, -s/-d (with `!` and CIDRs), -p/--dport, addrtype LOCAL, statistic random, recent, mark, MARK
--or-mark/--xor-mark, conntrack state (a new connection is NEW, plus DNAT once translated), `-m set`
(answered by the caller's ipset lookup, IPVS mode), DNAT; then the filter table (INPUT when the
translated destination is local, FORWARD otherwise, OUTPUT for locally generated packets) for
REJECT/DROP/ACCEPT. A rule using an option the tracer does not model raises instead of being silently
mis-evaluated.

Tables applies text with legacy iptables-restore semantics (the backend netk8s programs): each table is
committed at its COMMIT line; `--noflush` keeps chains that the input does not declare; declaring a user
chain creates or flushes it; declaring a built-in chain only sets its policy (it is NOT flushed).
`strict=True` also refuses what the kernel refuses (a jump to a missing chain, `-X` of a chain still
referenced or not empty, a rule in a chain that neither exists nor is declared, a policy on a user
chain): the fake restore of the tests runs strict; reading a node's `iptables-save` is lenient.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from netk8s.errors import KernelError, ValidationError
from netk8s.model import naming

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
# Targets implemented by extensions (not chains).
BUILTIN_TARGETS = frozenset({
    "ACCEPT", "DROP", "RETURN", "REJECT", "DNAT", "SNAT", "MASQUERADE", "MARK", "CONNMARK", "LOG",
    "REDIRECT", "NOTRACK", "CT", "TPROXY",
})
# Match modules whose presence alone changes nothing (protocol helpers, accounting).
_NOOP_MODULES = frozenset({"tcp", "udp", "sctp", "comment", "nfacct"})
_FLAG_OPTIONS = frozenset({"--rcheck", "--set", "--reap", "--update", "--remove", "--rsource", "--random-fully",
                           "--random"})


# ---------------------------------------------------------------------------------------------------------
# Rules


@dataclass
class Rule:
    """One parsed rule: its chain, its raw argument tokens, and what the tracer evaluates."""

    chain: str
    args: list[str]
    src: tuple[bool, ipaddress.IPv4Network] | None = None
    dst: tuple[bool, ipaddress.IPv4Network] | None = None
    proto: tuple[bool, str] | None = None
    dport: tuple[bool, int, int] | None = None
    dst_type: tuple[bool, str] | None = None
    src_type: tuple[bool, str] | None = None
    probability: float | None = None
    recent: dict[str, object] | None = None
    mark: tuple[bool, int, int] | None = None
    ctstate: tuple[bool, frozenset[str]] | None = None
    match_set: tuple[bool, str, str] | None = None  # -m set --match-set NAME DIRS (the ipvs mode's rules)
    comment: str | None = None
    target: str | None = None
    target_opts: dict[str, str] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    packets: int = 0
    bytes: int = 0

    _text: str | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = f"-A {self.chain} " + " ".join(_quote(a) for a in self.args)
        return self._text


def _quote(tok: str) -> str:
    return shlex.quote(tok).replace("'", '"') if (" " in tok or tok == "") else tok


def _net(text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError as e:
        raise ValidationError(f"rule: bad address {text!r}") from e


def _mark_value(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


def parse_rule(chain: str, args: list[str]) -> Rule:
    """Parse the tokens after `-A CHAIN`."""
    r = Rule(chain=chain, args=list(args))
    neg = False
    i = 0
    n = len(args)

    def value() -> str:
        nonlocal i
        if i + 1 >= n:
            raise ValidationError(f"rule {r.text!r}: option {args[i]} needs a value")
        i += 1
        return args[i]

    while i < n:
        tok = args[i]
        if tok == "!":
            neg = True
            i += 1
            continue
        if tok in ("-s", "--source", "--src"):
            r.src = (neg, _net(value()))
        elif tok in ("-d", "--destination", "--dst"):
            r.dst = (neg, _net(value()))
        elif tok in ("-p", "--protocol"):
            r.proto = (neg, value().lower())
        elif tok in ("--dport", "--destination-port"):
            lo, _, hi = value().partition(":")
            r.dport = (neg, int(lo), int(hi or lo))
        elif tok == "-m" or tok == "--match":
            mod = value()
            if mod not in _NOOP_MODULES | {"addrtype", "statistic", "recent", "mark", "conntrack", "set"}:
                r.unsupported.append(f"-m {mod}")
        elif tok == "--comment":
            r.comment = value()
        elif tok == "--match-set":
            name = value()
            r.match_set = (neg, name, value())
        elif tok == "--dst-type":
            r.dst_type = (neg, value())
        elif tok == "--src-type":
            r.src_type = (neg, value())
        elif tok == "--mode":
            if value() != "random":
                r.unsupported.append("--mode")
        elif tok == "--probability":
            r.probability = float(value())
        elif tok == "--name":
            r.recent = r.recent or {}
            r.recent["name"] = value()
        elif tok == "--mask" and r.recent is not None:
            # iptables-save prints xt_recent's default mask; only a full mask (one entry per address) is modelled
            mask = value()
            if mask != "255.255.255.255":
                r.unsupported.append(f"--mask {mask}")
        elif tok == "--seconds":
            r.recent = r.recent or {}
            r.recent["seconds"] = int(value())
        elif tok in ("--rcheck", "--set", "--reap", "--update", "--remove", "--rsource"):
            r.recent = r.recent or {}
            r.recent[tok[2:]] = True
        elif tok == "--mark":
            r.mark = (neg, *_mark_value(value()))
        elif tok in ("--ctstate", "--state"):
            r.ctstate = (neg, frozenset(value().split(",")))
        elif tok in ("-j", "--jump", "-g", "--goto"):
            if tok in ("-g", "--goto"):
                r.unsupported.append(tok)
            r.target = value()
        elif tok in ("--to-destination", "--or-mark", "--xor-mark", "--set-xmark", "--set-mark",
                     "--and-mark", "--reject-with", "--to-source", "--to-ports", "--nfacct-name"):
            r.target_opts[tok[2:]] = value()
        elif tok in ("--random-fully", "--random"):
            r.target_opts[tok[2:]] = ""
        else:
            r.unsupported.append(tok)
            # Swallow the option's values so they are not read as options.
            while i + 1 < n and not args[i + 1].startswith("-") and args[i + 1] != "!":
                i += 1
        neg = False
        i += 1
    return r


# ---------------------------------------------------------------------------------------------------------
# Table state and iptables-restore semantics


@dataclass
class Chain:
    name: str
    builtin: bool
    policy: str = "-"
    rules: list[Rule] = field(default_factory=list)


def _fresh_table(table: str) -> dict[str, Chain]:
    return {c: Chain(c, True, "ACCEPT") for c in BUILTIN_CHAINS.get(table, ())}


class _RestoreError(Exception):
    """Internal: a line the kernel would refuse; turned into KernelError with the line number."""


class Tables:
    """In-memory nat and filter tables that apply iptables-restore input (module docstring). `strict`:
    refuse what the kernel refuses (a jump to a missing chain, `-X` of a chain still referenced or not
    empty, a rule in a chain that neither exists nor is declared, a policy on a user chain); a table
    without COMMIT and unknown commands are refused either way."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.tables: dict[str, dict[str, Chain]] = {t: _fresh_table(t) for t in ("filter", "nat")}
        self.applied = 0

    # -- applying -------------------------------------------------------------------------------------
    def apply(self, text: str, noflush: bool = True) -> None:
        """Apply restore input; raise KernelError naming the failing line. Tables committed before the
        failing one stay applied (legacy iptables-restore commits table by table)."""
        work: dict[str, Chain] | None = None
        table = ""
        lineno = 0
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("*"):
                    if work is not None:
                        raise _RestoreError(f"COMMIT expected before {line}")
                    table = line[1:]
                    if table not in BUILTIN_CHAINS:
                        raise _RestoreError(f"unknown table {table!r}")
                    base = self.tables.get(table) if noflush else None
                    work = _copy_table(base) if base is not None else _fresh_table(table)
                    continue
                if work is None:
                    raise _RestoreError("rule or chain outside a table")
                if line == "COMMIT":
                    self.tables[table] = work
                    work = None
                    continue
                if line.startswith(":"):
                    self._declare(work, line)
                    continue
                self._command(work, table, line)
            except _RestoreError as e:
                raise KernelError(f"iptables-restore: line {lineno} failed: {e}: {raw}",
                                  hint="the kernel would reject this line too") from None
            except ValidationError as e:
                raise KernelError(f"iptables-restore: line {lineno} failed: {e.message}: {raw}") from None
        if work is not None:
            raise KernelError(f"iptables-restore: COMMIT expected at line {lineno + 1}")
        self.applied += 1

    def _declare(self, work: dict[str, Chain], line: str) -> None:
        parts = line[1:].split()
        if not parts:
            raise _RestoreError("empty chain name")
        name = parts[0]
        policy = parts[1] if len(parts) > 1 else "-"
        chain = work.get(name)
        if chain is not None and chain.builtin:
            if policy not in ("-", "ACCEPT", "DROP"):
                raise _RestoreError(f"bad policy {policy!r}")
            if policy != "-":
                chain.policy = policy
            return  # a built-in chain is NOT flushed by its declaration
        if policy != "-" and self.strict:
            raise _RestoreError(f"can't set policy {policy!r} on user-defined chain {name}")
        if len(name) > 28 and self.strict:
            raise _RestoreError(f"chain name {name!r} too long")
        if chain is not None:
            chain.rules.clear()
        else:
            work[name] = Chain(name, False)

    def _command(self, work: dict[str, Chain], table: str, line: str) -> None:
        packets = bytes_ = 0
        if line.startswith("["):  # iptables-save -c counters: [packets:bytes] -A ...
            counters, _, line = line.partition(" ")
            p, _, b = counters.strip("[]").partition(":")
            packets, bytes_ = int(p or 0), int(b or 0)
        try:
            toks = shlex.split(line)
        except ValueError as e:
            raise _RestoreError(f"unparsable line ({e})") from None
        cmd, rest = toks[0], toks[1:]
        if cmd in ("-A", "--append", "-I", "--insert"):
            if not rest:
                raise _RestoreError(f"{cmd} needs a chain")
            name, args = rest[0], rest[1:]
            pos = None
            if cmd in ("-I", "--insert") and args and args[0].isdigit():
                pos, args = int(args[0]) - 1, args[1:]
            chain = self._chain(work, name)
            if chain is None:
                return
            rule = parse_rule(name, args)
            rule.packets, rule.bytes = packets, bytes_
            self._check_target(work, rule)
            if cmd in ("-A", "--append"):
                chain.rules.append(rule)
            else:
                chain.rules.insert(pos or 0, rule)
        elif cmd in ("-D", "--delete"):
            chain = self._chain(work, rest[0] if rest else "")
            if chain is None:
                return
            args = rest[1:]
            if len(args) == 1 and args[0].isdigit():
                idx = int(args[0]) - 1
                if not 0 <= idx < len(chain.rules):
                    raise _RestoreError("index of deletion too big")
                del chain.rules[idx]
                return
            for i, r in enumerate(chain.rules):
                if r.args == args:
                    del chain.rules[i]
                    return
            if self.strict:
                raise _RestoreError("bad rule (does a matching rule exist in that chain?)")
        elif cmd in ("-F", "--flush"):
            if rest:
                chain = self._chain(work, rest[0])
                if chain is not None:
                    chain.rules.clear()
            else:
                for c in work.values():
                    c.rules.clear()
        elif cmd in ("-N", "--new-chain"):
            if not rest:
                raise _RestoreError("-N needs a chain")
            if rest[0] in work and self.strict:
                raise _RestoreError(f"chain {rest[0]} already exists")
            work.setdefault(rest[0], Chain(rest[0], False))
        elif cmd in ("-X", "--delete-chain"):
            if not rest:
                raise _RestoreError("-X without a chain is not supported")
            self._delete_chain(work, rest[0])
        elif cmd in ("-P", "--policy"):
            chain = self._chain(work, rest[0] if rest else "")
            if chain is not None and len(rest) > 1:
                chain.policy = rest[1]
        else:
            raise _RestoreError(f"unknown command {cmd!r}")

    def _chain(self, work: dict[str, Chain], name: str) -> Chain | None:
        chain = work.get(name)
        if chain is None:
            if self.strict:
                raise _RestoreError(f"no chain/target/match by that name: {name!r}")
            chain = work[name] = Chain(name, False)
        return chain

    def _check_target(self, work: dict[str, Chain], rule: Rule) -> None:
        t = rule.target
        if not self.strict or t is None or t in BUILTIN_TARGETS:
            return
        chain = work.get(t)
        if chain is None:
            raise _RestoreError(f"couldn't load target {t!r}: no such chain")
        if chain.builtin:
            raise _RestoreError(f"can't jump to built-in chain {t}")

    def _delete_chain(self, work: dict[str, Chain], name: str) -> None:
        chain = work.get(name)
        if chain is None:
            if self.strict:
                raise _RestoreError(f"no chain by that name: {name!r}")
            return
        if chain.builtin:
            raise _RestoreError(f"can't delete built-in chain {name}")
        if self.strict:
            if chain.rules:
                raise _RestoreError(f"chain {name} is not empty")
            refs = [r.text for c in work.values() for r in c.rules if r.target == name]
            if refs:
                raise _RestoreError(f"chain {name} is still referenced ({len(refs)} rules, e.g. {refs[0]})")
        del work[name]

    def ensure_rules(self, rules: dict[str, dict[str, tuple[str, ...]]]) -> list[str]:
        """What netk8s.dataplane.iptables.ensure_rules does (kube-proxy's EnsureChain + EnsureRule
        Prepend): each rule missing from its built-in chain is inserted at the top, bottom rule first, its
        target chain created if absent; present rules and other rules are left alone. Returns the rules
        inserted (`table chain rule`)."""
        done = []
        for table, chains in rules.items():
            work = self.tables.setdefault(table, _fresh_table(table))
            for chain, wanted in chains.items():
                for text in reversed(wanted):
                    rule = parse_rule(chain, shlex.split(text))
                    if any(r.args == rule.args for r in work[chain].rules):
                        continue
                    if rule.target and rule.target not in BUILTIN_TARGETS and rule.target not in work:
                        work[rule.target] = Chain(rule.target, False)
                    work[chain].rules.insert(0, rule)
                    done.append(f"{table} {chain} {text}")
        return done

    # -- reading --------------------------------------------------------------------------------------
    def chains(self, table: str) -> set[str]:
        return set(self.tables.get(table, {}))

    def ruleset(self) -> Ruleset:
        return Ruleset({t: _copy_table(c) for t, c in self.tables.items()})

    def rule_count(self) -> int:
        return sum(len(c.rules) for chains in self.tables.values() for c in chains.values())


def _copy_table(chains: dict[str, Chain]) -> dict[str, Chain]:
    return {n: Chain(c.name, c.builtin, c.policy, list(c.rules)) for n, c in chains.items()}


# ---------------------------------------------------------------------------------------------------------
# Ruleset and tracer


@dataclass
class Ruleset:
    """Chains and rules of the nat and filter tables, ready to trace."""

    tables: dict[str, dict[str, Chain]]

    @classmethod
    def parse(cls, text: str, jumps: dict[str, dict[str, tuple[str, ...]]] | None = None) -> Ruleset:
        """From iptables-restore input (a render) or iptables-save output (with or without -c).
        `jumps`: the built-in chains' jumps to add first (netk8s.proxy.render_iptables.BUILTIN_JUMPS: a render
        does not hold them, the proxier ensures them apart), so a trace starts at the real hooks."""
        tables = Tables(strict=False)
        if jumps:
            tables.ensure_rules(jumps)
        tables.apply(text, noflush=True)
        return tables.ruleset()

    def chain(self, table: str, name: str) -> Chain | None:
        return self.tables.get(table, {}).get(name)

    def rules(self, table: str, name: str) -> list[Rule]:
        c = self.chain(table, name)
        return list(c.rules) if c else []


@dataclass
class TraceResult:
    verdict: str  # DNAT | REJECT | DROP | ACCEPT
    dnat: str | None  # "ip:port" when translated
    masquerade: bool  # mark 0x4000 set by the end of nat processing
    path: list[str]  # "table:chain" in the order entered
    matched_rules: list[tuple[str, Rule]] = field(default_factory=list, repr=False)

    @property
    def matched(self) -> list[str]:
        """The "table:rule text" of every rule that matched, in order (for debugging a failed trace)."""
        return [f"{table}:{rule.text}" for table, rule in self.matched_rules]

    @property
    def chains(self) -> list[str]:
        """The chain names entered, without their tables."""
        return [p.split(":", 1)[1] for p in self.path]


@dataclass
class _Packet:
    src: ipaddress.IPv4Address
    proto: str
    dst: ipaddress.IPv4Address
    dport: int
    mark: int = 0
    states: set[str] = field(default_factory=lambda: {"NEW"})


_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# (set name, direction flags e.g. "dst,dst", src ip, protocol, dst ip, dst port) -> member?
IpsetLookup = Callable[[str, str, str, str, str, int], bool]
_MAX_STEPS = 100_000
# chooser(kind, rule, probability) -> matched: decides random draws / affinity checks (see trace)
Chooser = Callable[[str, Rule, "float | None"], bool]


class _Tracer:
    def __init__(self, rs: Ruleset, local_ips: set[ipaddress.IPv4Address],
                 rand: Callable[[], float], recent: dict[str, dict[str, float]], now: float,
                 ipsets: IpsetLookup | None = None, chooser: Chooser | None = None) -> None:
        self.rs = rs
        self.ipsets = ipsets
        self.chooser = chooser
        self.local = local_ips
        self.rand = rand
        self.recent = recent
        self.now = now
        self.path: list[str] = []
        self.matched: list[tuple[str, Rule]] = []
        self.steps = 0

    def is_local(self, ip: ipaddress.IPv4Address) -> bool:
        return ip in self.local or ip in _LOOPBACK

    def run(self, table: str, chain: str, pkt: _Packet) -> tuple[str | None, Rule | None]:
        """Traverse `chain` (a built-in or a top-level chain). Returns (terminal target, rule) or
        (None, None) when the traversal fell off the end of the starting chain."""
        stack: list[tuple[str, int]] = []
        name, idx = chain, 0
        self.path.append(f"{table}:{name}")
        while True:
            self.steps += 1
            if self.steps > _MAX_STEPS:
                raise ValidationError(f"trace: loop in {table} rules (passing {name})")
            c = self.rs.chain(table, name)
            rules = c.rules if c else []
            if idx >= len(rules):
                if not stack:
                    return None, None
                name, idx = stack.pop()
                continue
            rule = rules[idx]
            idx += 1
            if not self.matches(rule, pkt):
                continue
            self.matched.append((table, rule))
            t = rule.target
            if t is None:
                continue
            if t == "RETURN":
                if not stack:
                    return None, None
                name, idx = stack.pop()
                continue
            if t == "MARK":
                self.apply_mark(rule, pkt)
                continue
            if t in ("LOG", "CONNMARK", "NOTRACK", "CT"):
                continue
            if t in BUILTIN_TARGETS:
                return t, rule
            if self.rs.chain(table, t) is None:
                raise ValidationError(f"trace: rule {rule.text!r} jumps to missing chain {t}")
            stack.append((name, idx))
            name, idx = t, 0
            self.path.append(f"{table}:{name}")

    def matches(self, r: Rule, p: _Packet) -> bool:
        if r.unsupported:
            raise ValidationError(f"trace: rule {r.text!r} uses options the tracer does not model: "
                                  f"{', '.join(r.unsupported)}")
        if r.src is not None and (p.src in r.src[1]) == r.src[0]:
            return False
        if r.dst is not None and (p.dst in r.dst[1]) == r.dst[0]:
            return False
        if r.proto is not None and (p.proto == r.proto[1]) == r.proto[0]:
            return False
        if r.dport is not None and (r.dport[1] <= p.dport <= r.dport[2]) == r.dport[0]:
            return False
        if r.dst_type is not None and (self._addr_type(p.dst) == r.dst_type[1]) == r.dst_type[0]:
            return False
        if r.src_type is not None and (self._addr_type(p.src) == r.src_type[1]) == r.src_type[0]:
            return False
        if r.mark is not None:
            neg, value, mask = r.mark
            if ((p.mark & mask) == value) == neg:
                return False
        if r.ctstate is not None and bool(p.states & r.ctstate[1]) == r.ctstate[0]:
            return False
        if r.recent is not None:
            opts = r.recent
            if self.chooser is not None and (opts.get("rcheck") or opts.get("update")):
                if not self.chooser("recent", r, None):
                    return False
            elif not self._recent(r, p):
                return False
        if r.match_set is not None:
            if self.ipsets is None:
                raise ValidationError(f"trace: rule {r.text!r} matches an ipset and the trace was given none")
            neg, name, dirs = r.match_set
            if self.ipsets(name, dirs, str(p.src), p.proto, str(p.dst), p.dport) == neg:
                return False
        if r.probability is not None:
            if self.chooser is not None:
                return self.chooser("statistic", r, r.probability)
            return self.rand() < r.probability  # xt_statistic: match when random < probability
        return True

    def _addr_type(self, ip: ipaddress.IPv4Address) -> str:
        return "LOCAL" if self.is_local(ip) else "UNICAST"

    def _recent(self, r: Rule, p: _Packet) -> bool:
        opts = r.recent or {}
        name = str(opts.get("name", "DEFAULT"))
        table = self.recent.setdefault(name, {})
        src = str(p.src)
        seconds = opts.get("seconds")
        if opts.get("reap") and isinstance(seconds, int):
            for ip in [ip for ip, seen in table.items() if self.now - seen > seconds]:
                del table[ip]
        if opts.get("set"):
            table[src] = self.now
            return True
        if opts.get("rcheck") or opts.get("update"):
            seen = table.get(src)
            if seen is None:
                return False
            if isinstance(seconds, int) and self.now - seen > seconds:
                return False
            if opts.get("update"):
                table[src] = self.now
            return True
        return True

    @staticmethod
    def apply_mark(r: Rule, p: _Packet) -> None:
        o = r.target_opts
        if "or-mark" in o:
            p.mark |= int(o["or-mark"], 0)
        elif "xor-mark" in o:
            p.mark ^= int(o["xor-mark"], 0)
        elif "and-mark" in o:
            p.mark &= int(o["and-mark"], 0)
        elif "set-xmark" in o or "set-mark" in o:
            value, mask = _mark_value(o.get("set-xmark") or o["set-mark"])
            p.mark = (p.mark & ~mask) ^ value


def _rand_source(rand: float | Sequence[float] | Callable[[], float]) -> Callable[[], float]:
    if callable(rand):
        return rand
    if isinstance(rand, (int, float)):
        value = float(rand)
        return lambda: value
    values = iter(list(rand))

    def nxt() -> float:
        try:
            return float(next(values))
        except StopIteration:
            raise ValidationError("trace: the rand sequence ran out of values") from None
    return nxt


# kube-proxy's own test tracer runs these filter chains directly when no built-in jumps are present.
_FILTER_FALLBACK = (naming.KUBE_SERVICES, naming.KUBE_EXTERNAL_SERVICES, naming.KUBE_NODEPORTS,
                    naming.KUBE_PROXY_FIREWALL)


def trace(
    ruleset: Ruleset, src: str, proto: str, dst: str, dport: int, *,
    local_dst_ips: Iterable[str] = (),
    rand: float | Sequence[float] | Callable[[], float] = 0.0,
    recent: dict[str, dict[str, float]] | None = None,
    now: float = 0.0,
    hook: str = "PREROUTING",
    masquerade_mark: int = 0x4000,
    ipsets: IpsetLookup | None = None,
    chooser: Chooser | None = None,
) -> TraceResult:
    """Follow a new connection's first packet through nat then filter.

    `local_dst_ips`: the node's own addresses (addrtype LOCAL; loopback always is). `rand`: the value
    each `-m statistic --mode random` draw returns (a match when rand < probability), a sequence
    consumed one value per draw, or a callable. `recent`: `-m recent` lists {name: {src ip: last seen}}
    updated in place by `--set`, so successive traces see affinity; `now` is the clock for --seconds.
    `ipsets`: answers `-m set --match-set NAME DIRS` (netk8s.proxy.tracer_ipvs.ipset_lookup).
    `hook`: PREROUTING (a packet arriving at the node) or OUTPUT (sent by the node itself).
    `chooser`: decides every random draw and affinity check instead of `rand`/`recent`, called as
    chooser("statistic", rule, probability) or chooser("recent", rule, None) -> matched (how
    netk8s.trace.paths enumerates every path with its probability).
    """
    if hook not in ("PREROUTING", "OUTPUT"):
        raise ValidationError(f"trace: hook must be PREROUTING or OUTPUT, not {hook!r}")
    pkt = _Packet(ipaddress.IPv4Address(src), proto.lower(), ipaddress.IPv4Address(dst), int(dport))
    local = {ipaddress.IPv4Address(ip) for ip in local_dst_ips}
    tr = _Tracer(ruleset, local, _rand_source(rand), recent if recent is not None else {}, now, ipsets, chooser)

    dnat: str | None = None
    nat_start = hook if ruleset.chain("nat", hook) is not None else naming.KUBE_SERVICES
    target, rule = tr.run("nat", nat_start, pkt)
    if target == "DNAT" and rule is not None:
        dnat = rule.target_opts.get("to-destination")
        if not dnat:
            raise ValidationError(f"trace: DNAT without --to-destination in {rule.text!r}")
        ip, _, port = dnat.partition(":")
        pkt.dst = ipaddress.IPv4Address(ip)
        pkt.dport = int(port) if port else pkt.dport
        pkt.states.add("DNAT")
    elif target in ("DROP", "REJECT"):
        return TraceResult(target, None, False, tr.path, tr.matched)
    masquerade = bool(pkt.mark & masquerade_mark)

    verdict = "DNAT" if dnat else "ACCEPT"
    if hook == "OUTPUT":
        filter_hook = "OUTPUT"
    else:
        filter_hook = "INPUT" if tr.is_local(pkt.dst) else "FORWARD"
    filt = ruleset.chain("filter", filter_hook)
    starts = (filter_hook,) if filt is not None and filt.rules else _FILTER_FALLBACK
    for start in starts:
        if ruleset.chain("filter", start) is None:
            continue
        target, _ = tr.run("filter", start, pkt)
        if target in ("DROP", "REJECT"):
            return TraceResult(target, dnat, masquerade, tr.path, tr.matched)
        if target == "ACCEPT":
            break
    return TraceResult(verdict, dnat, masquerade, tr.path, tr.matched)
