"""The node agent's NetworkPolicy role: on every relevant change, rebuild the model, diff, apply once.

An AgentPlugin (netk8s.node.agent): the agent calls `sync(informer, events, now)` every ~0.2 s with
the store events since the last call. Pod, NetworkPolicy, Namespace and Node events (labels, new pods,
policies) rebuild the pure model from the informer's cache and render this node's NodeRules; the
difference to what the kernel has goes to ONE `nft -f` transaction (netk8s.policy.nftables explains
the table). The first sync, and any sync after a failed apply, writes the whole table instead.
"""

from __future__ import annotations

import logging

from netk8s.dataplane import nftables as nft
from netk8s.errors import KernelError
from netk8s.policy import nftables as render
from netk8s.policy.model import build
from netk8s.store.informer import Informer

log = logging.getLogger("netk8s.policy")

POLICY_KINDS = frozenset({"Pod", "NetworkPolicy", "Namespace", "Node"})


class PolicySyncer:
    """Keeps table `ip netk8s-policy` of this node equal to the model of the current objects."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.applied: render.NodeRules | None = None

    def desired(self, informer: Informer) -> render.NodeRules:
        model = build(informer.view("Pod"), informer.view("NetworkPolicy"), informer.view("Namespace"),
                      informer.view("Node"), only_node=self.node)
        return render.node_rules(model, self.node)

    def sync(self, informer: Informer, events: list, now: float) -> None:
        if self.applied is not None and not any(e.object.get("kind") in POLICY_KINDS for e in events):
            return
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
