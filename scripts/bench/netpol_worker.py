"""`python -m scripts.bench.netpol_worker OPTS_JSON`: the node agent's NetworkPolicy role at scale, in one namespace.

Run inside a fresh `nk8sb-` namespace (scripts/bench/netpol.py does). A MemoryStore gets N namespaces'
worth of synthetic objects (pods spread over NODES nodes, policies per namespace selecting by label and
allowing from a podSelector peer and a namespaceSelector peer on a port); an Informer over that store
and the real PolicySyncer of node1 program table `ip netk8s-policy` as the agent does. Then CHANGES
changes, alternating: a policy's port edited, a pod relabelled out of / into peers, a new policy, a
policy deleted. Each is timed from just before the store write to `sync()` returning (the model rebuilt,
the diff rendered and committed by ONE `nft -f` transaction), i.e. store -> kernel inside the agent.
Prints one JSON line: full programming time, the change times, RSS before the informer (the store and
the objects alone) and after (plus the informer cache, the model and the applied state).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from netk8s.dataplane import nftables as nft
from netk8s.policy import nftables as render
from netk8s.policy.syncer import POLICY_KINDS, PolicySyncer
from netk8s.store.informer import Informer
from netk8s.store.memory import MemoryStore

NODES = 10
PODS_PER_NS = 10
APPS = 5


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu() -> float:
    """CPU seconds of this process and its finished children (nft): the work, apart from waiting for a core."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def pod_ip(i: int) -> str:
    return f"10.244.{i % NODES + 1}.{i // NODES + 2}"


def pod(ns: int, p: int, i: int, role: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p{p}", "namespace": f"ns{ns}",
                         "labels": {"app": f"app{p % APPS}", "role": role},
                         "annotations": {"netk8s.io/pod-ip": pod_ip(i)}},
            "spec": {"nodeName": f"node{i % NODES + 1}",
                     "containers": [{"name": "c", "image": "agnhost", "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": pod_ip(i)}}


def policy(ns: int, k: int, port: int) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"np{k}", "namespace": f"ns{ns}"},
            "spec": {"podSelector": {"matchLabels": {"app": f"app{k % APPS}"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": f"r{k % 3}"}}},
                                           {"namespaceSelector": {"matchLabels": {"team": f"t{(ns + k) % 10}"}}}],
                                  "ports": [{"port": port, "protocol": "TCP"}]}]}}


APPLY_S: list[float] = []


def _timed_apply(text: str, _apply=nft.apply) -> None:  # type: ignore[no-untyped-def]
    """nft.apply, timed: the kernel part of a change (the rest is model + render in Python)."""
    t0 = time.perf_counter()
    try:
        _apply(text)
    finally:
        APPLY_S.append(time.perf_counter() - t0)


def main() -> None:
    nft.apply = _timed_apply  # the syncer calls nft.apply through the module
    opts = json.loads(sys.argv[1])
    pods, policies, changes = int(opts["pods"]), int(opts["policies"]), int(opts["changes"])
    namespaces = max(pods // PODS_PER_NS, 1)
    per_ns_policies = max(policies // namespaces, 1)
    store = MemoryStore()
    for n in range(1, NODES + 1):
        store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node{n}"},
                      "spec": {"podCIDR": f"10.244.{n}.0/24"},
                      "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.56.{10 + n}"}]}})
    for ns in range(namespaces):
        store.create({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": f"ns{ns}", "labels": {"team": f"t{ns % 10}"}}})
    for i in range(pods):
        store.create(pod(i // PODS_PER_NS, i % PODS_PER_NS, i, f"r{i % 3}"))
    made = 0
    for ns in range(namespaces):
        for k in range(per_ns_policies):
            if made < policies:
                store.create(policy(ns, k, 80 + k))
                made += 1
    rss_objects = rss_bytes()

    informer = Informer(store, sorted(POLICY_KINDS))
    informer.sync()
    syncer = PolicySyncer("node1")
    t0 = time.perf_counter()
    syncer.sync(informer, [], time.monotonic())
    full_s = time.perf_counter() - t0
    assert syncer.applied is not None
    isolated = len(syncer.applied.ingress)

    # Every change is one node1 must program: the policies edited or added select app0, which is p0 of
    # each namespace (pod i = 10*ns + p lives on node{i % 10 + 1}, so every p0 is local), and the pods
    # relabelled carry role r0, the podSelector peer of np0 in their namespace.
    times: list[dict] = []
    local_ns = [i // PODS_PER_NS for i in range(0, pods, PODS_PER_NS)]
    moved: set[int] = set()
    for c in range(changes):
        what = ("policy-port", "pod-relabel", "policy-add", "policy-delete")[c % 4]
        ns = local_ns[(c // 4) % len(local_ns)]
        t0, cpu0 = time.perf_counter(), _cpu()
        if what == "policy-port":
            store.put(policy(ns, 0, 1000 + c))
        elif what == "pod-relabel":
            p = (3 - ns % 3) % 3  # the pod of the namespace with role r0 (role = r{i % 3}, i = 10 ns + p)
            i = ns * PODS_PER_NS + p
            role = "r0" if i in moved else "moved"
            moved.symmetric_difference_update({i})
            store.put(pod(ns, p, i, role))
        elif what == "policy-add":
            store.create(policy(ns, 10_000 + 5 * c, 2000 + c))
        else:
            store.delete("NetworkPolicy", f"ns{ns}", f"np{10_000 + 5 * (c - 1)}")
        events = informer.poll(0)
        before = syncer.applied
        APPLY_S.clear()
        syncer.sync(informer, events, time.monotonic())
        took = time.perf_counter() - t0
        times.append({"what": what, "s": took, "cpu_s": _cpu() - cpu0, "changed": syncer.applied != before,
                      "apply_s": sum(APPLY_S)})
    # what the kernel holds at the end is what the syncer believes it applied
    names = nft.list_names(render.TABLE, render.FAMILY)
    assert syncer.applied is not None
    missing = [c for c in syncer.applied.chains if c not in names]
    rss_after = rss_bytes()
    syncer.cleanup()
    print(json.dumps({"pods": pods, "policies": made, "namespaces": namespaces, "nodes": NODES,
                      "local_pods": len(local_ns), "isolated_local": isolated,
                      "chains": len(syncer.applied.chains), "sets": len(syncer.applied.sets),
                      "full_s": full_s, "changes": times, "missing_chains": len(missing),
                      "rss_objects": rss_objects, "rss": rss_after}))


if __name__ == "__main__":
    main()
