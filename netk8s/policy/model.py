"""The pure NetworkPolicy model: objects -> each pod's ingress/egress allow-sets, and "may A reach B?".

Semantics of networking.k8s.io/v1 (the API reference and test/e2e/network/netpol, the "truth table" suite
Calico, Cilium, Antrea and kube-router pass):

* A pod is isolated for ingress (egress) when some policy in its namespace selects it and lists
  `Ingress` (`Egress`) in policyTypes; otherwise that direction allows everything.
* Policies are additive: a connection is allowed when any rule of any policy selecting the pod allows
  it; for pod to pod both the source's egress and the destination's ingress must allow it.
* A peer is an ipBlock (cidr minus except, matched against any address), or pods: podSelector alone
  means pods of the policy's namespace, namespaceSelector alone all pods of the matching namespaces,
  both together pods matching the podSelector in the matching namespaces. Every namespace carries the
  immutable label kubernetes.io/metadata.name (kube-apiserver sets it).
* `from`/`to` missing or empty: any peer. `ports` missing or empty: any port and protocol. A port entry
  without `port` matches the whole protocol; `endPort` makes a range; a named port resolves against
  the container ports of the pod that owns it: the selected pod for ingress, each destination pod for
  egress (so an egress named port only ever matches pods).
* Traffic from the destination pod's own node is always allowed (upstream: a pod cannot block its
  resident node), and a pod reaching itself does so over loopback, which no policy sees.

`build(objects)` resolves everything against the current labels; `Model.check(...)` answers one
connection with the reasons, which `netk8s policy why` prints and the truth-table tests compare with
real probes. The node agent's renderer reads the same `PodPolicy` allow-sets.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netk8s.model import labels as lbl

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# On a Namespace: log (NFLOG) the packets policy drops in its pods (Antrea's
# policy.antrea.io/enable-np-logging does the same for K8s NetworkPolicies); docs/networkpolicy.md.
LOG_DROPS_ANNOTATION = "netk8s.io/log-drops"
IPNet = ipaddress.IPv4Network


@dataclass(frozen=True)
class Pod:
    """What the model needs of a pod: identity, address, labels, node and named container ports."""

    namespace: str
    name: str
    ip: str
    labels: dict[str, str]
    node: str = ""
    ports: tuple[tuple[str, int, str], ...] = ()  # (port name, containerPort, protocol)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def named_port(self, name: str, protocol: str) -> int | None:
        return next((p for n, p, proto in self.ports if n == name and proto == protocol), None)


@dataclass(frozen=True)
class PortRange:
    """One protocol and an inclusive port range (1-65535: the whole protocol)."""

    protocol: str
    first: int = 1
    last: int = 65535

    def matches(self, protocol: str, port: int) -> bool:
        return protocol == self.protocol and self.first <= port <= self.last

    def __str__(self) -> str:
        if (self.first, self.last) == (1, 65535):
            return f"{self.protocol} any port"
        return f"{self.first}/{self.protocol}" if self.first == self.last else \
            f"{self.first}-{self.last}/{self.protocol}"


@dataclass(frozen=True)
class Peer:
    """A set of addresses: pod IPs a selector matched now, or a CIDR minus its excepts."""

    text: str  # how it reads in an explanation
    ips: frozenset[str] | None = None
    cidr: IPNet | None = None
    excepts: tuple[IPNet, ...] = ()

    def matches(self, ip: str) -> bool:
        if self.ips is not None:
            return ip in self.ips
        assert self.cidr is not None
        addr = ipaddress.IPv4Address(ip)
        return addr in self.cidr and not any(addr in e for e in self.excepts)

    def ranges(self) -> list[IPNet]:
        """The addresses as disjoint CIDRs (the cidr with every except cut out)."""
        if self.ips is not None:
            return [IPNet(f"{ip}/32") for ip in sorted(self.ips, key=ipaddress.IPv4Address)]
        assert self.cidr is not None
        parts = [self.cidr]
        for exc in self.excepts:
            parts = [q for p in parts for q in ((p.address_exclude(exc)) if exc.subnet_of(p) else
                                               (() if p.subnet_of(exc) else (p,)))]
        return sorted(parts)


@dataclass(frozen=True)
class Clause:
    """One rule of one policy, resolved for one selected pod: peers x ports (None: any)."""

    policy: str  # ns/name
    direction: str  # "ingress" | "egress"
    index: int
    peers: tuple[Peer, ...] | None
    ports: tuple[PortRange, ...] | None

    @property
    def ref(self) -> str:
        return f"networkpolicy {self.policy} {self.direction}[{self.index}]"

    def matches(self, ip: str, protocol: str, port: int) -> bool:
        peer_ok = self.peers is None or any(p.matches(ip) for p in self.peers)
        port_ok = self.ports is None or any(r.matches(protocol, port) for r in self.ports)
        return peer_ok and port_ok


@dataclass(frozen=True)
class PodPolicy:
    """A pod's allow-sets: isolation per direction (with the policies isolating it) and the clauses."""

    pod: Pod
    ingress_by: tuple[str, ...] = ()  # policies isolating it for ingress
    egress_by: tuple[str, ...] = ()
    ingress: tuple[Clause, ...] = ()
    egress: tuple[Clause, ...] = ()

    @property
    def isolated(self) -> bool:
        return bool(self.ingress_by or self.egress_by)


@dataclass(frozen=True)
class Step:
    """One direction the verdict passed: whose chain (pod, node), what decided it and by which refs.

    outcome: "open" (no policy isolates the pod that way), "allowed" (refs: the clause refs that
    allow it), "dropped" (refs: the isolating policies), "own-node" (ingress from the pod's node)."""

    direction: str
    pod: str
    node: str
    outcome: str
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reasons: tuple[str, ...]
    deciding: tuple[str, ...] = ()  # the clause refs that allow it, or the policies that isolate
    steps: tuple[Step, ...] = ()  # per direction, in the order the kernel evaluates them

    def __str__(self) -> str:
        return ("ALLOWED" if self.allowed else "DROPPED") + "".join(f"\n  {r}" for r in self.reasons)


@dataclass
class Model:
    pods: dict[str, Pod]  # by ns/name
    policies: dict[str, PodPolicy]  # by pod key, every pod
    node_ips: dict[str, frozenset[str]] = field(default_factory=dict)  # node -> its own addresses
    log_namespaces: frozenset[str] = frozenset()  # namespaces annotated LOG_DROPS_ANNOTATION "true"

    def pod_by_ip(self, ip: str) -> Pod | None:
        return next((p for p in self.pods.values() if p.ip == ip), None)

    def policy_of(self, pod: Pod) -> PodPolicy:
        """The pod's allow-sets (a pod left out by build(only_node=...) reads as not isolated)."""
        return self.policies.get(pod.key) or PodPolicy(pod)

    def check(self, src_ip: str, dst_ip: str, port: int, protocol: str = "TCP") -> Verdict:
        """May a new connection from src_ip reach dst_ip:port/protocol (after any DNAT)?"""
        src, dst = self.pod_by_ip(src_ip), self.pod_by_ip(dst_ip)
        if src is not None and dst is not None and src.key == dst.key:
            return Verdict(True, (f"{src.key} reaches itself over loopback: no policy applies",))
        steps: list[tuple[bool, str, list[str], Step]] = []
        if src is not None:
            steps.append(_direction(self.policy_of(src), "egress", dst_ip, protocol, port,
                                    f"to {dst.key if dst else dst_ip}"))
        if dst is not None and src_ip in self.node_ips.get(dst.node, frozenset()):
            steps.append((True, f"ingress of {dst.key}: from its own node {dst.node}: always allowed", [],
                          Step("ingress", dst.key, dst.node, "own-node")))
        elif dst is not None:
            steps.append(_direction(self.policy_of(dst), "ingress", src_ip, protocol, port,
                                    f"from {src.key if src else src_ip}"))
        reasons: list[str] = []
        deciding: list[str] = []
        done: list[Step] = []
        for ok, why, refs, step in steps:
            reasons.append(why)
            deciding += refs
            done.append(step)
            if not ok:
                return Verdict(False, tuple(reasons), tuple(deciding), tuple(done))
        return Verdict(True, tuple(reasons), tuple(deciding), tuple(done))


def _direction(pp: PodPolicy, direction: str, peer_ip: str, protocol: str, port: int,
               what: str) -> tuple[bool, str, list[str], Step]:
    isolating = pp.ingress_by if direction == "ingress" else pp.egress_by
    head = f"{direction} of {pp.pod.key} {what} on {port}/{protocol}"
    key, node = pp.pod.key, pp.pod.node
    if not isolating:
        return (True, f"{head}: not isolated (no policy selects it for {direction}): allowed", [],
                Step(direction, key, node, "open"))
    clauses = pp.ingress if direction == "ingress" else pp.egress
    allowing = list(dict.fromkeys(c.ref for c in clauses if c.matches(peer_ip, protocol, port)))
    if allowing:
        return (True, f"{head}: allowed by {', '.join(allowing)}", allowing,
                Step(direction, key, node, "allowed", tuple(allowing)))
    return (False, (f"{head}: isolated by {', '.join('networkpolicy ' + p for p in isolating)} "
                    "and no rule allows it: dropped"), list(isolating),
            Step(direction, key, node, "dropped", tuple(isolating)))


# ---------------------------------------------------------------------------------------------------------
# objects -> model


def pod_from_object(obj: dict, ip_of: Mapping[str, str] | None = None) -> Pod | None:
    """A Pod of the model, or None for pods with no address yet, host-network or finished pods."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ip = (meta.get("annotations") or {}).get("netk8s.io/pod-ip") or status.get("podIP")
    if not ip:
        return None
    ports = tuple((p["name"], int(p["containerPort"]), p.get("protocol") or "TCP")
                  for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("name"))
    return Pod(meta.get("namespace") or "default", meta["name"], str(ip), dict(meta.get("labels") or {}),
               spec.get("nodeName") or "", ports)


def inputs_of(obj: dict) -> str:
    """What build() reads of one object, as a comparable text: a change elsewhere (a node's heartbeat,
    a pod's readiness condition) cannot change any verdict, so the agent skips rebuilding for it."""
    kind, meta = obj.get("kind", ""), obj.get("metadata") or {}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Pod":
        read: object = [meta.get("labels"), (meta.get("annotations") or {}).get("netk8s.io/pod-ip"),
                        status.get("podIP"), spec.get("nodeName"), spec.get("hostNetwork"),
                        status.get("phase") in ("Succeeded", "Failed"),
                        [c.get("ports") for c in spec.get("containers") or []]]
    elif kind == "Namespace":
        read = [meta.get("labels"), (meta.get("annotations") or {}).get(LOG_DROPS_ANNOTATION)]
    elif kind == "Node":
        read = [spec.get("podCIDR"), [a for a in status.get("addresses") or [] if a.get("type") == "InternalIP"]]
    else:  # NetworkPolicy, and anything else: the whole spec
        read = spec
    return json.dumps(read, sort_keys=True, default=str)


def node_addresses(node: dict) -> frozenset[str]:
    """The addresses a node's own traffic may carry: its InternalIPs, its cbr0 (.1) and flannel.1 (.0)."""
    out = {a["address"] for a in (node.get("status") or {}).get("addresses") or []
           if a.get("type") == "InternalIP" and a.get("address")}
    cidr = (node.get("spec") or {}).get("podCIDR")
    if cidr:
        net = IPNet(cidr, strict=False)
        out |= {str(net.network_address), str(net.network_address + 1)}
    return frozenset(out)


def _selector(value: dict | None) -> lbl.Selector:
    return lbl.selector_from_label_selector(value or {})


def _selector_text(value: dict | None) -> str:
    s = str(_selector(value))
    return s or "{}"


class _Resolver:
    """Resolves peers against the current pods once per policy rule, not once per selected pod.

    A peer's addresses do not depend on the pod the policy selects (only named ingress ports do), so
    build() caches them by (policy, direction, rule, peer); namespace selectors are matched once per
    namespace. This keeps a rebuild at 1,000 pods x 1,000 policies well under a second.
    """

    def __init__(self, pods: list[Pod], ns_labels: Mapping[str, dict[str, str]]) -> None:
        self.pods = pods
        self.ns_labels = ns_labels
        self.by_ns: dict[str, list[Pod]] = {}
        for p in pods:
            self.by_ns.setdefault(p.namespace, []).append(p)
        self.peers: dict[tuple[str, str, int, int], Peer] = {}
        self.selectors: dict[str, lbl.Selector] = {}
        self.ns_matches: dict[str, list[str]] = {}  # namespaceSelector (repr) -> namespaces it matches

    def selector(self, value: dict | None) -> lbl.Selector:
        key = repr(value)
        sel = self.selectors.get(key)
        if sel is None:
            sel = self.selectors[key] = _selector(value)
        return sel

    def peer(self, key: tuple[str, str, int, int], peer: dict, policy_ns: str) -> Peer:
        got = self.peers.get(key)
        if got is None:
            got = self.peers[key] = self._resolve(peer, policy_ns)
        return got

    def _resolve(self, peer: dict, policy_ns: str) -> Peer:
        block = peer.get("ipBlock")
        if block is not None:
            excepts = tuple(IPNet(e, strict=False) for e in block.get("except") or [])
            text = f"ipBlock {block['cidr']}" + (f" except {', '.join(block['except'])}" if excepts else "")
            return Peer(text, cidr=IPNet(block["cidr"], strict=False), excepts=excepts)
        pod_sel = self.selector(peer.get("podSelector")) if peer.get("podSelector") is not None else None
        ns_sel = self.selector(peer.get("namespaceSelector")) if peer.get("namespaceSelector") is not None else None
        parts = []
        if ns_sel is not None:
            parts.append(f"namespaceSelector {_selector_text(peer.get('namespaceSelector'))}")
        if pod_sel is not None:
            parts.append(f"podSelector {_selector_text(peer.get('podSelector'))}")
        if ns_sel is None:
            parts.append(f"in namespace {policy_ns}")
            namespaces = [policy_ns]
        else:
            key = repr(peer.get("namespaceSelector"))
            namespaces = self.ns_matches.get(key)  # type: ignore[assignment]
            if namespaces is None:
                namespaces = self.ns_matches[key] = [ns for ns in self.by_ns
                                                     if ns_sel.matches(self.ns_labels.get(ns, {}))]
        ips = frozenset(p.ip for ns in namespaces for p in self.by_ns.get(ns, ())
                        if pod_sel is None or pod_sel.matches(p.labels))
        return Peer(" ".join(parts), ips=ips)


def _ports(entries: list[dict], owner: Pod | None) -> tuple[list[PortRange], list[tuple[str, str]]]:
    """Numeric/protocol-wide entries as ranges; named ones resolved on `owner` (or returned to resolve)."""
    ranges: list[PortRange] = []
    named: list[tuple[str, str]] = []
    for e in entries:
        proto, port = e.get("protocol") or "TCP", e.get("port")
        if port is None:
            ranges.append(PortRange(proto))
        elif isinstance(port, str):
            if owner is None:
                named.append((port, proto))
            else:
                number = owner.named_port(port, proto)
                if number is not None:
                    ranges.append(PortRange(proto, number, number))
        else:
            ranges.append(PortRange(proto, int(port), int(e.get("endPort") or port)))
    return ranges, named


def _clauses(policy_key: str, direction: str, rules: list[dict], target: Pod, res: _Resolver) -> list[Clause]:
    ns = policy_key.split("/", 1)[0]
    out: list[Clause] = []
    for i, rule in enumerate(rules):
        peer_list = rule.get("from" if direction == "ingress" else "to") or []
        peers = tuple(res.peer((policy_key, direction, i, j), p, ns) for j, p in enumerate(peer_list)) or None
        entries = rule.get("ports") or []
        if not entries:
            out.append(Clause(policy_key, direction, i, peers, None))
            continue
        ranges, named = _ports(entries, target if direction == "ingress" else None)
        if ranges:
            out.append(Clause(policy_key, direction, i, peers, tuple(ranges)))
        # egress named ports: per destination pod that has the port and is one of the peers
        for name, proto in named:
            for dst in res.pods:
                number = dst.named_port(name, proto)
                if number is None or (peers is not None and not any(p.matches(dst.ip) for p in peers)):
                    continue
                peer = Peer(f"{dst.key} (named port {name})", ips=frozenset({dst.ip}))
                out.append(Clause(policy_key, direction, i, (peer,), (PortRange(proto, number, number),)))
        if not ranges and not named and direction == "ingress":
            # only named ports the target does not have: the rule allows nothing for this pod
            out.append(Clause(policy_key, direction, i, peers, ()))
    return out


def build(pods: Iterable[dict], policies: Iterable[dict], namespaces: Iterable[dict] = (),
          nodes: Iterable[dict] = (), only_node: str | None = None) -> Model:
    """The model of the current objects (Pods, NetworkPolicies, Namespaces, Nodes).

    only_node: compute allow-sets only for the pods of that node (what its agent renders); every pod
    still counts as a peer. `Model.policies` then holds just those pods."""
    model_pods = [p for p in (pod_from_object(o) for o in pods) if p is not None]
    ns_labels: dict[str, dict[str, str]] = {}
    logging_ns: set[str] = set()
    for ns in namespaces:
        meta = ns.get("metadata") or {}
        ns_labels[meta["name"]] = {**(meta.get("labels") or {}), NAMESPACE_NAME_LABEL: meta["name"]}
        if str((meta.get("annotations") or {}).get(LOG_DROPS_ANNOTATION, "")).lower() == "true":
            logging_ns.add(meta["name"])
    for p in model_pods:  # a namespace object not (yet) seen still has its name label
        ns_labels.setdefault(p.namespace, {NAMESPACE_NAME_LABEL: p.namespace})
    res = _Resolver(model_pods, ns_labels)
    by_ns: dict[str, list[tuple[str, dict, lbl.Selector]]] = {}
    for pol in sorted(policies, key=lambda o: (o["metadata"].get("namespace") or "default", o["metadata"]["name"])):
        pmeta, spec = pol["metadata"], pol.get("spec") or {}
        pol_ns = pmeta.get("namespace") or "default"
        by_ns.setdefault(pol_ns, []).append((f"{pol_ns}/{pmeta['name']}", spec, res.selector(spec.get("podSelector"))))
    result: dict[str, PodPolicy] = {}
    for pod in model_pods:
        if only_node is not None and pod.node != only_node:
            continue
        ingress_by: list[str] = []
        egress_by: list[str] = []
        ingress: list[Clause] = []
        egress: list[Clause] = []
        for key, spec, selects in by_ns.get(pod.namespace, ()):
            if not selects.matches(pod.labels):
                continue
            types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))
            if "Ingress" in types:
                ingress_by.append(key)
                ingress += _clauses(key, "ingress", spec.get("ingress") or [], pod, res)
            if "Egress" in types:
                egress_by.append(key)
                egress += _clauses(key, "egress", spec.get("egress") or [], pod, res)
        result[pod.key] = PodPolicy(pod, tuple(ingress_by), tuple(egress_by), tuple(ingress), tuple(egress))
    node_ips = {n["metadata"]["name"]: node_addresses(n) for n in nodes}
    return Model({p.key: p for p in model_pods}, result, node_ips, frozenset(logging_ns))
