"""Store semantics on both backends (SQLite, memory), plus SQLite durability and multi-process writes."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netk8s.dataplane import links, netns
from netk8s.errors import AlreadyExists, Conflict, Expired, NetK8sError, NotFound, ValidationError
from netk8s.lab.etcd import etcd_argv
from netk8s.lab.etcd import wait_ready as wait_etcd
from netk8s.model import naming
from netk8s.store.base import Op, Store, mutate
from netk8s.store.etcd import EtcdStore
from netk8s.store.factory import open_store
from netk8s.store.memory import MemoryStore
from netk8s.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]
StoreFactory = Callable[..., Store]


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real etcd (Debian's etcd-server) inside a namespace of its own; yields its store URL."""
    if os.geteuid() != 0 or shutil.which("etcd") is None:
        pytest.fail("the etcd store tests need root and etcd (make test installs etcd-server)")
    ns = f"{naming.NETNS_PREFIX}t{os.getpid() % 100000}xetcd"
    netns.create_netns(ns)
    proc = None
    try:
        links.ensure_loopback_up(ns)
        data = tmp_path_factory.mktemp("etcd")
        with open(data / "etcd.log", "wb") as log:
            proc = subprocess.Popen(netns.exec_argv(ns, etcd_argv(data / "data", "127.0.0.1")),
                                    stdout=subprocess.DEVNULL, stderr=log)
        url = f"etcd://127.0.0.1:2379?netns={ns}"
        probe = open_store(url)
        try:
            wait_etcd(probe, alive=lambda: proc is not None and proc.poll() is None)
        finally:
            probe.close()
        yield url
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        netns.delete_netns(ns)


_prefixes = itertools.count()


@pytest.fixture(params=["sqlite", "memory", pytest.param("etcd", marks=pytest.mark.integration)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[Store] = []
    etcd_url = request.getfixturevalue("etcd_server") if request.param == "etcd" else ""

    def make(**kw: int) -> Store:
        s: Store
        if request.param == "sqlite":
            s = SqliteStore(tmp_path / "store.db", **kw)
        elif request.param == "memory":
            s = MemoryStore(**kw)
        else:
            # every test gets a key prefix of its own on the shared etcd
            base = open_store(etcd_url)
            assert isinstance(base, EtcdStore)
            base.close()
            s = EtcdStore("127.0.0.1", 2379, prefix=f"/t{os.getpid()}/{next(_prefixes)}",
                          socket_factory=base.socket_factory, **kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    return make_store()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def pod(name: str, ns: str | None = None, spec: dict | None = None, **meta: object) -> dict:
    m: dict = {"name": name, **meta}
    if ns is not None:
        m["namespace"] = ns
    return {"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec or {"containers": [{"name": "c"}]}}


def svc(name: str, ns: str = "default", port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"port": port}]}}


def cm(name: str, count: int = 0) -> dict:
    # A Node stands in for "some cluster-scoped object" whose status we mutate.
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"count": count}}


# --- create / get / uid / rv / timestamps ----------------------------------------------------------

def test_create_sets_store_owned_metadata(store: Store) -> None:
    before = store.revision()
    created = store.create(pod("web"))
    meta = created["metadata"]
    assert meta["namespace"] == "default"
    assert str(uuid.UUID(meta["uid"])) == meta["uid"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["resourceVersion"] == str(before + 1) == str(store.revision())
    assert meta["generation"] == 1
    assert store.get("Pod", "default", "web") == created
    assert store.get("Pod", "", "web") == created  # empty namespace means "default", as in kubectl


def test_two_creates_get_distinct_uids_and_increasing_rvs(store: Store) -> None:
    a = store.create(pod("a"))
    b = store.create(pod("b", "other"))
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert int(b["metadata"]["resourceVersion"]) == int(a["metadata"]["resourceVersion"]) + 1
    assert store.try_get("Pod", "default", "b") is None
    assert store.get("Pod", "other", "b")["metadata"]["namespace"] == "other"


def test_cluster_scoped_objects_have_no_namespace(store: Store) -> None:
    node = store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "namespace": "x"}})
    assert "namespace" not in node["metadata"]
    assert store.get("Node", "", "n1") == node
    assert store.get("Node", "anything", "n1") == node
    assert store.list("Node")[0] == [node]


def test_create_existing_raises_already_exists(store: Store) -> None:
    store.create(pod("web"))
    rev = store.revision()
    with pytest.raises(AlreadyExists, match='pods "web" already exists'):
        store.create(pod("web"))
    assert store.revision() == rev


def test_get_missing_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match='pods "nope" not found'):
        store.get("Pod", "default", "nope")
    assert store.try_get("Pod", "default", "nope") is None


@pytest.mark.parametrize("bad, field", [
    ({"kind": "Pod", "metadata": {}}, "metadata.name"),
    ({"metadata": {"name": "x"}}, "kind"),
    ({"kind": "Gizmo", "metadata": {"name": "x"}}, "Gizmo"),
    ({"kind": "Pod", "metadata": {"name": "x"}, "spec": {"when": object()}}, "JSON"),
])
def test_create_rejects_invalid_objects(store: Store, bad: dict, field: str) -> None:
    r0 = store.revision()
    with pytest.raises(ValidationError, match=field):
        store.create(bad)
    assert store.revision() == r0


def test_generate_name_gives_unique_random_names(store: Store) -> None:
    names = set()
    for _ in range(30):
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}, "spec": {}}
        created = store.create(obj)
        assert re.fullmatch(r"web-[a-z0-9]{5}", created["metadata"]["name"])
        assert store.get("Pod", "default", created["metadata"]["name"]) == created
        names.add(created["metadata"]["name"])
    assert len(names) == 30


def test_callers_never_share_dicts_with_the_store(store: Store) -> None:
    obj = pod("web")
    created = store.create(obj)
    obj["spec"]["containers"].append({"name": "injected"})
    created["spec"]["containers"].append({"name": "injected"})
    got = store.get("Pod", "default", "web")
    assert got["spec"]["containers"] == [{"name": "c"}]
    got["metadata"]["labels"] = {"x": "y"}
    assert "labels" not in store.get("Pod", "default", "web")["metadata"]
    store.list("Pod")[0][0]["spec"] = {}
    assert store.get("Pod", "default", "web")["spec"] == {"containers": [{"name": "c"}]}


# --- update / put / delete -------------------------------------------------------------------------

def test_update_keeps_identity_and_bumps_generation_only_on_spec_change(store: Store) -> None:
    created = store.create(pod("web"))
    new = pod("web", spec={"containers": [{"name": "c2"}]})
    new["metadata"]["uid"] = "forged"
    new["metadata"]["creationTimestamp"] = "1999-01-01T00:00:00Z"
    updated = store.update(new)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert updated["metadata"]["generation"] == 2
    assert int(updated["metadata"]["resourceVersion"]) == int(created["metadata"]["resourceVersion"]) + 1

    status_only = dict(updated, status={"phase": "Running"})
    after_status = store.update(status_only)
    assert after_status["metadata"]["generation"] == 2
    assert after_status["status"] == {"phase": "Running"}
    assert store.get("Pod", "default", "web") == after_status


def test_update_with_stale_resource_version_conflicts(store: Store) -> None:
    v1 = store.create(pod("web"))
    v2 = store.update(dict(v1, status={"phase": "Pending"}))
    with pytest.raises(Conflict, match="has been modified"):
        store.update(dict(v1, status={"phase": "Failed"}))
    assert store.get("Pod", "default", "web") == v2
    # Without a resourceVersion the update is unconditional.
    no_rv = dict(v1, status={"phase": "Failed"})
    no_rv["metadata"] = {k: v for k, v in v1["metadata"].items() if k != "resourceVersion"}
    assert store.update(no_rv)["status"] == {"phase": "Failed"}


def test_update_missing_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update(pod("ghost"))


def test_noop_update_and_put_create_no_revision_and_no_event(store: Store) -> None:
    created = store.create(pod("web"))
    rev = store.revision()
    assert store.update(created) == created
    assert store.update(pod("web")) == created  # same content without store metadata
    assert store.put(pod("web")) == created
    assert store.revision() == rev
    assert store.watch(rev, timeout=0.05) == []


def test_put_creates_then_replaces_whole_object(store: Store) -> None:
    first = store.put(svc("api", port=80) | {"status": {"x": 1}})
    assert first["metadata"]["generation"] == 1
    stale = svc("api", port=81)
    stale["metadata"]["resourceVersion"] = "999"  # put ignores resourceVersion (create-or-replace)
    second = store.put(stale)
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["spec"] == {"ports": [{"port": 81}]}
    assert "status" not in second  # fields left out are removed
    assert second["metadata"]["generation"] == 2
    events = store.watch(0, timeout=0.1)
    assert [e.type for e in events] == ["ADDED", "MODIFIED"]


def test_delete_returns_object_and_emits_deleted(store: Store) -> None:
    created = store.create(pod("web"))
    rev = store.revision()
    gone = store.delete("Pod", "default", "web")
    assert gone == created
    assert store.try_get("Pod", "default", "web") is None
    events = store.watch(rev, timeout=0.1)
    assert [(e.revision, e.type, e.object) for e in events] == [(rev + 1, "DELETED", created)]
    with pytest.raises(NotFound):
        store.delete("Pod", "default", "web")


def test_delete_with_stale_resource_version_conflicts(store: Store) -> None:
    v1 = store.create(pod("web"))
    v2 = store.update(dict(v1, status={"phase": "Running"}))
    with pytest.raises(Conflict):
        store.delete("Pod", "default", "web", resource_version=v1["metadata"]["resourceVersion"])
    assert store.delete("Pod", "default", "web", resource_version=v2["metadata"]["resourceVersion"]) == v2


def test_list_sorted_filtered_with_revision(store: Store) -> None:
    r0 = store.revision()
    for ns, name in [("b", "z"), ("a", "y"), ("b", "a"), ("a", "x")]:
        store.create(pod(name, ns))
    store.create(svc("s", "a"))
    items, rev = store.list("Pod")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in items] == [
        ("a", "x"), ("a", "y"), ("b", "a"), ("b", "z")]
    assert rev == store.revision() == r0 + 5
    items_b, _ = store.list("Pod", "b")
    assert [o["metadata"]["name"] for o in items_b] == ["a", "z"]
    assert store.list("Pod", "nowhere") == ([], r0 + 5)


# --- transactions --------------------------------------------------------------------------------

def test_transaction_applies_all_ops_in_order_after_the_last_revision(store: Store) -> None:
    # SQLite and memory give each op of a transaction the next revision; etcd gives the whole
    # transaction one revision (one etcd txn). Both: in order, after `rev`, ending at revision().
    store.create(pod("old"))
    rev = store.revision()
    out = store.transaction([Op("create", pod("a")), Op("put", svc("s")), Op("delete", pod("old"))])
    assert [o["metadata"]["name"] for o in out] == ["a", "s", "old"]
    events = store.watch(rev, timeout=1.0)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("ADDED", "s"), ("DELETED", "old")]
    revs = [e.revision for e in events]
    assert rev < revs[0] and revs == sorted(revs) and revs[-1] == store.revision()
    assert revs in ([rev + 1, rev + 2, rev + 3], [rev + 1] * 3)
    assert out[0]["metadata"]["resourceVersion"] == str(revs[0])


def test_transaction_sees_its_own_earlier_writes(store: Store) -> None:
    out = store.transaction([Op("create", pod("a")), Op("update", pod("a", spec={"v": 2}))])
    assert out[1]["metadata"]["generation"] == 2
    assert store.get("Pod", "default", "a")["spec"] == {"v": 2}


def test_failing_transaction_changes_nothing(store: Store) -> None:
    store.create(pod("b"))
    store.create(pod("c"))
    before_items, before_rev = store.list("Pod")
    with pytest.raises(AlreadyExists):
        store.transaction([Op("create", pod("a")), Op("update", pod("b", spec={"changed": True})),
                           Op("create", pod("c")), Op("delete", pod("b"))])
    assert store.list("Pod") == (before_items, before_rev)
    assert store.watch(before_rev, timeout=0.05) == []
    # The store still works and continues from the same revision.
    assert store.create(pod("a"))["metadata"]["resourceVersion"] == str(before_rev + 1)


def _checkpointed_bytes(path: Path) -> bytes:
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    return path.read_bytes()


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(str(path))
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_failing_sqlite_transaction_leaves_file_byte_for_byte_unchanged(sqlite_path: Path) -> None:
    store = SqliteStore(sqlite_path)
    try:
        store.create(pod("b"))
        store.create(pod("c"))
        dump = _dump(sqlite_path)
        raw = _checkpointed_bytes(sqlite_path)
        with pytest.raises(NotFound):
            store.transaction([Op("create", pod("a")), Op("put", svc("s")), Op("delete", pod("ghost"))])
        assert _checkpointed_bytes(sqlite_path) == raw
        assert _dump(sqlite_path) == dump
    finally:
        store.close()


# --- watch ---------------------------------------------------------------------------------------

def test_watch_returns_exactly_the_later_events_in_order(store: Store) -> None:
    store.create(pod("a"))
    since = store.revision()
    b = store.create(pod("b"))
    s = store.create(svc("s"))
    b2 = store.update(dict(b, status={"phase": "Running"}))
    gone = store.delete("Service", "default", "s")
    events = store.watch(since, timeout=0.1)
    assert [(e.revision, e.type) for e in events] == [
        (since + 1, "ADDED"), (since + 2, "ADDED"), (since + 3, "MODIFIED"), (since + 4, "DELETED")]
    assert [e.object for e in events] == [b, s, b2, gone]
    assert [e.revision for e in store.watch(since, kinds=["Service"], timeout=0.1)] == [since + 2, since + 4]
    assert store.watch(since + 4, timeout=0.05) == []


def test_watch_times_out_with_no_events(store: Store) -> None:
    store.create(pod("a"))
    t0 = time.monotonic()
    assert store.watch(store.revision(), timeout=0.2) == []
    assert time.monotonic() - t0 >= 0.15  # it waited (a lower bound: a busy machine only adds to it)
    # Events of other kinds do not end the wait.
    store.create(pod("b"))
    assert store.watch(0, kinds=["Service"], timeout=0.05) == []


def test_watch_wakes_up_on_a_write_from_another_thread(store: Store) -> None:
    # A watch that waits an hour returns the write as soon as it happens. Event order, not a stopwatch:
    # the watcher thread must have finished once the write is done and the generous join is over.
    since = store.revision()
    events: list = []
    watcher = threading.Thread(target=lambda: events.extend(store.watch(since, timeout=3600)), daemon=True)
    watcher.start()
    store.create(pod("late"))
    watcher.join(60)
    assert not watcher.is_alive(), "the watch did not wake up on the write"
    assert [e.object["metadata"]["name"] for e in events] == ["late"]


def test_watch_from_compacted_revision_raises_expired(make_store: StoreFactory) -> None:
    store = make_store(keep_events=5, compact_every=1)
    r0 = store.revision()
    for i in range(20):
        store.create(pod(f"p{i}"))
    assert store.revision() == r0 + 20
    with pytest.raises(Expired):
        store.watch(r0, timeout=0.05)
    with pytest.raises(Expired):
        store.watch(r0 + 14, timeout=0.05)
    assert [e.revision - r0 for e in store.watch(r0 + 15, timeout=1.0)] == [16, 17, 18, 19, 20]


def test_compaction_runs_every_n_writes(make_store: StoreFactory) -> None:
    store = make_store(keep_events=3, compact_every=10)
    # Compaction runs when a write's revision crosses a multiple of compact_every. A store that does not
    # start at revision 0 (etcd) first moves to the start of a ten: after a crossing, at most rev % 10 == 0.
    filler = itertools.count()
    while store.revision() % 10:
        store.create(pod(f"f{next(filler)}"))
    r0 = store.revision()
    for i in range(9):
        store.create(pod(f"p{i}"))
    assert len(store.watch(r0, timeout=1.0)) == 9  # nothing compacted since r0
    store.create(pod("p9"))  # revision r0 + 10 crosses the threshold
    with pytest.raises(Expired):
        store.watch(r0, timeout=0.05)
    assert [e.revision - r0 for e in store.watch(r0 + 7, timeout=1.0)] == [8, 9, 10]


# --- concurrency ---------------------------------------------------------------------------------

def test_threads_mutating_one_object_lose_no_update(store: Store) -> None:
    r0 = store.revision()
    store.create(cm("counter"))

    def inc(obj: dict) -> dict:
        obj["status"]["count"] += 1
        return obj

    def work() -> None:
        for _ in range(40):
            mutate(store, "Node", "", "counter", inc, retries=1000)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert store.get("Node", "", "counter")["status"]["count"] == 160
    assert store.revision() == r0 + 161


WORKER = textwrap.dedent("""
    import os, sys, time
    from netk8s.store.base import mutate
    from netk8s.store.sqlite import SqliteStore

    path, mode, who, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = SqliteStore(path)
    open(f"{go}.ready{who}", "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.002)

    def inc(obj):
        obj["status"]["count"] += 1
        obj["status"]["writer"] = who
        return obj

    try:
        if mode == "mutate":
            for _ in range(200):
                assert mutate(store, "Node", "", "counter", inc) is not None
        else:
            for i in range(50):
                store.create({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": f"w{who}-{i}", "namespace": "default"}, "spec": {}})
    finally:
        store.close()
""")


def _run_workers(sqlite_path: Path, mode: str, n: int = 4) -> None:
    go = sqlite_path.parent / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(sqlite_path), mode, str(i), str(go)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(n)]
    try:
        deadline = time.monotonic() + 60
        while not all(Path(f"{go}.ready{i}").exists() for i in range(n)):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker died at start"
            time.sleep(0.01)
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=240)
            assert p.returncode == 0, err.decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.integration
def test_four_processes_mutating_one_object_lose_no_update(sqlite_path: Path) -> None:
    store = SqliteStore(sqlite_path)
    try:
        store.create(cm("counter"))
        _run_workers(sqlite_path, "mutate")
        assert store.get("Node", "", "counter")["status"]["count"] == 800
        assert store.revision() == 801
        events = store.watch(1, timeout=0.1)
        assert [e.object["status"]["count"] for e in events] == list(range(1, 801))
        assert [e.revision for e in events] == list(range(2, 802))
        # The writers really ran at the same time: the last writer changes many times.
        writers = [e.object["status"]["writer"] for e in events]
        assert sum(1 for a, b in itertools.pairwise(writers) if a != b) > 3
    finally:
        store.close()


@pytest.mark.integration
def test_four_processes_creating_objects_at_once(sqlite_path: Path) -> None:
    store = SqliteStore(sqlite_path)
    try:
        _run_workers(sqlite_path, "create")
        items, rev = store.list("Pod")
        assert len(items) == 200 and rev == 200
        assert sorted(int(o["metadata"]["resourceVersion"]) for o in items) == list(range(1, 201))
        assert len({o["metadata"]["uid"] for o in items}) == 200
    finally:
        store.close()


# --- durability ----------------------------------------------------------------------------------

def test_sqlite_store_survives_close_and_reopen(sqlite_path: Path) -> None:
    store = SqliteStore(sqlite_path)
    a = store.create(pod("a"))
    store.update(dict(a, status={"phase": "Running"}))
    store.create(svc("s"))
    store.delete("Service", "default", "s")
    items, rev = store.list("Pod")
    events = store.watch(0, timeout=0.05)
    store.close()
    with pytest.raises(NetK8sError, match="closed"):
        store.get("Pod", "default", "a")

    again = SqliteStore(sqlite_path)
    try:
        assert again.list("Pod") == (items, rev)
        assert again.list("Service") == ([], rev)
        assert again.revision() == rev == 4
        assert again.watch(0, timeout=0.05) == events
        assert again.create(pod("b"))["metadata"]["resourceVersion"] == "5"
    finally:
        again.close()


def test_sqlite_reads_do_not_write(sqlite_path: Path) -> None:
    store = SqliteStore(sqlite_path)
    try:
        store.create(pod("a"))
        raw = _checkpointed_bytes(sqlite_path)
        wal = sqlite_path.with_name(sqlite_path.name + "-wal")
        wal_size = wal.stat().st_size
        store.get("Pod", "default", "a")
        store.list("Pod")
        store.watch(0, timeout=0.05)
        store.revision()
        assert wal.stat().st_size == wal_size
        assert sqlite_path.read_bytes() == raw
    finally:
        store.close()


# --- factory -------------------------------------------------------------------------------------

def test_open_store_by_url(tmp_path: Path) -> None:
    for url in (f"sqlite://{tmp_path}/a.db", str(tmp_path / "b" / "b.db")):
        s = open_store(url)
        try:
            assert isinstance(s, SqliteStore)
            s.create(pod("x"))
        finally:
            s.close()
    assert (tmp_path / "a.db").exists() and (tmp_path / "b" / "b.db").exists()
    m = open_store("memory://")
    assert isinstance(m, MemoryStore)
    m.close()


def test_open_store_refuses_bad_etcd_urls_and_unknown_schemes() -> None:
    with pytest.raises(NetK8sError, match="bad port") as info:
        open_store("etcd://127.0.0.1:twenty")
    assert info.value.hint
    with pytest.raises(NetK8sError, match="unknown option"):
        open_store("etcd://127.0.0.1:2379?tls=yes")
    assert isinstance(open_store("etcd://127.0.0.1:2379/lab1"), EtcdStore)
    with pytest.raises(NetK8sError, match="unknown store URL scheme"):
        open_store("redis://localhost")
