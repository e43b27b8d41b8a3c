"""Built-in `nginx` image: serves nginx 1.17.10's default welcome page and logs like nginx.

`python -m netk8s.images.nginx --port 80`. Byte-for-byte the stock index.html and error pages, the
`Server: nginx/1.17.10` header, and one access-log line per request on stdout in nginx's `combined`
format (client address first, so the server-side view of the client IP shows in `netk8s logs`).
Exits 0 promptly on SIGTERM or SIGQUIT (nginx's fast and graceful shutdown signals).
"""

from __future__ import annotations

import argparse
import signal
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER = "nginx/1.17.10"
# Release date of 1.17.10: the mtime of the stock /usr/share/nginx/html/index.html.
INDEX_MTIME = "Tue, 14 Apr 2020 14:19:26 GMT"
INDEX_ETAG = '"5e95c66e-264"'

# /usr/share/nginx/html/index.html of nginx 1.17.10 (612 bytes).
WELCOME_PAGE = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
    body {
        width: 35em;
        margin: 0 auto;
        font-family: Tahoma, Verdana, Arial, sans-serif;
    }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)


def error_page(status: int, reason: str) -> bytes:
    """nginx's built-in error page (src/http/ngx_http_special_response.c), CRLF line ends."""
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n"
        f"<hr><center>{SERVER}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


_log_lock = threading.Lock()


def log_line(line: str) -> None:
    """One access-log line on stdout, flushed, never interleaved with another thread's line."""
    with _log_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def combined_log(client: str, request_line: str, status: int, size: int, referer: str, agent: str,
                 now: float) -> str:
    """nginx's `combined` log_format:
    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer"
    "$http_user_agent"."""
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
    return f'{client} - - [{stamp}] "{request_line}" {status} {size} "{referer}" "{agent}"'


class NginxHandler(BaseHTTPRequestHandler):
    """Static server for / and /index.html; everything else is nginx's 404 (405 for other methods)."""

    protocol_version = "HTTP/1.1"
    timeout = 65  # nginx's keepalive_timeout

    def version_string(self) -> str:
        return SERVER

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Logged by _reply instead, once the body size is known."""

    def log_message(self, format: str, *args: object) -> None:
        """nginx logs errors to its error log, not the access log; keep stdout to access lines."""

    def _reply(self, status: int, body: bytes, headers: dict[str, str], send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Connection", "close" if self.close_connection else "keep-alive")
        self.end_headers()
        if send_body:
            self.wfile.write(body)
        log_line(
            combined_log(
                self.client_address[0],
                self.requestline,
                status,
                len(body) if send_body else 0,
                self.headers.get("Referer", "-"),
                self.headers.get("User-Agent", "-"),
                time.time(),
            )
        )

    def _static(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._reply(
                200,
                WELCOME_PAGE,
                {"Last-Modified": INDEX_MTIME, "ETag": INDEX_ETAG, "Accept-Ranges": "bytes"},
                send_body,
            )
        else:
            self._reply(404, error_page(404, "Not Found"), {}, send_body)

    def do_GET(self) -> None:
        self._static(True)

    def do_HEAD(self) -> None:
        self._static(False)

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._reply(405, error_page(405, "Not Allowed"), {}, True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


def quiet_handle_error(server: socketserver.BaseServer, request: object, client_address: object) -> None:
    """A client that hangs up mid-reply is routine; anything else still gets socketserver's traceback."""
    if isinstance(sys.exc_info()[1], ConnectionError):
        return
    socketserver.BaseServer.handle_error(server, request, client_address)  # type: ignore[arg-type]


# socketserver listens with a backlog of 5 (request_queue_size). When the accept queue is full the
# kernel drops the next SYN and the client retransmits it 1 s later (then 3 s, ...): under load, while
# the serving thread waits for a CPU, a burst of connections (clients, probes, a Service's share of a
# spread) finds the queue full and times out. nginx listens with a backlog of 511 (ngx_http_core_module
# `listen ... backlog=`, NGX_LISTEN_BACKLOG), Go servers such as agnhost with net.core.somaxconn; the
# kernel caps the value at the namespace's net.core.somaxconn (listen(2)).
LISTEN_BACKLOG = 511


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    handle_error = quiet_handle_error


def run_until_signal(
    servers: Sequence[socketserver.BaseServer], on_ready: Callable[[], None] | None = None
) -> int:
    """Serve every server in a thread until SIGTERM/SIGQUIT/SIGINT, then shut down and return 0.
    `on_ready` runs once the signal handlers are in place."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for s in servers]
    for t in threads:
        t.start()
    if on_ready is not None:
        on_ready()
    while not stop.wait(0.5):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netk8s.images.nginx", description="built-in nginx image")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--address", default="0.0.0.0")
    opts = parser.parse_args(argv)
    try:
        server = Server((opts.address, opts.port), NginxHandler)
    except OSError as exc:
        print(f'nginx: [emerg] bind() to {opts.address}:{opts.port} failed ({exc.errno}: {exc.strerror})',
              file=sys.stderr, flush=True)
        return 1
    return run_until_signal([server])


if __name__ == "__main__":
    sys.exit(main())
