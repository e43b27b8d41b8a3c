"""Pure: kube-proxy's iptables mode rendered as ONE iptables-restore text (tables filter and nat).

Chain layout, chain names, rule order and comments follow kube-proxy's iptables proxier
(kubernetes/kubernetes pkg/proxy/iptables/proxier.go, syncProxyRules and writeServiceToEndpointRules),
configured like a cluster started with `--cluster-cidr` (off-cluster sources to a ClusterIP are
masqueraded) and masquerade bit 14. Services are written in sorted key order so the text is stable.

Where netk8s departs from kube-proxy, and why:
- Like kube-proxy, the restore text never touches the built-in chains (PREROUTING, OUTPUT, POSTROUTING,
  INPUT, FORWARD): other rules there (a user's, another component's) are not ours to flush. The jumps
  from them to the KUBE- chains (BUILTIN_JUMPS, kube-proxy's iptablesJumpChains) are ensured one by one
  on full syncs by the proxier (netk8s.dataplane.iptables.ensure_rules: check, then insert at the top).
- kube-proxy finds stale chains with iptables-save; here the caller passes what exists (`existing`) or
  the previous Rendered, which lists every chain the last sync left behind.
- No loadBalancerSourceRanges (KUBE-FW-) and no localhost NodePorts (no KUBE-FIREWALL, no nfacct).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from netk8s.model.iptsave import chain_names, table_lines
from netk8s.model.naming import (
    EXT_PREFIX,
    FW_PREFIX,
    KUBE_CHAIN_PREFIX,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    SEP_PREFIX,
    SVC_PREFIX,
    SVL_PREFIX,
    kube_chain_hash,
)
from netk8s.proxy.model import (
    NO_ENDPOINTS,
    NO_LOCAL_ENDPOINTS,
    Endpoint,
    NodeContext,
    ProxyState,
    ServicePort,
    plan_service,
)

SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX)

# The top-level chains every sync rewrites, in kube-proxy's declaration order.
FILTER_TOP_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL)
NAT_TOP_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)

# kube-proxy's iptablesJumpChains, in the order its `-I` (prepend) calls leave them in each built-in chain.
_NEW = '-m conntrack --ctstate NEW '
BUILTIN_JUMPS: dict[str, dict[str, tuple[str, ...]]] = {
    "filter": {
        "INPUT": (
            f'{_NEW}-m comment --comment "kubernetes load balancer firewall" -j {KUBE_PROXY_FIREWALL}',
            f'-m comment --comment "kubernetes health check service ports" -j {KUBE_NODEPORTS}',
            (f'{_NEW}-m comment --comment "kubernetes externally-visible service portals" '
             f'-j {KUBE_EXTERNAL_SERVICES}'),
        ),
        "FORWARD": (
            f'{_NEW}-m comment --comment "kubernetes load balancer firewall" -j {KUBE_PROXY_FIREWALL}',
            f'-m comment --comment "kubernetes forwarding rules" -j {KUBE_FORWARD}',
            f'{_NEW}-m comment --comment "kubernetes service portals" -j {KUBE_SERVICES}',
            (f'{_NEW}-m comment --comment "kubernetes externally-visible service portals" '
             f'-j {KUBE_EXTERNAL_SERVICES}'),
        ),
        "OUTPUT": (
            f'{_NEW}-m comment --comment "kubernetes load balancer firewall" -j {KUBE_PROXY_FIREWALL}',
            f'{_NEW}-m comment --comment "kubernetes service portals" -j {KUBE_SERVICES}',
        ),
    },
    "nat": {
        "PREROUTING": (f'-m comment --comment "kubernetes service portals" -j {KUBE_SERVICES}',),
        "OUTPUT": (f'-m comment --comment "kubernetes service portals" -j {KUBE_SERVICES}',),
        "POSTROUTING": (f'-m comment --comment "kubernetes postrouting rules" -j {KUBE_POSTROUTING}',),
    },
}

JUMP_COUNT = sum(len(jumps) for chains in BUILTIN_JUMPS.values() for jumps in chains.values())

# pkg/proxy/iptables/proxier.go largeClusterEndpointsThreshold: above it, per-endpoint comments are dropped.
LARGE_CLUSTER_ENDPOINTS = 1000


@lru_cache(maxsize=1 << 17)
def _chain_name(prefix: str, text: str) -> str:
    """Chain names are recomputed on every sync for every endpoint: cached per (prefix, key)."""
    return kube_chain_hash(prefix, text)


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)


def svc_chain(sp: ServicePort) -> str:
    """KUBE-SVC-: hash of servicePortName.String() + lowercase protocol (servicePortPolicyClusterChain)."""
    return _chain_name(SVC_PREFIX, sp.key + sp.proto_lower)


def svl_chain(sp: ServicePort) -> str:
    return _chain_name(SVL_PREFIX, sp.key + sp.proto_lower)


def ext_chain(sp: ServicePort) -> str:
    return _chain_name(EXT_PREFIX, sp.key + sp.proto_lower)


def fw_chain(sp: ServicePort) -> str:
    return _chain_name(FW_PREFIX, sp.key + sp.proto_lower)


def sep_chain(sp: ServicePort, ep: Endpoint) -> str:
    """KUBE-SEP-: hash of servicePortName.String() + lowercase protocol + "ip:port"."""
    return _chain_name(SEP_PREFIX, sp.key + sp.proto_lower + ep.addr)


_PROBABILITIES: dict[int, str] = {}


def probability(n: int) -> str:
    """1/n printed like kube-proxy's computeProbability (`%0.10f`)."""
    p = _PROBABILITIES.get(n)
    if p is None:
        p = _PROBABILITIES[n] = "%0.10f" % (1.0 / n)
    return p


@dataclass
class Rendered:
    """One sync's restore text and what it leaves programmed.

    `chains`: table -> every chain this proxy owns after the text is applied (top-level chains and all
    active per-service chains, including those a partial text left untouched); the next partial render
    diffs against it. `rule_count`: rules programmed after applying (kube-proxy's iptables_rules_total,
    built-in jumps included). `service_chains`: service port key -> its nat chains (for `netk8s rules`).
    """

    text: str
    chains: dict[str, set[str]]
    rule_count: int
    full: bool = True
    service_chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deleted_chains: tuple[str, ...] = ()

    def release(self) -> None:
        """Drop the text once applied: the next render needs only `chains` (saves ~20 MB at 10,000 x 5)."""
        self.text = ""


@dataclass
class _ServiceOut:
    """The lines one service port contributes, split by where they go."""

    filter_rules: list[str]
    top_nat_rules: list[str]  # KUBE-SERVICES / KUBE-NODEPORTS
    chains: list[str]  # its own nat chains, declaration order
    chain_rules: list[str]  # rules in its own chains


def _q(comment: str) -> str:
    return f'"{comment}"' if " " in comment else comment


_VERDICTS = {NO_ENDPOINTS: ("REJECT", "has no endpoints"), NO_LOCAL_ENDPOINTS: ("DROP", "has no local endpoints")}


def _verdict(verdict: str, key: str) -> tuple[str, str]:
    """(target, quoted comment) of a ServicePlan verdict; ("", "") for none."""
    if not verdict:
        return "", ""
    target, why = _VERDICTS[verdict]
    return target, f'"{key} {why}"'


def _render_service(sp: ServicePort, eps: tuple[Endpoint, ...], node: NodeContext, mark_masq: str,
                    large: bool) -> _ServiceOut:
    key = sp.key
    proto = sp.proto_lower
    mproto = f"-m {proto} -p {proto}"
    plan = plan_service(sp, eps)
    cluster, local, reachable = plan.cluster, plan.local, plan.reachable
    # Hash only the names this port can use (hashing is most of a render's time).
    svc, svl, ext = svc_chain(sp), svl_chain(sp) if plan.needs_local_chain else "", \
        ext_chain(sp) if plan.needs_external_chain else ""
    internal_chain = svl if plan.internal_local else svc
    external_policy_chain = svl if plan.external_local else svc
    int_target, int_comment = _verdict(plan.internal_verdict, key)
    ext_target, ext_comment = _verdict(plan.external_verdict, key)

    filt: list[str] = []
    top: list[str] = []
    chains: list[str] = []
    rules: list[str] = []
    cip, port = sp.cluster_ip, sp.port

    # Capture the ClusterIP.
    if plan.has_internal:
        top.append(f'-A {KUBE_SERVICES} -m comment --comment "{key} cluster IP" {mproto} -d {cip} '
                   f'--dport {port} -j {internal_chain}')
    else:
        filt.append(f'-A {KUBE_SERVICES} -m comment --comment {int_comment} {mproto} -d {cip} '
                    f'--dport {port} -j {int_target}')
    # Capture externalIPs.
    for eip in sp.external_ips:
        if plan.has_endpoints:
            top.append(f'-A {KUBE_SERVICES} -m comment --comment "{key} external IP" {mproto} -d {eip} '
                       f'--dport {port} -j {ext}')
        if not plan.has_external:
            filt.append(f'-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {mproto} '
                        f'-d {eip} --dport {port} -j {ext_target}')
    # Capture load-balancer ingress.
    for lbip in sp.load_balancer_ips:
        if plan.has_endpoints:
            top.append(f'-A {KUBE_SERVICES} -m comment --comment "{key} loadbalancer IP" {mproto} '
                       f'-d {lbip} --dport {port} -j {ext}')
    if not plan.has_external:
        for lbip in sp.load_balancer_ips:
            filt.append(f'-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {mproto} '
                        f'-d {lbip} --dport {port} -j {ext_target}')
    # Capture nodeports.
    if sp.node_port:
        if plan.has_endpoints:
            top.append(f'-A {KUBE_NODEPORTS} -m comment --comment {key} {mproto} --dport {sp.node_port} '
                       f'-j {ext}')
        if not plan.has_external:
            filt.append(f'-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} '
                        f'-m addrtype --dst-type LOCAL {mproto} --dport {sp.node_port} -j {ext_target}')
    # Capture healthCheckNodePorts (accepted whether or not this node has local endpoints).
    if sp.health_check_node_port:
        filt.append(f'-A {KUBE_NODEPORTS} -m comment --comment "{key} health check node port" '
                    f'-m tcp -p tcp --dport {sp.health_check_node_port} -j ACCEPT')

    # Internal traffic: masquerade off-cluster sources reaching the ClusterIP (kube-proxy --cluster-cidr).
    if plan.has_internal:
        rules.append(f'-A {internal_chain} -m comment --comment "{key} cluster IP" {mproto} -d {cip} '
                     f'--dport {port} ! -s {node.cluster_cidr} -j {KUBE_MARK_MASQ}')
    # External traffic: every external destination jumps to KUBE-EXT-, which applies the policy.
    if plan.uses_external_chain:
        chains.append(ext)
        if plan.masquerade_external:
            rules.append(f'-A {ext} -m comment --comment "masquerade traffic for {key} external destinations" '
                         f'-j {KUBE_MARK_MASQ}')
        else:
            rules.append(f'-A {ext} -m comment --comment "pod traffic for {key} external destinations" '
                         f'-s {node.cluster_cidr} -j {svc}')
            rules.append(f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {key} external '
                         f'destinations" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}')
            rules.append(f'-A {ext} -m comment --comment "route LOCAL traffic for {key} external '
                         f'destinations" -m addrtype --src-type LOCAL -j {svc}')
        if plan.has_external:
            rules.append(f'-A {ext} -j {external_policy_chain}')
    seps = {ep.addr: sep_chain(sp, ep) for ep in reachable}
    if plan.uses_cluster_chain:
        chains.append(svc)
        _endpoint_rules(rules, sp, svc, cluster, seps, large)
    if plan.uses_local_chain:
        chains.append(svl)
        _endpoint_rules(rules, sp, svl, local, seps, large)
    # Per-endpoint chains.
    svc_comment = "" if large else f" -m comment --comment {key}"
    for ep in reachable:
        sep = seps[ep.addr]
        chains.append(sep)
        rules.append(f'-A {sep}{svc_comment} -s {ep.ip} -j {KUBE_MARK_MASQ}')
        recent = f" -m recent --name {sep} --set" if sp.affinity_timeout is not None else ""
        rules.append(f'-A {sep}{svc_comment}{recent} {mproto} -j DNAT --to-destination {ep.addr}')
    return _ServiceOut(filt, top, chains, rules)


def _endpoint_rules(rules: list[str], sp: ServicePort, chain: str, eps: tuple[Endpoint, ...],
                    sep_names: dict[str, str], large: bool) -> None:
    """writeServiceToEndpointRules: affinity checks first, then the 1/(n-i) random ladder."""
    key = sp.key
    seps = [sep_names[ep.addr] for ep in eps]
    comments = ["" if large else f' -m comment --comment "{key} -> {ep.addr}"' for ep in eps]
    if sp.affinity_timeout is not None:
        for sep, comment in zip(seps, comments):
            rules.append(f'-A {chain}{comment} -m recent --name {sep} --rcheck --seconds '
                         f'{sp.affinity_timeout} --reap -j {sep}')
    n = len(eps)
    for i, (sep, comment) in enumerate(zip(seps, comments)):
        if i < n - 1:
            rules.append(f'-A {chain}{comment} -m statistic --mode random --probability {probability(n - i)} '
                         f'-j {sep}')
        else:
            rules.append(f'-A {chain}{comment} -j {sep}')


def _service_matches(sp: ServicePort, changed: set[str]) -> bool:
    return sp.key in changed or sp.service_key in changed


def _render(state: ProxyState, node: NodeContext, *, full: bool, changed: set[str],
            previous_nat: set[str], existing: set[str]) -> Rendered:
    mark = node.masquerade_mark
    total_eps = sum(len(state.endpoints_of(k)) for k in state.services)
    large = total_eps > LARGE_CLUSTER_ENDPOINTS

    filter_rules: list[str] = []
    nat_decls: list[str] = []
    nat_rules: list[str] = [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
        (f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
         f"-j MASQUERADE --random-fully"),
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    active_nat: set[str] = set(NAT_TOP_CHAINS)
    service_chains: dict[str, tuple[str, ...]] = {}
    # Rules counted as they are written: nat_rules holds one text per service port (its lines joined),
    # not one string per rule (173,000 rules at 10,000 x 5: the per-line strings cost more than the text).
    rule_count = len(nat_rules)
    for key in sorted(state.services):
        sp = state.services[key]
        out = _render_service(sp, state.endpoints_of(key), node, mark, large)
        filter_rules.extend(out.filter_rules)
        service_chains[key] = tuple(out.chains)
        active_nat.update(out.chains)
        rule_count += len(out.top_nat_rules) + len(out.chain_rules)
        # A partial sync rewrites a service's own chains only when it changed (or when they are not
        # all in place after the previous sync, which would make the text reference missing chains).
        if full or _service_matches(sp, changed) or not previous_nat.issuperset(out.chains):
            if out.chains:
                nat_decls.append("\n".join([f":{c} - [0:0]" for c in out.chains]))
            if out.top_nat_rules or out.chain_rules:
                nat_rules.append("\n".join(out.top_nat_rules + out.chain_rules))
        elif out.top_nat_rules:
            nat_rules.append("\n".join(out.top_nat_rules))

    stale = sorted(c for c in (previous_nat | existing) - active_nat if is_service_chain(c))
    nat_decls.extend(f":{c} - [0:0]" for c in stale)
    nat_rules.extend(f"-X {c}" for c in stale)
    rule_count += 1  # the KUBE-SERVICES tail rule below
    # Tail-call to the nodePorts chain; this must stay the last rule of KUBE-SERVICES.
    nat_rules.append(f'-A {KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this '
                     f'must be the last rule in this chain" -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}')

    filter_rules.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP")
    filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                        f"-m mark --mark {mark}/{mark} -j ACCEPT")
    filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                        f"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

    lines: list[str] = ["*filter"]
    lines.extend(f":{c} - [0:0]" for c in FILTER_TOP_CHAINS)
    lines.extend(filter_rules)
    lines.append("COMMIT")
    lines.append("*nat")
    lines.extend(f":{c} - [0:0]" for c in NAT_TOP_CHAINS)
    lines.extend(nat_decls)
    lines.extend(nat_rules)
    lines.append("COMMIT")
    lines.append("")

    # The built-in chains' jumps count too (kube-proxy's iptables_rules_total): the proxier ensures them.
    rule_count += len(filter_rules) + JUMP_COUNT
    text = "\n".join(lines)
    del lines, nat_rules, nat_decls  # only the text is needed now (halves the peak at 10,000 Services)
    return Rendered(
        text=text,
        chains={"filter": set(FILTER_TOP_CHAINS), "nat": active_nat},
        rule_count=rule_count,
        full=full,
        service_chains=service_chains,
        deleted_chains=tuple(stale),
    )


def jumps_text() -> str:
    """Restore text declaring the jump targets and appending every built-in chain's jumps (what
    ensure_rules leaves on a clean table): for tests and the tracer, which start from empty tables."""
    lines: list[str] = []
    for table, chains in BUILTIN_JUMPS.items():
        lines.append(f"*{table}")
        targets = dict.fromkeys(j.rsplit("-j ", 1)[1] for jumps in chains.values() for j in jumps)
        lines.extend(f":{c} - [0:0]" for c in targets)
        lines.extend(f"-A {chain} {j}" for chain, jumps in chains.items() for j in jumps)
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_full(state: ProxyState, node: NodeContext, *, existing: Iterable[str] = ()) -> Rendered:
    """Every KUBE- chain and rule (the built-in chains' jumps are the proxier's: BUILTIN_JUMPS).
    `existing`: chain names present in the kernel's nat table (from iptables-save, or a previous
    Rendered's chains["nat"]); per-service chains among them that are no longer needed are flushed and
    deleted, as kube-proxy does."""
    return _render(state, node, full=True, changed=set(), previous_nat=set(), existing=set(existing))


def render_partial(state: ProxyState, node: NodeContext, changed: set[str], previous: Rendered) -> Rendered:
    """kube-proxy's partial sync: the top-level KUBE- chains in full, the per-service chains only of the
    service ports in `changed` (keys `ns/name:port`, or `ns/name` for every port of a Service), and
    `-X` for the chains of removed services or endpoints. Other per-service chains are not declared, so
    `iptables-restore --noflush` leaves them untouched."""
    return _render(state, node, full=False, changed=set(changed), previous_nat=set(previous.chains.get("nat", ())),
                   existing=set())


def chains_for_cleanup(existing: Mapping[str, Iterable[str]] | Iterable[str] = (),
                       saved: Mapping[str, str] | None = None) -> str:
    """Restore text that removes everything the iptables proxy installs (`--cleanup`, proxy mode change):
    its jumps from the built-in chains (nothing else there: other rules stay), then every KUBE- chain is
    flushed and deleted.

    `existing`: the chains present (table -> names, or nat chain names) so per-service chains are found;
    KUBE-MARK-MASQ can only be deleted once no KUBE-SEP- chain refers to it. `saved`: table ->
    `iptables-save -t TABLE` text; when given, only the jumps present are deleted (`-D` of a rule that is
    not there fails the restore), else every jump of BUILTIN_JUMPS is assumed present.
    """
    if isinstance(existing, Mapping):
        nat_existing = set(existing.get("nat", ()))
        filter_existing = set(existing.get("filter", ()))
    else:
        nat_existing, filter_existing = set(existing), set()
    sections = {t: table_lines(saved.get(t, ""), t) for t in ("filter", "nat")} if saved is not None else None
    if sections is not None:
        for table, found in (("filter", filter_existing), ("nat", nat_existing)):
            found.update(chain_names(sections[table]))
    tables = {
        "filter": list(FILTER_TOP_CHAINS) + sorted(
            c for c in filter_existing if c.startswith(KUBE_CHAIN_PREFIX) and c not in FILTER_TOP_CHAINS),
        "nat": list(NAT_TOP_CHAINS) + sorted(
            c for c in nat_existing if c.startswith(KUBE_CHAIN_PREFIX) and c not in NAT_TOP_CHAINS),
    }
    lines: list[str] = []
    for table, chains in tables.items():
        lines.append(f"*{table}")
        lines.extend(f":{c} - [0:0]" for c in chains)
        for chain, jumps in BUILTIN_JUMPS[table].items():
            present = None if sections is None else _saved_rules(sections[table], chain)
            lines.extend(f"-D {chain} {j}" for j in jumps
                         if present is None or tuple(shlex.split(j)) in present)
        lines.extend(f"-X {c}" for c in chains)
        lines.append("COMMIT")
    lines.append("")
    return "\n".join(lines)


def _saved_rules(section: list[str], chain: str) -> set[tuple[str, ...]]:
    """The rules of `chain` in a table's iptables-save lines, as word tuples without `-A CHAIN`."""
    return {tuple(shlex.split(line)[2:]) for line in section if line.startswith(f"-A {chain} ")}
