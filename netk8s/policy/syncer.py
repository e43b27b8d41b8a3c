"""The node agent's NetworkPolicy role: on every relevant change, rebuild the model, diff, apply once.

An AgentPlugin (netk8s.node.agent): the agent calls `sync(informer, events, now)` every ~0.2 s with
the store events since the last call. Pod, NetworkPolicy, Namespace and Node events (labels, new pods,
policies) rebuild the pure model from the informer's cache and render this node's NodeRules; the
difference to what the kernel has goes to ONE `nft -f` transaction (netk8s.policy.nftables explains
the table). Events that change nothing the model reads (node heartbeats, pod readiness) are skipped
without a rebuild. The first sync, and any sync after a failed apply, writes the whole table instead.

Drop log: once some chain logs its drops (namespaces annotated netk8s.io/log-drops=true), the syncer
binds the node's NFLOG group and, on every sync, turns what arrived into lines of `drops_file`
(netk8s.policy.droplog), naming the pods and policies from the model the chain was rendered with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netk8s.dataplane import nftables as nft
from netk8s.errors import KernelError
from netk8s.policy import droplog
from netk8s.policy import nftables as render
from netk8s.policy.model import build, inputs_of
from netk8s.store.informer import Informer

log = logging.getLogger("netk8s.policy")

POLICY_KINDS = frozenset({"Pod", "NetworkPolicy", "Namespace", "Node"})
NFLOG_RETRY = 10.0  # seconds between attempts to bind the NFLOG group when another listener holds it


def _open_nflog() -> Any:
    from netk8s.dataplane.nflog import NflogReader

    return NflogReader.open(None, render.NFLOG_GROUP)


class PolicySyncer:
    """Keeps table `ip netk8s-policy` of this node equal to the model of the current objects."""

    def __init__(self, node: str, drops_file: Path | None = None,
                 open_nflog: Callable[[], Any] = _open_nflog) -> None:
        self.node = node
        self.applied: render.NodeRules | None = None
        self.inputs: dict[tuple[str, str, str], str] = {}  # (kind, ns, name) -> what the model read of it
        self.drops_file = drops_file
        self.open_nflog = open_nflog
        self.nflog: Any = None
        self.nflog_retry_at = 0.0
        self.chains: dict[str, droplog.ChainInfo] = {}  # of the applied rules, for the drop log
        self.logging = False  # some applied chain logs its drops (computed once per apply, not per sync)
        self.pods_by_ip: dict[str, str] = {}
        self._pending: tuple[dict[str, droplog.ChainInfo], dict[str, str]] = ({}, {})

    def desired(self, informer: Informer) -> render.NodeRules:
        model = build(informer.view("Pod"), informer.view("NetworkPolicy"), informer.view("Namespace"),
                      informer.view("Node"), only_node=self.node)
        rules = render.node_rules(model, self.node)
        self._pending = (droplog.chain_infos(model, rules.comments), {p.ip: k for k, p in model.pods.items()})
        return rules


    def drain_drops(self, now: float) -> int:
        """Bind the NFLOG group when some chain logs, and append what arrived to drops_file."""
        if self.drops_file is None:
            return 0
        if self.nflog is None:
            if not self.logging or now < self.nflog_retry_at:
                return 0
            try:
                self.nflog = self.open_nflog()
            except KernelError as exc:
                log.warning("drop log off: %s", exc)
                self.nflog_retry_at = now + NFLOG_RETRY
                return 0
        try:
            packets = self.nflog.read(0.0)
        except KernelError as exc:
            log.warning("drop log: %s (binding the group again)", exc)
            self.nflog.close()
            self.nflog = None
            return 0
        drops = []
        for pkt in packets:
            chain = render.chain_of_prefix(pkt.prefix)
            info = self.chains.get(chain or "")
            if info is None:
                continue
            drops.append(droplog.drop_of(info, self.node, pkt.timestamp or now, pkt.protocol, pkt.src, pkt.sport,
                                         pkt.dst, pkt.dport, self.pods_by_ip))
        if drops:
            self._append(drops)
        return len(drops)

    def _append(self, drops: list[droplog.Drop]) -> None:
        path = self.drops_file
        assert path is not None
        try:
            if path.exists() and path.stat().st_size > droplog.MAX_BYTES:
                os.replace(path, path.with_name(path.name + ".1"))
            with path.open("a") as f:
                f.write("".join(d.to_json() + "\n" for d in drops))
        except OSError as exc:
            log.warning("drop log: cannot write %s: %s", path, exc)

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
        self.drain_drops(now)  # before a change renames chains: these packets were logged under the old ones
        changed = self._changed(events)
        if self.applied is not None and not changed:
            return
        if self.applied is None:  # a full sync: start recording from the whole cache
            self.inputs = {(k, (o.get("metadata") or {}).get("namespace") or "", o["metadata"]["name"]): inputs_of(o)
                           for k in POLICY_KINDS for o in informer.view(k)}
        want = self.desired(informer)
        if self.applied is not None and want == self.applied:
            self.chains, self.pods_by_ip = self._pending  # same rules, but maybe new pods elsewhere
            return
        text = render.render_full(want) if self.applied is None else render.render_diff(self.applied, want)
        try:
            if text:
                nft.apply(text)
        except KernelError:
            self.applied = None  # the next sync rewrites the whole table
            raise
        self.applied = want
        self.chains, self.pods_by_ip = self._pending
        self.logging = any(render.LOG_PREFIX in lines[-1] for lines in want.chains.values() if lines)
        if self.nflog is None:
            self.drain_drops(now)  # bind the group as soon as a chain logs, not one sync later

    def cleanup(self) -> None:
        if self.nflog is not None:
            self.nflog.close()
            self.nflog = None
        nft.delete_table(render.FAMILY, render.TABLE)
