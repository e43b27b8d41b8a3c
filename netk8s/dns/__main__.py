"""`python -m netk8s.dns --store URL [...]`: the cluster DNS server (what the kube-dns pods run)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn

from netk8s import config
from netk8s.dns.forward import parse_upstream, upstreams_from_resolv_conf
from netk8s.dns.records import DnsConfig
from netk8s.dns.server import DEFAULT_ALLOW, DnsServer, ServerConfig
from netk8s.errors import NetK8sError
from netk8s.store.factory import open_store

log = logging.getLogger("netk8s.dns")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (0-65535)")
    return int(text)


def cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid CIDR {text!r}") from None


def ipv4_cidr(text: str) -> str:
    net = cidr(text)
    if net.version != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: an IPv4 CIDR is needed")
    return str(net)


def upstream(text: str) -> tuple[str, int]:
    try:
        return parse_upstream(text)
    except NetK8sError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def ttl_seconds(text: str) -> int:
    if not text.isdigit() or int(text) > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"invalid TTL {text!r} (seconds)")
    return int(text)


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="python -m netk8s.dns", description=__doc__)
    p.add_argument("--store", required=True, help="store URL: sqlite:///path/store.db or memory://")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (UDP and TCP)")
    p.add_argument("--port", type=port_number, default=53, help="DNS port (0: any free port)")
    p.add_argument("--domain", default=config.CLUSTER_DOMAIN, help="cluster domain")
    p.add_argument("--ttl", type=ttl_seconds, default=5, help="TTL of cluster answers (CoreDNS default 5)")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf", help="upstreams: its nameserver lines")
    p.add_argument("--upstream", action="append", type=upstream, default=[], metavar="IP[:PORT]",
                   help="upstream server (repeatable; overrides --resolv-conf)")
    p.add_argument("--allow", action="append", type=cidr, default=[], metavar="CIDR",
                   help=f"clients that may recurse (repeatable; default {', '.join(DEFAULT_ALLOW)})")
    p.add_argument("--health-port", type=port_number, default=8080, help="GET /health (0: off)")
    p.add_argument("--ready-port", type=port_number, default=8181, help="GET /ready (0: off)")
    p.add_argument("--service-cidr", type=ipv4_cidr, default=str(config.SERVICE_CIDR))
    p.add_argument("--cluster-cidr", type=ipv4_cidr, default=str(config.CLUSTER_CIDR))
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    return p


def server_config(args: argparse.Namespace) -> ServerConfig:
    upstreams = list(args.upstream)
    if not upstreams:
        try:
            text = Path(args.resolv_conf).read_text()
        except OSError as exc:
            log.warning("cannot read %s (%s): no upstreams, names outside the cluster get SERVFAIL",
                        args.resolv_conf, exc.strerror)
            text = ""
        upstreams = upstreams_from_resolv_conf(text, (args.bind, args.port))
    allow = list(args.allow) or [ipaddress.ip_network(c) for c in DEFAULT_ALLOW]
    if not args.allow:
        allow[0] = ipaddress.ip_network(args.cluster_cidr)  # the pods, whatever the cluster CIDR is
    return ServerConfig(
        bind=args.bind, port=args.port,
        dns=DnsConfig(domain=args.domain.rstrip(".").lower(), ttl=args.ttl, service_cidr=args.service_cidr,
                      cluster_cidr=args.cluster_cidr),
        upstreams=upstreams, allow=allow,
        health_port=args.health_port or None, ready_port=args.ready_port or None)


async def _serve(server: DnsServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.serve(stop)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s netk8s-dns %(levelname)s %(message)s")
    try:
        cfg = server_config(args)
        store = open_store(args.store)
    except NetK8sError as exc:
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(DnsServer(store, cfg)))
    except OSError as exc:
        print(f"error: cannot listen on {args.bind} (port {args.port}, health {args.health_port}, "
              f"ready {args.ready_port}): {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
