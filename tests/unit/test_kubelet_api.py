"""The node agent's kubelet API over a fake pod runtime: bearer-token access, container logs (tail,
limit), and the refusals the API server passes on (unknown pod or container, exec without WebSocket)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from netk8s.errors import NetK8sError
from netk8s.node.kubelet_api import KubeletApi, PodRef, tail_lines

pytestmark = pytest.mark.integration  # aiohttp's test server opens a socket

TOKEN = "kubelet-secret"


class FakeRuntime:
    """The part of PodRuntime the kubelet API reads for logs: log files per (uid, container)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def log_path(self, uid: str, name: str) -> Path:
        return self.root / f"{uid}-{name}.log"

    def containers(self, uid: str) -> list[str]:
        return sorted(p.stem.split("-", 1)[1] for p in self.root.glob(f"{uid}-*.log"))

    def alive(self, uid: str, name: str) -> bool:
        return False


def run(tmp_path: Path, test: Callable[[TestClient], Awaitable[None]]) -> None:
    runtime = FakeRuntime(tmp_path)
    runtime.log_path("u1", "web").write_text("one\ntwo\nthree\n")
    pods = {("default", "p"): PodRef("u1", "netns-p")}
    api = KubeletApi(runtime, lambda ns, name: pods.get((ns, name)), TOKEN)  # type: ignore[arg-type]

    async def main() -> None:
        client = TestClient(TestServer(api.app()))
        await client.start_server()
        try:
            await test(client)
        finally:
            await client.close()

    asyncio.run(main())


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_requests_need_the_token(tmp_path: Path) -> None:
    async def t(client: TestClient) -> None:
        assert (await client.get("/healthz")).status == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            resp = await client.get("/containerLogs/default/p/web", headers=headers)
            assert resp.status == 401 and (await resp.json())["reason"] == "Unauthorized"

    run(tmp_path, t)


@pytest.mark.parametrize(("query", "body"), [
    ({}, "one\ntwo\nthree\n"),
    ({"tailLines": "2"}, "two\nthree\n"),
    ({"tailLines": "0"}, ""),
    ({"limitBytes": "5"}, "one\nt"),
    ({"follow": "true"}, "one\ntwo\nthree\n"),  # the container has ended: a follow ends too
])
def test_container_logs(tmp_path: Path, query: dict, body: str) -> None:
    async def t(client: TestClient) -> None:
        resp = await client.get("/containerLogs/default/p/web", params=query, headers=AUTH)
        assert (resp.status, await resp.text()) == (200, body)

    run(tmp_path, t)


def test_unknown_pod_container_and_bad_requests(tmp_path: Path) -> None:
    async def t(client: TestClient) -> None:
        resp = await client.get("/containerLogs/default/nope/web", headers=AUTH)
        assert resp.status == 404 and "nope" in (await resp.json())["message"]
        resp = await client.get("/containerLogs/default/p/db", headers=AUTH)
        assert resp.status == 404 and 'container "db"' in (await resp.json())["message"]
        resp = await client.get("/containerLogs/default/p/web", params={"tailLines": "x"}, headers=AUTH)
        assert resp.status == 400
        resp = await client.get("/exec/default/p/web", params={"command": "true"}, headers=AUTH)
        assert resp.status == 400 and "WebSocket" in (await resp.json())["message"]
        resp = await client.get("/exec/default/p/web", headers=AUTH)
        assert resp.status == 400 and "command" in (await resp.json())["message"]

    run(tmp_path, t)


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(NetK8sError, match="empty token"):
        KubeletApi(FakeRuntime(Path("/nonexistent")), lambda ns, name: None, "")  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "n", "out"), [
    (b"a\nb\nc\n", 2, b"b\nc\n"), (b"a\nb\nc", 1, b"c"), (b"a\n", 5, b"a\n"), (b"a\n", 0, b""),
])
def test_tail_lines(data: bytes, n: int, out: bytes) -> None:
    assert tail_lines(data, n) == out


def test_tls_serving_and_the_api_servers_client(tmp_path: Path) -> None:
    """The agent's --kubelet-tls-cert/--kubelet-tls-key and the API server's KubeletClient, which
    verifies the kubelet's certificate with --kubelet-certificate-authority and shows the token."""
    import socket

    from netk8s.apiserver.streams import KubeletClient
    from netk8s.node.kubelet_api import KubeletServer, server_tls
    from tests.unit.apiserver_util import make_test_pki

    make_test_pki(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    runtime = FakeRuntime(logs)
    runtime.log_path("u1", "web").write_text("over tls\n")
    api = KubeletApi(runtime, lambda ns, name: PodRef("u1", "n") if name == "p" else None, TOKEN)  # type: ignore[arg-type]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = KubeletServer(api, "127.0.0.1", port, server_tls(str(tmp_path / "srv.crt"), str(tmp_path / "srv.key")))
    server.start()

    async def fetch(client: KubeletClient) -> tuple[int, str]:
        url = f"{client.scheme}://127.0.0.1:{port}/containerLogs/default/p/web"
        async with client.session() as session, session.get(url) as resp:
            return resp.status, await resp.text()

    try:
        good = KubeletClient(TOKEN, None, str(tmp_path / "ca.crt"))
        assert asyncio.run(fetch(good)) == (200, "over tls\n")
        status, _ = asyncio.run(fetch(KubeletClient("wrong", None, str(tmp_path / "ca.crt"))))
        assert status == 401
    finally:
        server.stop()
