"""API server watch: events from a resourceVersion, initial events, bookmarks, 410 Expired, Tables, selectors."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import ClientResponse

from netk8s.store.memory import MemoryStore
from tests.unit.apiserver_util import ADMIN, Api, pod, run_api

pytestmark = pytest.mark.integration

PODS = "/api/v1/namespaces/default/pods"
DEADLINE_S = 10.0
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


async def open_watch(api: Api, path: str, params: dict, accept: str = "application/json") -> ClientResponse:
    resp = await api.client.get(path, params={"watch": "true", **params},
                                headers={"Authorization": f"Bearer {ADMIN}", "Accept": accept})
    assert resp.status == 200
    return resp


async def next_event(resp: ClientResponse) -> dict:
    line = await asyncio.wait_for(resp.content.readline(), DEADLINE_S)
    assert line, "watch stream ended"
    event: dict = json.loads(line)
    return event


async def rv_of_list(api: Api) -> str:
    _, body, _ = await api.call("GET", PODS)
    rv: str = body["metadata"]["resourceVersion"]
    return rv


def test_watch_from_the_list_revision_sees_added_modified_deleted() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", PODS, pod("before"))
        rv = await rv_of_list(api)
        resp = await open_watch(api, PODS, {"resourceVersion": rv})
        _, created, _ = await api.call("POST", PODS, pod("p"))
        created["metadata"]["labels"] = {"v": "2"}
        await api.call("PUT", f"{PODS}/p", created)
        await api.call("DELETE", f"{PODS}/p")
        events = [await next_event(resp) for _ in range(3)]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "p"), ("MODIFIED", "p"), ("DELETED", "p")]
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs) and rvs[0] > int(rv)  # the DELETED object carries the deletion's revision
        resp.close()

    run_api(t)


def test_watch_resumes_from_an_older_revision() -> None:
    async def t(api: Api) -> None:
        rv = await rv_of_list(api)
        for name in ("a", "b", "c"):
            await api.call("POST", PODS, pod(name))
        _, b, _ = await api.call("GET", f"{PODS}/b")
        resp = await open_watch(api, "/api/v1/watch/namespaces/default/pods", {"resourceVersion": rv})
        assert [(await next_event(resp))["object"]["metadata"]["name"] for _ in range(3)] == ["a", "b", "c"]
        resp.close()
        # resuming from b's revision replays only what came after it
        resp = await open_watch(api, PODS, {"resourceVersion": b["metadata"]["resourceVersion"]})
        assert (await next_event(resp))["object"]["metadata"]["name"] == "c"
        resp.close()

    run_api(t)


def test_watch_without_revision_starts_with_the_current_objects() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", PODS, pod("x"))
        resp = await open_watch(api, PODS, {})
        event = await next_event(resp)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "x")
        resp.close()
        resp = await open_watch(api, PODS, {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                                            "resourceVersionMatch": "NotOlderThan"})
        assert (await next_event(resp))["type"] == "ADDED"
        mark = await next_event(resp)
        assert mark["type"] == "BOOKMARK"
        assert mark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        assert int(mark["object"]["metadata"]["resourceVersion"]) >= 2
        resp.close()

    run_api(t)


def test_watch_from_a_compacted_revision_is_410_expired() -> None:
    store = MemoryStore(keep_events=3, compact_every=1)
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})

    async def t(api: Api) -> None:
        for i in range(10):
            await api.call("POST", PODS, pod(f"p{i}"))
        resp = await open_watch(api, PODS, {"resourceVersion": "1"})
        event = await next_event(resp)
        assert event["type"] == "ERROR"
        status = event["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        assert status["message"].startswith("too old resource version: 1")
        assert await asyncio.wait_for(resp.content.readline(), DEADLINE_S) == b""  # the stream ends
        resp.close()

    run_api(t, store)


def test_watch_timeout_and_selectors() -> None:
    async def t(api: Api) -> None:
        rv = await rv_of_list(api)
        resp = await open_watch(api, PODS, {"resourceVersion": rv, "labelSelector": "app=web", "timeoutSeconds": "30"})
        await api.call("POST", PODS, pod("other", labels={"app": "db"}))
        await api.call("POST", PODS, pod("web-1", labels={"app": "web"}))
        assert (await next_event(resp))["object"]["metadata"]["name"] == "web-1"
        resp.close()
        resp = await open_watch(api, PODS, {"resourceVersion": rv, "timeoutSeconds": "1"})
        names = []
        while line := await asyncio.wait_for(resp.content.readline(), DEADLINE_S):
            names.append(json.loads(line)["object"]["metadata"]["name"])
        assert names == ["other", "web-1"]  # then the server closed the stream at its timeout
        # a watch on one object (the path names it)
        resp = await open_watch(api, f"{PODS}/web-1", {"resourceVersion": rv})
        assert (await next_event(resp))["object"]["metadata"]["name"] == "web-1"
        resp.close()

    run_api(t)


def test_watch_as_table_sends_column_definitions_once() -> None:
    async def t(api: Api) -> None:
        rv = await rv_of_list(api)
        resp = await open_watch(api, PODS, {"resourceVersion": rv}, accept=TABLE)
        await api.call("POST", PODS, pod("a"))
        await api.call("POST", PODS, pod("b"))
        first, second = await next_event(resp), await next_event(resp)
        assert first["object"]["kind"] == "Table" and first["object"]["columnDefinitions"]
        assert second["object"]["columnDefinitions"] == []
        assert second["object"]["rows"][0]["cells"][0] == "b"
        resp.close()

    run_api(t)


def test_watch_with_a_selector_sees_objects_enter_and_leave_it() -> None:
    async def t(api: Api) -> None:
        _, p, _ = await api.call("POST", PODS, pod("p"))
        rv = await rv_of_list(api)
        resp = await open_watch(api, "/api/v1/pods", {"resourceVersion": rv, "fieldSelector": "spec.nodeName=n1"})
        p["spec"]["nodeName"] = "n1"  # bound to the node: it enters the node's watch as ADDED
        _, p, _ = await api.call("PUT", f"{PODS}/p", p)
        p["metadata"]["labels"] = {"x": "y"}
        _, p, _ = await api.call("PUT", f"{PODS}/p", p)
        assert [(await next_event(resp))["type"] for _ in range(2)] == ["ADDED", "MODIFIED"]
        resp.close()
        # a label change that takes the object out of a label selector is a DELETED for that watch
        rv = await rv_of_list(api)
        resp = await open_watch(api, PODS, {"resourceVersion": rv, "labelSelector": "x=y"})
        p["metadata"]["labels"] = {"x": "z"}
        await api.call("PUT", f"{PODS}/p", p)
        event = await next_event(resp)
        assert (event["type"], event["object"]["metadata"]["labels"]) == ("DELETED", {"x": "z"})
        resp.close()

    run_api(t)


def test_a_watcher_too_far_behind_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    from netk8s.apiserver import watch
    from netk8s.store.base import Event

    monkeypatch.setattr(watch, "MAX_PENDING_BATCHES", 2)
    hub = watch.WatchHub(MemoryStore())

    async def t() -> None:
        q = hub.subscribe()
        for rev in (1, 2, 3):
            hub._dispatch([Event(rev, "ADDED", pod(f"p{rev}"))])
        assert [q.get_nowait() for _ in range(3)] == [[Event(1, "ADDED", pod("p1"))],
                                                     [Event(2, "ADDED", pod("p2"))], None]
        hub._dispatch([Event(4, "ADDED", pod("p4"))])
        assert q.empty()  # unsubscribed

    asyncio.run(t())


def test_selected_events_seeded_at_a_revision_never_lose_a_leave() -> None:
    from netk8s.apiserver.watch import SelectedEvents

    def obj(name: str, rv: int, x: str) -> dict:
        return {"metadata": {"uid": name, "name": name, "resourceVersion": str(rv), "labels": {"x": x}}}

    sel = SelectedEvents(lambda o: o["metadata"]["labels"].get("x") == "y", selective=True)
    # at revision 10: a matched (rv 5), b did not (rv 6); c was changed after 10; d is gone since
    sel.seed([obj("a", 5, "y"), obj("b", 6, "n"), obj("c", 12, "n")], since=10)
    assert sel.convert("MODIFIED", obj("a", 13, "n")) == "DELETED"
    assert sel.convert("MODIFIED", obj("b", 14, "y")) == "ADDED"
    # c's state at 10 is unknown: its first event counts it as matched, so leaving is never lost
    assert sel.convert("MODIFIED", obj("c", 12, "n")) == "DELETED"
    assert sel.convert("MODIFIED", obj("c", 15, "n")) is None
    assert sel.convert("DELETED", obj("d", 11, "n")) == "DELETED"
    assert sel.convert("ADDED", obj("e", 16, "n")) is None
