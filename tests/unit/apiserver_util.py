"""Shared set-up for the API server tests: an app over a MemoryStore, driven by aiohttp's test client."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from netk8s.apiserver.app import ApiServer, create_app
from netk8s.apiserver.auth import User
from netk8s.store.memory import MemoryStore

ADMIN = "admin-token"
NODE = "node-token"
VIEWER = "viewer-token"
NOBODY = "nobody-token"
TOKENS = {
    ADMIN: User("kubernetes-admin", "1", ("system:masters",)),
    NODE: User("system:node:n1", "2", ("system:nodes",)),
    VIEWER: User("viewer", "3", ("netk8s:viewers",)),
    NOBODY: User("someone", "4", ()),
}


class Api:
    """A test client with helpers that send JSON and decode JSON answers."""

    def __init__(self, client: TestClient, store: MemoryStore) -> None:
        self.client = client
        self.store = store

    async def call(self, method: str, path: str, body: Any = None, token: str = ADMIN,
                   content_type: str = "application/json", accept: str = "application/json",
                   params: dict | None = None) -> tuple[int, Any, Any]:
        headers = {"Accept": accept}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = await self.client.request(method, path, data=data, headers=headers, params=params)
        text = await resp.text()
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        return resp.status, payload, resp.headers


def run_api(test: Callable[[Api], Awaitable[None]], store: MemoryStore | None = None) -> None:
    """Run `test` against a fresh server (a MemoryStore with the default Namespace unless given)."""
    if store is None:
        store = MemoryStore()
        store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})

    async def main() -> None:
        server = ApiServer(store, TOKENS)
        client = TestClient(TestServer(create_app(server)))
        await client.start_server()
        try:
            await test(Api(client, store))
        finally:
            await client.close()

    asyncio.run(main())


def pod(name: str, ns: str = "default", labels: dict | None = None, node: str = "") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": spec}


def service(name: str, port: int = 80, ns: str = "default", svc_type: str = "ClusterIP") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": svc_type, "selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]}}


def deployment(name: str, replicas: int = 2, ns: str = "default") -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_test_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and client certificates adm (system:masters) and node
    (system:nodes) in `d`, made with the openssl command."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "1",
             "-subj", "/CN=test-ca")
    (d / "srv.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "cl.ext").write_text("extendedKeyUsage=clientAuth\n")
    for stem, subj, ext in (("srv", "/CN=apiserver", "srv.ext"), ("adm", "/O=system:masters/CN=admin", "cl.ext"),
                            ("node", "/O=system:nodes/CN=system:node:n1", "cl.ext")):
        _openssl("req", *ec, "-keyout", str(d / f"{stem}.key"), "-out", str(d / f"{stem}.csr"), "-subj", subj)
        _openssl("x509", "-req", "-in", str(d / f"{stem}.csr"), "-CA", str(d / "ca.crt"), "-CAkey",
                 str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{stem}.crt"), "-days", "1",
                 "-extfile", str(d / ext))
