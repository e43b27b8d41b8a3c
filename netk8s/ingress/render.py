"""The pure nginx.conf renderer: a Model (netk8s.ingress.model) to the text of one nginx configuration.

The shape follows ingress-nginx's template (rootfs/etc/nginx/template/nginx.tmpl): one catch-all
`default_server` answering 404, one server per host listening on HTTP and HTTPS (SNI picks the
certificate; hosts without TLS use the default certificate), the proxy headers ingress-nginx sets
(X-Real-IP and X-Forwarded-For with the client's address, X-Forwarded-Host/Port/Proto, X-Request-ID),
HTTP/1.1 keep-alive to the upstreams and `proxy_next_upstream error timeout` so a request to an endpoint
that just went away is retried on another one. No I/O: the caller writes the text and the certificates.
"""

from __future__ import annotations

from dataclasses import dataclass

from netk8s.ingress.model import CATCH_ALL, Location, Model, Server, sorted_locations, wildcard_regex

HEADER = "# nginx.conf rendered by the netk8s ingress controller from Ingress objects; do not edit.\n"


@dataclass(frozen=True)
class RenderOptions:
    workdir: str  # pid file and temp paths live here
    certs_dir: str  # the certificate PEMs (0700, root only)
    default_certificate: str  # file name in certs_dir of the default server's certificate
    http_port: int = 80
    https_port: int = 443
    bind_address: str = ""  # listen on every address of the pod unless set
    worker_processes: int = 1
    user: str = "nobody"
    group: str = "nogroup"
    # Seconds old workers get to finish their requests after a reload (ingress-nginx's default): a request
    # that started before the reload may still be retrying endpoints that went away (5 s connect timeout
    # each); cutting it short would close the client's connection without a response.
    worker_shutdown_timeout: int = 240


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _listen(opts: RenderOptions, default: bool) -> list[str]:
    # deferred (TCP_DEFER_ACCEPT): a connection reaches nginx with its request already there, so a worker
    # that a reload retires never holds an accepted connection still waiting for its first bytes (it would
    # close that one as idle, and the client would see the connection closed without a response).
    suffix = " default_server backlog=4096 deferred" if default else ""
    addr = f"{opts.bind_address}:" if opts.bind_address else ""
    return [f"listen {addr}{opts.http_port}{suffix};", f"listen {addr}{opts.https_port} ssl{suffix};"]


def _location(loc: Location, opts: RenderOptions) -> list[str]:
    head = f"location {loc.modifier + ' ' if loc.modifier else ''}{loc.path} {{"
    body: list[str] = []
    if loc.ingress:
        body.append(f"# {loc.path_type} {loc.path!r} from ingress {loc.ingress} -> {loc.backend.source}")
    if loc.backend.upstream is None:
        body.append(f"return {loc.backend.status};")
    else:
        body.append(f"set $proxy_upstream_name {_quote(loc.backend.upstream)};")
        body.append(f"proxy_pass http://{loc.backend.upstream};")
    return [head, *("    " + b for b in body), "}"]


def _server(server: Server, opts: RenderOptions) -> list[str]:
    default = server.name == CATCH_ALL
    name = wildcard_regex(server.name) if server.wildcard else server.name
    lines = [f"## server {server.name}", "server {", f"    server_name {name};"]
    lines += ["    " + x for x in _listen(opts, default)]
    cert = f"{opts.certs_dir}/{server.certificate or opts.default_certificate}"
    lines += [f"    ssl_certificate {cert};", f"    ssl_certificate_key {cert};"]
    if server.redirect_https:
        target = "https://$host" + ("" if opts.https_port == 443 else f":{opts.https_port}") + "$request_uri"
        # ingress-nginx's ssl-redirect (on by default for TLS hosts), with its default code 308.
        lines += ['    if ($scheme = "http") {', f"        return 308 {target};", "    }"]
    for loc in sorted_locations(server):
        lines += ["    " + x for x in _location(loc, opts)]
    lines.append("}")
    return lines


def render(model: Model, opts: RenderOptions) -> str:
    """The nginx.conf text for `model`."""
    w = opts.workdir
    out = [
        HEADER.rstrip("\n"),
        "daemon off;",
        f"worker_processes {opts.worker_processes};",
        f"user {opts.user} {opts.group};",
        f"pid {w}/nginx.pid;",
        "error_log stderr notice;",
        f"worker_shutdown_timeout {opts.worker_shutdown_timeout}s;",
        "events {",
        "    worker_connections 16384;",
        "    multi_accept on;",
        "}",
        "http {",
        "    access_log off;",
        "    server_tokens on;",
        "    default_type text/html;",
        "    sendfile on;",
        "    keepalive_timeout 75s;",
        "    keepalive_requests 1000;",
        "    server_names_hash_bucket_size 128;",
        f"    client_body_temp_path {w}/temp/client-body;",
        f"    proxy_temp_path {w}/temp/proxy;",
        f"    fastcgi_temp_path {w}/temp/fastcgi;",
        f"    uwsgi_temp_path {w}/temp/uwsgi;",
        f"    scgi_temp_path {w}/temp/scgi;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_session_cache shared:SSL:10m;",
        "    ssl_session_timeout 10m;",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Request-ID $request_id;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $remote_addr;",
        "    proxy_set_header X-Forwarded-Host $host;",
        "    proxy_set_header X-Forwarded-Port $server_port;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_set_header X-Scheme $scheme;",
        "    proxy_connect_timeout 5s;",
        "    proxy_send_timeout 60s;",
        "    proxy_read_timeout 60s;",
        "    proxy_next_upstream error timeout;",
        # 0: try every peer once if need be (ingress-nginx defaults to 3): an endpoint that went away between
        # its pod stopping and the reload that drops it costs a retry, never a failed request.
        "    proxy_next_upstream_tries 0;",
    ]
    for up in model.upstreams:
        out.append(f"    upstream {up.name} {{")
        # max_fails=0: never take a peer out for a while (ingress-nginx balances in Lua and does not either);
        # a peer that went away costs one retry on the next (proxy_next_upstream).
        out += [f"        server {s} max_fails=0;" for s in up.servers]
        out += ["        keepalive 32;", "    }"]
    for server in model.servers:
        out += ["    " + x for x in _server(server, opts)]
    out.append("}")
    return "\n".join(out) + "\n"
