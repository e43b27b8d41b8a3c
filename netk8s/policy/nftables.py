"""NetworkPolicy as nftables, purely: the model's allow-sets of one node's pods -> table `ip netk8s-policy`.

Layout (one table of its own, so neither proxy mode's full syncs nor `flannel` ip-masq touch it):

    table ip netk8s-policy
      set peer-<h>        interval set of the addresses one peer of one rule matches now (pod IPs from
                          selectors, or an ipBlock with its excepts cut out); a label change only adds or
                          deletes elements here
      map ingress-pods    local pod IP : jump in-<h>   (only pods some policy isolates for ingress)
      map egress-pods     local pod IP : jump out-<h>  (same for egress)
      chain forward       hook forward: ct established,related accept; ip saddr vmap @egress-pods;
                          ip daddr vmap @ingress-pods  (policy accept: pods no policy selects are open)
      chain in-<h>/out-<h> one rule per rule x peer of every policy selecting the pod, `return` on a
                          match (so the destination's ingress is still checked after the source's
                          egress), `drop` at the end

Why the forward hook: every pod packet the node carries passes it, also same-node bridged traffic
(the agent sets br_netfilter's bridge-nf-call-iptables inside the node's namespace, and br_netfilter
runs the IPv4 hooks, nftables' included, for bridged frames), after PREROUTING's DNAT (so traffic to a
Service VIP or a NodePort is judged against the endpoint pod) and before POSTROUTING's masquerade (so
the policy sees the original client). Traffic the node itself sends (kubelet probes, the userspace
proxy's connections) goes through OUTPUT, not FORWARD: the node is always allowed, as upstream requires.
Replies of allowed connections are accepted by conntrack; established connections survive a policy
change, new ones follow it (what the API asks).

`render_full` writes the whole table; `render_diff(old, new)` writes one transaction that moves the
kernel from `old` to `new` touching only what changed (set elements, map elements, changed chains).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

from netk8s.model.naming import short_hash
from netk8s.policy.model import Clause, Model, Peer, PodPolicy

FAMILY = "ip"
TABLE = "netk8s-policy"
INGRESS_MAP = "ingress-pods"
EGRESS_MAP = "egress-pods"
# Drops in the pods of a namespace annotated netk8s.io/log-drops=true go to this NFLOG group, each with
# the prefix LOG_PREFIX + the chain's name (the agent maps it back to the pod and its policies).
NFLOG_GROUP = 100
LOG_PREFIX = "netk8s-drop "


@dataclass(frozen=True)
class NodeRules:
    """The desired kernel state of one node: sets, per-pod chains and the two dispatch maps."""

    sets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> elements (cidr text)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> rule lines
    ingress: dict[str, str] = field(default_factory=dict)  # pod ip -> chain
    egress: dict[str, str] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)  # chain -> pod key


def set_name(clause: Clause, peer: Peer) -> str:
    return "peer-" + short_hash(f"{clause.policy}|{clause.direction}|{clause.index}|{peer.text}", 16)


def chain_name(direction: str, pod_key: str) -> str:
    return ("in-" if direction == "ingress" else "out-") + short_hash(pod_key, 16)


@functools.lru_cache(maxsize=1 << 16)
def _ip_key(ip: str) -> int:
    """Sort key of a dotted address; cached, since every sync sorts the same pod addresses again."""
    return int(ipaddress.IPv4Address(ip))


def _elements(peer: Peer) -> tuple[str, ...]:
    if peer.ips is not None:  # plain addresses: sorted numerically, no CIDR objects (1,000s per sync)
        return tuple(sorted(peer.ips, key=_ip_key))
    return tuple(str(n.network_address) if n.prefixlen == 32 else str(n) for n in peer.ranges())


def _port_matches(clause: Clause) -> list[str]:
    if clause.ports is None:
        return [""]
    out = []
    for r in clause.ports:
        proto = r.protocol.lower()
        if (r.first, r.last) == (1, 65535):
            out.append(f"meta l4proto {proto}")
        else:
            ports = str(r.first) if r.first == r.last else f"{r.first}-{r.last}"
            out.append(f"meta l4proto {proto} th dport {ports}")
    return out


def log_statement(chain: str) -> str:
    """nft's log statement for the drops of `chain` (queue-threshold 1: the kernel sends each one at once)."""
    return f'log group {NFLOG_GROUP} prefix "{LOG_PREFIX}{chain} " queue-threshold 1'


def chain_of_prefix(prefix: str) -> str | None:
    """The chain a logged packet's prefix names (None: not one of ours)."""
    if not prefix.startswith(LOG_PREFIX):
        return None
    return prefix.removeprefix(LOG_PREFIX).strip() or None


def _chain(pp: PodPolicy, direction: str, own: tuple[str, ...], sets: dict[str, tuple[str, ...]],
           log_as: str = "") -> tuple[str, ...]:
    addr = "saddr" if direction == "ingress" else "daddr"
    rules = [f"ip saddr {pp.pod.ip} ip daddr {pp.pod.ip} return"]  # hairpin to itself: loopback semantics
    if direction == "ingress" and own:
        rules.append(f"ip saddr {{ {', '.join(own)} }} return comment \"own node\"")
    for clause in (pp.ingress if direction == "ingress" else pp.egress):
        comment = f'comment "{clause.policy} {clause.direction}[{clause.index}]"'
        peer_matches = [""]
        if clause.peers is not None:
            peer_matches = []
            for peer in clause.peers:
                name = set_name(clause, peer)
                if name not in sets:  # every pod the rule selects shares the peer's set
                    sets[name] = _elements(peer)
                peer_matches.append(f"ip {addr} @{name}")
        for pm in peer_matches:
            for portm in _port_matches(clause):
                match = " ".join(x for x in (pm, portm) if x)
                rules.append(f"{match + ' ' if match else ''}counter return {comment}")
    by = pp.ingress_by if direction == "ingress" else pp.egress_by
    log = f"{log_statement(log_as)} " if log_as else ""
    rules.append(f'counter {log}drop comment "isolated by {", ".join(by)}"')
    return tuple(rules)


def node_rules(model: Model, node: str) -> NodeRules:
    """What node `node` programs: a chain per isolated local pod and direction, the peer sets they use."""
    rules = NodeRules()
    own = tuple(sorted(model.node_ips.get(node, frozenset())))
    for key in sorted(model.policies):
        pp = model.policies[key]
        if pp.pod.node != node or not pp.isolated:
            continue
        for direction, by, target in (("ingress", pp.ingress_by, rules.ingress), ("egress", pp.egress_by, rules.egress)):
            if not by:
                continue
            name = chain_name(direction, key)
            log_as = name if pp.pod.namespace in model.log_namespaces else ""
            rules.chains[name] = _chain(pp, direction, own, rules.sets, log_as)
            rules.comments[name] = key
            target[pp.pod.ip] = name
    return rules


# ---------------------------------------------------------------------------------------------------------
# text


def _set_decl(name: str) -> str:
    return f"add set {FAMILY} {TABLE} {name} {{ type ipv4_addr; flags interval; }}"


def _elements_cmd(verb: str, name: str, elements: tuple[str, ...] | list[str]) -> list[str]:
    return [f"{verb} element {FAMILY} {TABLE} {name} {{ {', '.join(elements)} }}"] if elements else []


def _map_cmd(verb: str, name: str, items: dict[str, str]) -> list[str]:
    if not items:
        return []
    if verb == "delete":
        return [f"delete element {FAMILY} {TABLE} {name} {{ {', '.join(sorted(items))} }}"]
    body = ", ".join(f"{ip} : jump {chain}" for ip, chain in sorted(items.items()))
    return [f"add element {FAMILY} {TABLE} {name} {{ {body} }}"]


def _chain_cmds(name: str, lines: tuple[str, ...], comment: str) -> list[str]:
    return [f"add chain {FAMILY} {TABLE} {name} {{ comment \"{comment}\"; }}", f"flush chain {FAMILY} {TABLE} {name}"] + \
        [f"add rule {FAMILY} {TABLE} {name} {line}" for line in lines]


def render_full(rules: NodeRules) -> str:
    """The whole table, replacing whatever is there (add + delete makes the delete never fail)."""
    out = [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", f"add table {FAMILY} {TABLE}",
           f"add map {FAMILY} {TABLE} {INGRESS_MAP} {{ type ipv4_addr : verdict; }}",
           f"add map {FAMILY} {TABLE} {EGRESS_MAP} {{ type ipv4_addr : verdict; }}"]
    for name in sorted(rules.sets):
        out.append(_set_decl(name))
        out += _elements_cmd("add", name, rules.sets[name])
    for name in sorted(rules.chains):
        out += _chain_cmds(name, rules.chains[name], rules.comments[name])
    out += _map_cmd("add", INGRESS_MAP, rules.ingress) + _map_cmd("add", EGRESS_MAP, rules.egress)
    out += [f"add chain {FAMILY} {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}",
            f"add rule {FAMILY} {TABLE} forward ct state established,related accept",
            f"add rule {FAMILY} {TABLE} forward ip saddr vmap @{EGRESS_MAP}",
            f"add rule {FAMILY} {TABLE} forward ip daddr vmap @{INGRESS_MAP}"]
    return "\n".join(out) + "\n"


def render_diff(old: NodeRules, new: NodeRules) -> str:
    """One transaction from `old` (what the kernel has) to `new`; "" when nothing changed."""
    out: list[str] = []
    for name in sorted(new.sets):
        if name not in old.sets:
            out.append(_set_decl(name))
            out += _elements_cmd("add", name, new.sets[name])
            continue
        before, after = set(old.sets[name]), set(new.sets[name])
        out += _elements_cmd("delete", name, sorted(before - after))
        out += _elements_cmd("add", name, sorted(after - before))
    for name in sorted(new.chains):
        if old.chains.get(name) != new.chains[name]:
            out += _chain_cmds(name, new.chains[name], new.comments[name])
    for map_name, a, b in ((INGRESS_MAP, old.ingress, new.ingress), (EGRESS_MAP, old.egress, new.egress)):
        gone = {ip: c for ip, c in a.items() if b.get(ip) != c}
        out += _map_cmd("delete", map_name, gone)
        out += _map_cmd("add", map_name, {ip: c for ip, c in b.items() if a.get(ip) != c})
    for name in sorted(set(old.chains) - set(new.chains)):
        out.append(f"delete chain {FAMILY} {TABLE} {name}")
    for name in sorted(set(old.sets) - set(new.sets)):
        out.append(f"delete set {FAMILY} {TABLE} {name}")
    return "\n".join(out) + "\n" if out else ""
