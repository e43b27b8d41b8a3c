"""Informer: initial sync, incremental poll, per-kind list revisions, and recovery from Expired."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import pytest

from netk8s.errors import Expired
from netk8s.store.base import Event, Store
from netk8s.store.informer import Informer
from netk8s.store.memory import MemoryStore
from netk8s.store.sqlite import SqliteStore

StoreFactory = Callable[..., Store]


@pytest.fixture(params=["sqlite", "memory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[Store] = []

    def make(**kw: int) -> Store:
        s: Store = (SqliteStore(tmp_path / "store.db", **kw) if request.param == "sqlite"
                    else MemoryStore(**kw))
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def pod(name: str, ns: str = "default", phase: str = "Pending") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {}, "status": {"phase": phase}}


def svc(name: str, port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"port": port}]}}


def summary(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.type, e.object["kind"], e.object["metadata"]["name"]) for e in events]


def assert_cache_matches_store(inf: Informer, store: Store, kinds: list[str]) -> None:
    for kind in kinds:
        assert inf.list(kind) == store.list(kind)[0]


def test_sync_caches_every_kind(make_store: StoreFactory) -> None:
    store = make_store()
    store.create(pod("b", "ns2"))
    store.create(pod("a"))
    store.create(svc("s"))
    store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    inf = Informer(store, ["Pod", "Service", "Node"])
    inf.sync()
    assert inf.revision == store.revision() == 4
    assert [o["metadata"]["name"] for o in inf.list("Pod")] == ["a", "b"]
    assert [o["metadata"]["name"] for o in inf.list("Pod", "ns2")] == ["b"]
    assert inf.get("Service", "default", "s") == store.get("Service", "default", "s")
    assert inf.get("Node", "", "n1") == store.get("Node", "", "n1")
    assert inf.get("Pod", "default", "missing") is None
    assert inf.list("Endpoints") == []  # a kind the informer does not watch


def test_poll_applies_adds_updates_deletes(make_store: StoreFactory) -> None:
    store = make_store()
    old = store.create(pod("old"))
    inf = Informer(store, ["Pod"])
    inf.sync()
    assert inf.poll(0.05) == []

    a = store.create(pod("a"))
    a2 = store.update(dict(a, status={"phase": "Running"}))
    store.delete("Pod", "default", "old")
    store.create(svc("ignored"))  # not a watched kind
    events = inf.poll(1.0)
    assert summary(events) == [("ADDED", "Pod", "a"), ("MODIFIED", "Pod", "a"), ("DELETED", "Pod", "old")]
    assert events[2].object == old
    assert inf.get("Pod", "default", "a") == a2
    assert inf.get("Pod", "default", "old") is None
    assert inf.revision == store.revision()  # includes the Service event it ignored
    assert_cache_matches_store(inf, store, ["Pod"])
    assert inf.poll(0.05) == []


def test_revision_follows_events_of_unwatched_kinds(make_store: StoreFactory) -> None:
    store = make_store()
    inf = Informer(store, ["Pod"])
    inf.sync()
    store.create(svc("s1"))
    store.create(svc("s2"))
    assert inf.poll(0.1) == []  # waits out the timeout: nothing it watches changed
    assert inf.revision == store.revision() == 2
    store.create(svc("s3"))
    timer = threading.Timer(0.1, lambda: store.create(pod("p")))
    timer.start()
    try:
        events = inf.poll(5.0)
    finally:
        timer.join()
    assert summary(events) == [("ADDED", "Pod", "p")]  # kept waiting past the Service event
    assert inf.revision == 4


def test_cache_is_not_shared_with_callers(make_store: StoreFactory) -> None:
    store = make_store()
    store.create(pod("a"))
    inf = Informer(store, ["Pod"])
    inf.sync()
    inf.get("Pod", "default", "a")["status"]["phase"] = "Hacked"  # type: ignore[index]
    inf.list("Pod")[0]["spec"]["x"] = 1
    assert inf.get("Pod", "default", "a") == store.get("Pod", "default", "a")


def test_poll_before_sync_lists_and_reports_everything_as_added(make_store: StoreFactory) -> None:
    store = make_store()
    store.create(pod("a"))
    store.create(svc("s"))
    inf = Informer(store, ["Pod", "Service"])
    assert summary(inf.poll(0.05)) == [("ADDED", "Pod", "a"), ("ADDED", "Service", "s")]
    assert inf.revision == 2


class _WriteDuringList:
    """Store wrapper that writes between the informer's per-kind lists (a race a real cluster has)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.armed = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[dict], int]:
        if kind == "Service" and self.armed:
            self.armed = False
            self.store.create(pod("between"))
            s = self.store.get("Service", "default", "s")
            self.store.update(dict(s, spec={"ports": [{"port": 81}]}))
        return self.store.list(kind, namespace)

    def watch(self, since: int, kinds: Collection[str] | None = None,
              timeout: float = 1.0) -> builtins.list[Event]:
        return self.store.watch(since, kinds, timeout)


def test_events_already_in_a_later_list_are_not_replayed(make_store: StoreFactory) -> None:
    store = make_store()
    store.create(svc("s"))
    inf = Informer(_WriteDuringList(store), ["Pod", "Service"])  # type: ignore[arg-type]
    inf.sync()
    assert inf.revision == 1  # the Pod list's revision, the older one
    assert inf.get("Service", "default", "s")["spec"]["ports"] == [{"port": 81}]  # type: ignore[index]
    # The Pod created after the Pod list is delivered; the Service update the Service list held is not.
    assert summary(inf.poll(1.0)) == [("ADDED", "Pod", "between")]
    assert inf.revision == 3
    assert_cache_matches_store(inf, store, ["Pod", "Service"])


def test_informer_recovers_from_expired_with_a_diff(make_store: StoreFactory) -> None:
    store = make_store(keep_events=2, compact_every=1)
    keep = store.create(pod("keep"))
    change = store.create(pod("change"))
    store.create(pod("remove"))
    recreate = store.create(pod("recreate"))
    store.create(svc("s"))
    inf = Informer(store, ["Pod", "Service"])
    inf.sync()
    rev = inf.revision

    store.update(dict(change, status={"phase": "Running"}))
    store.delete("Pod", "default", "remove")
    store.delete("Pod", "default", "recreate")
    store.create(pod("recreate"))
    store.create(pod("new"))
    store.create(svc("t"))
    for i in range(3):  # churn that comes and goes: the diff does not mention it
        store.create(pod(f"tmp{i}"))
        store.delete("Pod", "default", f"tmp{i}")
    with pytest.raises(Expired):
        store.watch(rev, timeout=0.01)

    events = inf.poll(1.0)
    assert sorted(summary(events)) == sorted([
        ("MODIFIED", "Pod", "change"), ("DELETED", "Pod", "remove"), ("DELETED", "Pod", "recreate"),
        ("ADDED", "Pod", "recreate"), ("ADDED", "Pod", "new"), ("ADDED", "Service", "t")])
    deleted = {e.object["metadata"]["name"]: e.object for e in events if e.type == "DELETED"}
    assert deleted["recreate"] == recreate  # the old object, with its old uid
    assert all(e.revision == store.revision() for e in events)
    assert inf.get("Pod", "default", "keep") == keep
    assert inf.revision == store.revision()
    assert_cache_matches_store(inf, store, ["Pod", "Service"])

    # And it keeps watching normally afterwards.
    store.create(pod("after"))
    assert summary(inf.poll(1.0)) == [("ADDED", "Pod", "after")]
