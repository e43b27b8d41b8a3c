"""Pure: what a trace is (hops in order, the verdict, the endpoint) and how it prints (text, JSON, SVG);
the parsers of what the kernel tells the tracer (resolv.conf, `conntrack -L -o extended`,
`nft monitor trace`); and the flows view (`netk8s flows`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any

# ---------------------------------------------------------------------------------------------------------
# The trace


@dataclass
class MatchedRule:
    table: str
    chain: str
    rule: str
    packets: int | None = None  # the counter's increase during the probe (iptables), None when unknown
    verdict: str | None = None  # nftrace's verdict of the rule


@dataclass
class Hop:
    kind: str  # dns | route | rules | dnat | vxlan | bridge | delivery | reply | drop | proxy
    node: str | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    rules: list[MatchedRule] = field(default_factory=list)


@dataclass
class Trace:
    source: str
    target: str
    proto: str
    port: int | None
    mode: str
    hops: list[Hop] = field(default_factory=list)
    verdict: str = "unknown"  # delivered | rejected | dropped | no-answer
    reason: str | None = None
    endpoint: dict[str, Any] | None = None  # ip, port, pod, node, choice
    service: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hop_kinds(trace: Trace) -> list[str]:
    return [h.kind for h in trace.hops]


def render_text(trace: Trace) -> str:
    head = f"trace {trace.source} -> {trace.target}"
    if trace.port:
        head += f" ({trace.proto}/{trace.port})"
    lines = [f"{head}   [{trace.mode} mode]"]
    for i, hop in enumerate(trace.hops, 1):
        where = f" [{hop.node}]" if hop.node else ""
        lines.append(f"{i:>2}. {hop.kind:<8}{where} {hop.summary}")
        for e in hop.details.get("endpoints", []) if hop.kind == "rules" else []:
            who = f"  pod {e['pod']} on {e['node']}" if e.get("pod") else ""
            lines.append(f"      {e['endpoint']:<22} p={e['probability']:.4f}{who}")
        for r in hop.rules:
            count = f"  (+{r.packets} pkt)" if r.packets else ""
            verdict = f"  -> {r.verdict}" if r.verdict else ""
            lines.append(f"      {r.table}/{r.chain}: {r.rule}{verdict}{count}")
    result = trace.verdict.upper()
    if trace.reason:
        result += f": {trace.reason}"
    lines.append(f"=> {result}")
    return "\n".join(lines) + "\n"


def render_svg(trace: Trace) -> str:
    """A left-to-right picture: one box per hop (its node above it), arrows between them, the rules
    inside the box of the hop that matched them, the verdict at the end."""
    box_w, gap, top = 230, 40, 60
    heights = [70 + 14 * min(len(h.rules), 12) for h in trace.hops] or [70]
    width = max(1, len(trace.hops)) * (box_w + gap) + 40
    height = top + max(heights) + 70
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="monospace" font-size="11">'),
           ('<defs><marker id="arrow" markerWidth="10" markerHeight="7" refX="10" refY="3.5" orient="auto">'
            '<polygon points="0 0, 10 3.5, 0 7"/></marker></defs>'),
           (f'<text x="20" y="24" font-size="14">{escape(trace.source)} → {escape(trace.target)} '
            f'({escape(trace.mode)} mode)</text>')]
    colours = {"drop": "#f8d0d0", "delivery": "#d0f0d0", "dns": "#e0e8ff", "vxlan": "#fff0c0"}
    for i, hop in enumerate(trace.hops):
        x = 20 + i * (box_w + gap)
        h = heights[i]
        out.append(f'<rect x="{x}" y="{top}" width="{box_w}" height="{h}" rx="6" '
                   f'fill="{colours.get(hop.kind, "#f0f0f0")}" stroke="#333"/>')
        out.append(f'<text x="{x + 8}" y="{top - 6}">{escape(hop.node or "")}</text>')
        out.append(f'<text x="{x + 8}" y="{top + 16}" font-weight="bold">{i + 1}. {escape(hop.kind)}</text>')
        summary = hop.summary
        for j in range(0, min(len(summary), 96), 32):
            out.append(f'<text x="{x + 8}" y="{top + 32 + (j // 32) * 13}">{escape(summary[j:j + 32])}</text>')
        for k, r in enumerate(hop.rules[:12]):
            out.append(f'<text x="{x + 8}" y="{top + 76 + 14 * k}" font-size="9">'
                       f'{escape((r.chain + ": " + r.rule)[:40])}</text>')
        if i:
            out.append(f'<line x1="{x - gap}" y1="{top + 30}" x2="{x}" y2="{top + 30}" stroke="#333" '
                       'marker-end="url(#arrow)"/>')
    verdict = trace.verdict.upper() + (f": {trace.reason}" if trace.reason else "")
    out.append(f'<text x="20" y="{height - 20}" font-size="13">{escape(verdict)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------
# resolv.conf and the resolver's search list (resolv.conf(5): ndots, search)


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    ndots: int = 1


def parse_resolv_conf(text: str) -> ResolvConf:
    conf = ResolvConf()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            conf.nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            conf.search = words[1:]
        elif words[0] == "options":
            for opt in words[1:]:
                if opt.startswith("ndots:") and opt[6:].isdigit():
                    conf.ndots = int(opt[6:])
    return conf


def expand_name(name: str, conf: ResolvConf) -> list[str]:
    """The names the resolver tries, in order: a name ending in a dot as is; one with fewer than ndots
    dots through the search list first, then as is; otherwise as is first, then the search list."""
    if name.endswith("."):
        return [name]
    searched = [f"{name}.{d}." for d in conf.search]
    if name.count(".") < conf.ndots:
        return [*searched, f"{name}."]
    return [f"{name}.", *searched]


# ---------------------------------------------------------------------------------------------------------
# conntrack


@dataclass(frozen=True)
class CtEntry:
    proto: str
    state: str | None
    orig: tuple[str, str, int, int]  # src, dst, sport, dport
    reply: tuple[str, str, int, int]
    packets: int | None
    bytes: int | None
    flags: tuple[str, ...]

    @property
    def dnat(self) -> str:
        """Where the original direction was really sent: the reply's source (the endpoint)."""
        return f"{self.reply[0]}:{self.reply[2]}"

    @property
    def translated(self) -> bool:
        return self.reply[0] != self.orig[1] or self.reply[2] != self.orig[3]


_KV_RE = re.compile(r"(\w+)=(\S+)")


def parse_conntrack(text: str) -> list[CtEntry]:
    """`conntrack -L -o extended` lines: `ipv4 2 tcp 6 117 TIME_WAIT src=.. dst=.. sport=.. dport=..
    [packets=.. bytes=..] src=.. (reply) ... [ASSURED] mark=0 use=1`."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 6 or words[0] != "ipv4":
            continue
        proto = words[2]
        state = words[5] if "=" not in words[5] else None
        tuples: list[dict[str, str]] = []
        for key, value in _KV_RE.findall(line):
            if key == "src":
                tuples.append({})
            if tuples:
                tuples[-1].setdefault(key, value)
        if len(tuples) < 2:
            continue
        o, r = tuples[0], tuples[1]
        try:
            orig = (o["src"], o["dst"], int(o.get("sport", 0)), int(o.get("dport", 0)))
            reply = (r["src"], r["dst"], int(r.get("sport", 0)), int(r.get("dport", 0)))
        except (KeyError, ValueError):
            continue
        pk = [int(t["packets"]) for t in tuples[:2] if "packets" in t]
        by = [int(t["bytes"]) for t in tuples[:2] if "bytes" in t]
        flags = tuple(w.strip("[]") for w in words if w.startswith("["))
        out.append(CtEntry(proto, state, orig, reply, sum(pk) if pk else None, sum(by) if by else None, flags))
    return out


# ---------------------------------------------------------------------------------------------------------
# nft monitor trace


@dataclass(frozen=True)
class NftEvent:
    trace_id: str
    table: str
    chain: str
    kind: str  # packet | rule | policy | verdict
    text: str
    verdict: str | None = None
    target: str | None = None


_NFT_RE = re.compile(r"^trace id (\w+) ip (\S+) (\S+) (packet: |rule |policy |verdict )(.*)$")
_VERDICT_RE = re.compile(r"^(.*) \(verdict (\w+)(?: (\S+))?\)$")


def parse_nft_trace(lines: Iterable[str]) -> list[NftEvent]:
    out = []
    for line in lines:
        m = _NFT_RE.match(line.strip())
        if not m:
            continue
        tid, table, chain, kind, rest = m.groups()
        kind = kind.strip().rstrip(":")
        verdict = target = None
        if kind == "rule":
            v = _VERDICT_RE.match(rest)
            if v:
                rest, verdict, target = v.group(1), v.group(2), v.group(3)
        elif kind in ("policy", "verdict"):
            verdict = rest.split()[0] if rest else None
        out.append(NftEvent(tid, table, chain, kind, rest, verdict, target))
    return out


def first_trace(events: Sequence[NftEvent], src: str, sport: int, table: str) -> list[NftEvent]:
    """The events of the first traced packet from src:sport (the connection's first packet, the one
    NAT decides), restricted to `table`."""
    wanted = None
    for e in events:
        if e.kind == "packet" and f"ip saddr {src} " in e.text + " " and re.search(rf"\bsport {sport}\b", e.text):
            wanted = e.trace_id
            break
    return [e for e in events if e.trace_id == wanted and e.table == table]


# ---------------------------------------------------------------------------------------------------------
# flows


@dataclass
class Flow:
    node: str
    proto: str
    state: str | None
    client: str
    client_pod: str | None
    service: str | None
    service_addr: str
    endpoint: str
    endpoint_pod: str | None
    packets: int | None
    bytes: int | None


def flows_from_conntrack(node: str, entries: Iterable[CtEntry], pods_by_ip: Mapping[str, str],
                         services_by_addr: Mapping[str, str]) -> list[Flow]:
    """The connections through a Service (original destination a Service address:port) with names."""
    out = []
    for e in entries:
        src, dst, _sport, dport = e.orig
        svc = services_by_addr.get(f"{dst}:{dport}") or services_by_addr.get(f"*:{dport}")
        if svc is None or not e.translated:
            continue
        out.append(Flow(node, e.proto, e.state, f"{src}:{e.orig[2]}", pods_by_ip.get(src), svc, f"{dst}:{dport}",
                        e.dnat, pods_by_ip.get(e.reply[0]), e.packets, e.bytes))
    return out


def render_flows(flows: Sequence[Flow]) -> str:
    header = ("NODE", "PROTO", "STATE", "CLIENT", "SERVICE", "ENDPOINT", "PACKETS", "BYTES")
    rows = [header]
    for f in flows:
        client = f"{f.client_pod} ({f.client})" if f.client_pod else f.client
        endpoint = f"{f.endpoint_pod} ({f.endpoint})" if f.endpoint_pod else f.endpoint
        rows.append((f.node, f.proto, f.state or "-", client, f"{f.service} ({f.service_addr})", endpoint,
                     "-" if f.packets is None else str(f.packets), "-" if f.bytes is None else str(f.bytes)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"
