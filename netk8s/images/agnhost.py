"""Built-in `agnhost` image (registry.k8s.io/e2e-test-images/agnhost): netexec, serve-hostname, pause.

`python -m netk8s.images.agnhost netexec --http-port=8080 --udp-port=8081` and friends, answering
like upstream test/images/agnhost so Kubernetes tutorials and e2e-style checks work unchanged. The
hostname is socket.gethostname(), i.e. the pod's UTS name. `--address` (not upstream) binds to one
address instead of all, for tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from netk8s.images.nginx import quiet_handle_error, run_until_signal

# Go's net.Listen uses the kernel's net.core.somaxconn as the backlog (net/sock_linux.go maxListenerBacklog);
# socketserver's default of 5 overflows under load (see netk8s.images.nginx.LISTEN_BACKLOG).
LISTEN_BACKLOG = socket.SOMAXCONN

SHELL_TIMEOUT = 30.0

_log_lock = threading.Lock()


def log(message: str) -> None:
    with _log_lock:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()


def client_ip_port(addr: tuple) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def udp_answer(message: str, client: tuple) -> str | None:
    """netexec's UDP protocol: `hostname`, `echo X`, `clientip`; None means no reply."""
    text = message.strip()
    if text in ("hostname", "hostName"):
        return socket.gethostname()
    if text == "clientip":
        return client_ip_port(client)
    if text.startswith("echo "):
        return text[len("echo "):]
    return None


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    handle_error = quiet_handle_error


class UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True
    handle_error = quiet_handle_error


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    handle_error = quiet_handle_error


class QuietHandler(BaseHTTPRequestHandler):
    """Plain-text answers; one log line per request (agnhost logs every request it serves)."""

    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, format: str, *args: object) -> None:
        """Requests are logged by reply()."""

    def reply(self, status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()
        log(f"{self.command} {self.path} from {client_ip_port(self.client_address)} -> {status}")


def _dial_once(protocol: str, host: str, port: int, request: str, timeout: float) -> str:
    if protocol == "http":
        url = f"http://{host}:{port}/{request.lstrip('/')}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read().decode(errors="replace")
    if protocol == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(request.encode(), (host, port))
            return sock.recv(65535).decode(errors="replace")
    raise ValueError(f"unsupported protocol {protocol!r}")


class NetexecHandler(QuietHandler):
    """netexec's HTTP endpoints (test/images/agnhost/netexec/netexec.go)."""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        routes: dict[str, Callable[[dict[str, list[str]]], None]] = {
            "/": self._root,
            "/hostname": self._hostname,
            "/hostName": self._hostname,
            "/clientip": self._clientip,
            "/echo": self._echo,
            "/shell": self._shell,
            "/healthz": self._healthz,
            "/exit": self._exit,
            "/dial": self._dial,
            "/header": self._header,
        }
        handler = routes.get(url.path)
        if handler is None:
            self.reply(404, "404 page not found\n")
            return
        handler(query)

    do_POST = do_HEAD = do_GET

    def _root(self, query: dict[str, list[str]]) -> None:
        self.reply(200, f"NOW: {datetime.datetime.now().astimezone()}")

    def _hostname(self, query: dict[str, list[str]]) -> None:
        self.reply(200, socket.gethostname())

    def _clientip(self, query: dict[str, list[str]]) -> None:
        self.reply(200, client_ip_port(self.client_address))

    def _echo(self, query: dict[str, list[str]]) -> None:
        self.reply(200, query.get("msg", [""])[0])

    def _header(self, query: dict[str, list[str]]) -> None:
        """netexec's /header: the value of request header `key`, or every header as JSON."""
        key = query.get("key", [""])[0]
        if key:
            self.reply(200, self.headers.get(key, ""))
        else:
            self.reply(200, json.dumps({k: self.headers.get_all(k) for k in self.headers}),
                       "application/json")

    def _healthz(self, query: dict[str, list[str]]) -> None:
        self.reply(200, "ok")

    def _shell(self, query: dict[str, list[str]]) -> None:
        cmd = query.get("cmd", [""])[0]
        result: dict[str, str] = {}
        try:
            proc = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=SHELL_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
            result["output"] = (proc.stdout + proc.stderr).decode(errors="replace")
            if proc.returncode != 0:
                result["error"] = f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            result["output"] = ""
            result["error"] = f"timed out after {SHELL_TIMEOUT:g}s"
        self.reply(200, json.dumps(result), "application/json")

    def _exit(self, query: dict[str, list[str]]) -> None:
        try:
            code = int(query.get("code", ["0"])[0])
        except ValueError:
            self.reply(400, "bad exit code")
            return
        if not 0 <= code <= 127:
            self.reply(400, "exit code must be 0-127")
            return
        self.reply(200, "")
        log(f"exiting with code {code}")
        os._exit(code)  # upstream calls os.Exit: no cleanup, like a crash

    def _dial(self, query: dict[str, list[str]]) -> None:
        def arg(name: str, default: str = "") -> str:
            return query.get(name, [default])[0]

        try:
            port = int(arg("port"))
            tries = max(1, int(arg("tries", "1")))
        except ValueError:
            self.reply(400, "port and tries must be integers")
            return
        responses: list[str] = []
        errors: list[str] = []
        for _ in range(tries):
            try:
                responses.append(_dial_once(arg("protocol", "http"), arg("host"), port,
                                            arg("request", "hostname"), 5.0))
            except (OSError, ValueError) as exc:
                errors.append(str(exc))
        self.reply(200, json.dumps({"responses": responses, "errors": errors}), "application/json")


class NetexecUDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        answer = udp_answer(data.decode(errors="replace"), self.client_address)
        if answer is not None:
            sock.sendto(answer.encode(), self.client_address)


class HostnameHTTPHandler(QuietHandler):
    def do_GET(self) -> None:
        self.reply(200, socket.gethostname())

    do_POST = do_HEAD = do_GET


class HostnameTCPHandler(socketserver.BaseRequestHandler):
    """serve-hostname --tcp: write the hostname and close."""

    def handle(self) -> None:
        self.request.sendall(socket.gethostname().encode())


class HostnameUDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        _, sock = self.request
        sock.sendto(socket.gethostname().encode(), self.client_address)


def _bind(factory: Callable[[], socketserver.BaseServer], what: str) -> socketserver.BaseServer:
    try:
        return factory()
    except OSError as exc:
        raise SystemExit(f"agnhost: cannot listen for {what}: {exc.strerror}") from None


def netexec(opts: argparse.Namespace) -> int:
    servers = [_bind(lambda: HTTPServer((opts.address, opts.http_port), NetexecHandler), "http")]
    log(f"Started HTTP server on port {opts.http_port}")
    if opts.udp_port > 0:
        servers.append(_bind(lambda: UDPServer((opts.address, opts.udp_port), NetexecUDPHandler), "udp"))
        log(f"Started UDP server on port {opts.udp_port}")
    return run_until_signal(servers)


def serve_hostname(opts: argparse.Namespace) -> int:
    servers: list[socketserver.BaseServer] = []
    if opts.tcp:
        servers.append(_bind(lambda: TCPServer((opts.address, opts.port), HostnameTCPHandler), "tcp"))
    elif opts.http:
        servers.append(_bind(lambda: HTTPServer((opts.address, opts.port), HostnameHTTPHandler), "http"))
    if opts.udp:
        servers.append(_bind(lambda: UDPServer((opts.address, opts.port), HostnameUDPHandler), "udp"))
    log(f"Serving on port {opts.port}")
    return run_until_signal(servers)


def pause(opts: argparse.Namespace) -> int:
    return run_until_signal([], on_ready=lambda: log("Paused"))


def _flag(text: str) -> bool:
    return text.lower() in ("1", "t", "true", "yes")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agnhost")
    sub = p.add_subparsers(dest="subcommand", required=True)
    ne = sub.add_parser("netexec")
    ne.add_argument("--http-port", type=int, default=8080)
    ne.add_argument("--udp-port", type=int, default=8081)
    ne.add_argument("--address", default="0.0.0.0", help=argparse.SUPPRESS)
    ne.set_defaults(run=netexec)
    sh = sub.add_parser("serve-hostname")
    sh.add_argument("--port", type=int, default=9376)
    sh.add_argument("--http", type=_flag, nargs="?", const=True, default=True)
    sh.add_argument("--tcp", type=_flag, nargs="?", const=True, default=False)
    sh.add_argument("--udp", type=_flag, nargs="?", const=True, default=True)
    sh.add_argument("--address", default="0.0.0.0", help=argparse.SUPPRESS)
    sh.set_defaults(run=serve_hostname)
    pa = sub.add_parser("pause")
    pa.set_defaults(run=pause)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    opts = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = opts.run
    return run(opts)

if __name__ == "__main__":
    sys.exit(main())
