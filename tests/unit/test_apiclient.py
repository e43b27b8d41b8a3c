"""The API store client (store/apiclient.py), the lab PKI (lab/pki.py) and kubeconfigs (store/kubeconfig.py).

Pure parts first (URLs, paths, Status -> errors, kubeconfig build/read/merge, the per-kind cursor
helper); then, marked integration, the Store protocol against a real API server over HTTPS on
127.0.0.1 (an in-process server over a MemoryStore): the verbs, watches, the Informer relisting on
410 Gone, reconnecting after a restart, and authentication/authorization with the lab's credentials.
"""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from netk8s.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    NetK8sError,
    NotFound,
    Unauthorized,
    ValidationError,
)
from netk8s.lab.pki import LabPki, certificate_sans, certificate_subject, lab_credentials
from netk8s.store import kubeconfig
from netk8s.store.apiclient import (
    ApiClientStore,
    ApiUnavailable,
    collection_path,
    error_from_status,
    object_path,
    parse_url,
)
from netk8s.store.base import Op, mutate, watch_kinds
from netk8s.store.factory import open_store
from netk8s.store.informer import Informer
from netk8s.store.memory import MemoryStore
from tests.unit.apiclient_util import ServedApi

# ------------------------------------------------------------------------------------------ pure


@pytest.mark.parametrize("kind, ns, want", [
    ("Pod", "web", "/api/v1/namespaces/web/pods"),
    ("Pod", None, "/api/v1/pods"),
    ("Pod", "", "/api/v1/namespaces/default/pods"),
    ("Deployment", "a", "/apis/apps/v1/namespaces/a/deployments"),
    ("Node", "ignored", "/api/v1/nodes"),
    ("EndpointSlice", None, "/apis/discovery.k8s.io/v1/endpointslices"),
])
def test_collection_paths_are_kube_apiservers(kind: str, ns: str | None, want: str) -> None:
    assert collection_path(kind, ns) == want


def test_object_paths_with_subresources() -> None:
    assert object_path("Pod", "", "web", "status") == "/api/v1/namespaces/default/pods/web/status"
    assert object_path("Namespace", "", "kube-system") == "/api/v1/namespaces/kube-system"
    assert object_path("Ingress", "x", "i") == "/apis/networking.k8s.io/v1/namespaces/x/ingresses/i"


@pytest.mark.parametrize("url, want", [
    ("https://127.0.0.1:6443?kubeconfig=/s/kc", ("https://127.0.0.1:6443", Path("/s/kc"), "")),
    ("https://192.168.56.10:6443?kubeconfig=%2Fa%2Fb&context=c", ("https://192.168.56.10:6443", Path("/a/b"), "c")),
    ("kubeconfig:///etc/kc?context=x", ("", Path("/etc/kc"), "x")),
])
def test_parse_url(url: str, want: tuple) -> None:
    assert parse_url(url) == want


@pytest.mark.parametrize("url, words", [
    ("https://127.0.0.1:6443", "kubeconfig=PATH is required"),
    ("https://127.0.0.1?kubeconfig=/k", "port is required"),
    ("https://127.0.0.1:1?kubeconfig=/k&netns=x", "unknown option 'netns'"),
    ("kubeconfig://", "no kubeconfig path"),
])
def test_parse_url_refuses_bad_urls_naming_the_part(url: str, words: str) -> None:
    with pytest.raises(NetK8sError) as err:
        parse_url(url)
    assert words in err.value.message


@pytest.mark.parametrize("code, reason, cls", [
    (404, "NotFound", NotFound), (409, "AlreadyExists", AlreadyExists), (409, "Conflict", Conflict),
    (410, "Expired", Expired), (401, "Unauthorized", Unauthorized), (403, "Forbidden", Forbidden),
    (422, "Invalid", ValidationError), (400, "BadRequest", BadRequest), (500, "InternalError", NetK8sError),
])
def test_status_becomes_the_same_error_class(code: int, reason: str, cls: type) -> None:
    err = error_from_status(code, {"kind": "Status", "reason": reason, "code": code, "message": "m"})
    assert type(err) is cls
    assert "m" in err.message


def test_invalid_status_keeps_its_field() -> None:
    err = error_from_status(422, {"kind": "Status", "reason": "Invalid", "code": 422,
                                  "message": 'Service "s" is invalid: spec.ports[0].port: Invalid value: 0',
                                  "details": {"causes": [{"field": "spec.ports[0].port", "reason": "FieldValueInvalid"}]}})
    assert isinstance(err, ValidationError) and err.field == "spec.ports[0].port"


def test_watch_kinds_over_one_history_moves_every_cursor() -> None:
    store = MemoryStore()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "a"}})
    events, cursors = watch_kinds(store, {"Namespace": 0, "Node": 0}, 0)
    assert [(e.type, e.object["kind"]) for e in events] == [("ADDED", "Namespace")]
    assert cursors == {"Namespace": 2, "Node": 2}  # a quiet kind follows the store's last event
    events, cursors = watch_kinds(store, {"Namespace": 1, "ConfigMap": 0}, 0)
    assert [e.object["kind"] for e in events] == ["ConfigMap"]  # per-kind cursors: no repeat
    store.close()


def test_kubeconfig_build_read_and_merge(tmp_path: Path) -> None:
    cfg = kubeconfig.build("lab1", "https://127.0.0.1:1234", b"CA", b"CERT", b"KEY")
    path = tmp_path / "kc"
    kubeconfig.write(path, cfg)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    got = kubeconfig.read(path)
    assert got == kubeconfig.ClientConfig("https://127.0.0.1:1234", b"CA", b"CERT", b"KEY", "", "netk8s-lab1")
    other = {"apiVersion": "v1", "kind": "Config", "current-context": "x",
             "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}},
                          {"name": "netk8s-lab1", "context": {"cluster": "old", "user": "old"}}],
             "clusters": [{"name": "x", "cluster": {"server": "https://10.0.0.1"}}], "users": []}
    merged = kubeconfig.merge(other, cfg)
    assert merged["current-context"] == "netk8s-lab1"
    assert [c["name"] for c in merged["contexts"]] == ["x", "netk8s-lab1"]
    assert merged["contexts"][1]["context"] == {"cluster": "netk8s-lab1", "user": "netk8s-lab1"}
    assert [c["name"] for c in merged["clusters"]] == ["x", "netk8s-lab1"]


def test_kubeconfig_reads_files_relative_to_itself_and_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    path = tmp_path / "kc"
    path.write_text("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
                    "clusters: [{name: k, cluster: {server: 'https://h:1', certificate-authority: ca.crt}}]\n"
                    "users: [{name: u, user: {token: abc}}]\n")
    got = kubeconfig.read(path)
    assert (got.ca_data, got.token, got.server) == (b"CA", "abc", "https://h:1")
    with pytest.raises(NetK8sError, match="context 'nope' not found"):
        kubeconfig.read(path, "nope")
    path.write_text("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
                    "clusters: [{name: k, cluster: {server: 'http://h:1'}}]\n")
    with pytest.raises(NetK8sError, match="is not an https:// URL"):
        kubeconfig.read(path)


def test_default_kubeconfig_path_follows_kubeconfig_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a:{tmp_path}/b")
    assert kubeconfig.default_path() == tmp_path / "a"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kubeconfig.default_path() == tmp_path / ".kube" / "config"


def test_lab_pki_names_roles_and_keeps_keys_private(tmp_path: Path) -> None:
    pki = LabPki(tmp_path / "pki")
    creds = lab_credentials(pki, "lab1", ["127.0.0.1", "192.168.56.10", "10.96.0.1"], ["node1"])
    ips, names = certificate_sans(creds["apiserver"].cert)
    assert ips == ["127.0.0.1", "192.168.56.10", "10.96.0.1"]
    assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local"} <= set(names)
    assert certificate_subject(creds["admin"].cert) == ("kubernetes-admin", ("system:masters",))
    assert certificate_subject(creds["node-node1"].cert) == ("system:node:node1", ("system:nodes",))
    assert certificate_subject(creds["viewer"].cert)[1] == ("netk8s:viewers",)
    assert creds["node-node1"].cert.read_bytes() != creds["admin"].cert.read_bytes()
    for key in (tmp_path / "pki").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    ca = pki.ca.cert.read_bytes()
    pki.ensure_ca("lab1")
    assert pki.ca.cert.read_bytes() == ca  # made once per lab


# ------------------------------------------------------------------------------------------ over HTTPS


def pod(name: str, ns: str = "default", labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def node(name: str, count: int = 0) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": {"count": str(count)}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedApi]:
    api = ServedApi(tmp_path, MemoryStore(keep_events=5, compact_every=1)).start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def client(served: ServedApi) -> Iterator[ApiClientStore]:
    c = served.client()
    try:
        yield c
    finally:
        c.close()


@pytest.mark.integration
def test_create_get_list_through_the_api(client: ApiClientStore, served: ServedApi) -> None:
    before = client.revision()
    created = client.create(pod("web"))
    assert created["metadata"]["resourceVersion"] == str(before + 1) == str(client.revision())
    assert created["spec"]["containers"][0]["image"] == "nginx"
    assert client.get("Pod", "", "web") == created == served.store.get("Pod", "default", "web")
    with pytest.raises(AlreadyExists, match='pods "web" already exists'):
        client.create(pod("web"))
    with pytest.raises(NotFound, match='pods "nope" not found'):
        client.get("Pod", "default", "nope")
    assert client.try_get("Pod", "default", "nope") is None
    items, rev = client.list("Pod")
    assert [o["metadata"]["name"] for o in items] == ["web"] and rev == client.revision()
    assert client.list("Pod", "other")[0] == []
    named = client.create({**pod(""), "metadata": {"generateName": "gen-", "namespace": "default"}})
    assert named["metadata"]["name"].startswith("gen-")


@pytest.mark.integration
def test_invalid_objects_come_back_as_validation_errors_and_nothing_is_stored(client: ApiClientStore) -> None:
    rev = client.revision()
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 0}]}}
    with pytest.raises(ValidationError, match=r"spec\.ports\[0\]\.port"):
        client.create(bad)
    assert client.revision() == rev and client.try_get("Service", "default", "s") is None


@pytest.mark.integration
def test_update_put_delete_keep_store_semantics(client: ApiClientStore) -> None:
    created = client.create(node("n1"))
    stale = dict(created)
    changed = client.update({**created, "metadata": {**created["metadata"], "labels": {"a": "b"}}})
    assert changed["metadata"]["labels"] == {"a": "b"}
    with pytest.raises(Conflict, match="the object has been modified"):
        client.update({**stale, "metadata": {**stale["metadata"], "labels": {"c": "d"}}})
    # a status change goes to the status subresource, in the same update() call
    changed["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    after = client.update(changed)
    assert after["status"]["conditions"][0]["status"] == "False"
    assert client.get("Node", "", "n1")["status"] == after["status"]
    # put: replace without a resourceVersion, create when absent
    assert client.put(node("n1", 5))["metadata"]["annotations"] == {"count": "5"}
    assert client.put(node("n2"))["metadata"]["name"] == "n2"
    rev = client.revision()
    assert client.put(node("n2")) == client.get("Node", "", "n2") and client.revision() == rev  # no-op
    with pytest.raises(Conflict):
        client.delete("Node", "", "n2", resource_version="1")
    gone = client.delete("Node", "", "n2")
    assert gone["metadata"]["name"] == "n2" and client.try_get("Node", "", "n2") is None
    # a pod bound to a node is removed at once (gracePeriodSeconds=0), as a kubelet finishes a deletion
    bound = client.create({**pod("p"), "spec": {**pod("p")["spec"], "nodeName": "n1"}})
    assert client.delete("Pod", "default", "p", bound["metadata"]["resourceVersion"])["metadata"]["name"] == "p"
    assert client.try_get("Pod", "default", "p") is None
    with pytest.raises(NotFound):
        client.delete("Pod", "default", "p")
    out = client.transaction([Op("create", pod("t1")), Op("create", pod("t2")),
                              Op("delete", {"kind": "Pod", "metadata": {"name": "t1"}})])
    assert [o["metadata"]["name"] for o in out] == ["t1", "t2", "t1"]
    assert [o["metadata"]["name"] for o in client.list("Pod")[0]] == ["t2"]


@pytest.mark.integration
def test_threads_mutating_one_object_through_the_api_lose_no_update(served: ServedApi) -> None:
    clients = [served.client() for _ in range(4)]
    try:
        clients[0].create(node("n1"))

        def bump(c: ApiClientStore) -> None:
            for _ in range(10):
                mutate(c, "Node", "", "n1", lambda o: {**o, "metadata": {
                    **o["metadata"], "annotations": {"count": str(int(o["metadata"]["annotations"]["count"]) + 1)}}})

        threads = [threading.Thread(target=bump, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert clients[0].get("Node", "", "n1")["metadata"]["annotations"]["count"] == "40"
    finally:
        for c in clients:
            c.close()


@pytest.mark.integration
def test_watch_returns_later_events_of_each_kind_and_wakes_on_writes(client: ApiClientStore, served: ServedApi) -> None:
    start = client.revision()
    client.create(pod("a"))
    client.create(node("n1"))
    client.delete("Pod", "default", "a")
    # kinds are separate streams: one cursor per kind (watch_kinds), as the Informer keeps them
    cursors = {"Pod": start, "Node": start}
    events: list = []
    deadline = time.monotonic() + 30
    while len(events) < 3:
        assert time.monotonic() < deadline, events
        got, cursors = client.watch_kinds(cursors, timeout=5)
        events = sorted(events + got, key=lambda e: e.revision)
    assert [(e.type, e.object["kind"], e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "Pod", "a"), ("ADDED", "Node", "n1"), ("DELETED", "Pod", "a")]
    assert [e.revision for e in events] == list(range(start + 1, start + 4))
    assert client.watch(client.revision(), ["Pod"], timeout=0.2) == []
    rev = client.revision()
    threading.Timer(0.3, lambda: served.store.create(pod("late"))).start()
    got = client.watch(rev, ["Pod"], timeout=10)
    assert [e.object["metadata"]["name"] for e in got] == ["late"]


@pytest.mark.integration
def test_informer_over_the_api_relists_after_410_and_resumes_after_a_restart(served: ServedApi) -> None:
    client = served.client(retry_for=30)
    try:
        client.create(pod("keep"))
        client.create(pod("drop"))
        inf = Informer(client, ["Pod", "Node"])
        inf.sync()
        assert [p["metadata"]["name"] for p in inf.list("Pod")] == ["drop", "keep"]
        # the server goes away; meanwhile the store moves on far past its kept history (5 events)
        served.stop()
        served.store.delete("Pod", "default", "drop")
        for i in range(10):
            served.store.put(node("n1", i))
        served.start()
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + 30
        while ("DELETED", "drop") not in seen or ("ADDED", "n1") not in seen:
            assert time.monotonic() < deadline, seen
            seen += [(e.type, e.object["metadata"]["name"]) for e in inf.poll(1.0)]
        assert [p["metadata"]["name"] for p in inf.list("Pod")] == ["keep"]
        assert inf.get("Node", "", "n1")["metadata"]["annotations"] == {"count": "9"}
        # and it keeps following the new stream
        client.create(pod("new"))
        names: list[str] = []
        while "new" not in names:
            assert time.monotonic() < deadline, names
            names += [e.object["metadata"]["name"] for e in inf.poll(1.0)]
    finally:
        client.close()


@pytest.mark.integration
def test_a_watch_from_a_compacted_revision_raises_expired(client: ApiClientStore) -> None:
    for i in range(12):
        client.put(node("n1", i))
    with pytest.raises(Expired, match="too old resource version"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client.watch(1, ["Node"], timeout=1)


@pytest.mark.integration
def test_requests_retry_while_the_server_restarts_and_fail_clearly_when_it_stays_down(served: ServedApi) -> None:
    c = served.client(retry_for=30)
    quick = served.client(retry_for=0.5)
    try:
        served.stop()
        threading.Timer(1.0, served.start).start()
        assert c.list("Namespace")[0][0]["metadata"]["name"] == "default"
        served.stop()
        with pytest.raises(ApiUnavailable, match="Connection refused") as err:
            quick.revision()
        assert "is the lab's API server running" in err.value.hint
        served.start()
    finally:
        c.close()
        quick.close()


@pytest.mark.integration
def test_credentials_and_roles(served: ServedApi, tmp_path: Path) -> None:
    anonymous = urllib3.PoolManager(ca_certs=str(served.pki.ca.cert), cert_reqs="CERT_REQUIRED")
    try:
        resp = anonymous.request("GET", served.url + "/api/v1/namespaces", retries=False)
        assert resp.status == 401 and resp.json()["reason"] == "Unauthorized"
    finally:
        anonymous.clear()
    node_client, viewer = served.client("node-n1"), served.client("viewer")
    try:
        assert node_client.get("Namespace", "", "default")["metadata"]["name"] == "default"
        with pytest.raises(Forbidden, match='User "system:node:n1" cannot delete resource "namespaces"'):
            node_client.delete("Namespace", "", "default")
        node_client.create(node("n1"))  # a node registers itself
        with pytest.raises(Forbidden):
            viewer.create(pod("x"))
        assert viewer.list("Node")[0][0]["metadata"]["name"] == "n1"
    finally:
        node_client.close()
        viewer.close()
    # the factory opens the same client from a URL: server from the URL, credentials from the kubeconfig
    store = open_store(f"{served.url}?kubeconfig={served.kubeconfig('admin')}")
    try:
        assert store.get("Namespace", "", "default")["kind"] == "Namespace"
    finally:
        store.close()
    other = LabPki(tmp_path / "other")
    creds = lab_credentials(other, "other", ["127.0.0.1"], [])
    foreign = tmp_path / "foreign.kubeconfig"
    kubeconfig.write(foreign, kubeconfig.build("x", served.url, served.pki.ca.cert.read_bytes(),
                                               creds["admin"].cert.read_bytes(), creds["admin"].key.read_bytes()))
    stranger = ApiClientStore(kubeconfig.read(foreign), retry_for=0)
    try:
        with pytest.raises((Unauthorized, ApiUnavailable)):
            stranger.revision()  # another lab's CA signed it: not a user here
    finally:
        stranger.close()
