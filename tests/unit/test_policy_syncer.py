"""PolicySyncer through the real informer over the in-memory store: first sync writes the whole table,
a label change writes only set elements, events of other kinds write nothing, a failed apply makes the
next sync a full one."""

from __future__ import annotations

import pytest

from netk8s.errors import KernelError
from netk8s.policy import syncer as syncer_mod
from netk8s.policy.syncer import PolicySyncer
from netk8s.store.base import mutate
from netk8s.store.informer import Informer
from netk8s.store.memory import MemoryStore
from tests.netpol_cases import np


def _pod(name: str, ip: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "x", "labels": labels, "annotations": {"netk8s.io/pod-ip": ip}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "agnhost"}]}}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    applied: list[str] = []
    fail = {"next": False}

    def fake_apply(text: str) -> None:
        if fail["next"]:
            fail["next"] = False
            raise KernelError("nft -f - failed at line 1")
        applied.append(text)

    monkeypatch.setattr(syncer_mod.nft, "apply", fake_apply)
    store = MemoryStore()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    store.create(_pod("a", "10.244.1.2", {"pod": "a"}))
    store.create(_pod("b", "10.244.1.3", {"pod": "b"}))
    store.create(np("from-client", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}))
    informer = Informer(store, ["Pod", "NetworkPolicy", "Namespace", "Node", "Service"])
    informer.sync()
    return store, informer, applied, fail


def test_full_then_element_diffs_then_full_after_a_failure(world) -> None:  # type: ignore[no-untyped-def]
    store, informer, applied, fail = world
    s = PolicySyncer("node1")
    s.sync(informer, [], 0.0)
    assert len(applied) == 1 and applied[0].startswith("add table ip netk8s-policy\ndelete table")
    assert "10.244.1.2 : jump in-" in applied[0]

    mutate(store, "Pod", "x", "b", lambda o: {**o, "metadata": {**o["metadata"], "labels": {"pod": "b", "role": "client"}}})
    s.sync(informer, informer.poll(0.1), 1.0)
    assert applied[-1].strip().splitlines() == [applied[-1].strip()]  # one command
    assert applied[-1].startswith("add element ip netk8s-policy peer-") and "10.244.1.3" in applied[-1]

    store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "x"},
                  "spec": {"ports": [{"port": 80}]}})
    count = len(applied)
    s.sync(informer, informer.poll(0.1), 2.0)
    assert len(applied) == count  # not a policy-relevant change

    fail["next"] = True
    mutate(store, "Pod", "x", "b", lambda o: {**o, "metadata": {**o["metadata"], "labels": {"pod": "b"}}})
    with pytest.raises(KernelError):
        s.sync(informer, informer.poll(0.1), 3.0)
    s.sync(informer, [], 4.0)  # nothing new, but the last apply failed: the whole table again
    assert applied[-1].startswith("add table ip netk8s-policy\ndelete table")
    assert "10.244.1.3" not in applied[-1]


def test_events_that_change_nothing_the_model_reads_skip_the_rebuild(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, informer, applied, _ = world
    s = PolicySyncer("node1")
    s.sync(informer, [], 0.0)
    builds = []
    real = s.desired
    monkeypatch.setattr(s, "desired", lambda inf: builds.append(1) or real(inf))
    store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}, "spec": {"podCIDR": "10.244.1.0/24"},
                  "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}]}})
    s.sync(informer, informer.poll(0.1), 1.0)
    assert len(builds) == 1  # a new node: its addresses count (own-node traffic)
    mutate(store, "Node", "", "node1", lambda o: {**o, "status": {**o["status"], "conditions": [{"type": "Ready"}]}})
    mutate(store, "Pod", "x", "a", lambda o: {**o, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    s.sync(informer, informer.poll(0.1), 2.0)
    assert len(builds) == 1  # a heartbeat and a readiness change: no rebuild
    mutate(store, "Pod", "x", "b", lambda o: {**o, "metadata": {**o["metadata"], "labels": {"pod": "b", "role": "client"}}})
    s.sync(informer, informer.poll(0.1), 3.0)
    assert len(builds) == 2 and "10.244.1.3" in applied[-1]
    store.delete("Pod", "x", "b")
    s.sync(informer, informer.poll(0.1), 4.0)
    assert len(builds) == 3 and applied[-1].startswith("delete element") and "10.244.1.3" in applied[-1]
