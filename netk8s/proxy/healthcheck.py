"""The healthCheckNodePort servers of `externalTrafficPolicy: Local` Services, answering like kube-proxy.

One HTTP listener per healthCheckNodePort. A load balancer probes it on every node and sends traffic
only to nodes that answer 200, i.e. nodes with at least one ready local endpoint. The body and headers
follow kube-proxy's pkg/proxy/healthcheck/service_health.go:

    200 (or 503 when localEndpoints == 0), Content-Type: application/json, X-Content-Type-Options: nosniff
    {"service": {"namespace": NS, "name": NAME}, "localEndpoints": N, "serviceProxyHealthy": true}

The listeners bind `node_ips` (default 0.0.0.0, kube-proxy's behaviour with an empty
--nodeport-addresses) in the namespace the process runs in: the node's, when the agent runs them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("netk8s.proxy.healthcheck")


@dataclass
class _Listener:
    port: int
    servers: list[ThreadingHTTPServer]
    threads: list[threading.Thread]
    service: str  # ns/name
    local_endpoints: int


def response_body(service: str, local_endpoints: int) -> tuple[int, bytes]:
    """Status code and JSON body kube-proxy sends for `service` (ns/name) with N local endpoints."""
    namespace, _, name = service.partition("/")
    body = {
        "service": {"namespace": namespace, "name": name},
        "localEndpoints": local_endpoints,
        "serviceProxyHealthy": True,
    }
    return (200 if local_endpoints > 0 else 503), json.dumps(body, indent=1).encode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "netk8s-healthcheck"
    listener: _Listener  # set per server class

    def do_GET(self) -> None:
        code, body = response_body(self.listener.service, self.listener.local_endpoints)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # load balancers probe every few seconds; keep the agent log quiet


class HealthCheckServer:
    """Starts and stops one listener per healthCheckNodePort; thread-safe updates of the counts."""

    def __init__(self, node_ips: Sequence[str] = ("0.0.0.0",)) -> None:
        self.node_ips = tuple(node_ips) or ("0.0.0.0",)
        self.listeners: dict[int, _Listener] = {}
        self.errors: dict[int, str] = {}  # port -> why its listener could not start
        self._lock = threading.Lock()

    def update(self, services: Iterable[tuple[str, int, int]]) -> None:
        """Make the listeners match `services`: (ns/name, healthCheckNodePort, local ready endpoints)."""
        wanted: dict[int, tuple[str, int]] = {}
        for key, port, local in services:
            if port:
                wanted[int(port)] = (key, int(local))
        with self._lock:
            for port in [p for p in self.listeners if p not in wanted]:
                self._stop(self.listeners.pop(port))
            for port in [p for p in self.errors if p not in wanted]:
                del self.errors[port]
            for port, (key, local) in wanted.items():
                cur = self.listeners.get(port)
                if cur is not None:
                    cur.service, cur.local_endpoints = key, local
                    continue
                try:
                    self.listeners[port] = self._start(port, key, local)
                    self.errors.pop(port, None)
                except OSError as exc:
                    if self.errors.get(port) is None:
                        log.error("healthCheckNodePort %d of %s: cannot listen: %s", port, key, exc)
                    self.errors[port] = str(exc)

    def ports(self) -> list[int]:
        with self._lock:
            return sorted(self.listeners)

    def _start(self, port: int, key: str, local: int) -> _Listener:
        listener = _Listener(port, [], [], key, local)
        handler = type("Handler", (_Handler,), {"listener": listener})
        try:
            for ip in self.node_ips:
                server = ThreadingHTTPServer((ip, port), handler)
                server.daemon_threads = True
                listener.servers.append(server)
        except OSError:
            for server in listener.servers:
                server.server_close()
            raise
        for server in listener.servers:
            t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"healthcheck-{port}", daemon=True)
            t.start()
            listener.threads.append(t)
        return listener

    @staticmethod
    def _stop(listener: _Listener) -> None:
        for server in listener.servers:
            server.shutdown()
            server.server_close()
        for t in listener.threads:
            t.join(5)

    def close(self) -> None:
        with self._lock:
            for listener in self.listeners.values():
                self._stop(listener)
            self.listeners.clear()
