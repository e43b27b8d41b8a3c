"""pods/portforward refusals: kubectl's SPDY protocols (tunnelled in a WebSocket, or plain SPDY/3.1) get
a BadRequest Status naming the protocol the client asked for, before any kubelet is dialled; a missing
pod is 404 and a read-only user is 403, as for pods/exec."""

from __future__ import annotations

import pytest

import netk8s.apiserver.streams  # noqa: F401  (registers pods/exec, pods/log, pods/portforward)
from tests.unit.apiserver_util import ADMIN, VIEWER, Api, pod, run_api

pytestmark = pytest.mark.integration

FORWARD = "/api/v1/namespaces/default/pods/p/portforward"
WEBSOCKET = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}

CASES = [
    pytest.param("GET", dict(WEBSOCKET, **{"Sec-WebSocket-Protocol": "SPDY/3.1+portforward.k8s.io"}),
                 "pods/portforward: the WebSocket protocol SPDY/3.1+portforward.k8s.io (SPDY tunnelled in a "
                 "WebSocket) is not supported; it is served as a WebSocket in v4.channel.k8s.io or "
                 "portforward.k8s.io", id="kubectl-websocket-tunnel"),
    pytest.param("POST", {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                          "X-Stream-Protocol-Version": "portforward.k8s.io"},
                 "pods/portforward: the protocol SPDY/3.1 is not supported; it is served as a WebSocket "
                 "in v4.channel.k8s.io or portforward.k8s.io", id="kubectl-spdy-fallback"),
    pytest.param("GET", dict(WEBSOCKET, **{"Sec-WebSocket-Protocol": "v9.channel.k8s.io"}),
                 "pods/portforward: none of the WebSocket protocols v9.channel.k8s.io is supported; it is served "
                 "as a WebSocket in v4.channel.k8s.io or portforward.k8s.io", id="unknown-websocket-protocol"),
    pytest.param("GET", {}, "Upgrade request required: pods/portforward is a stream; it is served as a WebSocket "
                 "in v4.channel.k8s.io or portforward.k8s.io", id="plain-get"),
]


def _seed(api: Api) -> None:
    api.store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "status": {
        "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}})
    api.store.create(pod("p", node="n1"))


async def _request(api: Api, method: str, path: str, headers: dict, token: str = ADMIN) -> tuple[int, dict]:
    resp = await api.client.request(method, path, params={"ports": "80"},
                                    headers=dict(headers, Authorization=f"Bearer {token}"))
    return resp.status, await resp.json()


@pytest.mark.parametrize(("method", "headers", "message"), CASES)
def test_unsupported_protocols_get_a_status_naming_them(method: str, headers: dict, message: str) -> None:
    async def t(api: Api) -> None:
        _seed(api)
        code, status = await _request(api, method, FORWARD, headers)
        assert (code, status["kind"], status["reason"], status["message"]) == (400, "Status", "BadRequest", message)

    run_api(t)


def test_missing_pod_and_read_only_user() -> None:
    tunnel = dict(WEBSOCKET, **{"Sec-WebSocket-Protocol": "SPDY/3.1+portforward.k8s.io"})

    async def t(api: Api) -> None:
        _seed(api)
        code, status = await _request(api, "GET", FORWARD.replace("/p/", "/missing/"), tunnel)
        assert (code, status["reason"], status["message"]) == (404, "NotFound", 'pods "missing" not found')
        code, status = await _request(api, "GET", FORWARD, tunnel, token=VIEWER)
        assert (code, status["reason"]) == (403, "Forbidden")
        assert 'cannot create resource "pods/portforward"' in status["message"], status

    run_api(t)
