"""`python -m netk8s.apiserver --store URL --listen HOST:PORT ... --tls-cert F --tls-key F --client-ca F`.

The API server role: the only process that opens the store; serves HTTPS on every --listen address (in
this namespace) and every --listen-netns NETNS=HOST:PORT (a socket opened inside that network
namespace, e.g. the lab's control-plane namespace on the underlay), until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import ssl
import sys
from pathlib import Path

from aiohttp import web

from netk8s import config
from netk8s.apiserver.app import ApiServer, create_app
from netk8s.apiserver.auth import parse_token_file
from netk8s.apiserver.streams import KubeletClient
from netk8s.dataplane.netns import open_socket
from netk8s.errors import NetK8sError, UsageError
from netk8s.store.factory import open_store

log = logging.getLogger("netk8s.apiserver")
BACKLOG = 512


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"listen address {text!r}: want HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"listen address {text!r}: HOST must be an IP address") from None
    return host, int(port)


def listen_socket(netns: str | None, host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, created inside `netns` (None: this namespace)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = open_socket(netns, family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f" in netns {netns}" if netns else ""
        raise NetK8sError(f"cannot listen on {host}:{port}{where}: {exc.strerror or exc}",
                          hint="is another API server running there?") from exc
    return sock


def tls_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """Server TLS that asks for (but does not require) a client certificate verified by client_ca;
    a request without one must carry a bearer token, or it gets 401."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
        ctx.load_verify_locations(cafile=str(client_ca))
    except (OSError, ssl.SSLError) as exc:
        raise NetK8sError(f"TLS: cannot load {cert}, {key} or {client_ca}: {exc}") from exc
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


async def serve(args: argparse.Namespace) -> None:
    tokens = {}
    if args.token_file:
        path = Path(args.token_file)
        try:
            tokens = parse_token_file(path.read_text(), str(path))
        except OSError as exc:
            raise NetK8sError(f"--token-file {path}: {exc.strerror or exc}") from exc
    listens = [(None, *host_port(a)) for a in args.listen]
    for item in args.listen_netns:
        netns, sep, addr = item.partition("=")
        if not sep or not netns:
            raise UsageError(f"--listen-netns {item!r}: want NETNS=HOST:PORT")
        listens.append((netns, *host_port(addr)))
    if not listens:
        raise UsageError("give at least one --listen or --listen-netns address")
    ctx = tls_context(Path(args.tls_cert), Path(args.tls_key), Path(args.client_ca))
    sockets = [listen_socket(ns, host, port) for ns, host, port in listens]
    store = open_store(args.store)
    first = sockets[0].getsockname()
    server = ApiServer(store, tokens, server_address=args.advertise or f"{first[0]}:{first[1]}")
    if args.kubelet_token_file:
        try:
            kubelet_token = Path(args.kubelet_token_file).read_text().strip()
        except OSError as exc:
            raise NetK8sError(f"--kubelet-token-file {args.kubelet_token_file}: {exc.strerror or exc}") from exc
        server.kubelet = KubeletClient(kubelet_token, args.kubelet_netns or None,
                                       args.kubelet_certificate_authority or None)
    runner = web.AppRunner(create_app(server), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock, ssl_context=ctx, shutdown_timeout=2.0).start()
        for (ns, _, _), sock in zip(listens, sockets):
            name = sock.getsockname()
            log.info("serving https://%s:%d%s", name[0], name[1], f" in netns {ns}" if ns else "")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netk8s.apiserver", description=__doc__)
    parser.add_argument("--store", required=True, help="store URL: sqlite:///path/store.db or memory://")
    parser.add_argument("--listen", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--listen-netns", action="append", default=[], metavar="NETNS=HOST:PORT")
    parser.add_argument("--advertise", default="", metavar="HOST:PORT",
                        help="address reported in /api serverAddressByClientCIDRs (default: first listen)")
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--client-ca", required=True)
    parser.add_argument("--token-file", default="", help="kube-apiserver token-auth-file CSV")
    parser.add_argument("--kubelet-token-file", default="",
                        help="bearer token shown to node kubelets for pods/exec and pods/log")
    parser.add_argument("--kubelet-netns", default="", metavar="NETNS",
                        help="open connections to kubelets inside this network namespace (the lab's underlay)")
    parser.add_argument("--kubelet-certificate-authority", default="", metavar="CA_FILE",
                        help="talk HTTPS to kubelets, verifying their serving certificates with this CA")
    parser.add_argument("--service-cidr", default="", help=f"ClusterIP range (default {config.SERVICE_CIDR})")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        type=str.upper)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.service_cidr:
            try:
                config.SERVICE_CIDR = ipaddress.ip_network(args.service_cidr)
            except ValueError as exc:
                raise UsageError(f"--service-cidr: {exc}") from None
        asyncio.run(serve(args))
    except NetK8sError as exc:
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
