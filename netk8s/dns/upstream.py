"""`python -m netk8s.dns.upstream --zone lab.example [...]`: the lab's small authoritative DNS server.

The lab runs it in the external client's namespace (192.168.56.100:53) and points the nodes' resolver
configuration at it, so the cluster DNS forwards to a real upstream without the internet. It serves one
zone: A/AAAA records given with --record plus a few defaults, the zone's SOA (NXDOMAIN and NODATA carry
it), REFUSED for every name outside the zone (it is not a resolver).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Callable

from dnslib import AAAA, EDNS0, NS, QTYPE, RR, SOA, TXT, A, DNSHeader, DNSRecord

from netk8s.dns import records as rec
from netk8s.dns.__main__ import OneLineParser, port_number, ttl_seconds
from netk8s.dns.server import Listener, RunsInThread

log = logging.getLogger("netk8s.dns.upstream")

EXTERNAL_IP = "192.168.56.100"
DEFAULT_RECORDS = {"www": EXTERNAL_IP, "ext": EXTERNAL_IP}
HELLO_TXT = "netk8s upstream"
EDNS_SIZE = 1232


class UpstreamServer(RunsInThread):
    """An authoritative server for one zone; counts the queries it answers (tests watch that)."""

    def __init__(self, zone: str, addresses: dict[str, str] | None = None, ttl: int = 60,
                 bind: str = "0.0.0.0", port: int = 53) -> None:
        self.zone = rec.normalize(zone)
        self.ttl = ttl
        self.bind, self.wanted_port = bind, port
        self.records: dict[str, list[RR]] = {}
        for name, ip in {**DEFAULT_RECORDS, **(addresses or {})}.items():
            self.add_address(name, ip)
        self._add(f"hello.{self.zone}", RR(f"hello.{self.zone}", QTYPE.TXT, ttl=ttl, rdata=TXT(HELLO_TXT)))
        self._add(self.zone, RR(self.zone, QTYPE.NS, ttl=ttl, rdata=NS(f"ns.{self.zone}")))
        self.soa = RR(self.zone, QTYPE.SOA, ttl=ttl,
                      rdata=SOA(f"ns.{self.zone}", f"hostmaster.{self.zone}", (1, 7200, 1800, 86400, ttl)))
        self.queries = 0
        self.asked: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.listener = Listener(self.handle)
        self.port = 0

    def fqdn(self, name: str) -> str:
        n = rec.normalize(name)
        return n if n == self.zone or n.endswith("." + self.zone) else f"{n}.{self.zone}"

    def add_address(self, name: str, ip: str) -> None:
        """An A (or AAAA) record; `name` relative to the zone or absolute inside it."""
        addr = ipaddress.ip_address(ip)
        fqdn = self.fqdn(name)
        rtype, rdata = (QTYPE.A, A(str(addr))) if addr.version == 4 else (QTYPE.AAAA, AAAA(str(addr)))
        self._add(fqdn, RR(fqdn, rtype, ttl=self.ttl, rdata=rdata))

    def _add(self, name: str, rr: RR) -> None:
        self.records.setdefault(name, []).append(rr)

    def in_zone(self, name: str) -> bool:
        return name == self.zone or name.endswith("." + self.zone)

    def handle(self, data: bytes, client: str, udp: bool) -> bytes | None:
        try:
            msg = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - garbage: answer FORMERR when there is a header to answer
            if len(data) < 12 or data[2] & 0x80:
                return None
            return data[:2] + bytes([0x80 | (data[2] & 0x79), rec.FORMERR]) + b"\x00" * 8
        if msg.header.qr:
            return None
        reply = DNSRecord(DNSHeader(id=msg.header.id, qr=1, aa=1, rd=msg.header.rd, opcode=msg.header.opcode),
                          q=msg.q if msg.questions else None)
        opt = [r for r in msg.ar if r.rtype == QTYPE.OPT]
        if msg.header.opcode != 0:
            reply.header.rcode = rec.NOTIMP
        elif len(msg.questions) != 1:
            reply.header.rcode = rec.FORMERR
        else:
            self._answer(msg, reply)
        if opt:
            reply.add_ar(EDNS0(udp_len=EDNS_SIZE))
        out = bytes(reply.pack())
        limit = max(512, opt[0].rclass) if opt else 512
        if udp and len(out) > limit:
            reply.rr, reply.auth, reply.ar = [], [], reply.ar[-1:] if opt else []
            reply.header.tc = 1
            out = bytes(reply.pack())
        return out

    def _answer(self, msg: DNSRecord, reply: DNSRecord) -> None:
        q = msg.questions[0]
        name = rec.normalize(str(q.qname))
        with self._lock:
            self.queries += 1
            self.asked.append((name, QTYPE.get(q.qtype, str(q.qtype))))
        if q.qclass != 1 or not self.in_zone(name):
            reply.header.aa = 0
            reply.header.rcode = rec.REFUSED
            return
        rrs = self.records.get(name, [])
        wanted = [rr for rr in rrs if q.qtype in (rr.rtype, QTYPE.ANY)]
        if name == self.zone and q.qtype in (QTYPE.SOA, QTYPE.ANY):
            wanted.insert(0, self.soa)
        for rr in wanted:
            reply.add_answer(RR(q.qname, rr.rtype, ttl=rr.ttl, rdata=rr.rdata))
        if not wanted:
            if not rrs and name != self.zone:
                reply.header.rcode = rec.NXDOMAIN
            reply.add_auth(self.soa)

    async def serve(self, stop: asyncio.Event, started: Callable[[], None] = lambda: None) -> None:
        self.port = await self.listener.open(self.bind, self.wanted_port)
        try:
            log.info("serving zone %s on %s:%d udp+tcp (%d names)", self.zone, self.bind, self.port,
                     len(self.records))
            started()
            await stop.wait()
        finally:
            await self.listener.close()



def _record(text: str) -> tuple[str, str]:
    name, sep, ip = text.partition("=")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--record {text!r}: expected NAME=IP") from None
    if not sep or not name or not rec.valid_name(rec.normalize(name)):
        raise argparse.ArgumentTypeError(f"--record {text!r}: expected NAME=IP")
    return name, ip


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m netk8s.dns.upstream", description=__doc__)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=port_number, default=53)
    p.add_argument("--zone", required=True)
    p.add_argument("--record", action="append", type=_record, default=[], metavar="NAME=IP")
    p.add_argument("--ttl", type=ttl_seconds, default=60)
    args = p.parse_args(argv)
    if not rec.valid_name(rec.normalize(args.zone)):
        p.error(f"--zone {args.zone!r}: not a valid DNS name")
    logging.basicConfig(level="INFO", stream=sys.stderr,
                        format="%(asctime)s netk8s-dns-upstream %(levelname)s %(message)s")
    server = UpstreamServer(args.zone, dict(args.record), args.ttl, args.bind, args.port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.serve(stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"error: cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
