"""`netk8s trace` in IPVS mode: the dry run over a node's live IPVS state and the real trace of one probe.

Everything the node is asked goes through a `Runner` (argv -> stdout, raising on failure) that runs the
command IN the node: `ip netns exec` for a namespace node (netk8s.trace.live), the guest control channel
for a VM node (netk8s.trace.live via netk8s.lab.vmnodes), so the same code reads either. It reads `ipvsadm -L -n`, `ipset
save`, `iptables-legacy-save -c -t nat`, `ip -j -4 addr` and the connection table /proc/net/ip_vs_conn
(per network namespace, as IPVS is); it changes nothing (IPVS needs no tracing rule: the connection
table records the real server each connection was given). The pure part is netk8s.proxy.tracer_ipvs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from netk8s.dataplane.iptables import SAVE
from netk8s.dataplane.procfs import IP_VS_CONN
from netk8s.model import naming
from netk8s.proxy import tracer_ipvs as tv
from netk8s.proxy.tracer_iptables import Ruleset
from netk8s.trace.model import Hop, MatchedRule, Trace
from netk8s.trace.paths import counter_deltas

Runner = Callable[[Sequence[str]], str]
# ip -> (pod "ns/name" or None, node or None): how the trace names an address
Names = Mapping[str, tuple[str | None, str | None]]
CONN_TABLE = IP_VS_CONN


def read_addresses(run: Runner) -> tuple[set[str], set[str]]:
    """(kube-ipvs0's addresses, every local IPv4 address) of the node."""
    device: set[str] = set()
    local = {"127.0.0.1"}
    for link in json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        ips = {a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"}
        local |= ips
        if link.get("ifname") == naming.KUBE_IPVS_DEVICE:
            device |= ips
    return device, local


def read_state(run: Runner) -> tv.IpvsState:
    device, local = read_addresses(run)
    return tv.IpvsState.parse(run(["ipvsadm", "-L", "-n"]), run(["ipset", "save"]), run([SAVE, "-c", "-t", "nat"]),
                              device, local)


def read_conns(run: Runner) -> list[tv.IpvsConn]:
    return tv.parse_ip_vs_conn(run(["cat", CONN_TABLE]))


def _name(names: Names, real: str) -> tuple[str | None, str | None]:
    return names.get(real.rpartition(":")[0], (None, None))


def _rules(p: tv.IpvsPlan, deltas: Mapping[tuple[str, str, str], int] | None = None) -> list[MatchedRule]:
    out = [MatchedRule(t, c, r, None if deltas is None else deltas.get((t, c, r), 0)) for t, c, r in p.nat_rules]
    out += [MatchedRule("ipset", m.set, f"{m.entry} ({m.dirs})", None, "match") for m in p.set_matches if m.hit]
    if p.virtual is not None:
        proto, ip, port = p.virtual
        reals = ", ".join(f"{r.real} weight {r.weight}" for r in p.reals) or "no real server"
        flags = f" persistent {p.persistence}" if p.persistence is not None else ""
        out.append(MatchedRule("ipvs", f"{proto} {ip}:{port}", f"{p.scheduler}{flags} -> {reals}"))
    return out


def _summary(p: tv.IpvsPlan, dst: str, port: int) -> str:
    chains: list[str] = []
    for _, c, _ in p.nat_rules:
        if not chains or chains[-1] != c:
            chains.append(c)
    local = (f"{dst} on {naming.KUBE_IPVS_DEVICE}" if p.local_by == naming.KUBE_IPVS_DEVICE
             else f"{dst} is a node address" if p.local_by == "node" else f"{dst} is not local")
    vs = f"IPVS {p.virtual[0]} {dst}:{port} {p.scheduler}" if p.virtual else "no IPVS virtual server"
    return " -> ".join([*chains, local, vs])


def dry_run(t: Trace, state: tv.IpvsState, src: str, dst: str, port: int, names: Names, *, node: str | None,
            hook: str = "PREROUTING", conns: Sequence[tv.IpvsConn] = ()) -> Trace:
    """Every real server the connection may reach with its probability, as one rules hop (`--dry-run`)."""
    p = tv.plan(state, src, t.proto, dst, port, hook=hook, templates=conns)
    endpoints = []
    for ep, prob in sorted(p.probabilities().items()):
        pod, ep_node = _name(names, ep) if ":" in ep else (None, None)
        real = next((r for r in p.reals if r.real == ep), None)
        endpoints.append({"endpoint": ep, "probability": prob, "pod": pod, "node": ep_node,
                          "weight": real.weight if real else None, "masquerade": real.masquerade if real else None})
    source = f"ipvsadm -L -n + ipset save + {SAVE} -t nat"
    details: dict[str, Any] = {"endpoints": endpoints, "source": source, "scheduler": p.scheduler,
                               "persistence": p.persistence, "note": p.note, "affinity": p.affinity}
    summary = f"dry run over the live IPVS state ({source}): {_summary(p, dst, port)}; {p.note}"
    t.hops.append(Hop("rules", node, summary, details, _rules(p)))
    t.verdict = "dry-run"
    t.endpoint = None
    return t


def live(t: Trace, run: Runner, probe: Callable[[], dict[str, Any]], src: str, sport: int, dst: str, port: int,
         names: Names, *, node: str, hook: str = "PREROUTING",
         to_endpoint: Callable[[str, str | None], Hop] | None = None) -> Trace:
    """Send the probe (`probe()`: the JSON of netk8s.dataplane.tracing's probe from `src`:`sport`) and
    report the hops: the nat rules that counted it and the ipsets they matched, the kube-ipvs0 address and
    the virtual server, the real server the connection table gave this client port, the hop to the
    endpoint (`to_endpoint(real ip, its node)`: bridge or VXLAN; default a bridge hop), delivery, and
    the reply un-NATed by IPVS; or the refusal of a virtual server without real servers."""
    before = read_state(run)
    conns_before = read_conns(run)
    result = probe()
    after = Ruleset.parse(run([SAVE, "-c", "-t", "nat"]))
    conns = read_conns(run)
    p = tv.plan(before, src, t.proto, dst, port, hook=hook, templates=conns_before)
    deltas = counter_deltas(before.nat, after)
    t.hops.append(Hop("rules", node, _summary(p, dst, port) + (f"; {p.note}" if p.note else ""),
                      {"source": f"{SAVE} -c counters around the probe, ipset save, ipvsadm -L -n",
                       "scheduler": p.scheduler, "persistence": p.persistence}, _rules(p, deltas)))
    conn = tv.connection_of(conns, src, sport, t.proto)
    if conn is None or conn.real is None or not result.get("ok"):
        why = p.note if p.verdict in ("NO-DESTINATION", "DROP", "REJECT") else "no IPVS connection entry"
        if t.service and p.verdict == "NO-DESTINATION":
            reason = f"Service {t.service} has no endpoints: REJECT ({why})"
        else:
            reason = f"no answer ({result.get('error', 'unknown')}): {why}"
        t.hops.append(Hop("drop", node, reason, {"probe": result, "plan": p.verdict}))
        t.verdict = "rejected" if p.verdict in ("NO-DESTINATION", "REJECT") or result.get("error") == "refused" \
            else "dropped"
        t.reason = reason
        return t
    pinned = tv.live_template(conns_before, src, dst)
    choice = "affinity" if pinned is not None and pinned.real == conn.real else (p.scheduler or "ipvs")
    real = conn.real
    ep_ip, _, ep_port = real.rpartition(":")
    pod, ep_node = _name(names, real)
    chosen = next((r for r in p.reals if r.real == real), None)
    masq = "masqueraded" if chosen is not None and chosen.masquerade else "source kept"
    held = (f"; the client's persistence template pinned it to {pinned.real} (expires in {pinned.expires} s)"
            if pinned is not None else "")
    t.hops.append(Hop("ipvs", node, f"IPVS connection table: {tv.describe_conn(conn)}{held}",
                      {"connection": {"proto": conn.proto, "client": list(conn.client), "virtual": list(conn.virtual),
                                      "real": real, "state": conn.state, "expires": conn.expires},
                       "template": None if pinned is None else pinned.real, "table": CONN_TABLE}))
    t.endpoint = {"ip": ep_ip, "port": int(ep_port), "pod": pod, "node": ep_node, "choice": choice}
    t.hops.append(Hop("dnat", node, f"{dst}:{port} -> {real} = pod {pod} on {ep_node} ({choice}; {masq})",
                      {"endpoint": t.endpoint}))
    if to_endpoint is not None:
        t.hops.append(to_endpoint(ep_ip, ep_node))
    else:
        route = json.loads(run(["ip", "-j", "route", "get", ep_ip]) or "[]")
        dev = route[0].get("dev", "?") if route else "?"
        t.hops.append(Hop("bridge", node, f"{dev} on {node} to {ep_ip}", {"route": route}))
    t.hops.append(Hop("delivery", ep_node, f"delivered to {pod or ep_ip} eth0 ({real}): "
                      f"{result.get('status') or 'reply'}", {"probe": result}))
    t.hops.append(Hop("reply", node, f"IPVS un-NATs the reply: {real} -> {src}:{sport} leaves as "
                      f"{dst}:{port} -> {src}:{sport} ({conn.state})", {"connection": real}))
    t.verdict = "delivered"
    return t
