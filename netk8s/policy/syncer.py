"""The node agent's NetworkPolicy role: on every relevant change, rebuild the model, diff, apply once.

An AgentPlugin (netk8s.node.agent): the agent calls `sync(informer, events, now)` every ~0.2 s with
the store events since the last call. Pod, NetworkPolicy, Namespace and Node events (labels, new pods,
policies) rebuild the pure model from the informer's cache and render this node's NodeRules; the
difference to what the kernel has goes to ONE `nft -f` transaction (netk8s.policy.nftables explains
the table). Events that change nothing the model reads (node heartbeats, pod readiness) are skipped
without a rebuild. The first sync, and any sync after a failed apply, writes the whole table instead.
"""

from __future__ import annotations

import logging

from netk8s.dataplane import nftables as nft
from netk8s.errors import KernelError
from netk8s.policy import nftables as render
from netk8s.policy.model import build, inputs_of
from netk8s.store.informer import Informer

log = logging.getLogger("netk8s.policy")

POLICY_KINDS = frozenset({"Pod", "NetworkPolicy", "Namespace", "Node"})


class PolicySyncer:
    """Keeps table `ip netk8s-policy` of this node equal to the model of the current objects."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.applied: render.NodeRules | None = None
        self.inputs: dict[tuple[str, str, str], str] = {}  # (kind, ns, name) -> what the model read of it

    def desired(self, informer: Informer) -> render.NodeRules:
        model = build(informer.view("Pod"), informer.view("NetworkPolicy"), informer.view("Namespace"),
                      informer.view("Node"), only_node=self.node)
        return render.node_rules(model, self.node)

    def _changed(self, events: list) -> bool:
        """Record what the model reads of each event's object; True when any of it changed."""
        changed = False
        for e in events:
            kind = e.object.get("kind")
            if kind not in POLICY_KINDS:
                continue
            meta = e.object.get("metadata") or {}
            key = (kind, meta.get("namespace") or "", meta.get("name") or "")
            now_reads = None if e.type == "DELETED" else inputs_of(e.object)
            if self.inputs.get(key) != now_reads:
                changed = True
                if now_reads is None:
                    self.inputs.pop(key, None)
                else:
                    self.inputs[key] = now_reads
        return changed

    def sync(self, informer: Informer, events: list, now: float) -> None:
        changed = self._changed(events)
        if self.applied is not None and not changed:
            return
        if self.applied is None:  # a full sync: start recording from the whole cache
            self.inputs = {(k, (o.get("metadata") or {}).get("namespace") or "", o["metadata"]["name"]): inputs_of(o)
                           for k in POLICY_KINDS for o in informer.view(k)}
        want = self.desired(informer)
        if self.applied is not None and want == self.applied:
            return
        text = render.render_full(want) if self.applied is None else render.render_diff(self.applied, want)
        try:
            if text:
                nft.apply(text)
        except KernelError:
            self.applied = None  # the next sync rewrites the whole table
            raise
        self.applied = want

    def cleanup(self) -> None:
        nft.delete_table(render.FAMILY, render.TABLE)
