"""Pure: the netfilter rules of kube-proxy's userspace mode, rendered as ONE iptables-restore text.

Layout after kube-proxy's pkg/proxy/userspace/proxier.go (Kubernetes <= 1.25): every service port gets a
socket of the proxy (a "portal") and nat rules that send the Service's addresses to it:

* `KUBE-PORTALS-CONTAINER` (from nat PREROUTING: traffic from pods and from outside the node):
  `-d VIP --dport P -j REDIRECT --to-ports <proxy port>` for the ClusterIP, externalIPs and LB IPs.
* `KUBE-PORTALS-HOST` (from nat OUTPUT: traffic of the node itself): DNAT to `<node ip>:<proxy port>`,
  as upstream did (REDIRECT in OUTPUT would land on 127.0.0.1, which a non-loopback source cannot use).
* `KUBE-NODEPORT-CONTAINER` / `KUBE-NODEPORT-HOST` (jumped to for local destinations only): the nodePort.

Where netk8s departs from upstream, and why:
- Services without endpoints are REJECTed in a filter chain `KUBE-PORTALS-REJECT` (jumped to from INPUT,
  FORWARD and OUTPUT), like the iptables mode, so clients are refused at once. Upstream accepted the
  connection and closed it.
- Traffic policies (which upstream userspace mode ignored) are honoured by giving a port up to two
  portals: `cluster` (every usable endpoint) and `local` (this node's). Internal traffic uses the
  internalTrafficPolicy's set; external traffic from outside the node the externalTrafficPolicy's; pod
  and node traffic to external destinations always the cluster set (iptables mode's short-circuit, see
  netk8s.proxy.render_iptables). A port whose set is empty here is DROPped (no local endpoints) or REJECTed
  (no endpoints at all).
- Built-in chains are not flushed: a full sync deletes exactly the jumps to this mode's chains that
  iptables-save shows (`existing_jumps`) and appends fresh ones, so a rerun never duplicates a jump and
  other rules in the namespace are left alone (mode switches clean up with `cleanup_text`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netk8s.model import naming
from netk8s.proxy.model import (
    Endpoint,
    NodeContext,
    ProxyState,
    ServicePort,
    categorize,
    has_usable_endpoints,
)

PORTALS_CONTAINER = naming.KUBE_PORTALS_CONTAINER
PORTALS_HOST = naming.KUBE_PORTALS_HOST
NODEPORT_CONTAINER = naming.KUBE_NODEPORT_CONTAINER
NODEPORT_HOST = naming.KUBE_NODEPORT_HOST
PORTALS_REJECT = naming.KUBE_PORTALS_REJECT

NAT_CHAINS = (PORTALS_CONTAINER, PORTALS_HOST, NODEPORT_CONTAINER, NODEPORT_HOST)
FILTER_CHAINS = (PORTALS_REJECT,)
CHAINS = {"nat": NAT_CHAINS, "filter": FILTER_CHAINS}

# Jumps from the built-in chains, in order (upstream's iptablesInit, plus the REJECT chain).
BUILTIN_JUMPS: dict[str, tuple[tuple[str, str], ...]] = {
    "nat": (
        ("PREROUTING", (f'-m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort '
                       f'rules" -j {PORTALS_CONTAINER}')),
        ("PREROUTING", (f'-m addrtype --dst-type LOCAL -m comment --comment "handle service NodePorts; NOTE: '
                       f'this must be the last rule in the chain" -j {NODEPORT_CONTAINER}')),
        ("OUTPUT", (f'-m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" '
                   f'-j {PORTALS_HOST}')),
        # 127.0.0.0/8 is left out: a DNAT from loopback to the node IP would be a martian.
        ("OUTPUT", (f'! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -m comment --comment "handle service '
                   f'NodePorts; NOTE: this must be the last rule in the chain" -j {NODEPORT_HOST}')),
    ),
    "filter": tuple(
        (chain, (f'-m conntrack --ctstate NEW -m comment --comment "refuse services without endpoints" '
                f'-j {PORTALS_REJECT}'))
        for chain in ("INPUT", "FORWARD", "OUTPUT")
    ),
}

CLUSTER = "cluster"
LOCAL = "local"


def portal_name(key: str, kind: str) -> str:
    """The proxy's name of one socket: `ns/name[:port]/cluster` or `.../local`."""
    return f"{key}/{kind}"


@dataclass(frozen=True)
class PortalNeeds:
    """What one service port needs from the proxy: its sockets, and the endpoints each one serves."""

    internal: str  # the portal kind internal (ClusterIP) traffic uses
    external: str | None  # the kind traffic from outside uses (None: not externally accessible)
    endpoints: dict[str, tuple[Endpoint, ...]]  # kind -> endpoints (may be empty)
    has_endpoints: bool  # some usable endpoint anywhere (else: REJECT)

    @property
    def kinds(self) -> tuple[str, ...]:
        wanted = {self.internal}
        if self.external is not None:
            wanted |= {self.external, CLUSTER}  # pods and the node use cluster endpoints for external IPs
        return tuple(sorted(wanted))


def portal_needs(sp: ServicePort, eps: Iterable[Endpoint]) -> PortalNeeds:
    """The portals of one service port (see the module docstring for the policy rules)."""
    eps = tuple(eps)
    cluster, local, _ = categorize(sp, eps)
    internal = LOCAL if sp.internal_policy_local else CLUSTER
    external = (LOCAL if sp.external_policy_local else CLUSTER) if sp.externally_accessible else None
    return PortalNeeds(internal, external, {CLUSTER: cluster, LOCAL: local}, has_usable_endpoints(eps))


def supported(sp: ServicePort) -> bool:
    """The userspace proxy forwards TCP streams and UDP datagrams (upstream had no SCTP either)."""
    return sp.protocol in ("TCP", "UDP")


def wanted_portals(state: ProxyState) -> dict[str, tuple[str, str, str]]:
    """{portal name: (service port key, kind, protocol)} for every supported service port."""
    out: dict[str, tuple[str, str, str]] = {}
    for key, sp in state.services.items():
        if not supported(sp):
            continue
        for kind in portal_needs(sp, state.endpoints_of(key)).kinds:
            out[portal_name(key, kind)] = (key, kind, sp.protocol)
    return out


@dataclass(frozen=True)
class ServiceRules:
    """The rule lines of one service port, by chain (without the `-A CHAIN ` prefix)."""

    nat: tuple[tuple[str, str], ...]
    filter: tuple[tuple[str, str], ...]


@dataclass
class Rendered:
    """One sync's restore text, plus the per-service lines a later partial render reuses."""

    text: str
    rule_count: int
    full: bool
    services: dict[str, ServiceRules] = field(default_factory=dict)
    body: str = ""  # the text without built-in jumps: equal bodies mean the chains hold the same rules

    def release(self) -> None:
        """Drop the text once applied: a partial render reuses `services`, the applier compares `body`."""
        self.text = ""


def render_service(sp: ServicePort, eps: Iterable[Endpoint], ports: Mapping[str, int],
                   node: NodeContext) -> ServiceRules:
    """Rules of one service port. `ports`: portal name -> the proxy's port (a missing portal means its
    socket could not be opened: no redirect is written for it, so the traffic is not captured)."""
    key = sp.key
    needs = portal_needs(sp, eps)
    proto = sp.proto_lower
    m = f"-p {proto} -m {proto}"
    node_ip = node.node_ips[0]

    def port_of(kind: str) -> int | None:
        if not needs.endpoints[kind]:
            return None  # nothing to forward to: REJECT/DROP below instead of a redirect
        return ports.get(portal_name(key, kind))

    nat: list[tuple[str, str]] = []
    filt: list[tuple[str, str]] = []

    def capture(what: str, dst: str | None, dport: int, container: str, host: str) -> None:
        match = (f"-d {dst}/32 " if dst else "") + f"{m} --dport {dport}"
        comment = f'-m comment --comment "{key}{" " + what if what else ""}"'
        internal = what == "cluster IP"
        # The kind that traffic from outside the node (or any pod, for the ClusterIP) is served by.
        main = needs.internal if internal else (needs.external or CLUSTER)
        if not internal and main == LOCAL:
            # Pod traffic to an external destination keeps using every endpoint (iptables mode's KUBE-EXT).
            p = port_of(CLUSTER)
            if p is not None:
                nat.append((container, f"-s {node.cluster_cidr} {comment} {match} -j REDIRECT --to-ports {p}"))
        p = port_of(main)
        if p is not None:
            nat.append((container, f"{comment} {match} -j REDIRECT --to-ports {p}"))
        # The node's own traffic: ClusterIP by internal policy, external destinations by cluster endpoints.
        p = port_of(needs.internal if internal else CLUSTER)
        if p is not None:
            nat.append((host, f"{comment} {match} -j DNAT --to-destination {node_ip}:{p}"))
        # Redirected packets no longer match these (their destination port is the proxy's).
        local_dst = "-m addrtype --dst-type LOCAL " if dst is None else ""
        if not needs.has_endpoints:
            filt.append((PORTALS_REJECT, (f'-m comment --comment "{key} has no endpoints" {local_dst}{match} '
                                         f"-j REJECT")))
        elif not needs.endpoints[main]:
            filt.append((PORTALS_REJECT, (f'-m comment --comment "{key} has no local endpoints" '
                                         f"{local_dst}{match} -j DROP")))

    capture("cluster IP", sp.cluster_ip, sp.port, PORTALS_CONTAINER, PORTALS_HOST)
    for eip in sp.external_ips:
        capture("external IP", eip, sp.port, PORTALS_CONTAINER, PORTALS_HOST)
    for lbip in sp.load_balancer_ips:
        capture("loadbalancer IP", lbip, sp.port, PORTALS_CONTAINER, PORTALS_HOST)
    if sp.node_port:
        capture("", None, sp.node_port, NODEPORT_CONTAINER, NODEPORT_HOST)
    return ServiceRules(tuple(nat), tuple(filt))


def _is_ours(target: str | None) -> bool:
    return target in NAT_CHAINS or target in FILTER_CHAINS


def _target(rule: str) -> str | None:
    words = rule.split()
    for i, w in enumerate(words[:-1]):
        if w in ("-j", "-g"):
            return words[i + 1]
    return None


def jumps_to_ours(saved: Mapping[str, Mapping[str, Iterable[Mapping[str, object]]]]) -> dict[str, list[str]]:
    """table -> the `-A <chain> ...` rules (as iptables-save prints them) that jump to this mode's chains
    from any chain not of this mode (normally the built-in ones). `saved`: parse_save() output."""
    out: dict[str, list[str]] = {}
    for table, chains in saved.items():
        for chain, rules in chains.items():
            if chain in CHAINS.get(table, ()):
                continue
            for r in rules:
                text = str(r.get("rule", ""))
                if _is_ours(_target(text)):
                    out.setdefault(table, []).append(text)
    return out


def _delete_line(rule: str) -> str:
    """`-A CHAIN spec` -> `-D CHAIN spec` (iptables-restore deletes the first rule matching spec)."""
    return "-D" + rule[2:] if rule.startswith("-A ") else rule


def render(state: ProxyState, node: NodeContext, ports: Mapping[str, int], *, full: bool = True,
           changed: Iterable[str] = (), previous: Rendered | None = None,
           existing_jumps: Mapping[str, Iterable[str]] | None = None) -> Rendered:
    """The restore text for every supported service port.

    Full: also deletes the jumps to this mode's chains listed in `existing_jumps` (see jumps_to_ours)
    and appends the wanted ones. Partial (`full=False` with `previous`): only the service ports in
    `changed` (keys, or `ns/name` for all ports of a Service) are rendered again, the others' lines are
    reused. The chains are always written whole: declaring a chain in a `--noflush` restore flushes it.
    """
    changed = set(changed)
    services: dict[str, ServiceRules] = {}
    for key in sorted(state.services):
        sp = state.services[key]
        if not supported(sp):
            continue
        old = previous.services.get(key) if previous is not None and not full else None
        if old is not None and key not in changed and sp.service_key not in changed:
            services[key] = old
        else:
            services[key] = render_service(sp, state.endpoints_of(key), ports, node)
    lines: list[str] = []
    body: list[str] = []
    count = 0
    for table, chains in (("filter", FILTER_CHAINS), ("nat", NAT_CHAINS)):
        rules = [f"-A {chain} {rule}" for sr in services.values()
                 for chain, rule in getattr(sr, table)]
        decls = [f":{c} - [0:0]" for c in chains]
        lines += [f"*{table}", *decls]
        if full:
            lines += [_delete_line(r) for r in (existing_jumps or {}).get(table, ())]
            lines += [f"-A {chain} {jump}" for chain, jump in BUILTIN_JUMPS[table]]
        lines += rules
        lines.append("COMMIT")
        body += [f"*{table}", *decls, *rules, "COMMIT"]
        count += len(rules) + len(BUILTIN_JUMPS[table])
    lines.append("")
    return Rendered(text="\n".join(lines), rule_count=count, full=full, services=services,
                    body="\n".join(body))


def cleanup_text(saved: Mapping[str, Mapping[str, Iterable[Mapping[str, object]]]]) -> str:
    """Restore text removing everything this mode programs (`kube-proxy --cleanup`, mode change): the
    jumps to its chains, then the chains. "" when nothing of this mode is present. `saved`: parse_save()
    output of the nat and filter tables."""
    jumps = jumps_to_ours(saved)
    lines: list[str] = []
    for table, chains in CHAINS.items():
        present = [c for c in chains if c in saved.get(table, {})]
        if not present and not jumps.get(table):
            continue
        lines.append(f"*{table}")
        lines += [f":{c} - [0:0]" for c in present]
        lines += [_delete_line(r) for r in jumps.get(table, ())]
        lines += [f"-X {c}" for c in present]
        lines.append("COMMIT")
    return "\n".join(lines + [""]) if lines else ""
