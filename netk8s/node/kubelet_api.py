"""The node agent's small kubelet API (aiohttp): container logs and exec, which the API server proxies.

Paths are kubelet's (pkg/kubelet/server/server.go): `GET /containerLogs/NS/POD/CONTAINER` (follow,
tailLines, limitBytes, timestamps ignored), `GET /exec/NS/POD/CONTAINER?command=...&stdin=1&
stdout=1&stderr=1&tty=1` as a WebSocket in the remote-command channel protocols
(netk8s.model.remotecommand; v5/v4/... as kubectl and client libraries offer them),
`GET /portForward/NS/POD?ports=P,...` as a WebSocket (the client libraries' port forward), and `/healthz`.
It listens on the node IP, port 10250 (the Node's status.daemonEndpoints.kubeletEndpoint.Port).

Access: every request but /healthz must carry `Authorization: Bearer TOKEN` with the token in the
agent's --kubelet-token-file (the API server sends the same token: its --kubelet-token-file); TLS when
the agent is given --kubelet-tls-cert/--kubelet-tls-key. Processes enter the pod only through
podexec.spawn (PodRuntime.exec_target), with the container's environment, as `kubectl exec` expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hmac
import logging
import os
import pty
import select
import socket
import ssl
import struct
import subprocess
import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import WSMsgType, web

from netk8s.dataplane.netns import open_socket
from netk8s.errors import NetK8sError
from netk8s.model import remotecommand as rc
from netk8s.node import podexec
from netk8s.node.registration import KUBELET_PORT
from netk8s.node.runtime import PodRuntime

log = logging.getLogger("netk8s.node.kubelet")

LOG_POLL_SECONDS = 0.2
READ_CHUNK = 32 * 1024


@dataclass(frozen=True)
class PodRef:
    """Where a pod of this node lives: its uid and network namespace."""

    uid: str
    netns: str


Finder = Callable[[str, str], PodRef | None]


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


async def _read_fd(fd: int) -> bytes:
    """The next chunk from a non-blocking fd (b"" at EOF; a pty master's EIO after the child ends is EOF)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, READ_CHUNK)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def tail_lines(data: bytes, n: int) -> bytes:
    """The last n lines of data (kubelet's tailLines; a last line without a newline counts)."""
    if n <= 0:
        return b""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:])


class KubeletApi:
    """The handlers over this node's pods: `find(ns, name)` says where a pod is, `runtime` runs it."""

    def __init__(self, runtime: PodRuntime, find: Finder, token: str) -> None:
        if not token:
            raise NetK8sError("kubelet API: an empty token would let anyone exec into pods",
                              hint="give the agent --kubelet-token-file")
        self.runtime = runtime
        self.find = find
        self.token = token

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        app.router.add_route("*", "/exec/{ns}/{pod}/{container}", self.exec)
        app.router.add_route("*", "/portForward/{ns}/{pod}", self.port_forward)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path != "/healthz":
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.token.encode()):
                return _status(401, "Unauthorized", "Unauthorized")
        resp: web.StreamResponse = await handler(request)
        return resp

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _container(self, request: web.Request) -> tuple[PodRef, str] | web.Response:
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        ref = self.find(ns, pod)
        if ref is None:
            return _status(404, "NotFound", f'pod "{pod}" in namespace "{ns}" is not running on this node')
        if container not in self.runtime.containers(ref.uid):
            return _status(404, "NotFound", f'container "{container}" in pod "{pod}" is not available')
        return ref, container

    # -- logs ---------------------------------------------------------------------------------------

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        found = self._container(request)
        if isinstance(found, web.Response):
            return found
        ref, container = found
        path = self.runtime.log_path(ref.uid, container)
        q = request.query
        try:
            tail = int(q["tailLines"]) if "tailLines" in q else None
            limit = int(q["limitBytes"]) if "limitBytes" in q else None
        except ValueError:
            return _status(400, "BadRequest", "tailLines and limitBytes must be integers")
        data = path.read_bytes() if path.exists() else b""
        pos = len(data)
        if tail is not None:
            data = tail_lines(data, tail)
        if limit is not None:
            data = data[:limit]
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(data)
        if _true(q.get("follow")):
            sent = len(data)
            while limit is None or sent < limit:
                chunk = await asyncio.get_running_loop().run_in_executor(None, self._read_from, path, pos)
                if chunk is None:
                    break
                if chunk:
                    pos += len(chunk)
                    if limit is not None:
                        chunk = chunk[:limit - sent]
                    sent += len(chunk)
                    await resp.write(chunk)
                elif not self.runtime.alive(ref.uid, container):
                    break  # kubelet ends a follow when the container ends
                else:
                    await asyncio.sleep(LOG_POLL_SECONDS)
        await resp.write_eof()
        return resp

    @staticmethod
    def _read_from(path: Path, pos: int) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                fh.seek(pos)
                return fh.read(READ_CHUNK)
        except FileNotFoundError:
            return None

    # -- exec ---------------------------------------------------------------------------------------

    async def exec(self, request: web.Request) -> web.StreamResponse:
        found = self._container(request)
        if isinstance(found, web.Response):
            return found
        ref, container = found
        q = request.query
        argv = q.getall("command", [])
        if not argv:
            return _status(400, "BadRequest", "you must specify at least one command for the container")
        want_in, tty = _true(q.get("stdin")), _true(q.get("tty"))
        want_out, want_err = _true(q.get("stdout")), _true(q.get("stderr")) and not tty
        ws = web.WebSocketResponse(protocols=rc.EXEC_PROTOCOLS, heartbeat=None, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            return _status(400, "BadRequest", "exec needs a WebSocket upgrade (Sec-WebSocket-Protocol "
                           f"one of {', '.join(rc.EXEC_PROTOCOLS)})")
        await ws.prepare(request)
        proto = ws.ws_protocol or "channel.k8s.io"
        try:
            proc, master, outs, stdin_fd = self._start(ref, container, argv, want_in, want_out, want_err, tty)
        except NetK8sError as exc:
            await _send(ws, proto, rc.ERROR, rc.failure_status(exc.message))
            await ws.close()
            return ws
        loop = asyncio.get_running_loop()
        pumps = [asyncio.ensure_future(self._pump(ws, proto, fd, ch)) for fd, ch in outs]
        reader = asyncio.ensure_future(self._input(ws, proto, stdin_fd, master))
        try:
            code = podexec.exit_status(await loop.run_in_executor(None, proc.wait))
            await asyncio.gather(*pumps, return_exceptions=True)
            if not ws.closed:
                await _send(ws, proto, rc.ERROR, rc.exit_status(proto, code, argv))
        finally:
            if proc.poll() is None:  # the client went away: end the command, as its stream is gone
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await loop.run_in_executor(None, proc.wait)
            reader.cancel()
            for task in pumps:
                task.cancel()
            for fd in {fd for fd, _ in outs} | ({stdin_fd} if stdin_fd is not None else set()):
                with contextlib.suppress(OSError):
                    os.close(fd)
            await ws.close()
        return ws

    # -- port forward -------------------------------------------------------------------------------

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        """kubelet's WebSocket port forward (`v4.channel.k8s.io`, as client libraries speak it): port i
        has data channel 2i and error channel 2i+1, each opened by the port as two little-endian bytes;
        each port is one TCP connection to localhost:PORT inside the pod's network namespace."""
        ns, name = request.match_info["ns"], request.match_info["pod"]
        ref = self.find(ns, name)
        if ref is None:
            return _status(404, "NotFound", f'pod "{name}" in namespace "{ns}" is not running on this node')
        try:
            ports = [int(p) for v in request.query.getall("ports", []) for p in v.split(",") if p.strip()]
        except ValueError:
            return _status(400, "BadRequest", "ports: must be port numbers")
        if not ports or not all(0 < p < 65536 for p in ports):
            return _status(400, "BadRequest", "ports: at least one port number between 1 and 65535 is required")
        ws = web.WebSocketResponse(protocols=rc.PORTFORWARD_PROTOCOLS, heartbeat=None, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            return _status(400, "BadRequest", "port forwarding needs a WebSocket upgrade (Sec-WebSocket-Protocol "
                           f"one of {', '.join(rc.PORTFORWARD_PROTOCOLS)})")
        await ws.prepare(request)
        writers: dict[int, asyncio.StreamWriter] = {}
        pumps: list[asyncio.Future] = []
        try:
            for i, port in enumerate(ports):
                head = struct.pack("<H", port)
                await ws.send_bytes(bytes([2 * i]) + head)
                await ws.send_bytes(bytes([2 * i + 1]) + head)
                try:
                    reader, writer = await self._connect(ref.netns, port)
                except OSError as exc:
                    await ws.send_bytes(bytes([2 * i + 1]) + f"error forwarding port {port} to pod {name}: "
                                        f"{exc.strerror or exc}".encode())
                    continue
                writers[i] = writer
                pumps.append(asyncio.ensure_future(self._forward_out(ws, reader, 2 * i)))
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], bytes(msg.data[1:])
                target = writers.get(channel // 2) if channel % 2 == 0 else None
                if target is not None and data:
                    target.write(data)
                    await target.drain()
        finally:
            for task in pumps:
                task.cancel()
            for writer in writers.values():
                writer.close()
            await ws.close()
        return ws

    @staticmethod
    async def _connect(netns: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = open_socket(netns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    @staticmethod
    async def _forward_out(ws: web.WebSocketResponse, reader: asyncio.StreamReader, channel: int) -> None:
        while chunk := await reader.read(READ_CHUNK):
            if ws.closed:
                return
            await _send(ws, "v4.channel.k8s.io", channel, chunk)

    def _start(self, ref: PodRef, container: str, argv: list[str], want_in: bool, want_out: bool,
               want_err: bool, tty: bool) -> tuple[subprocess.Popen[bytes], int | None, list[tuple[int, int]],
                                                   int | None]:
        """Spawn argv in the pod; (process, pty master or None, [(fd, channel)] to read, stdin fd)."""
        target = self.runtime.exec_target(ref.uid, ref.netns)
        env = self.runtime.process_env(self.runtime.container_environ(ref.uid, container))
        if tty:
            master, slave = pty.openpty()
            env.setdefault("TERM", "xterm")
            try:
                proc = podexec.spawn(target, argv, env, stdin=slave, stdout=slave, stderr=slave, detach=True)
            finally:
                os.close(slave)
            os.set_blocking(master, False)
            # one fd for both directions: dup it so stdin and stdout close independently
            stdin_fd = os.dup(master) if want_in else None
            return proc, master, [(master, rc.STDOUT)], stdin_fd
        out = subprocess.PIPE if want_out else subprocess.DEVNULL
        err = subprocess.PIPE if want_err else subprocess.DEVNULL
        proc = podexec.spawn(target, argv, env, stdin=subprocess.PIPE if want_in else subprocess.DEVNULL,
                             stdout=out, stderr=err)
        outs: list[tuple[int, int]] = []
        for stream, ch in ((proc.stdout, rc.STDOUT), (proc.stderr, rc.STDERR)):
            if stream is not None:
                fd = os.dup(stream.fileno())
                stream.close()
                os.set_blocking(fd, False)
                outs.append((fd, ch))
        stdin_fd = None
        if proc.stdin is not None:
            stdin_fd = os.dup(proc.stdin.fileno())
            proc.stdin.close()
        return proc, None, outs, stdin_fd

    async def _pump(self, ws: web.WebSocketResponse, proto: str, fd: int, channel: int) -> None:
        while chunk := await _read_fd(fd):
            if ws.closed:
                return
            await _send(ws, proto, channel, chunk)

    async def _input(self, ws: web.WebSocketResponse, proto: str, stdin_fd: int | None,
                     master: int | None) -> None:
        loop = asyncio.get_running_loop()
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            frame = rc.decode(proto, msg.data)
            if frame is None:
                continue
            channel, data = frame
            if channel == rc.STDIN and stdin_fd is not None and data:
                try:
                    await loop.run_in_executor(None, _write_all, stdin_fd, data)
                except OSError:
                    stdin_fd = None  # the command closed its stdin
            elif channel == rc.CLOSE and data[:1] == bytes([rc.STDIN]) and stdin_fd is not None:
                if master is not None:
                    # a tty has no half-close: EOF is the terminal's ^D (kubelet's tty does the same)
                    with contextlib.suppress(OSError):
                        await loop.run_in_executor(None, _write_all, stdin_fd, b"\x04")
                else:
                    with contextlib.suppress(OSError):
                        os.close(stdin_fd)
                stdin_fd = None
            elif channel == rc.RESIZE and master is not None:
                size = rc.parse_resize(data)
                if size is not None:
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))


async def _send(ws: web.WebSocketResponse, proto: str, channel: int, data: bytes) -> None:
    message = rc.encode(proto, channel, data)
    with contextlib.suppress(ConnectionResetError):
        if isinstance(message, str):
            await ws.send_str(message)
        else:
            await ws.send_bytes(message)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


class KubeletServer:
    """Runs a KubeletApi on host:port (in this network namespace) in a thread with its own event loop."""

    def __init__(self, api: KubeletApi, host: str, port: int = KUBELET_PORT,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.api, self.host, self.port, self.ssl_context = api, host, port, ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise NetK8sError(f"kubelet API: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") \
                from exc
        self._thread = threading.Thread(target=self._run, args=(sock,), name="kubelet-api", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise NetK8sError(f"kubelet API: {self._error}")
        log.info("kubelet API serving %s://%s:%d", "https" if self.ssl_context else "http", self.host, self.port)

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:  # reported to start() or logged: the agent keeps running pods
            self._error = exc
            self._ready.set()
            log.exception("kubelet API stopped")
        finally:
            sock.close()
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise NetK8sError(f"kubelet API TLS: cannot load {cert} / {key}: {exc}") from exc
    return ctx
