"""Pure: where a new connection goes in kube-proxy's IPVS mode, read from what the node holds, and the IPVS
connection table that says where one really went.

The node's state is the three listings kube-proxy's IPVS mode programs (netk8s.proxy.render_ipvs):
`ipvsadm -L -n` (virtual servers, scheduler, persistence, real servers with weights and connection
counts), `ipset save` (the sets the few iptables rules match) and `iptables-save -t nat` (those rules),
plus the node's local addresses (kube-ipvs0 holds every Service IP, so the node accepts the packet and
IPVS sees it at LOCAL_IN). `plan` follows a new connection's first packet: nat PREROUTING/OUTPUT through
netk8s.proxy.tracer_iptables with the sets answering `-m set` (every set lookup is recorded), then the
virtual server of the destination, then each real server with its probability:

* rr: the next real server of weight > 0 in turn, so 1/n each (ip_vs_rr ignores the weight's size);
* wrr, and sh / dh / mh over source (destination) addresses: the share of the weight;
* lc, wlc, sed, nq: the server with the least connections (ActiveConn * 256 + InActConn, divided by the
  weight for the weighted ones) as the kernel counts them now; ties share equally;
* lblc, lblcr: as wlc for a destination IPVS has not seen yet;
* persistence (`-p N`, ClientIP affinity): a client with a live connection template (an entry of the
  connection table for its address and the virtual server, client port 0) goes to the template's real server.

A virtual server without a real server of weight > 0 takes no connection: the packet is delivered
locally to a port nobody listens on, and the client is refused (a TCP reset, an ICMP port unreachable).
Masquerade: the nat mark (KUBE-MARK-MASQ) or the hairpin set KUBE-LOOP-BACK (an endpoint reaching itself).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from netk8s.errors import ValidationError
from netk8s.model import naming
from netk8s.proxy.render_ipvs import (
    IPSETS,
    RealKey,
    ServiceState,
    VSKey,
    parse_ipset_save,
    parse_ipvsadm_list,
)
from netk8s.proxy.tracer_iptables import IpsetLookup, Ruleset
from netk8s.proxy.tracer_iptables import trace as trace_iptables

SET_TYPES = {name: kind for name, kind, _ in IPSETS}
# Schedulers whose choice is a share of the weight (over connections for wrr, over addresses for the hashes).
WEIGHT_SHARE = ("wrr", "sh", "dh", "mh")
LEAST_CONN = ("lc", "wlc", "sed", "nq", "lblc", "lblcr")
WORDS = {
    "rr": "round robin: each new connection to the next real server of weight > 0",
    "wrr": "weighted round robin: new connections in proportion to the weights",
    "lc": "least connections: the real server with the fewest connections now",
    "wlc": "weighted least connections: the fewest connections per unit of weight now",
    "sed": "shortest expected delay: the fewest connections (+1) per unit of weight now",
    "nq": "never queue: an idle real server, else the shortest expected delay",
    "lblc": "locality-based least connections (a new destination: as wlc)",
    "lblcr": "locality-based least connections with replication (a new destination: as wlc)",
    "sh": "source hashing: one real server per client address; the shares are over client addresses",
    "dh": "destination hashing: one real server per destination address; the shares are over addresses",
    "mh": "maglev hashing: one real server per source; the shares are over sources",
}


def ipset_lookup(sets: Mapping[str, Iterable[str]]) -> IpsetLookup:
    """`-m set --match-set NAME DIRS` over `ipset save` contents, for the directions kube-proxy uses:
    `dst` on a bitmap:port set (the destination port), `dst,dst` (ip,proto:port) and `dst,dst,src`
    (ip,proto:port,source ip) on the hash sets."""
    held = {name: set(entries) for name, entries in sets.items()}

    def lookup(name: str, dirs: str, src: str, proto: str, dst: str, dport: int) -> bool:
        entries = held.get(name, set())
        if SET_TYPES.get(name) == "bitmap:port":
            return str(dport) in entries
        if dirs == "dst,dst":
            return f"{dst},{proto}:{dport}" in entries
        if dirs == "dst,dst,src":
            return f"{dst},{proto}:{dport},{src}" in entries
        return False

    return lookup


def set_entry(name: str, dirs: str, src: str, proto: str, dst: str, dport: int) -> str:
    """The entry a lookup asks the set for (what `ipset test NAME ENTRY` would be given)."""
    if SET_TYPES.get(name) == "bitmap:port":
        return str(dport)
    return f"{dst},{proto}:{dport}" + (f",{src}" if dirs == "dst,dst,src" else "")


@dataclass(frozen=True)
class IpvsState:
    """One node's IPVS-mode state, as read back (netk8s.trace.ipvs reads it in the node)."""

    services: Mapping[VSKey, ServiceState]
    ipsets: Mapping[str, set[str]]
    nat: Ruleset
    device_addresses: frozenset[str]  # kube-ipvs0's
    local_ips: frozenset[str]  # every local address of the node (kube-ipvs0's included)

    @classmethod
    def parse(cls, ipvsadm_list: str, ipset_save: str, nat_save: str, device_addresses: Iterable[str],
              local_ips: Iterable[str]) -> IpvsState:
        dev = frozenset(device_addresses)
        return cls(parse_ipvsadm_list(ipvsadm_list), parse_ipset_save(ipset_save), Ruleset.parse(nat_save),
                   dev, frozenset(local_ips) | dev)


@dataclass(frozen=True)
class SetMatch:
    set: str
    dirs: str
    entry: str
    hit: bool


@dataclass(frozen=True)
class RealChoice:
    real: str  # ip:port
    weight: int
    active: int
    inactive: int
    probability: float
    masquerade: bool  # the packet leaves masqueraded (the nat mark or the hairpin set)


@dataclass
class IpvsPlan:
    """Where a new connection goes. verdict: DNAT (a virtual server with real servers), NO-DESTINATION (a
    virtual server with none of weight > 0: refused), ACCEPT (no virtual server: not a Service address), or
    the nat verdict DROP/REJECT."""

    verdict: str
    virtual: VSKey | None = None
    scheduler: str | None = None
    persistence: int | None = None
    reals: list[RealChoice] = field(default_factory=list)
    nat_rules: list[tuple[str, str, str]] = field(default_factory=list)  # (table, chain, rule text) matched
    set_matches: list[SetMatch] = field(default_factory=list)
    local_by: str | None = None  # why the destination is local: kube-ipvs0 | node
    affinity: str | None = None  # the real server of the client's live persistence template
    note: str = ""

    def probabilities(self) -> dict[str, float]:
        """{real "ip:port" or REJECT/DROP/ACCEPT: probability}, summing to 1."""
        if self.verdict == "DNAT":
            return {r.real: r.probability for r in self.reals if r.probability > 0}
        return {"REJECT" if self.verdict == "NO-DESTINATION" else self.verdict: 1.0}


def _least(usable: Sequence[tuple[RealKey, int, int, int]], scheduler: str) -> list[RealKey]:
    """The real servers a least-connection scheduler may pick now (ip_vs_lc/wlc/sed/nq overhead)."""
    def overhead(active: int, inactive: int, weight: int) -> float:
        if scheduler == "lc":
            return active * 256 + inactive
        if scheduler in ("sed", "nq"):
            return (active + 1) / weight
        return (active * 256 + inactive) / weight

    if scheduler == "nq":
        idle = [r for r, _w, a, _i in usable if a == 0]
        if idle:
            return idle[:1]  # ip_vs_nq: the first idle server
    costs = {r: overhead(a, i, w) for r, w, a, i in usable}
    best = min(costs.values())
    return [r for r, c in costs.items() if c == best]


def _shares(usable: Sequence[tuple[RealKey, int, int, int]], scheduler: str) -> dict[RealKey, float]:
    if scheduler in WEIGHT_SHARE:
        total = sum(w for _, w, _, _ in usable)
        return {r: w / total for r, w, _, _ in usable}
    if scheduler in LEAST_CONN:
        picked = _least(usable, scheduler)
        return {r: (1 / len(picked) if r in picked else 0.0) for r, _, _, _ in usable}
    return {r: 1 / len(usable) for r, _, _, _ in usable}  # rr, and any scheduler not modelled: in turn


def plan(state: IpvsState, src: str, proto: str, dst: str, dport: int, *, hook: str = "PREROUTING",
         templates: Iterable[IpvsConn] = ()) -> IpvsPlan:
    """Every real server a new connection from `src` may reach, with its probability (module docstring).
    `templates`: the connection table's entries, for persistence (a live template pins the client)."""
    proto = proto.lower()
    lookup = ipset_lookup(state.ipsets)
    matches: list[SetMatch] = []

    def recording(name: str, dirs: str, s: str, p: str, d: str, port: int) -> bool:
        hit = lookup(name, dirs, s, p, d, port)
        matches.append(SetMatch(name, dirs, set_entry(name, dirs, s, p, d, port), hit))
        return hit

    nat = trace_iptables(state.nat, src, proto, dst, dport, local_dst_ips=state.local_ips, hook=hook,
                         ipsets=recording)
    out = IpvsPlan(nat.verdict if nat.verdict in ("DROP", "REJECT") else "ACCEPT",
                   nat_rules=[(t, r.chain, r.text) for t, r in nat.matched_rules], set_matches=matches)
    if out.verdict != "ACCEPT":
        return out
    key = (proto.upper(), dst, int(dport))
    svc = state.services.get(key)
    if dst in state.device_addresses:
        out.local_by = naming.KUBE_IPVS_DEVICE
    elif dst in state.local_ips:
        out.local_by = "node"
    if svc is None or out.local_by is None:
        out.note = "no IPVS virtual server for this address and port"
        return out
    out.virtual, out.scheduler, out.persistence = key, svc.scheduler, svc.persistence
    usable = [(r, st.weight, st.active, st.inactive) for r, st in sorted(svc.reals.items()) if st.weight > 0]
    if not usable:
        out.verdict = "NO-DESTINATION"
        out.note = (f"virtual server {proto.upper()} {dst}:{dport} has no real server of weight > 0: the "
                    "packet is delivered locally to a port nobody listens on (refused)")
        return out
    out.verdict = "DNAT"
    shares = _shares(usable, svc.scheduler)
    out.note = WORDS.get(svc.scheduler, f"{svc.scheduler}: not modelled; taken in turn")
    if svc.persistence is not None:
        out.note += f"; persistent {svc.persistence} s (ClientIP affinity: a client's live template pins it)"
        pinned = next((t.real for t in templates if t.template and t.client[0] == src
                       and t.virtual[0] == dst and t.real is not None
                       and tuple(_split(t.real)) in {r for r, *_ in usable}), None)
        if pinned is not None:
            out.affinity = pinned
            shares = {r: (1.0 if f"{r[0]}:{r[1]}" == pinned else 0.0) for r, *_ in usable}
    for (ip, port), weight, active, inactive in usable:
        hairpin = lookup(naming.IPSET_LOOP_BACK, "dst,dst,src", src, proto, ip, port)
        out.reals.append(RealChoice(f"{ip}:{port}", weight, active, inactive, shares[(ip, port)],
                                    nat.masquerade or hairpin))
    return out


def _split(addr: str) -> tuple[str, int]:
    ip, _, port = addr.rpartition(":")
    return ip, int(port)


# ---------------------------------------------------------------------------------------------------------
# The connection table: /proc/net/ip_vs_conn or `ipvsadm -L -n -c`


@dataclass(frozen=True)
class IpvsConn:
    proto: str  # TCP | UDP | SCTP | IP (a persistence template)
    client: tuple[str, int]
    virtual: tuple[str, int]
    real: str | None  # ip:port
    state: str
    expires: int  # seconds

    @property
    def template(self) -> bool:
        """A persistence template (ip_vs_sched_persist): client port 0 (no connection has that); protocol
        IP for firewall-mark services, the service's protocol otherwise; its state column is not a TCP
        state (a guest's 6.1 kernel prints ASSURED, a template flag)."""
        return self.proto == "IP" or self.client[1] == 0


def _hex_addr(ip: str, port: str) -> tuple[str, int]:
    return str(ipaddress.IPv4Address(int(ip, 16))), int(port, 16)


def _clock(text: str) -> int:
    parts = [int(p) for p in text.split(":")]
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


_HEX = re.compile(r"^[0-9A-Fa-f]{8}$")


def parse_ip_vs_conn(text: str) -> list[IpvsConn]:
    """Both listings of the connection table: /proc/net/ip_vs_conn (`TCP 0AF4010D B26E 0A600014 0050
    0AF4010A 1F90 TIME_WAIT 119`, hex addresses and ports, expiry in seconds) and `ipvsadm -L -n -c`
    (`TCP 01:59 TIME_WAIT 10.244.1.13:45678 10.96.0.20:80 10.244.1.10:8080`)."""
    out = []
    for line in text.splitlines():
        w = line.split()
        if len(w) >= 9 and _HEX.match(w[1]) and w[0] in ("TCP", "UDP", "SCTP", "IP"):
            client, virtual, real = _hex_addr(w[1], w[2]), _hex_addr(w[3], w[4]), _hex_addr(w[5], w[6])
            out.append(IpvsConn(w[0], client, virtual, f"{real[0]}:{real[1]}", w[7], int(w[8])))
        elif len(w) >= 6 and w[0] in ("TCP", "UDP", "SCTP", "IP") and ":" in w[1] and ":" in w[3]:
            try:
                client, virtual, real = _split(w[3]), _split(w[4]), _split(w[5])
                out.append(IpvsConn(w[0], client, virtual, f"{real[0]}:{real[1]}", w[2], _clock(w[1])))
            except ValueError:
                continue
    return out


def connection_of(conns: Iterable[IpvsConn], client: str, sport: int, proto: str) -> IpvsConn | None:
    """The connection entry of a client address and port (the probe's), or None."""
    for c in conns:
        if not c.template and c.proto == proto.upper() and c.client == (client, sport):
            return c
    return None


def live_template(conns: Iterable[IpvsConn], client: str, vip: str) -> IpvsConn | None:
    """The persistence template of a client for a virtual address, if one is live."""
    for c in conns:
        if c.template and c.client[0] == client and c.virtual[0] == vip and c.expires > 0:
            return c
    return None


def describe_conn(c: IpvsConn) -> str:
    if c.real is None:
        raise ValidationError("trace: an IPVS connection entry without a real server")
    return (f"{c.proto} {c.client[0]}:{c.client[1]} -> {c.virtual[0]}:{c.virtual[1]} -> {c.real} "
            f"{c.state} (expires in {c.expires} s)")
