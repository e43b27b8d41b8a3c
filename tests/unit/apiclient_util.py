"""An API server over a MemoryStore, served over HTTPS on 127.0.0.1 (a free port) from a thread, with a
lab-style PKI and kubeconfigs; what the API client tests talk to."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import warnings
from pathlib import Path

from aiohttp import web

from netk8s.apiserver.__main__ import tls_context
from netk8s.apiserver.app import ApiServer, create_app
from netk8s.lab.pki import LabPki, lab_credentials
from netk8s.store import kubeconfig
from netk8s.store.apiclient import ApiClientStore
from netk8s.store.memory import MemoryStore


class ServedApi:
    """`python -m netk8s.apiserver`'s serving path, in-process: start(), then clients; stop()."""

    def __init__(self, directory: Path, store: MemoryStore | None = None, nodes: tuple[str, ...] = ("n1",)) -> None:
        self.dir = directory
        self.store = store if store is not None else MemoryStore()
        if self.store.try_get("Namespace", "", "default") is None:
            self.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        self.pki = LabPki(directory / "pki")
        self.creds = lab_credentials(self.pki, "test", ["127.0.0.1"], list(nodes))
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubeconfig(self, role: str = "admin") -> Path:
        """A kubeconfig for one of the credentials (admin, controller, viewer, node-n1)."""
        cred = self.creds[role]
        path = self.dir / f"{role}.kubeconfig"
        kubeconfig.write(path, kubeconfig.build("test", self.url, self.pki.ca.cert.read_bytes(),
                                                cred.cert.read_bytes(), cred.key.read_bytes()))
        return path

    def client(self, role: str = "admin", retry_for: float = 5.0) -> ApiClientStore:
        return ApiClientStore(kubeconfig.read(self.kubeconfig(role)), retry_for=retry_for)

    def start(self) -> ServedApi:
        # the same port on a restart (port 0 the first time: a free one)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self.port = self._sock.getsockname()[1]
        self._sock.listen(128)
        self._sock.setblocking(False)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(20), "the API server did not start"
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        ctx = tls_context(self.creds["apiserver"].cert, self.creds["apiserver"].key, self.pki.ca.cert)

        async def up() -> None:
            server = ApiServer(self.store, {}, server_address=f"127.0.0.1:{self.port}")
            self._runner = web.AppRunner(create_app(server), access_log=None, handle_signals=False,
                                         shutdown_timeout=0.5)
            await self._runner.setup()
            assert self._sock is not None
            await web.SockSite(self._runner, self._sock, ssl_context=ctx).start()

        loop.run_until_complete(up())
        ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        """Stop serving (the store and its objects stay, so start() again is a restart)."""
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return

        async def down() -> None:
            await runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(20)
        self._loop = self._runner = None
        if self._sock is not None:
            self._sock.close()
        # TLS connections the stop cut (open watch streams) are dropped with the loop: collect them
        # here, where their "unclosed socket" ResourceWarning is expected, not in a later test
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
