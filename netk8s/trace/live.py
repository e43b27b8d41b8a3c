"""The live tracer: send one marked request through a lab and read, hop by hop, what the kernel did.

Per proxy mode, the node's own record of the decision:
* nftables: a temporary `meta nftrace set 1` rule for the probe's 5-tuple in a table of its own and
  `nft monitor trace` in the node namespace (netk8s.dataplane.tracing.nft_trace_session);
* iptables (legacy xtables): TRACE would log through nf_log, which a non-init namespace only reaches
  with the host sysctl nf_log_all_netns; so the per-rule packet counters (`iptables-legacy-save -c`)
  are read around the probe, and of the paths the pure tracer finds through the same rules
  (netk8s.trace.paths) the one whose rules counted the probe and whose DNAT conntrack recorded is the
  path taken;
* ipvs: nothing to add either: the node's IPVS connection table records the real server each connection
  was given; netk8s.trace.ipvs reads it, the ipsets and the few nat rules (with counters) around the probe,
  through a runner that executes in the node namespace (a VM node's guest runs the same reads);
* userspace: the same counters for the REDIRECT to the agent's portal, then the agent's own pick (the
  `pick` line it logs for the client's address and port) and conntrack of its upstream connection.
Conntrack gives the DNAT result and the reply path; routes, the flannel FDB/neighbour entries and link
counters give the bridge or VXLAN hop; the endpoint pod's eth0 counters and the response give delivery.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netk8s import config
from netk8s.config import LabPaths
from netk8s.dataplane import tracing as dp
from netk8s.errors import NotFound, ValidationError
from netk8s.model import naming
from netk8s.node.runtime import PodRuntime
from netk8s.proxy import tracer_ipvs
from netk8s.proxy.tracer_iptables import Ruleset
from netk8s.trace import ipvs as ipvs_trace
from netk8s.trace import paths as tp
from netk8s.trace.model import CtEntry, Hop, MatchedRule, Trace, first_trace, parse_conntrack, parse_nft_trace

EXTERNAL_IP = "192.168.56.100"


@dataclass
class Cluster:
    """The objects a trace names things with (listed once from the API store)."""

    lab: str
    mode: str
    nodes: list[str]
    pods: list[dict]
    services: list[dict]
    slices: list[dict]
    node_objs: list[dict]
    vm_nodes: list[str] = field(default_factory=list)  # nodes that are QEMU guests (netk8s.lab.vmnodes)
    store_url: str = ""  # the API server, for pods/exec into a VM node's pod

    def node_ip(self, node: str) -> str:
        for n in self.node_objs:
            if n["metadata"]["name"] == node:
                for a in (n.get("status") or {}).get("addresses") or []:
                    if a.get("type") == "InternalIP":
                        return str(a["address"])
        return str(naming.node_ip(self.nodes.index(node) + 1))

    def node_of_ip(self, ip: str) -> str | None:
        return next((n for n in self.nodes if self.node_ip(n) == ip), None)

    def pod_by_ip(self, ip: str) -> dict | None:
        return next((p for p in self.pods if (p.get("status") or {}).get("podIP") == ip
                     and not (p.get("spec") or {}).get("hostNetwork")), None)

    def pod_names(self) -> dict[str, str]:
        return {str(p["status"]["podIP"]): f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                for p in self.pods if (p.get("status") or {}).get("podIP")}

    def service_by_ip(self, ip: str) -> dict | None:
        return next((s for s in self.services if (s.get("spec") or {}).get("clusterIP") == ip), None)

    def service_by_nodeport(self, port: int) -> dict | None:
        return next((s for s in self.services for p in (s.get("spec") or {}).get("ports") or []
                     if p.get("nodePort") == port), None)

    def service_addrs(self) -> dict[str, str]:
        out = {}
        for s in self.services:
            spec = s.get("spec") or {}
            key = f"{s['metadata']['namespace']}/{s['metadata']['name']}"
            for p in spec.get("ports") or []:
                if spec.get("clusterIP") not in (None, "None"):
                    out[f"{spec['clusterIP']}:{p['port']}"] = key
                if p.get("nodePort"):
                    out[f"*:{p['nodePort']}"] = key
        return out


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def _pod_exec(c: Cluster, pod: dict, argv: list[str], timeout: float = 30) -> str:
    if pod["spec"]["nodeName"] in c.vm_nodes:  # in a guest's kernel: pods/exec through the API server
        from netk8s.store.podexec import pod_exec_output

        name = pod["spec"]["containers"][0]["name"]
        code, out, err = pod_exec_output(c.store_url, pod["metadata"]["namespace"], pod["metadata"]["name"], name, argv)
        if code != 0:
            raise ValidationError(f"trace: {argv[3] if len(argv) > 3 else argv} in pod {_key(pod)} failed: "
                                  f"{err.decode(errors='replace').strip()[-200:]}")
        return out.decode()
    rt = PodRuntime(LabPaths(c.lab).node_dir(pod["spec"]["nodeName"]) / "pods", c.lab)
    uid = pod["metadata"]["uid"]
    res = rt.exec(uid, naming.pod_netns(c.lab, uid), argv, timeout=timeout)
    if res.exit_code != 0:
        raise ValidationError(f"trace: {argv[3] if len(argv) > 3 else argv} in pod {_key(pod)} failed: "
                              f"{res.stderr.decode(errors='replace').strip()[-200:]}")
    return res.stdout.decode()


def _local_ips(netns: str) -> list[str]:
    out = ["127.0.0.1"]
    for link in dp.ip_json(netns, ["addr"]):
        out += [a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"]
    return out


def _sport() -> int:
    return random.SystemRandom().randrange(40000, 60000)


def _agent_picks(c: Cluster, node: str) -> list[dict[str, str]]:
    path = LabPaths(c.lab).logs / f"agent-{node}.log"
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [dict(kv.split("=", 1) for kv in line.split(" pick ", 1)[1].split())
            for line in text.splitlines()[-2000:] if " pick portal=" in line]


def _service_choice(c: Cluster, ip: str, port: int | None, proto: str) -> tuple[dict | None, int | None]:
    svc = c.service_by_ip(ip)
    if svc is not None and port is None:
        ports = [p for p in svc["spec"].get("ports") or [] if p.get("protocol", "TCP").lower() == proto]
        port = int(ports[0]["port"]) if ports else None
    return svc, port


def trace(c: Cluster, source: str, target: str, *, namespace: str, port: int | None, proto: str,
          dry_run: bool) -> Trace:
    hops: list[Hop] = []
    # ---- the source
    if source == "external":
        client_pod = None
        src_ip = EXTERNAL_IP
        src_ns = naming.external_netns(c.lab)
    else:
        name = source.split("/", 1)[1] if source.startswith(("pod/", "pods/", "po/")) else source
        client_pod = next((p for p in c.pods if p["metadata"]["name"] == name
                           and p["metadata"]["namespace"] == namespace), None)
        if client_pod is None:
            raise NotFound(f'Error from server (NotFound): pods "{name}" not found')
        if (client_pod.get("status") or {}).get("phase") != "Running":
            raise ValidationError(f"FROM: pod {_key(client_pod)} is not running")
        src_ip = client_pod["status"]["podIP"]
        src_ns = naming.pod_netns(c.lab, client_pod["metadata"]["uid"])
    # ---- the destination
    dst, _, port_text = target.rpartition(":") if re.fullmatch(r"[\d.]+:\d+", target) else (target, "", "")
    if port_text:
        port = int(port_text)
    svc: dict | None = None
    dns_sport = None
    if target.startswith(("pod/", "po/")):
        pod = next((p for p in c.pods if p["metadata"]["name"] == target.split("/", 1)[1]
                    and p["metadata"]["namespace"] == namespace), None)
        if pod is None:
            raise NotFound(f'Error from server (NotFound): pods "{target}" not found')
        dst = pod["status"]["podIP"]
    elif not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", dst):
        if client_pod is None:
            raise ValidationError("TO: a Service name needs a pod as FROM (it is resolved by the pod's resolver)")
        dns_sport = _sport()
        ans = json.loads(_pod_exec(c, client_pod, [sys.executable, "-m", "netk8s.dataplane.tracing", "dns", dst,
                                                   "--sport", str(dns_sport)]))
        if not ans.get("answer"):
            tried = ", ".join(f"{t['name']} {t['rcode']}" for t in ans.get("tried", []))
            raise ValidationError(f"TO: {dst!r} does not resolve from {_key(client_pod)} ({tried or 'no nameserver'})")
        hops.append(Hop("dns", client_pod["spec"]["nodeName"],
                        f"{dst} -> {ans['fqdn']} = {ans['answer']} (server {ans['server']})", ans))
        dst = ans["answer"]
    svc, port = _service_choice(c, dst, port, proto)
    entry_node = client_pod["spec"]["nodeName"] if client_pod else c.node_of_ip(dst)
    if entry_node is None:
        raise ValidationError(f"TO: from external, {dst} is not a node address ({', '.join(c.node_ip(n) for n in c.nodes)})")
    if svc is None and c.node_of_ip(dst) and port:
        svc = c.service_by_nodeport(port)
    if port is None:
        raise ValidationError("--port: needed (the target is not a Service with a port of that protocol)")
    if entry_node in c.vm_nodes and c.mode != "ipvs":
        raise ValidationError(f"trace: {entry_node} is a VM node; tracing a VM node is implemented in ipvs mode "
                              f"only (this lab runs {c.mode})", hint="netk8s lab set-proxy-mode ipvs")
    node_ns = naming.node_netns(c.lab, entry_node)
    hook = "PREROUTING"
    t = Trace(source, target, proto, port, c.mode, hops, service=_key(svc) if svc else None)
    if dns_sport is not None:
        _dns_answerer(c, t.hops[0], node_ns, src_ip, dns_sport, entry_node)
    if dry_run:
        return _dry_run(c, t, node_ns, src_ip, dst, port, proto, hook, entry_node)
    return _live(c, t, client_pod, src_ns, node_ns, entry_node, src_ip, dst, port, proto)


def _dns_answerer(c: Cluster, hop: Hop, node_ns: str, src_ip: str, sport: int, node: str) -> None:
    """Which kube-dns pod answered: conntrack's DNAT of the query (IPVS: its connection table; userspace:
    the agent's pick)."""
    run = _runner(c, node, check=False)
    entries = parse_conntrack(run(["conntrack", "-L", "-o", "extended", "-p", "udp", "--orig-src", src_ip,
                                   "--orig-port-src", str(sport)]))
    ip = None
    if entries and entries[0].translated:
        ip = entries[0].reply[0]
    if c.mode == "ipvs" and ip is None:  # IPVS NATs outside conntrack: its own connection table has the query
        conn = tracer_ipvs.connection_of(ipvs_trace.read_conns(_runner(c, node)), src_ip, sport, "udp")
        ip = conn.real.rpartition(":")[0] if conn is not None and conn.real else None
    if c.mode == "userspace" or (ip and c.pod_by_ip(ip) is None):
        for pick in reversed(_agent_picks(c, node)):
            if pick.get("client") == f"{src_ip}:{sport}":
                ip = pick["endpoint"].rsplit(":", 1)[0]
                break
    pod = c.pod_by_ip(ip) if ip else None
    if pod is not None:
        hop.details["answered_by"] = {"pod": _key(pod), "ip": ip, "node": pod["spec"]["nodeName"]}
        hop.summary += f", answered by pod {_key(pod)} ({ip})"


def _node_runner(node_ns: str) -> ipvs_trace.Runner:
    """Run a read-only command in the node namespace (netk8s.trace.ipvs asks the node through this)."""
    from netk8s.dataplane.netns import run_in_netns

    return lambda argv: run_in_netns(node_ns, list(argv), timeout=30).stdout


def _runner(c: Cluster, node: str, netns: str | None = None, check: bool = True) -> ipvs_trace.Runner:
    """Run a read-only command in `node` (or, with `netns`, in that namespace of the node: a pod's):
    `ip netns exec` here for a namespace node, the guest control server for a VM node. With check=False
    a failed command answers "" (as dataplane.tracing's readers do)."""
    if node not in c.vm_nodes:
        if check:
            return _node_runner(netns or naming.node_netns(c.lab, node))
        return lambda argv: _host_run(netns or naming.node_netns(c.lab, node), argv)
    from netk8s.lab import vmnodes

    def run(argv: Sequence[str]) -> str:
        r = vmnodes.run(c.lab, node, ["ip", "netns", "exec", netns, *argv] if netns else list(argv), timeout=30)
        if r.ok or not check:
            return r.stdout if r.ok else ""
        raise ValidationError(f"trace: {' '.join(argv)} on {node} exited {r.rc}: {r.stderr.strip()[-200:]}")

    return run


def _host_run(netns: str, argv: Sequence[str]) -> str:
    from netk8s.dataplane.netns import run_in_netns

    p = run_in_netns(netns, list(argv), timeout=30, check=False)
    return p.stdout if p.returncode == 0 else ""


def _ip_json(run: ipvs_trace.Runner, args: Sequence[str]) -> Any:
    out = run(["ip", "-j", *args])
    return json.loads(out) if out.strip() else []


def _link_counters(run: ipvs_trace.Runner, dev: str) -> dict[str, int]:
    """rx/tx packet counters of one link of a node (zeros when it does not exist): dataplane.tracing's."""
    found = _ip_json(run, ["-s", "link", "show", "dev", dev])
    stats = (found[0].get("stats64") or found[0].get("stats") or {}) if found else {}
    return {"rx": int(stats.get("rx", {}).get("packets", 0)), "tx": int(stats.get("tx", {}).get("packets", 0))}


def _names(c: Cluster) -> dict[str, tuple[str | None, str | None]]:
    out: dict[str, tuple[str | None, str | None]] = {}
    for p in c.pods:
        ip = (p.get("status") or {}).get("podIP")
        if ip and not (p.get("spec") or {}).get("hostNetwork"):
            out[ip] = (_key(p), p["spec"].get("nodeName"))
    return out


def _dry_run(c: Cluster, t: Trace, node_ns: str, src_ip: str, dst: str, port: int, proto: str, hook: str,
             entry_node: str) -> Trace:
    if c.mode == "ipvs":
        run = _runner(c, entry_node)
        return ipvs_trace.dry_run(t, ipvs_trace.read_state(run), src_ip, dst, port, _names(c),
                                  node=c.node_of_ip(dst) or None, hook=hook, conns=ipvs_trace.read_conns(run))
    local = _local_ips(node_ns)
    if c.mode == "nftables":
        found = tp.nft_json_paths(dp.nft_list_json(node_ns), src_ip, proto, dst, port, local_ips=local)
        source = f"nft -j list table ip {naming.KUBE_PROXY_TABLE}"
    else:
        rs = Ruleset.parse(dp.iptables_save(node_ns))
        found = tp.iptables_paths(rs, src_ip, proto, dst, port, local_ips=local, hook=hook)
        source = "iptables-legacy-save"
    probs = tp.endpoint_probabilities(found)
    if c.mode == "userspace" and set(probs) == {"REDIRECT"}:
        # the rules hand the connection to the agent's portal: it picks round-robin among the endpoints
        eps = _service_endpoints(c, t.service, proto, port)
        probs = {e: 1.0 / len(eps) for e in eps} if eps else {"REJECT": 1.0}
        source += " + the agent's round-robin"
    endpoints = []
    for ep, p in sorted(probs.items()):
        pod = c.pod_by_ip(ep.split(":")[0]) if ":" in ep else None
        endpoints.append({"endpoint": ep, "probability": p, "pod": _key(pod) if pod else None,
                          "node": pod["spec"]["nodeName"] if pod else None})
    t.hops.append(Hop("rules", c.node_of_ip(dst) or None, f"dry run over the live rules ({source}): "
                      f"{len(found)} path(s)", {"endpoints": endpoints},
                      [MatchedRule(tb, ch, r) for path in found[:1] for tb, ch, r in path.rules]))
    t.verdict = "dry-run"
    t.endpoint = None
    return t


def _service_endpoints(c: Cluster, service: str | None, proto: str, port: int) -> list[str]:
    if service is None:
        return []
    ns, name = service.split("/")
    svc = next(s for s in c.services if _key(s) == service)
    sp = next((p for p in svc["spec"].get("ports") or [] if int(p["port"]) == port), None)
    out = []
    for sl in c.slices:
        if sl["metadata"]["namespace"] != ns or (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != name:
            continue
        ports = [p for p in sl.get("ports") or [] if sp is None or p.get("name", "") == sp.get("name", "")]
        for e in sl.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready", True):
                out += [f"{a}:{p['port']}" for a in e.get("addresses") or [] for p in ports]
    return sorted(set(out))


def _live(c: Cluster, t: Trace, client_pod: dict | None, src_ns: str, node_ns: str, entry_node: str, src_ip: str,
          dst: str, port: int, proto: str) -> Trace:
    sport = _sport()
    marker = uuid.uuid4().hex[:12]
    path = f"/?netk8s-trace={marker}"
    probe_argv = [sys.executable, "-m", "netk8s.dataplane.tracing", "probe", dst, str(port), "--proto", proto,
                  "--sport", str(sport), "--path", path]
    rx_before = {n: _link_counters(_runner(c, n, check=False), config.VXLAN_DEV) for n in c.nodes}
    if c.mode == "ipvs":
        t.hops.append(_route_hop(c, client_pod, src_ns, dst))

        def to_endpoint(ep_ip: str, ep_node: str | None) -> Hop:
            if ep_node and ep_node != entry_node:
                return _vxlan_hop(c, entry_node, ep_node, ep_ip, rx_before)
            return Hop("bridge", entry_node, f"{naming.BRIDGE} on {entry_node} to {ep_ip}",
                       {"route": _ip_json(_runner(c, entry_node, check=False), ["route", "get", ep_ip])})

        return ipvs_trace.live(t, _runner(c, entry_node), lambda: _run_probe(c, client_pod, src_ns, probe_argv), src_ip,
                               sport, dst, port, _names(c), node=entry_node, to_endpoint=to_endpoint)
    before = None if c.mode == "nftables" else Ruleset.parse(dp.iptables_save(node_ns))
    nft_lines: list[str] = []
    if c.mode == "nftables":
        match = f"ip saddr {src_ip} {proto} sport {sport}"
        with dp.nft_trace_session(node_ns, match) as session:
            result = _run_probe(c, client_pod, src_ns, probe_argv)
        nft_lines = session.snapshot()
    else:
        result = _run_probe(c, client_pod, src_ns, probe_argv)
    t.hops.insert(len(t.hops), _route_hop(c, client_pod, src_ns, dst))
    ct = parse_conntrack(dp.conntrack_list(node_ns, ["-p", proto, "--orig-src", src_ip, "--orig-port-src", str(sport)]))
    entry = ct[0] if ct else None
    endpoint: str | None = entry.dnat if entry and entry.translated else None
    choice = "random"
    drop: tuple[str, str] | None = None  # (where, reason)
    if c.mode == "nftables":
        events = first_trace(parse_nft_trace(nft_lines), src_ip, sport, naming.KUBE_PROXY_TABLE)
        rules = [MatchedRule(naming.KUBE_PROXY_TABLE, e.chain, e.text, None,
                             e.verdict + (f" {e.target}" if e.target else ""))
                 for e in events if e.kind == "rule"]
        if any(r.chain.startswith("affinity") or "@affinity-" in r.rule for r in rules):
            choice = "affinity"
        for e in events:
            if e.kind == "rule" and e.verdict in ("drop", "reject"):
                drop = (f"{e.chain}", f"{e.verdict} by `{e.text}`")
            elif e.kind == "rule" and e.target == "reject-chain":
                drop = (e.chain, f"reject by `{e.text}` (-> reject-chain)")
        t.hops.append(Hop("rules", entry_node, " -> ".join(_dedup(r.chain for r in rules)) or "no kube-proxy rule",
                          {"source": "nft monitor trace"}, rules))
    else:
        after = Ruleset.parse(dp.iptables_save(node_ns))
        assert before is not None
        deltas = tp.counter_deltas(before, after)
        local = _local_ips(node_ns)
        hook = "PREROUTING"
        candidates = tp.iptables_paths(before, src_ip, proto, dst, port, local_ips=local, hook=hook, affinity=True)
        want = endpoint if c.mode != "userspace" else None
        taken = tp.observed_path(candidates, want, deltas)
        rules = []
        if taken is not None:
            rules = [MatchedRule(tb, ch, r, deltas.get((tb, ch, r), 0)) for tb, ch, r in taken.rules]
            if taken.affinity:
                choice = "affinity"
            if taken.verdict in ("REJECT", "DROP"):
                last = taken.rules[-1]
                drop = (f"{last[0]}/{last[1]}", f"{taken.verdict} by `{last[2]}`")
        t.hops.append(Hop("rules", entry_node, " -> ".join(_dedup(r.chain for r in rules)) or "no kube-proxy rule",
                          {"source": "iptables-legacy-save -c counters around the probe"}, rules))
    if c.mode == "userspace" and drop is None:
        pick = next((p for p in reversed(_agent_picks(c, entry_node)) if p.get("client") == f"{src_ip}:{sport}"),
                    None)
        if pick is not None:
            endpoint, choice = pick["endpoint"], pick["choice"]
            t.hops.append(Hop("proxy", entry_node, f"agent portal {pick['portal']} accepted {src_ip}:{sport}, "
                              f"picked {endpoint} ({choice}), connecting from {pick['local']}", pick))
    if drop is not None or not result.get("ok"):
        reason = _drop_reason(c, t, drop, result, entry_node)
        t.hops.append(Hop("drop", entry_node, reason, {"probe": result}))
        t.verdict = "rejected" if (drop and "reject" in drop[1].lower()) or result.get("error") == "refused" else "dropped"
        t.reason = reason
        return t
    ep_ip, _, ep_port = (endpoint or f"{dst}:{port}").partition(":")
    ep_pod = c.pod_by_ip(ep_ip)
    ep_node = ep_pod["spec"]["nodeName"] if ep_pod else c.node_of_ip(ep_ip)
    t.endpoint = {"ip": ep_ip, "port": int(ep_port or port), "pod": _key(ep_pod) if ep_pod else None,
                  "node": ep_node, "choice": choice if endpoint else None}
    if endpoint:
        masq = ("proxied by the agent" if c.mode == "userspace"
                else "masqueraded" if entry and entry.reply[1] != src_ip else "source kept")
        t.hops.append(Hop("dnat", entry_node, f"{dst}:{port} -> {endpoint} = pod {t.endpoint['pod']} on {ep_node} "
                          f"({choice}; {masq})", {"endpoint": t.endpoint}))
    if ep_node and ep_node != entry_node:
        t.hops.append(_vxlan_hop(c, entry_node, ep_node, ep_ip, rx_before))
    else:
        t.hops.append(Hop("bridge", entry_node, f"{naming.BRIDGE} on {entry_node} to {ep_ip}",
                          {"route": dp.ip_json(node_ns, ["route", "get", ep_ip])}))
    t.hops.append(Hop("delivery", ep_node, f"delivered to {t.endpoint['pod'] or ep_ip} eth0 ({ep_ip}:{t.endpoint['port']}): "
                      f"{result.get('status') or 'reply'}", {"probe": result, "request_path": path}))
    if entry is not None:
        r = entry.reply
        t.hops.append(Hop("reply", entry_node, f"conntrack {entry.state or ''} {r[0]}:{r[2]} -> {r[1]}:{r[3]} "
                          f"un-DNAT to {entry.orig[1]}:{entry.orig[3]} -> {src_ip}:{sport}".replace("  ", " "),
                          {"conntrack": {"orig": entry.orig, "reply": entry.reply, "state": entry.state,
                                         "flags": entry.flags}}))
    t.verdict = "delivered"
    return t


def _dedup(names: Any) -> list[str]:
    out: list[str] = []
    for n in names:
        if not out or out[-1] != n:
            out.append(n)
    return out


def _run_probe(c: Cluster, client_pod: dict | None, src_ns: str, argv: list[str]) -> dict[str, Any]:
    if client_pod is not None:
        return json.loads(_pod_exec(c, client_pod, argv))
    from netk8s.dataplane.netns import run_in_netns

    return json.loads(run_in_netns(src_ns, argv, timeout=30).stdout)


def _route_hop(c: Cluster, client_pod: dict | None, src_ns: str, dst: str) -> Hop:
    where = client_pod["spec"]["nodeName"] if client_pod else None
    run = _runner(c, where, src_ns, check=False) if where in c.vm_nodes else (lambda a: _host_run(src_ns, a))
    routes = _ip_json(run, ["route", "get", dst])
    r = routes[0] if routes else {}
    gw = r.get("gateway")
    neigh = _ip_json(run, ["neigh", "show", gw]) if gw else []
    n = neigh[0] if neigh else {}
    summary = f"route to {dst}: via {gw or 'direct'} dev {r.get('dev', '?')}"
    if n:
        summary += f"; neighbour {gw} is {n.get('lladdr', '?')} ({', '.join(n.get('state', []))})"
    return Hop("route", client_pod["spec"]["nodeName"] if client_pod else None, summary, {"route": r, "neighbour": n})


def _vxlan_hop(c: Cluster, node: str, ep_node: str, ep_ip: str, rx_before: Mapping[str, Mapping[str, int]]) -> Hop:
    run = _runner(c, node, check=False)
    route = (_ip_json(run, ["route", "get", ep_ip]) or [{}])[0]
    gw = route.get("gateway")
    neigh = (_ip_json(run, ["neigh", "show", gw, "dev", config.VXLAN_DEV]) or [{}])[0] if gw else {}
    mac = neigh.get("lladdr")
    fdb_out = run(["bridge", "-j", "fdb", "show", "dev", config.VXLAN_DEV])
    fdb = [f for f in (json.loads(fdb_out) if fdb_out.strip() else []) if f.get("mac") == mac]
    link = (_ip_json(run, ["-d", "link", "show", "dev", config.VXLAN_DEV]) or [{}])[0]
    vx = ((link.get("linkinfo") or {}).get("info_data") or {})
    tx = _link_counters(run, config.VXLAN_DEV)["tx"] - rx_before[node]["tx"]
    rx = _link_counters(_runner(c, ep_node, check=False), config.VXLAN_DEV)["rx"] - rx_before[ep_node]["rx"]
    outer_dst = fdb[0].get("dst") if fdb else None
    summary = (f"{config.VXLAN_DEV} VNI {vx.get('id', '?')} udp/{vx.get('port', '?')}: inner -> {ep_ip} via {gw}, "
               f"outer {c.node_ip(node)} -> {outer_dst} ({ep_node}); +{tx} pkt sent, +{rx} pkt received")
    return Hop("vxlan", node, summary, {"route": route, "neighbour": neigh, "fdb": fdb, "vni": vx.get("id"),
                                         "port": vx.get("port"), "outer": [c.node_ip(node), outer_dst],
                                         "tx_packets": tx, "rx_packets_on_endpoint_node": rx, "to_node": ep_node})


def _drop_reason(c: Cluster, t: Trace, drop: tuple[str, str] | None, result: Mapping[str, Any], node: str) -> str:
    svc = next((s for s in c.services if t.service and _key(s) == t.service), None)
    eps = _service_endpoints(c, t.service, t.proto, int(t.port or 0)) if svc else []
    where = f" ({drop[0]}: {drop[1]})" if drop else ""
    if svc is not None and not eps:
        return f"Service {t.service} has no endpoints: REJECT{where}"
    if svc is not None and (svc.get("spec") or {}).get("externalTrafficPolicy") == "Local" and t.source == "external":
        local = [e for e in eps if (c.pod_by_ip(e.split(":")[0]) or {}).get("spec", {}).get("nodeName") == node]
        if not local:
            return f"externalTrafficPolicy Local and no local endpoint of {t.service} on {node}: DROP{where}"
    return f"no answer ({result.get('error', 'unknown')}){where}"


def flows(c: Cluster, nodes: Sequence[str]) -> list[Any]:
    from netk8s.trace.model import flows_from_conntrack

    out: list[Any] = []
    names, addrs = c.pod_names(), c.service_addrs()
    for n in nodes:
        run = _runner(c, n, check=False)
        # byte/packet counters on conntrack entries: a per-namespace sysctl of the node's own (never the host's)
        run(["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1"])
        entries: list[CtEntry] = parse_conntrack(run(["conntrack", "-L", "-o", "extended"]))
        picks = {p["client"]: p for p in _agent_picks(c, n)} if c.mode == "userspace" else {}
        for f in flows_from_conntrack(n, entries, names, addrs):
            pick = picks.get(f.client)
            if f.endpoint_pod is None and pick is not None:  # userspace: the agent's upstream connection
                f.endpoint = pick["endpoint"]
                f.endpoint_pod = names.get(f.endpoint.rsplit(":", 1)[0])
            out.append(f)
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False
