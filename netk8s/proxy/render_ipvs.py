"""kube-proxy's IPVS mode, pure: the desired IPVS state, its ipsets and iptables rules, and the diff to the kernel's.

The layout is kube-proxy's (pkg/proxy/ipvs/proxier.go, syncProxyRules):

* Every ClusterIP, externalIP and LoadBalancer IP is an address of the dummy device `kube-ipvs0`, so the
  node accepts packets for it and IPVS (hooked at LOCAL_IN) sees them.
* One virtual server per ClusterIP, externalIP, LoadBalancer IP and node IP (NodePort) and port, with
  the scheduler of the node (`rr` unless `--ipvs-scheduler` says lc, sh, ...), persistence = the
  Service's ClientIP affinity timeout, and one masquerading (`-m`) real server of weight 1 per endpoint
  the traffic may use: the ServicePlan's cluster endpoints, or its local ones for
  internalTrafficPolicy Local (ClusterIP) and externalTrafficPolicy Local (the others).
* Graceful removal (kube-proxy's gracefulTerminationManager): a real server that is no longer wanted but
  still has connections (ActiveConn + InActConn) keeps its place with weight 0, so no new connection goes
  to it; once its connections are gone the next sync deletes it.
* ipsets (hash:ip,port entries `ip,proto:port`) let a few fixed iptables rules cover every Service:
  KUBE-CLUSTER-IP (masquerade off-cluster sources), KUBE-LOOP-BACK (hairpin: an endpoint reaching itself
  through its Service is masqueraded), KUBE-EXTERNAL-IP, KUBE-LOAD-BALANCER(-LOCAL) and the
  KUBE-NODE-PORT-(LOCAL-)TCP/UDP bitmaps (masquerade unless the policy is Local).

The kernel's state comes in as an IpvsKernelState (read back: `ipvsadm -Ln`, `ipset save`, the device's
addresses, parsed here); `diff` turns desired + kernel into one `ipvsadm --restore` text, one `ipset
restore` text and the address changes. IPVS has no partial syncs in kube-proxy either: every sync diffs
the whole desired state against the read-back, which is what makes it cheap to apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netk8s.model import naming
from netk8s.proxy.model import Endpoint, NodeContext, ProxyState, ServicePort, plan_service

DEFAULT_SCHEDULER = "rr"
# ipvsadm's schedulers (ipvsadm(8)): round robin, weighted rr, least connection, weighted lc, locality
# based lc (with replication), destination hashing, source hashing, shortest expected delay, never queue,
# maglev hashing.
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh")
PROTOCOLS = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}

# (name, type, comment) of every ipset this mode uses (pkg/proxy/ipvs/ipset.go).
IPSETS: tuple[tuple[str, str, str], ...] = (
    (naming.IPSET_LOOP_BACK, "hash:ip,port,ip", "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    (naming.IPSET_CLUSTER_IP, "hash:ip,port", "Kubernetes service cluster ip + port for masquerade purpose"),
    (naming.IPSET_EXTERNAL_IP, "hash:ip,port", "Kubernetes service external ip + port for masquerade and filter purpose"),
    (naming.IPSET_LOAD_BALANCER, "hash:ip,port", "Kubernetes service lb portal"),
    (naming.IPSET_LOAD_BALANCER_LOCAL, "hash:ip,port", "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    (naming.IPSET_NODE_PORT_TCP, "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"),
    (naming.IPSET_NODE_PORT_LOCAL_TCP, "bitmap:port", "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    (naming.IPSET_NODE_PORT_UDP, "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"),
    (naming.IPSET_NODE_PORT_LOCAL_UDP, "bitmap:port", "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
)
IPSET_NAMES = tuple(name for name, _, _ in IPSETS)
NODE_PORT_SETS = {"TCP": naming.IPSET_NODE_PORT_TCP, "UDP": naming.IPSET_NODE_PORT_UDP}
NODE_PORT_LOCAL_SETS = {"TCP": naming.IPSET_NODE_PORT_LOCAL_TCP, "UDP": naming.IPSET_NODE_PORT_LOCAL_UDP}

NAT_CHAINS = (naming.KUBE_SERVICES, naming.KUBE_POSTROUTING, naming.KUBE_NODE_PORT, naming.KUBE_LOAD_BALANCER,
              naming.KUBE_MARK_MASQ)
# The jumps from the built-in chains (kube-proxy's ipvs iptablesJumpChain), ensured apart from the text.
BUILTIN_JUMPS: dict[str, dict[str, tuple[str, ...]]] = {
    "nat": {
        "PREROUTING": (f'-m comment --comment "kubernetes service portals" -j {naming.KUBE_SERVICES}',),
        "OUTPUT": (f'-m comment --comment "kubernetes service portals" -j {naming.KUBE_SERVICES}',),
        "POSTROUTING": (f'-m comment --comment "kubernetes postrouting rules" -j {naming.KUBE_POSTROUTING}',),
    },
}

VSKey = tuple[str, str, int]  # (protocol TCP|UDP|SCTP, ip, port)
RealKey = tuple[str, int]  # (ip, port)


@dataclass(frozen=True)
class VirtualServer:
    """One IPVS service and the real servers it should have (all weight 1, masquerading)."""

    protocol: str
    ip: str
    port: int
    scheduler: str
    persistence: int | None  # seconds of ClientIP affinity (`-p`), None for none
    reals: tuple[RealKey, ...]
    service: str  # the service port key it serves (for `netk8s rules` and logs)

    @property
    def key(self) -> VSKey:
        return (self.protocol, self.ip, self.port)


@dataclass
class IpvsDesired:
    """What the node should hold: device addresses, virtual servers, ipset entries, the iptables text."""

    addresses: set[str] = field(default_factory=set)
    services: dict[VSKey, VirtualServer] = field(default_factory=dict)
    ipsets: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name in IPSET_NAMES})
    iptables: str = ""


@dataclass(frozen=True)
class RealState:
    weight: int
    active: int = 0
    inactive: int = 0

    @property
    def connections(self) -> int:
        return self.active + self.inactive


@dataclass(frozen=True)
class ServiceState:
    scheduler: str
    persistence: int | None
    reals: Mapping[RealKey, RealState]


@dataclass
class IpvsKernelState:
    """What the kernel holds (read back)."""

    addresses: set[str] = field(default_factory=set)
    services: dict[VSKey, ServiceState] = field(default_factory=dict)
    ipsets: dict[str, set[str]] = field(default_factory=dict)  # only the sets that exist
    device: bool = False  # kube-ipvs0 exists


@dataclass
class IpvsRendered:
    """One sync's changes and the desired state they lead to.

    `ipvsadm`: `ipvsadm --restore` input; `ipset`: `ipset restore` input; `add_addresses`/`del_addresses`:
    /32s of kube-ipvs0; `iptables`: restore text (empty when unchanged); `terminating`: real servers kept
    at weight 0 until their connections end. `rule_count`: virtual + real servers wanted."""

    desired: IpvsDesired
    ipvsadm: str
    ipset: str
    add_addresses: list[str]
    del_addresses: list[str]
    iptables: str
    terminating: list[tuple[VSKey, RealKey]]
    rule_count: int
    full: bool = True

    @property
    def text(self) -> str:
        """Every change, for logs and golden files."""
        parts = [f"# kube-ipvs0 add {ip}/32" for ip in self.add_addresses]
        parts += [f"# kube-ipvs0 del {ip}/32" for ip in self.del_addresses]
        return "\n".join(parts + [self.ipset.rstrip("\n"), self.ipvsadm.rstrip("\n"),
                                  self.iptables.rstrip("\n")]).strip("\n") + "\n"

    def release(self) -> None:
        """Drop the change texts once applied (the next diff needs only `desired`)."""
        self.ipvsadm = self.ipset = self.iptables = ""


# ----------------------------------------------------------------------------- desired state


def _entry(ip: str, sp: ServicePort, port: int | None = None) -> str:
    return f"{ip},{sp.proto_lower}:{sp.port if port is None else port}"


def _reals(eps: Iterable[Endpoint]) -> tuple[RealKey, ...]:
    return tuple(sorted({(ep.ip, ep.port) for ep in eps}))


def render_desired(state: ProxyState, node: NodeContext, scheduler: str = DEFAULT_SCHEDULER) -> IpvsDesired:
    """The desired IPVS state, ipsets and iptables text for every service port (pure)."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"ipvs scheduler {scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    out = IpvsDesired()
    sets = out.ipsets
    for key in sorted(state.services):
        sp = state.services[key]
        if not sp.cluster_ip or sp.protocol not in PROTOCOLS:
            continue
        plan = plan_service(sp, state.endpoints_of(key))
        internal = _reals(plan.local if plan.internal_local else plan.cluster)
        external = _reals(plan.local if plan.external_local else plan.cluster)
        for ep in plan.reachable:
            sets[naming.IPSET_LOOP_BACK].add(f"{ep.ip},{sp.proto_lower}:{ep.port},{ep.ip}")

        def serve(ip: str, port: int, reals: tuple[RealKey, ...], sp: ServicePort = sp) -> None:
            vs = VirtualServer(sp.protocol, ip, port, scheduler, sp.affinity_timeout, reals, sp.key)
            out.services[vs.key] = vs

        out.addresses.add(sp.cluster_ip)
        sets[naming.IPSET_CLUSTER_IP].add(_entry(sp.cluster_ip, sp))
        serve(sp.cluster_ip, sp.port, internal)
        for ip in sp.external_ips:
            out.addresses.add(ip)
            sets[naming.IPSET_EXTERNAL_IP].add(_entry(ip, sp))
            serve(ip, sp.port, external)
        for ip in sp.load_balancer_ips:
            out.addresses.add(ip)
            sets[naming.IPSET_LOAD_BALANCER].add(_entry(ip, sp))
            if plan.external_local:
                sets[naming.IPSET_LOAD_BALANCER_LOCAL].add(_entry(ip, sp))
            serve(ip, sp.port, external)
        if sp.node_port and sp.protocol in ("TCP", "UDP"):
            sets[NODE_PORT_SETS[sp.protocol]].add(str(sp.node_port))
            if plan.external_local:
                sets[NODE_PORT_LOCAL_SETS[sp.protocol]].add(str(sp.node_port))
            for ip in node.node_ips:
                serve(ip, sp.node_port, external)
    out.iptables = iptables_text(node)
    return out


def iptables_text(node: NodeContext) -> str:
    """The few nat rules of IPVS mode (kube-proxy's writeIptablesRules): masquerade what needs it, by ipset.
    IPVS does the DNAT; the chains only mark (KUBE-MARK-MASQ) and masquerade marked packets."""
    mark = node.masquerade_mark
    cidr = node.cluster_cidr
    svc, np, lb, masq = naming.KUBE_SERVICES, naming.KUBE_NODE_PORT, naming.KUBE_LOAD_BALANCER, naming.KUBE_MARK_MASQ
    lines = ["*nat", *(f":{c} - [0:0]" for c in NAT_CHAINS),
             (f'-A {naming.KUBE_POSTROUTING} -m comment --comment "Kubernetes endpoints dst ip:port, source ip for '
              f'solving hairpin purpose" -m set --match-set {naming.IPSET_LOOP_BACK} dst,dst,src -j MASQUERADE'),
             f"-A {naming.KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
             f"-A {naming.KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
             (f'-A {naming.KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
              f"-j MASQUERADE --random-fully"),
             f"-A {masq} -j MARK --or-mark {mark}",
             (f'-A {svc} -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" '
              f"-m set --match-set {naming.IPSET_CLUSTER_IP} dst,dst ! -s {cidr} -j {masq}"),
             (f'-A {svc} -m comment --comment "Kubernetes service external ip + port for masquerade and filter '
              f'purpose" -m set --match-set {naming.IPSET_EXTERNAL_IP} dst,dst -j {masq}'),
             (f'-A {svc} -m comment --comment "Kubernetes service lb portal" '
              f"-m set --match-set {naming.IPSET_LOAD_BALANCER} dst,dst -j {lb}"),
             f"-A {svc} -m set --match-set {naming.IPSET_CLUSTER_IP} dst,dst -j ACCEPT",
             f"-A {svc} -m set --match-set {naming.IPSET_LOAD_BALANCER} dst,dst -j ACCEPT",
             (f'-A {svc} -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
              f'this chain" -m addrtype --dst-type LOCAL -j {np}'),
             f"-A {lb} -m set --match-set {naming.IPSET_LOAD_BALANCER_LOCAL} dst,dst -j RETURN",
             f"-A {lb} -j {masq}"]
    for proto in ("TCP", "UDP"):
        p = proto.lower()
        lines.append(f"-A {np} -p {p} -m {p} -m set --match-set KUBE-NODE-PORT-LOCAL-{proto} dst -j RETURN")
        lines.append(f"-A {np} -p {p} -m {p} -m set --match-set KUBE-NODE-PORT-{proto} dst -j {masq}")
    lines += ["COMMIT", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the diff


def _vs_arg(key: VSKey) -> str:
    proto, ip, port = key
    return f"{PROTOCOLS[proto]} {ip}:{port}"


def _vs_options(vs: VirtualServer) -> str:
    return f"-s {vs.scheduler}" + (f" -p {vs.persistence}" if vs.persistence is not None else "")


def diff(desired: IpvsDesired, kernel: IpvsKernelState, *, previous_iptables: str | None = None,
         full: bool = True) -> IpvsRendered:
    """The changes that take the kernel's state to `desired` (pure). Real servers that should go but still
    have connections are set to weight 0 (graceful removal) and deleted by a later sync. The iptables text
    is written on full syncs and when it differs from `previous_iptables`."""
    ipvs: list[str] = []
    terminating: list[tuple[VSKey, RealKey]] = []
    for key in sorted(kernel.services.keys() - desired.services.keys()):
        ipvs.append(f"-D {_vs_arg(key)}")
    for key in sorted(desired.services):
        vs = desired.services[key]
        have = kernel.services.get(key)
        arg = _vs_arg(key)
        if have is None:
            ipvs.append(f"-A {arg} {_vs_options(vs)}")
            ipvs += [f"-a {arg} -r {ip}:{port} -m -w 1" for ip, port in vs.reals]
            continue
        if (have.scheduler, have.persistence) != (vs.scheduler, vs.persistence):
            ipvs.append(f"-E {arg} {_vs_options(vs)}")
        wanted = set(vs.reals)
        for real in sorted(have.reals.keys() - wanted):
            rs = have.reals[real]
            if rs.connections > 0:
                terminating.append((key, real))
                if rs.weight != 0:
                    ipvs.append(f"-e {arg} -r {real[0]}:{real[1]} -m -w 0")
            else:
                ipvs.append(f"-d {arg} -r {real[0]}:{real[1]}")
        for real in vs.reals:
            rs = have.reals.get(real)
            if rs is None:
                ipvs.append(f"-a {arg} -r {real[0]}:{real[1]} -m -w 1")
            elif rs.weight != 1:
                ipvs.append(f"-e {arg} -r {real[0]}:{real[1]} -m -w 1")  # back from graceful removal
    sets: list[str] = []
    for name, kind, _comment in IPSETS:
        if name not in kernel.ipsets:
            extra = " range 0-65535" if kind.startswith("bitmap") else " family inet hashsize 1024 maxelem 65536"
            sets.append(f"create {name} {kind}{extra}")
        have_entries = kernel.ipsets.get(name, set())
        want = desired.ipsets.get(name, set())
        sets += [f"del {name} {e}" for e in sorted(have_entries - want)]
        sets += [f"add {name} {e}" for e in sorted(want - have_entries)]
    iptables = desired.iptables if full or previous_iptables != desired.iptables else ""
    count = len(desired.services) + sum(len(vs.reals) for vs in desired.services.values())
    return IpvsRendered(
        desired=desired,
        ipvsadm="".join(line + "\n" for line in ipvs),
        ipset="".join(line + "\n" for line in sets),
        add_addresses=sorted(desired.addresses - kernel.addresses),
        del_addresses=sorted(kernel.addresses - desired.addresses),
        iptables=iptables,
        terminating=terminating,
        rule_count=count,
        full=full,
    )


def drained(terminating: Iterable[tuple[VSKey, RealKey]], kernel: IpvsKernelState) -> list[tuple[VSKey, RealKey]]:
    """The real servers at weight 0 whose connections have ended (or that are gone already)."""
    out = []
    for vs, real in terminating:
        have = kernel.services.get(vs)
        rs = have.reals.get(real) if have is not None else None
        if rs is None or rs.connections == 0:
            out.append((vs, real))
    return out


def delete_reals_text(reals: Iterable[tuple[VSKey, RealKey]], kernel: IpvsKernelState | None = None) -> str:
    """`ipvsadm --restore` text deleting real servers (those the kernel still has, when `kernel` is given)."""
    lines = []
    for vs, (ip, port) in reals:
        if kernel is not None and (ip, port) not in (kernel.services.get(vs) or ServiceState("", None, {})).reals:
            continue
        lines.append(f"-d {_vs_arg(vs)} -r {ip}:{port}\n")
    return "".join(lines)


def cleanup_ipvsadm(kernel: IpvsKernelState) -> str:
    """`ipvsadm --restore` text deleting every virtual server (kube-proxy --cleanup: `ipvsadm -C`
    semantics, one line per service so a fake can check each)."""
    return "".join(f"-D {_vs_arg(key)}\n" for key in sorted(kernel.services))


def cleanup_ipset(kernel: IpvsKernelState) -> str:
    """`ipset restore` text destroying this mode's sets (after the iptables rules using them are gone)."""
    return "".join(f"destroy {name}\n" for name in IPSET_NAMES if name in kernel.ipsets)


# ----------------------------------------------------------------------------- reading the kernel back

_VS_RE = re.compile(r"^(TCP|UDP|SCTP)\s+(\S+):(\d+)\s+(\S+)(.*)$")
_REAL_RE = re.compile(r"^\s+->\s+(\S+):(\d+)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)")


def parse_ipvsadm_list(text: str) -> dict[VSKey, ServiceState]:
    """Parse `ipvsadm -L -n` (virtual servers, their scheduler and persistence, real servers with weight
    and connection counts)."""
    out: dict[VSKey, ServiceState] = {}
    current: tuple[VSKey, str, int | None, dict[RealKey, RealState]] | None = None

    def close() -> None:
        if current is not None:
            key, sched, pers, reals = current
            out[key] = ServiceState(sched, pers, reals)

    for line in text.splitlines():
        m = _VS_RE.match(line)
        if m:
            close()
            flags = m.group(5).split()
            pers = int(flags[flags.index("persistent") + 1]) if "persistent" in flags else None
            current = ((m.group(1), m.group(2), int(m.group(3))), m.group(4), pers, {})
            continue
        r = _REAL_RE.match(line)
        if r and current is not None:
            current[3][(r.group(1), int(r.group(2)))] = RealState(int(r.group(4)), int(r.group(5)), int(r.group(6)))
    close()
    return out


def parse_ipset_save(text: str) -> dict[str, set[str]]:
    """{set: entries} of this mode's sets in `ipset save` output."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "create" and words[1] in IPSET_NAMES:
            out.setdefault(words[1], set())
        elif len(words) >= 3 and words[0] == "add" and words[1] in out:
            out[words[1]].add(words[2])
    return out
