"""The subresource hook: a registered handler (as pods/log, pods/exec register) is routed, authorized and
listed by discovery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web

from netk8s.apiserver import resources
from netk8s.apiserver.app import APP_KEY, Target
from tests.unit.apiserver_util import VIEWER, Api, pod, run_api

pytestmark = pytest.mark.integration

PODS = "/api/v1/namespaces/default/pods"


async def echo_log(request: web.Request, target: Target) -> web.StreamResponse:
    server = request.app[APP_KEY]
    obj = await server.read(lambda: server.store.get("Pod", target.namespace or "", target.name))
    return web.Response(text=f"log of {obj['metadata']['name']} ({request.query.get('container', '')})")


@pytest.fixture
def log_subresource() -> Iterator[None]:
    import netk8s.apiserver.streams  # noqa: F401  (registers the real pods/log first, restored below)

    real = resources.SUBRESOURCES.get(("Pod", "log"))
    resources.register(resources.Subresource("Pod", "log", ("get",), ("", "v1", "Pod"), echo_log))
    try:
        yield
    finally:
        if real is not None:
            resources.register(real)


@pytest.mark.usefixtures("log_subresource")
def test_registered_subresource_is_served_and_discovered() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", PODS, pod("p"))
        code, text, _ = await api.call("GET", f"{PODS}/p/log", params={"container": "c"})
        assert (code, text) == (200, "log of p (c)")
        code, body, _ = await api.call("GET", f"{PODS}/missing/log")
        assert (code, body["reason"]) == (404, "NotFound")
        code, body, _ = await api.call("POST", f"{PODS}/p/log", token=VIEWER)
        assert (code, body["reason"]) == (403, "Forbidden")
        code, body, _ = await api.call("POST", f"{PODS}/p/log")
        assert (code, body["reason"]) == (405, "MethodNotAllowed")
        _, listing, _ = await api.call("GET", "/api/v1")
        log = {r["name"]: r for r in listing["resources"]}["pods/log"]
        assert (log["kind"], log["verbs"]) == ("Pod", ["get"])

    run_api(t)


def test_unregistered_subresource_is_404() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", PODS, pod("p"))
        code, body, _ = await api.call("GET", f"{PODS}/p/attach")
        assert (code, body["reason"]) == (404, "NotFound")

    run_api(t)
