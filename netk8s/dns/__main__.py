"""`python -m netk8s.dns --store URL [...]`: the cluster DNS server (what the kube-dns pods run).

With --workers N > 1 the process binds every port, then forks N worker processes that share those sockets
(the kernel hands each datagram or connection to one worker blocked on it), each a full server with its
own store connection, informer and record table: one Python process answers on one core at a time (the
GIL), so this is how the server uses every core. The parent only supervises: it restarts a worker that
dies and, on SIGTERM/SIGINT, stops the workers by PID and waits for them. Worker 0 serves /health and
/ready. A worker takes no query before its first sync, so no worker answers from an empty table.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from netk8s import config
from netk8s.dns.forward import parse_upstream, upstreams_from_resolv_conf
from netk8s.dns.records import DnsConfig
from netk8s.dns.server import DEFAULT_ALLOW, DnsServer, ServerConfig, Sockets, bind_all
from netk8s.errors import NetK8sError
from netk8s.store.factory import open_store

log = logging.getLogger("netk8s.dns")

STOP_GRACE = 10.0  # seconds workers get to stop after SIGTERM before SIGKILL
RESPAWN_DELAY = 1.0  # at least this long between two starts of the same worker (a crash loop)
ORPHAN_CHECK = 0.5  # seconds between a worker's checks that its parent is still there
SUPERVISOR_SIGNALS = frozenset({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})


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


def worker_count(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r} (0-64)")
    return int(text)


def cpus() -> int:
    """CPUs this process may run on (its affinity mask, which a cpuset narrows), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
    p.add_argument("--workers", type=worker_count, default=0,
                   help="server processes sharing the port (0: one per CPU; 1: no extra process)")
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


async def _serve(server: DnsServer, parent: int | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.ensure_future(_orphaned(parent, stop)) if parent is not None else None
    try:
        await server.serve(stop)
    finally:
        if watch is not None:
            watch.cancel()


async def _orphaned(parent: int, stop: asyncio.Event) -> None:
    """A worker whose parent went away (SIGKILL: no chance to stop us) stops too."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("parent %d is gone: stopping", parent)
            stop.set()
            return
        await asyncio.sleep(ORPHAN_CHECK)


def _listen_error(args: argparse.Namespace, exc: OSError) -> int:
    print(f"error: cannot listen on {args.bind} (port {args.port}, health {args.health_port}, "
          f"ready {args.ready_port}): {exc.strerror or exc}", file=sys.stderr)
    return 1


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
    workers = args.workers or cpus()
    if workers > 1:
        store.close()  # each worker opens its own: a store connection must not cross fork()
        try:
            sockets = bind_all(cfg)
        except OSError as exc:
            return _listen_error(args, exc)
        try:
            return Supervisor(args, cfg, sockets, workers).run()
        finally:
            sockets.close()
    try:
        asyncio.run(_serve(DnsServer(store, cfg)))
    except OSError as exc:
        return _listen_error(args, exc)
    finally:
        store.close()
    log.info("stopped")
    return 0


class Supervisor:
    """The parent of --workers N: forks the workers, restarts one that dies, stops them all on a signal.

    It stays single-threaded (no event loop, no store) so fork() is safe whenever it restarts a worker;
    it waits with sigtimedwait on blocked SIGCHLD/SIGTERM/SIGINT, so no signal is lost between checks."""

    def __init__(self, args: argparse.Namespace, cfg: ServerConfig, sockets: Sockets, workers: int) -> None:
        self.args, self.cfg, self.sockets, self.workers = args, cfg, sockets, workers
        self.pids: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}  # worker index -> when it last started
        self.down: set[int] = set()  # worker indexes waiting to be restarted
        self.stopping = False
        self.old_mask: set[int | signal.Signals] = set()

    def run(self) -> int:
        self.old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
        try:
            for index in range(self.workers):
                self._spawn(index)
            socks = self.sockets
            log.info("serving on %s:%d (health %s, ready %s) with %d workers (pids %s)", self.cfg.bind,
                     socks.udp.getsockname()[1], socks.health.getsockname()[1] if socks.health else "off",
                     socks.ready.getsockname()[1] if socks.ready else "off", self.workers,
                     ", ".join(map(str, self.pids)))
            while not self.stopping:
                info = signal.sigtimedwait(SUPERVISOR_SIGNALS, RESPAWN_DELAY if self.down else 3600.0)
                if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                    self.stopping = True
                self._reap()
                self._respawn()
            self._stop_all()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.old_mask)
        log.info("stopped")
        return 0

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, self.old_mask)
                code = self._worker(index, parent)
            except BaseException:  # logged; the exit code tells the parent
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.pids[pid] = index
        self.started[index] = time.monotonic()
        self.down.discard(index)

    def _worker(self, index: int, parent: int) -> int:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter(f"%(asctime)s netk8s-dns[{index}] %(levelname)s %(message)s"))
        socks = self.sockets
        mine = Sockets(socks.udp, socks.tcp, socks.health if index == 0 else None,
                       socks.ready if index == 0 else None)
        for other in (socks.health, socks.ready):
            if other is not None and index != 0:
                other.close()  # only worker 0 answers probes
        cfg = dataclasses.replace(self.cfg, wait_sync=True)
        try:
            store = open_store(self.args.store)
        except NetK8sError as exc:
            log.error("cannot open the store: %s", exc.message)
            return 1
        try:
            asyncio.run(_serve(DnsServer(store, cfg, sockets=mine), parent))
        finally:
            store.close()
        return 0

    def _reap(self) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            if not self.stopping:
                log.warning("worker %d (pid %d) exited with status %d; restarting it", index, pid,
                            os.waitstatus_to_exitcode(status))
                self.down.add(index)

    def _respawn(self) -> None:
        now = time.monotonic()
        for index in sorted(self.down):
            if not self.stopping and now - self.started.get(index, 0.0) >= RESPAWN_DELAY:
                self._spawn(index)

    def _stop_all(self) -> None:
        """SIGTERM each worker by PID, wait up to STOP_GRACE, then SIGKILL the ones left."""
        for pid in self.pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.pids and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, max(0.01, min(0.2, deadline - time.monotonic())))
            self._reap()
        for pid in list(self.pids):
            log.warning("worker pid %d did not stop within %.0f s: killing it", pid, STOP_GRACE)
            _signal(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.pids.pop(pid, None)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
