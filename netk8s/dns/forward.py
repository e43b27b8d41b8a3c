"""Forwarding of names outside the cluster zones to upstream servers, with a bounded TTL-honouring cache.

Like CoreDNS's forward + cache plugins: upstreams are tried in order (UDP, the next one on a timeout or
error, TCP again when the answer is truncated); answers are cached by (name, type, class) for the
smallest TTL of the answer section, negative answers for the SOA's minimum (RFC 2308), both capped,
and served with their TTLs decreased by their age. Identical queries in flight share one upstream query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from dnslib import EDNS0, QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from netk8s.dns import records as rec
from netk8s.errors import ValidationError

log = logging.getLogger("netk8s.dns")

CACHE_SIZE = 10_000
MAX_POSITIVE_TTL = 3600  # CoreDNS cache plugin default cap
MAX_NEGATIVE_TTL = 30
UPSTREAM_TIMEOUT = 2.0
EDNS_SIZE = 1232
LOG_EVERY = 5.0

Upstream = tuple[str, int]
CacheKey = tuple[str, int, int]


def parse_upstream(text: str) -> Upstream:
    """`IP`, `IP:PORT` or `[IPv6]:PORT` -> (ip, port); ValidationError otherwise."""
    host, port = text.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValidationError(f"upstream {text!r}: expected [IPv6]:PORT")
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, _, p = host.partition(":")
        port = _port(p, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValidationError(f"upstream {text!r}: not an IP address") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValidationError(f"upstream {whole!r}: port must be 1-65535")
    return int(text)


def _is_local(ip: str) -> bool:
    """The address belongs to this network namespace (binding to it works)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
    return True


def upstreams_from_resolv_conf(text: str, own: tuple[str, int]) -> list[Upstream]:
    """The `nameserver` lines of a resolv.conf, minus this server itself (own bind address and port:
    forwarding to ourselves would loop), as CoreDNS's `forward . /etc/resolv.conf` does."""
    out: list[Upstream] = []
    bind, port = own
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        try:
            ip = str(ipaddress.ip_address(words[1].split("%")[0]))
        except ValueError:
            continue
        if port == 53 and (ip == bind or (bind in ("0.0.0.0", "::") and _is_local(ip))):
            continue
        if (ip, 53) not in out:
            out.append((ip, 53))
    return out


@dataclass
class _Entry:
    stored: float
    expires: float
    packed: bytes


class Cache:
    """LRU of upstream answers keyed by (lowercase name, qtype, qclass)."""

    def __init__(self, size: int = CACHE_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.clock = clock
        self._items: OrderedDict[CacheKey, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: CacheKey) -> DNSRecord | None:
        """The cached answer with TTLs decreased by its age, or None (missing or expired)."""
        entry = self._items.get(key)
        if entry is None:
            return None
        now = self.clock()
        if now >= entry.expires:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        age = int(now - entry.stored)
        msg = DNSRecord.parse(entry.packed)
        for rr in (*msg.rr, *msg.auth, *msg.ar):
            if rr.rtype != rec.OPT:
                rr.ttl = max(0, rr.ttl - age)
        return msg

    def put(self, key: CacheKey, msg: DNSRecord) -> None:
        ttl = cache_ttl(msg)
        if ttl <= 0:
            return
        now = self.clock()
        self._items[key] = _Entry(now, now + ttl, bytes(msg.pack()))
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def cache_ttl(msg: DNSRecord) -> int:
    """How long an upstream answer may be cached: 0 for errors and truncated answers."""
    if msg.header.tc or msg.header.rcode not in (rec.NOERROR, rec.NXDOMAIN):
        return 0
    if msg.header.rcode == rec.NOERROR and msg.rr:
        return min(MAX_POSITIVE_TTL, min(rr.ttl for rr in msg.rr))
    soas = [rr for rr in msg.auth if rr.rtype == rec.SOA]
    if not soas:
        return 0  # RFC 2308 5: a negative answer without SOA is not cached
    return min(MAX_NEGATIVE_TTL, soas[0].ttl, soas[0].rdata.times[4])


class Forwarder:
    """Resolve (name, qtype, qclass) through the upstreams; answers come from the cache when fresh."""

    def __init__(self, upstreams: list[Upstream], timeout: float = UPSTREAM_TIMEOUT,
                 cache_size: int = CACHE_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.cache = Cache(cache_size, clock)
        self._inflight: dict[CacheKey, asyncio.Future[DNSRecord | None]] = {}
        self.upstream_queries = 0
        self._failures: dict[Upstream, tuple[float, int]] = {}  # last logged failure, failures since

    async def resolve(self, name: str, qtype: int, qclass: int) -> DNSRecord | None:
        """The upstream answer (None when every upstream failed: the caller answers SERVFAIL)."""
        key = (name.lower().rstrip(".") + ".", qtype, qclass)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[DNSRecord | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            msg = await self._ask_upstreams(key)
            if msg is not None:
                self.cache.put(key, msg)
            fut.set_result(msg)
            return msg
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters (if any) re-raise it
            raise
        finally:
            del self._inflight[key]

    async def _ask_upstreams(self, key: CacheKey) -> DNSRecord | None:
        name, qtype, qclass = key
        for server in self.upstreams:
            qid = secrets.randbelow(1 << 16)
            query = DNSRecord(DNSHeader(id=qid, rd=1), q=DNSQuestion(name, qtype, qclass))
            query.add_ar(EDNS0(udp_len=EDNS_SIZE))
            wire = bytes(query.pack())
            try:
                self.upstream_queries += 1
                reply = await self._udp(server, wire, qid)
                msg = self._check(reply, key, qid)
                if msg.header.tc:  # RFC 7766: the full answer over TCP
                    msg = self._check(await self._tcp(server, wire), key, qid)
                return msg
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                self._log_failure(server, f"forward {name} {QTYPE.get(qtype, qtype)} to {server[0]}:{server[1]} "
                                          f"failed: {exc or type(exc).__name__}")
        return None

    def _log_failure(self, server: Upstream, text: str) -> None:
        """A line per failure, but at most one per upstream every LOG_EVERY seconds (a flood of bad
        names must not become a flood of log lines)."""
        now = time.monotonic()
        last, missed = self._failures.get(server, (-LOG_EVERY, 0))
        if now - last < LOG_EVERY:
            self._failures[server] = (last, missed + 1)
            return
        self._failures[server] = (now, 0)
        log.warning("%s%s", text, f" ({missed} more failures not logged)" if missed else "")

    @staticmethod
    def _check(reply: bytes, key: CacheKey, qid: int) -> DNSRecord:
        try:
            msg = DNSRecord.parse(reply)
        except Exception as exc:  # noqa: BLE001 - dnslib raises several types on garbage
            raise ValueError(f"unparsable answer: {exc}") from None
        q = msg.questions[0] if len(msg.questions) == 1 else None
        if (msg.header.id != qid or not msg.header.qr or q is None
                or (str(q.qname).lower(), q.qtype, q.qclass) != key):
            raise ValueError("answer does not match the question")
        return msg

    async def _udp(self, server: Upstream, wire: bytes, qid: int) -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        want = struct.pack(">H", qid)

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                if data[:2] == want and not fut.done():  # ignore stray datagrams (spoofing, late replies)
                    fut.set_result(data)

            def error_received(self, exc: Exception) -> None:
                if not fut.done():
                    fut.set_exception(exc)

        transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=server)
        try:
            transport.sendto(wire)
            return await asyncio.wait_for(fut, self.timeout)
        finally:
            transport.close()

    async def _tcp(self, server: Upstream, wire: bytes) -> bytes:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*server), self.timeout)
        try:
            writer.write(struct.pack(">H", len(wire)) + wire)
            await writer.drain()
            size = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), self.timeout))[0]
            return await asyncio.wait_for(reader.readexactly(size), self.timeout)
        except asyncio.IncompleteReadError as exc:
            raise ValueError("upstream closed the TCP connection") from exc
        finally:
            writer.close()


def client_reply(qid: bytes, flags: int, question: bytes, upstream: DNSRecord | None, edns: bool,
                 ra: bool = True) -> bytes:
    """Our reply to the client from an upstream answer (SERVFAIL when None): the client's id, flags
    and question (its letter case), the upstream's sections, our OPT when the client sent one."""
    rd = bool(flags & 0x0100)
    rcode = rec.SERVFAIL if upstream is None else upstream.header.rcode
    header = DNSHeader(id=int.from_bytes(qid, "big"), qr=1, rd=int(rd), ra=int(ra), rcode=rcode)
    out = DNSRecord(header)
    name_len = len(question) - 4
    labels = []
    i = 0
    while i < name_len and question[i]:
        labels.append(question[i + 1:i + 1 + question[i]])
        i += 1 + question[i]
    qtype, qclass = struct.unpack(">HH", question[-4:])
    out.add_question(DNSQuestion(DNSLabel(labels), qtype, qclass))
    if upstream is not None:
        out.rr = list(upstream.rr)
        out.auth = list(upstream.auth)
        out.ar = [rr for rr in upstream.ar if rr.rtype != rec.OPT]
    if edns:
        out.add_ar(EDNS0(udp_len=EDNS_SIZE))
    return bytes(out.pack())
