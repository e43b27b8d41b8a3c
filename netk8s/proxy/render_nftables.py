"""Pure: kube-proxy's nftables mode rendered as `nft -f` transactions for the table `ip kube-proxy`.

Layout, names and rule shapes follow kube-proxy's nftables proxier (kubernetes/kubernetes
pkg/proxy/nftables/proxier.go, setupNFTables, syncProxyRules and writeServiceToEndpointRules) configured
like a single-stack IPv4 cluster started with `--cluster-cidr` and `--nodeport-addresses primary` (the
nftables default): base chains `filter-*` (priority dstnat-10) and `nat-*`, the dispatch chain `services`
with the verdict maps `service-ips` (ipv4_addr . inet_proto . inet_service : verdict) and
`service-nodeports` (inet_proto . inet_service : verdict), `no-endpoint-services` / `no-endpoint-nodeports`
(goto reject-chain with no endpoint at all, drop with a Local policy and no local endpoint) checked from
`service-endpoints-check` / `nodeport-endpoints-check`, the `cluster-ips` set with `cluster-ips-check`
(reject for a port a ClusterIP does not serve), `nodeport-ips`, `firewall-ips`/`firewall-check`,
`mark-for-masquerade` (mark 0x4000) and `masquerading`; per service port the chains `service-`, `local-`,
`external-` and per endpoint `endpoint-` (with the affinity set `affinity-`), named by
naming.kube_nft_name. The one addition: `counter` on each endpoint's DNAT rule, so `netk8s rules` can
show how traffic spread.

Transactions. kube-proxy applies one transaction per sync: `add table`, then `add`+`flush` of each of
its chains and maps, then the elements. On this kernel one `nft -f` load with thousands of chains is very
slow, so a full render is split into batches, each one `nft -f` transaction, in an order where every
intermediate state is valid and traffic keeps flowing:
  1. the table, base and top-level chains, sets and maps (declared, not flushed: the maps keep serving);
  2. the per-service chains and affinity sets, BATCH_SERVICES service ports per transaction (each port's
     chains are added+flushed+filled in one transaction, endpoint chains before the chains jumping to them);
  3. the map and set elements: every map flushed and refilled in ONE transaction, so the switch to the new
     elements is atomic (no moment where a ClusterIP has no element);
     In the same transaction stale chains are flushed and stale affinity sets deleted.
Stale chains are NOT deleted by the sync that made them stale: the kernel releases a chain referenced from
a map element or an anonymous `numgen ... vmap` asynchronously, so `delete chain` right after fails with
EBUSY (kube-proxy says kernels before 6.2; this 6.18 kernel does it too for the anonymous vmaps, observed).
Like kube-proxy, they are listed in `Rendered.stale_chains` and the proxier deletes them a second later in a
transaction of their own (`delete_chains_text`), whose failure is only logged.
A partial render (kube-proxy's partial sync) rewrites only the chains of changed service ports and sends
only element differences (`delete element` / `add element`) and the stale flushes: one endpoint change of
one Service among 1,000 is one small transaction. It also renders only those ports: the previous Rendered
keeps a Summary per port (its chain, set and element names), so the others are not looked at.

Apply cost of that small transaction, measured at 10,000 Services (kernel 6.18, nft 1.0.6): `add chain` /
`flush chain` ~10 ms, but any `add rule` or `add element` 0.4-1.0 s, because nft first reads the table's
sets into its cache, and every service chain's `numgen random ... vmap { ... }` is an anonymous set
(10,000 of them). That, not Python, is what a one-endpoint change costs at that scale.

Batch size, measured on this machine (kernel 6.18, nft 1.0.6, 2 busy cores, each run in a fresh netns;
full render of N ClusterIP services x 5 endpoints, 1 in 10 a NodePort; wall time of all `nft -f` calls):
   1,000 services: one transaction 0.7 s; batches of 250: 0.6 s; 500: 0.8 s.
   5,000 services: one transaction 18.7 s; batches of 250: 5.8 s; 500: 5.0 s; 1,000: 5.1 s.
  10,000 services: batches of 500: 19.0 s; 1,000: 15.7 s; 2,000: 23.1 s (one transaction: ~145 s).
The cost of a transaction grows faster than linearly with its chains; BATCH_SERVICES = 1,000 is at the
bottom of the curve at every size measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from netk8s.model.naming import KUBE_PROXY_TABLE, kube_nft_name
from netk8s.proxy.model import (
    NO_ENDPOINTS,
    NO_LOCAL_ENDPOINTS,
    Endpoint,
    NodeContext,
    ProxyState,
    ServicePort,
    plan_service,
)

FAMILY = "ip"
TABLE = KUBE_PROXY_TABLE
T = f"{FAMILY} {TABLE}"  # how every command names the table

# Base chains: (name, type, hook, priority). Filter chains run before DNAT so they see service IPs.
# Priorities as numbers (dstnat = -100, srcnat = 100): nft 1.0.6 accepts the `dstnat` keyword only on
# the prerouting hook.
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", "-110"),
    ("filter-input", "filter", "input", "-110"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output", "filter", "output", "-110"),
    ("filter-output-post-dnat", "filter", "output", "-90"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
)
SERVICES = "services"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NODEPORT_IPS = "nodeport-ips"
CLUSTER_IPS = "cluster-ips"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_IPS = "firewall-ips"
FIREWALL_CHECK = "firewall-check"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"

# kube-proxy's nftablesJumpChains: (target, from base chain, extra match), in its order.
JUMP_CHAINS = (
    (NODEPORT_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-forward", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-output", "ct state new"),
    (FIREWALL_CHECK, "filter-prerouting", "ct state new"),
    (FIREWALL_CHECK, "filter-output", "ct state new"),
    (SERVICES, "nat-output", ""),
    (SERVICES, "nat-prerouting", ""),
    (MASQUERADING, "nat-postrouting", ""),
    (CLUSTER_IPS_CHECK, "filter-forward", "ct state new"),
    (CLUSTER_IPS_CHECK, "filter-output-post-dnat", "ct state new"),
)
TOP_CHAINS = (NODEPORT_ENDPOINTS_CHECK, SERVICE_ENDPOINTS_CHECK, FIREWALL_CHECK, SERVICES, MASQUERADING,
              CLUSTER_IPS_CHECK, MARK_MASQ, REJECT_CHAIN)

ADDR = "ipv4_addr"
IP_KEY = f"{ADDR} . inet_proto . inet_service"
PORT_KEY = "inet_proto . inet_service"
# Sets and maps whose elements the proxier owns: name -> (kind, type, comment), in kube-proxy's order.
CONTAINERS: dict[str, tuple[str, str, str]] = {
    CLUSTER_IPS: ("set", ADDR, "Active ClusterIPs"),
    NODEPORT_IPS: ("set", ADDR, "IPs that accept NodePort traffic"),
    NO_ENDPOINT_SERVICES: ("map", f"{IP_KEY} : verdict", "vmap to drop or reject packets to services with no endpoints"),
    NO_ENDPOINT_NODEPORTS: ("map", f"{PORT_KEY} : verdict",
                            "vmap to drop or reject packets to service nodeports with no endpoints"),
    FIREWALL_IPS: ("map", f"{IP_KEY} : verdict", "destinations that are subject to LoadBalancerSourceRanges"),
    SERVICE_IPS: ("map", f"{IP_KEY} : verdict", "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    SERVICE_NODEPORTS: ("map", f"{PORT_KEY} : verdict", "NodePort traffic"),
}

SERVICE_PREFIX = "service-"
LOCAL_PREFIX = "local-"
EXTERNAL_PREFIX = "external-"
ENDPOINT_PREFIX = "endpoint-"
AFFINITY_PREFIX = "affinity-"
FIREWALL_PREFIX = "firewall-"

# Service ports per `nft -f` transaction in a full render (see the module docstring for the measurements).
BATCH_SERVICES = 1000


@lru_cache(maxsize=1 << 17)
def _name(prefix: str, base: str) -> str:
    return kube_nft_name(prefix, base)


def _port_base(sp: ServicePort) -> str:
    """servicePortChainNameBase: `namespace/name/protocol/portName`."""
    return f"{sp.namespace}/{sp.name}/{sp.proto_lower}/{sp.port_name}"


def service_chain(sp: ServicePort) -> str:
    return _name(SERVICE_PREFIX, _port_base(sp))


def local_chain(sp: ServicePort) -> str:
    return _name(LOCAL_PREFIX, _port_base(sp))


def external_chain(sp: ServicePort) -> str:
    return _name(EXTERNAL_PREFIX, _port_base(sp))


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    """servicePortEndpointChainNameBase: `namespace/name/protocol/portName__ip/port`."""
    return _name(ENDPOINT_PREFIX, f"{_port_base(sp)}__{ep.ip}/{ep.port}")


def affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    return _name(AFFINITY_PREFIX, f"{_port_base(sp)}__{ep.ip}/{ep.port}")


def is_service_chain(name: str) -> bool:
    """kube-proxy's isServiceChainName: only per-service chains have a `/` in their name."""
    return "/" in name


def is_affinity_set(name: str) -> bool:
    return name.startswith(AFFINITY_PREFIX)


@dataclass
class ServiceOut:
    """What one service port contributes: its chains (creation order) with their rules, its affinity
    sets (name -> timeout seconds) and its map/set elements ((container, key) -> value)."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, int] = field(default_factory=dict)
    elements: list[tuple[str, str, str, str]] = field(default_factory=list)  # container, key, value, comment


@dataclass(frozen=True, slots=True)
class Summary:
    """What one service port put in the table, by name only (the strings are shared with the Rendered's
    chains and elements): enough for a partial render to take it out again without re-rendering it."""

    sp: ServicePort
    eps: tuple[Endpoint, ...]
    chains: tuple[str, ...]
    sets: tuple[tuple[str, int], ...]
    elements: tuple[tuple[str, str, str], ...]  # container, key, value
    rules: int


@dataclass
class Rendered:
    """One sync's `nft -f` transactions and what they leave programmed.

    `batches`: the transactions, applied in order (each one atomic). `chains`: {"kube-proxy": every chain
    of the table after applying}. `elements`: container -> {key: value} (value "" in sets), what the maps
    and sets hold; the next partial render diffs against it. `sets`: affinity set -> timeout.
    `service_chains`: service port key -> its chains (for `netk8s rules` and the canary).
    `rule_count`: rules in the table after applying. `stale_chains`: per-service chains nothing uses any
    more, flushed by these transactions and still in `chains` until the proxier deletes them.
    """

    batches: list[str]
    chains: dict[str, set[str]]
    elements: dict[str, dict[str, str]]
    sets: dict[str, int]
    rule_count: int
    full: bool = True
    service_chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stale_chains: tuple[str, ...] = ()
    # Per service port, what it contributed (the next partial render adjusts only the changed ones).
    summaries: dict[str, Summary] = field(default_factory=dict, repr=False)

    @property
    def text(self) -> str:
        """Every transaction, in order (for logs and tests; the applier sends `batches` one by one)."""
        return "".join(self.batches)

    def release(self) -> None:
        """Drop the transactions once applied: the next render needs only the names and elements."""
        self.batches = []


_VERDICTS = {"": "", NO_ENDPOINTS: f"goto {REJECT_CHAIN}", NO_LOCAL_ENDPOINTS: "drop"}  # ServicePlan verdicts


def _render_service(sp: ServicePort, eps: tuple[Endpoint, ...], node: NodeContext) -> ServiceOut:
    out = ServiceOut()
    key = sp.key
    proto = sp.proto_lower
    port = str(sp.port)
    plan = plan_service(sp, eps)
    # Hash only the names this port can use (hashing is most of a render's time).
    cluster_chain = service_chain(sp)
    local = local_chain(sp) if plan.needs_local_chain else ""
    ext = external_chain(sp) if plan.needs_external_chain else ""
    cluster, local_eps, reachable = plan.cluster, plan.local, plan.reachable
    internal_chain = local if plan.internal_local else cluster_chain
    external_policy_chain = local if plan.external_local else cluster_chain
    int_verdict, ext_verdict = _VERDICTS[plan.internal_verdict], _VERDICTS[plan.external_verdict]

    els = out.elements
    # Capture the ClusterIP.
    els.append((CLUSTER_IPS, sp.cluster_ip or "", "", ""))
    if plan.has_internal:
        els.append((SERVICE_IPS, f"{sp.cluster_ip} . {proto} . {port}", f"goto {internal_chain}", ""))
    else:
        els.append((NO_ENDPOINT_SERVICES, f"{sp.cluster_ip} . {proto} . {port}", int_verdict, key))
    # Capture externalIPs and load-balancer ingress.
    for ip in (*sp.external_ips, *sp.load_balancer_ips):
        if plan.has_endpoints:
            els.append((SERVICE_IPS, f"{ip} . {proto} . {port}", f"goto {ext}", ""))
        if not plan.has_external:
            els.append((NO_ENDPOINT_SERVICES, f"{ip} . {proto} . {port}", ext_verdict, key))
    # Capture nodeports.
    if sp.node_port:
        if plan.has_endpoints:
            els.append((SERVICE_NODEPORTS, f"{proto} . {sp.node_port}", f"goto {ext}", ""))
        if not plan.has_external:
            els.append((NO_ENDPOINT_NODEPORTS, f"{proto} . {sp.node_port}", ext_verdict, key))
    # healthCheckNodePort: nothing here; the HealthCheckServer listens on it and nftables mode has no
    # filter rule in the way (kube-proxy's nftables proxier adds none either).

    affinity = plan.affinity
    eps_chains = {ep.addr: endpoint_chain(sp, ep) for ep in reachable}
    # Endpoint chains first: the service chains jump to them, and a transaction adds chains in order.
    for ep in reachable:
        chain = eps_chains[ep.addr]
        rules = [f"ip saddr {ep.ip} jump {MARK_MASQ}"]  # hairpin: an endpoint reaching itself
        if affinity:
            aff = affinity_set(sp, ep)
            out.sets[aff] = int(sp.affinity_timeout or 0)
            rules.append(f"update @{aff} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} counter dnat to {ep.addr}")
        out.chains[chain] = rules
    if plan.uses_cluster_chain:
        out.chains[cluster_chain] = _endpoint_rules(sp, cluster, eps_chains)
    if plan.uses_local_chain:
        out.chains[local] = _endpoint_rules(sp, local_eps, eps_chains)
    # Internal traffic: masquerade off-cluster sources reaching the ClusterIP (kube-proxy --cluster-cidr).
    if plan.has_internal and internal_chain in out.chains:
        out.chains[internal_chain].insert(
            0, f"ip daddr {sp.cluster_ip} {proto} dport {port} ip saddr != {node.cluster_cidr} jump {MARK_MASQ}")
    # External traffic: every external destination goes to external-, which applies the policy.
    if plan.uses_external_chain:
        rules = []
        if plan.masquerade_external:
            rules.append(f"jump {MARK_MASQ}")
        else:
            rules.append(f'ip saddr {node.cluster_cidr} goto {cluster_chain} comment "short-circuit pod traffic"')
            rules.append(f'fib saddr type local jump {MARK_MASQ} comment "masquerade local traffic"')
            rules.append(f'fib saddr type local goto {cluster_chain} comment "short-circuit local traffic"')
        if plan.has_external:
            rules.append(f"goto {external_policy_chain}")
        out.chains[ext] = rules
    return out


def _endpoint_rules(sp: ServicePort, eps: tuple[Endpoint, ...], chains: dict[str, str]) -> list[str]:
    """writeServiceToEndpointRules: affinity checks first, then one `numgen random` verdict map."""
    rules = []
    if sp.affinity_timeout is not None:
        for ep in eps:
            rules.append(f"ip saddr @{affinity_set(sp, ep)} goto {chains[ep.addr]}")
    vmap = ", ".join(f"{i} : goto {chains[ep.addr]}" for i, ep in enumerate(eps))
    rules.append(f"numgen random mod {len(eps)} vmap {{ {vmap} }}")
    return rules


# ---------------------------------------------------------------------------------------------------------
# Text


def _chain_lines(name: str, rules: list[str]) -> list[str]:
    lines = [f"add chain {T} {name}", f"flush chain {T} {name}"]
    lines.extend(f"add rule {T} {name} {r}" for r in rules)
    return lines


def _set_line(name: str, timeout: int) -> str:
    # "dynamic" too: kube-proxy found that sets updated from the packet path get it added by the kernel,
    # after which re-adding the set without it fails as a change of flags.
    return f"add set {T} {name} {{ type {ADDR} ; flags dynamic,timeout ; timeout {timeout}s ; }}"


def _element(container: str, key: str, value: str, comment: str = "") -> str:
    note = f' comment "{comment}"' if comment else ""
    body = f"{key}{note} : {value}" if CONTAINERS[container][0] == "map" else f"{key}{note}"
    return f"add element {T} {container} {{ {body} }}"


def _delete_element(container: str, key: str) -> str:
    return f"delete element {T} {container} {{ {key} }}"


def base_lines(node: NodeContext) -> list[str]:
    """setupNFTables: the table, base chains with their jumps, top-level chains, sets and maps.

    Maps and sets are declared here but not flushed (the element transaction replaces their contents
    atomically); top-level chains are flushed and refilled, in one transaction."""
    mark = f"0x{1 << node.masquerade_bit:08x}"  # kube-proxy prints it with %#08x
    lines = [f'add table {T} {{ comment "rules for kube-proxy" ; }}']
    for name, kind, hook, prio in BASE_CHAINS:
        lines.append(f"add chain {T} {name} {{ type {kind} hook {hook} priority {prio} ; }}")
        lines.append(f"flush chain {T} {name}")
    created: set[str] = set()
    for target, source, extra in JUMP_CHAINS:
        if target not in created:
            created.add(target)
            lines += [f"add chain {T} {target}", f"flush chain {T} {target}"]
        lines.append(f"add rule {T} {source} {extra + ' ' if extra else ''}jump {target}")
    for chain in (SERVICES, CLUSTER_IPS_CHECK, MASQUERADING, MARK_MASQ):
        if chain not in created:
            created.add(chain)
            lines += [f"add chain {T} {chain}", f"flush chain {T} {chain}"]
    lines.append(f"add rule {T} {MARK_MASQ} mark set mark or {mark}")
    lines.append(f"add rule {T} {MASQUERADING} mark and {mark} == 0 return")
    lines.append(f"add rule {T} {MASQUERADING} mark set mark xor {mark}")
    lines.append(f"add rule {T} {MASQUERADING} masquerade fully-random")
    for name, (kind, typ, comment) in CONTAINERS.items():
        lines.append(f'add {kind} {T} {name} {{ type {typ} ; comment "{comment}" ; }}')
    lines.append(f'add rule {T} {CLUSTER_IPS_CHECK} ip daddr @{CLUSTER_IPS} reject '
                 f'comment "Reject traffic to invalid ports of ClusterIPs"')
    lines.append(f'add chain {T} {REJECT_CHAIN} {{ comment "helper for @{NO_ENDPOINT_SERVICES} / '
                 f'@{NO_ENDPOINT_NODEPORTS}" ; }}')
    lines.append(f"flush chain {T} {REJECT_CHAIN}")
    lines.append(f"add rule {T} {REJECT_CHAIN} reject")
    lines.append(f"add rule {T} {SERVICE_ENDPOINTS_CHECK} ip daddr . meta l4proto . th dport vmap "
                 f"@{NO_ENDPOINT_SERVICES}")
    lines.append(f"add rule {T} {NODEPORT_ENDPOINTS_CHECK} ip daddr @{NODEPORT_IPS} meta l4proto . th dport "
                 f"vmap @{NO_ENDPOINT_NODEPORTS}")
    lines.append(f"add rule {T} {FIREWALL_CHECK} ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}")
    lines.append(f"add rule {T} {SERVICES} ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}")
    lines.append(f"add rule {T} {SERVICES} ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap "
                 f"@{SERVICE_NODEPORTS}")
    return lines


def _base_rule_count() -> int:
    return sum(1 for line in base_lines(NodeContext("", ())) if line.startswith("add rule"))


BASE_RULES = _base_rule_count()


# ---------------------------------------------------------------------------------------------------------
# Render


def _service_matches(sp: ServicePort, changed: set[str]) -> bool:
    return sp.key in changed or sp.service_key in changed


def _tx(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _service_lines(out: ServiceOut, prev_chains: set[str], prev_sets: dict[str, int]) -> list[str]:
    """The transaction lines (re)writing one service port's sets and chains."""
    lines: list[str] = []
    recreate = [s for s, t in out.sets.items() if s in prev_sets and prev_sets[s] != t]
    if recreate:
        # A set's timeout cannot change in place: empty the chains using it, then re-create it.
        lines += [f"flush chain {T} {c}" for c in out.chains if c in prev_chains]
        lines += [f"delete set {T} {s}" for s in recreate]
    lines += [_set_line(s, t) for s, t in out.sets.items()]
    for chain, rules in out.chains.items():
        lines += _chain_lines(chain, rules)
    return lines


def _summary(sp: ServicePort, eps: tuple[Endpoint, ...], out: ServiceOut) -> Summary:
    return Summary(sp, eps, tuple(out.chains), tuple(out.sets.items()),
                   tuple((c, k, v) for c, k, v, _ in out.elements), sum(len(r) for r in out.chains.values()))


@dataclass
class _Work:
    """A render's accumulators: what the table holds after it (elements, active chains and sets, per-port
    summaries), and which service ports to render now (`keys`)."""

    elements: dict[str, dict[str, str]]
    active: set[str]
    active_sets: dict[str, int]
    service_chains: dict[str, tuple[str, ...]]
    summaries: dict[str, Summary]
    rule_count: int
    keys: list[str]
    prev_chains: set[str]
    prev_sets: dict[str, int]
    incremental: bool  # a partial render on top of the previous summaries
    comments: dict[tuple[str, str], str] = field(default_factory=dict)
    touched: set[tuple[str, str]] = field(default_factory=set)  # (container, key) of elements that may change
    service_txs: list[str] = field(default_factory=list)  # complete transactions of batch_services ports
    pending: list[str] = field(default_factory=list)  # the ports of the transaction being filled


def _start(state: ProxyState, node: NodeContext, full: bool, changed: set[str], previous: Rendered | None) -> _Work:
    """Full: an empty table plus the base chains. Partial: what the previous sync left, with the service
    ports that changed (or went) taken out; only those are rendered again, the others are not looked at
    beyond their key."""
    prev_chains = set((previous.chains if previous else {}).get(TABLE, ()))
    prev_sets = dict(previous.sets) if previous else {}
    prev_summaries = previous.summaries if previous is not None and not full else {}
    if not prev_summaries:
        elements: dict[str, dict[str, str]] = {name: {} for name in CONTAINERS}
        for ip in node.node_ips:
            elements[NODEPORT_IPS][ip] = ""
        return _Work(elements, set(TOP_CHAINS) | {c[0] for c in BASE_CHAINS}, {}, {}, {}, BASE_RULES,
                     sorted(state.services), prev_chains, prev_sets, False)
    assert previous is not None
    work = _Work({name: dict(previous.elements.get(name, {})) for name in CONTAINERS},
                 prev_chains - set(previous.stale_chains), dict(previous.sets), dict(previous.service_chains),
                 dict(prev_summaries), previous.rule_count, [], prev_chains, prev_sets, True)
    redo = sorted(
        {k for k, sp in state.services.items() if k not in prev_summaries or sp.key in changed
         or sp.service_key in changed or prev_summaries[k].sp != sp
         or prev_summaries[k].eps is not state.endpoints_of(k)
         and prev_summaries[k].eps != state.endpoints_of(k)}
        | (prev_summaries.keys() - state.services.keys()))
    for key in redo:
        old = work.summaries.pop(key, None)
        if old is None:
            continue
        for container, k, value in old.elements:
            work.touched.add((container, k))
            if work.elements[container].get(k) == value:
                del work.elements[container][k]
        work.active.difference_update(old.chains)
        for name, _ in old.sets:
            work.active_sets.pop(name, None)
        work.service_chains.pop(key, None)
        work.rule_count -= old.rules
    work.keys = [k for k in redo if k in state.services]
    return work


def _render_services(work: _Work, state: ProxyState, node: NodeContext, full: bool, changed: set[str],
                     batch_services: int) -> None:
    """Render work.keys: their elements and chains go into `work`, their chain/set lines are joined per
    port and then per transaction as soon as a transaction is full (at 10,000 Services the lines alone
    would be ~40 MB on top of the text)."""
    elements, touched, comments, pending = work.elements, work.touched, work.comments, work.pending
    prev_chains, prev_sets = work.prev_chains, work.prev_sets
    for key in work.keys:
        sp = state.services[key]
        eps = state.endpoints_of(key)
        out = _render_service(sp, eps, node)
        for container, k, value, comment in out.elements:
            elements[container][k] = value
            touched.add((container, k))
            if comment:
                comments[(container, k)] = comment
        work.service_chains[key] = tuple(out.chains)
        work.active.update(out.chains)
        work.active_sets.update(out.sets)
        summary = _summary(sp, eps, out)
        work.summaries[key] = summary
        work.rule_count += summary.rules
        if full or work.incremental or _service_matches(sp, changed) or not prev_chains.issuperset(out.chains) \
                or any(prev_sets.get(s) != t for s, t in out.sets.items()):
            if len(pending) == batch_services:
                work.service_txs.append("".join(pending))
                pending.clear()
            lines = _service_lines(out, prev_chains, prev_sets)
            pending.append(_tx(lines) if lines else "")


def _stale(work: _Work, previous: Rendered | None, existing: set[str]) -> tuple[list[str], list[str]]:
    """(per-service chains nothing uses any more, the lines that flush them and delete stale sets). `add`
    first: flushing a chain someone already deleted is then not an error. Chains a previous sync already
    flushed are left alone (they wait for the proxier's deletion)."""
    known = work.prev_chains | {c for c in existing if not is_affinity_set(c)}
    stale = sorted(c for c in known - work.active if is_service_chain(c))
    known_sets = set(work.prev_sets) | {s for s in existing if is_affinity_set(s)}
    stale_sets = sorted(known_sets - set(work.active_sets))
    already = set(previous.stale_chains) if previous else set()
    deletions = [line for c in stale if c not in already
                 for line in (f"add chain {T} {c}", f"flush chain {T} {c}")]
    deletions += [f"delete set {T} {s}" for s in stale_sets]
    return stale, deletions


def _element_lines(work: _Work, previous: Rendered | None, full: bool) -> list[str]:
    """Full: flush every map and set, then add every element. Partial: the element changes against
    `previous` (only those of the re-rendered service ports when rendering incrementally)."""
    elements, comments = work.elements, work.comments
    lines: list[str] = []
    if full:
        kinds = {name: kind for name, (kind, _, _) in CONTAINERS.items()}
        lines += [f"flush {kinds[name]} {T} {name}" for name in CONTAINERS]
        for name in CONTAINERS:
            for k, value in elements[name].items():
                lines.append(_element(name, k, value, comments.get((name, k), "")))
        return lines
    assert previous is not None
    for name in CONTAINERS:
        old_map, new = previous.elements.get(name, {}), elements[name]
        if work.incremental:
            mine = sorted(k for c, k in work.touched if c == name)
            olds = [(k, old_map[k]) for k in mine if k in old_map]
            news = [(k, new[k]) for k in mine if k in new]
        else:
            olds, news = list(old_map.items()), list(new.items())
        for k, value in olds:
            if k not in new or new[k] != value:
                lines.append(_delete_element(name, k))
        for k, value in news:
            if old_map.get(k) != value:
                lines.append(_element(name, k, value, comments.get((name, k), "")))
    return lines


def _batches(work: _Work, node: NodeContext, full: bool, tail_lines: list[str]) -> list[str]:
    """The transactions in order. Full: the base, the service ports' batches, then the elements and
    deletions. Large partial syncs (a namespace deleted...) are split like full ones; the common small one
    is a single transaction (its chains, then the element changes and stale chains)."""
    batches: list[str] = []
    last = "".join(work.pending)
    work.pending.clear()
    if full:
        batches.append(_tx(base_lines(node)))
        batches.extend(work.service_txs)
        if last:
            batches.append(last)
        batches.append(_tx(tail_lines))
    else:
        batches.extend(work.service_txs)
        tail = last + (_tx(tail_lines) if tail_lines else "")
        if tail:
            batches.append(tail)
    work.service_txs.clear()
    return batches


def _render(state: ProxyState, node: NodeContext, *, full: bool, changed: set[str], previous: Rendered | None,
            existing: set[str], batch_services: int) -> Rendered:
    work = _start(state, node, full, changed, previous)
    _render_services(work, state, node, full, changed, batch_services)
    stale, deletions = _stale(work, previous, existing)
    batches = _batches(work, node, full, _element_lines(work, previous, full) + deletions)
    return Rendered(
        batches=batches,
        chains={TABLE: work.active | set(stale)},
        elements=work.elements,
        sets=work.active_sets,
        rule_count=work.rule_count,
        full=full,
        service_chains=work.service_chains,
        stale_chains=tuple(stale),
        summaries=work.summaries,
    )


def render_full(state: ProxyState, node: NodeContext, *, existing: Iterable[str] = (),
                batch_services: int = BATCH_SERVICES) -> Rendered:
    """Every chain, set, map and element, in batches (module docstring). `existing`: chain and set names
    present in the table (from `nft list`, or a previous Rendered's chains); per-service chains and
    affinity sets among them that are no longer needed are deleted, as kube-proxy does."""
    return _render(state, node, full=True, changed=set(), previous=None, existing=set(existing),
                   batch_services=batch_services)


def render_partial(state: ProxyState, node: NodeContext, changed: set[str], previous: Rendered,
                   batch_services: int = BATCH_SERVICES) -> Rendered:
    """kube-proxy's partial sync: the chains of the service ports in `changed` (keys `ns/name:port`, or
    `ns/name` for every port of a Service) are rewritten, the maps and sets get only the elements that
    differ from `previous`, and chains/sets nothing uses any more are deleted."""
    return _render(state, node, full=False, changed=set(changed), previous=previous, existing=set(),
                   batch_services=batch_services)


def delete_chains_text(chains: Iterable[str]) -> str:
    """One transaction deleting stale chains a previous sync flushed (`add` first: already gone is fine)."""
    names = sorted(chains)
    lines = [f"add chain {T} {c}" for c in names] + [f"flush chain {T} {c}" for c in names]
    lines += [f"delete chain {T} {c}" for c in names]
    return _tx(lines)


def chains_for_cleanup(existing: object = ()) -> str:
    """`nft -f` text removing everything this mode installs (`kube-proxy --cleanup`, a proxy mode change):
    the whole table. `add` first so that deleting a table that is not there is not an error."""
    return f"add table {T}\ndelete table {T}\n"
