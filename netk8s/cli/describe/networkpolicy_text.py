"""`describe networkpolicy`, line for line as kubectl's describeNetworkPolicy (pkg/describe/describe.go)."""

from __future__ import annotations

from typing import Any, Protocol

from netk8s.cli.describe.common import Writer, annotations_multiline, labels_multiline
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import format_label_selector, parse_time


class PrefixWriter(Protocol):
    def write(self, level: int, text: str) -> None: ...


def go_time(value: str | None) -> str:
    """metav1.Time's String() in UTC: `2024-05-01 11:55:00 +0000 UTC`."""
    import datetime

    ts = parse_time(value)
    if ts is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _port(port: dict) -> str:
    value: Any = port.get("port")
    text = "<nil>" if value is None else str(value)
    if port.get("endPort") is not None:
        text = f"{text}-{port['endPort']}"
    return f"{text}/{port.get('protocol') or 'TCP'}"


def _rules(w: PrefixWriter, rules: list[dict], direction: str) -> None:
    indent = "    "
    peers_key, peer_title = ("from", "From") if direction == "ingress" else ("to", "To")
    if not rules:
        w.write(0, f"{indent}<none> (Selected pods are isolated for {direction} connectivity)\n")
        return
    for i, rule in enumerate(rules):
        if not rule.get("ports"):
            w.write(0, f"{indent}To Port: <any> (traffic allowed to all ports)\n")
        for port in rule.get("ports") or []:
            w.write(0, f"{indent}To Port: {_port(port)}\n")
        if not rule.get(peers_key):
            what = "source" if direction == "ingress" else "destination"
            w.write(0, f"{indent}{peer_title}: <any> (traffic not restricted by {what})\n")
        for peer in rule.get(peers_key) or []:
            w.write(0, f"{indent}{peer_title}:\n")
            if peer.get("namespaceSelector") is not None:
                w.write(1, f"{indent}NamespaceSelector: {format_label_selector(peer['namespaceSelector'])}\n")
            if peer.get("podSelector") is not None:
                w.write(1, f"{indent}PodSelector: {format_label_selector(peer['podSelector'])}\n")
            if peer.get("ipBlock") is not None:
                w.write(1, f"{indent}IPBlock:\n")
                w.write(2, f"{indent}CIDR: {peer['ipBlock'].get('cidr', '')}\n")
                w.write(2, f"{indent}Except: {', '.join(peer['ipBlock'].get('except') or [])}\n")
        if i != len(rules) - 1:
            w.write(0, f"{indent}----------\n")


def describe_networkpolicy(w: PrefixWriter, np: dict, labels_multiline: Any, annotations_multiline: Any) -> None:
    meta, spec = np.get("metadata") or {}, np.get("spec") or {}
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace', '')}\n")
    w.write(0, f"Created on:\t{go_time(meta.get('creationTimestamp'))}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, "Spec:\n")
    w.write(1, "PodSelector: ")
    sel = spec.get("podSelector") or {}
    if not sel.get("matchLabels") and not sel.get("matchExpressions"):
        w.write(2, "<none> (Allowing the specific traffic to all pods in this namespace)\n")
    else:
        w.write(2, f"{format_label_selector(sel)}\n")
    types = spec.get("policyTypes") or []
    ingress = "Ingress" in types if types else True
    egress = "Egress" in types if types else bool(spec.get("egress"))
    for on, direction in ((ingress, "ingress"), (egress, "egress")):
        if on:
            w.write(1, f"Allowing {direction} traffic:\n")
            _rules(w, spec.get(direction) or [], direction)
        else:
            w.write(1, f"Not affecting {direction} traffic\n")
    w.write(1, f"Policy Types: {', '.join(types)}\n")


def _count(c: dict) -> str:
    return f"{c.get('packets', 0)} packets ({c.get('bytes', 0)} bytes)"


def describe_policy_state(w: PrefixWriter, np: dict, pods: list[dict] | None, counters: list[dict] | None) -> None:
    """netk8s' additions after kubectl's text: the pods the policy selects now, and its kernel counters
    (new connections each rule allowed, drops in the pods it isolates), summed over the nodes."""
    if pods is not None:
        names = sorted(p["metadata"]["name"] for p in pods)
        w.write(1, f"Selected Pods: {', '.join(names) if names else '<none>'}\n")
    if not counters:
        return
    c = counters[0]
    if c.get("error"):
        w.write(1, f"Packet Counters: <unavailable: {c['error']}>\n")
        return
    w.write(1, f"Packet Counters (new connections, {c.get('nodes', 0)} nodes):\n")
    spec = np.get("spec") or {}
    rules = [f"{d}[{i}]" for d in ("ingress", "egress") for i in range(len(spec.get(d) or []))]
    for ref in rules:
        w.write(2, f"{ref}:\tallowed {_count((c.get('rules') or {}).get(ref) or {})}\n")
    for direction, count in sorted((c.get("dropped") or {}).items()):
        w.write(2, f"dropped ({direction}, pods it isolates):\t{_count(count)}\n")
    if not rules and not c.get("dropped"):
        w.write(2, "<none>\n")


@describer("NetworkPolicy")
def _describe(w: Writer, obj: dict, related: dict[str, list[dict]], now: float) -> None:
    describe_networkpolicy(w, obj, labels_multiline, annotations_multiline)
    describe_policy_state(w, obj, related.get("Pod"), related.get("PolicyCounters"))
