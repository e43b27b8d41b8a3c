"""Pure: DNS wire format for the cluster zone: precomputed reply templates and the no-dnslib fast path.

A reply to an authoritative query is `query id + flags + counts + the query's own question bytes +
template tail`. The tail (answer, authority and additional sections) is built once with dnslib when the
table changes, for the lowercased question; compression pointers in it point into the question at offset
12, which has the same length in every query for that name, so copying the client's question keeps the
pointers valid and echoes its letter case (0x20, draft-vixie-dnsext-dns0x20). Negative answers use an
uncompressed SOA record, so one tail per zone serves every missing name.

Anything the fast path does not expect (opcode, counts, compression in the question, a malformed OPT)
goes to parse_slow(), which uses dnslib and either normalises the query or returns an error reply.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from dnslib import (
    AAAA,
    CNAME,
    NS,
    PTR,
    QTYPE,
    RR,
    SRV,
    TXT,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)
from dnslib import SOA as SOAData

from netk8s.dns import records as rec

MAX_UDP = 65535
MIN_UDP = 512  # RFC 1035 limit without EDNS0
EDNS_SIZE = 1232  # the payload size we advertise (DNS flag day 2020)
# Our OPT pseudo-RR (RFC 6891): root owner, type 41, class = our UDP payload size, no flags, no options.
OPT_RR = b"\x00" + struct.pack(">HHIH", rec.OPT, EDNS_SIZE, 0, 0)

QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
_IN = 1
AXFR, IXFR = 252, 251
_COUNTS = struct.Struct(">HHHH")
_ERROR = struct.Struct(">HHHHH")  # flags and the four counts


@dataclass(frozen=True, slots=True)
class Query:
    """A query the fast path can answer: raw id, flags, the question bytes as sent (name, type, class),
    its lowercased name for lookups, and EDNS0 (udp_size 0 = no OPT record)."""

    qid: bytes
    flags: int
    question: bytes
    key: bytes
    qtype: int
    udp_size: int

    @property
    def edns(self) -> bool:
        return self.udp_size > 0

    def limit(self, udp: bool) -> int:
        """Largest reply for this query: the advertised EDNS0 size (at least 512), 512 without EDNS0;
        TCP has only the 16-bit length prefix."""
        if not udp:
            return MAX_UDP
        return max(MIN_UDP, min(self.udp_size, MAX_UDP)) if self.edns else MIN_UDP

    def name(self) -> str:
        """The question name as text (original case), for forwarding and logs."""
        return str(DNSLabel(split_labels(self.question[:-4])))


@dataclass(frozen=True, slots=True)
class Template:
    """The constant part of a reply: flags (AA, rcode), counts with and without our OPT, sections."""

    flags: int
    counts: bytes
    counts_edns: bytes
    tail: bytes

    @classmethod
    def make(cls, flags: int, an: int, ns: int, ar: int, tail: bytes) -> Template:
        return cls(flags, _COUNTS.pack(1, an, ns, ar), _COUNTS.pack(1, an, ns, ar + 1), tail)


def name_to_wire(name: str) -> bytes:
    """Uncompressed wire form of a (valid, lowercase) name."""
    out = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".") if label)
    return out + b"\x00"


def split_labels(wire: bytes) -> list[bytes]:
    """Labels of an uncompressed wire name."""
    labels, i = [], 0
    while i < len(wire) and wire[i]:
        labels.append(wire[i + 1:i + 1 + wire[i]])
        i += 1 + wire[i]
    return labels


# ---- parsing ---------------------------------------------------------------------------------------


def parse_fast(data: bytes) -> Query | None:
    """The common query (opcode QUERY, QR 0, one IN question with an uncompressed name, nothing but an
    optional OPT record after it) without dnslib; None for anything else (take parse_slow)."""
    if type(data) is not bytes:
        data = bytes(data)  # dict keys must be hashable (dnslib packs to bytearray)
    n = len(data)
    if n < 17:
        return None
    flags = (data[2] << 8) | data[3]
    if flags & 0xF800 or data[4:10] != b"\x00\x01\x00\x00\x00\x00" or data[10] or data[11] > 1:
        return None  # QR/opcode set, QDCOUNT != 1, answers/authority present, ARCOUNT > 1
    i = 12
    while True:
        length = data[i]
        if length == 0:
            break
        if length > 63:
            return None  # compression pointer or reserved label type
        i += length + 1
        if i >= n:
            return None
    end = i + 5
    if end > n or end - 12 > 259:  # name at most 255 bytes
        return None
    qtype = (data[i + 1] << 8) | data[i + 2]
    if data[i + 3] != 0 or data[i + 4] != _IN:
        return None
    udp_size = 0
    if data[11]:  # exactly one additional record: it must be a well-formed OPT (RFC 6891)
        if end + 11 > n or data[end] != 0 or data[end + 1:end + 3] != b"\x00\x29" or data[end + 6]:
            return None  # not OPT, or EDNS version != 0 (BADVERS, slow path)
        rdlen = (data[end + 9] << 8) | data[end + 10]
        if end + 11 + rdlen != n:
            return None
        udp_size = max(1, (data[end + 3] << 8) | data[end + 4])
    elif end != n:
        return None
    question = data[12:end]
    return Query(data[:2], flags, question, data[12:i + 1].lower(), qtype, udp_size)


def parse_slow(data: bytes) -> Query | bytes | None:
    """Any other packet, with dnslib: a normalised Query (uncompressed question), an error reply
    (FORMERR, NOTIMP, REFUSED, BADVERS), or None to drop it (a response, or too short to answer)."""
    data = bytes(data)
    if len(data) < 12:
        return None
    qid, flags = data[:2], (data[2] << 8) | data[3]
    if flags & QR:
        return None  # never answer a response: that is how reflection loops start
    opcode = (flags >> 11) & 0xF
    if opcode != 0:
        return error_reply(qid, flags, rec.NOTIMP)
    if not _worth_parsing(data):
        return error_reply(qid, flags, rec.FORMERR)
    try:
        msg = DNSRecord.parse(data)
    except Exception:  # noqa: BLE001 - dnslib raises several types on garbage; every one is FORMERR
        return error_reply(qid, flags, rec.FORMERR)
    if len(msg.questions) != 1:
        return error_reply(qid, flags, rec.FORMERR)
    q = msg.questions[0]
    try:
        name = b"".join(bytes([len(label)]) + bytes(label) for label in q.qname.label) + b"\x00"
    except (ValueError, TypeError):
        return error_reply(qid, flags, rec.FORMERR)
    if len(name) > 255 or any(not 0 < len(label) < 64 for label in q.qname.label):
        return error_reply(qid, flags, rec.FORMERR)
    question = name + struct.pack(">HH", q.qtype, q.qclass)
    opts = [r for r in msg.ar if r.rtype == rec.OPT]
    udp_size = 0
    if len(opts) > 1:
        return error_reply(qid, flags, rec.FORMERR, question)
    if opts:
        if (opts[0].ttl >> 16) & 0xFF:  # EDNS version != 0: BADVERS (extended rcode 16) with our OPT
            badvers = b"\x00" + struct.pack(">HHIH", rec.OPT, EDNS_SIZE, 1 << 24, 0)
            return error_reply(qid, flags, rec.NOERROR, question, badvers)
        udp_size = max(1, opts[0].rclass)
    if q.qclass != _IN:
        return error_reply(qid, flags, rec.REFUSED, question, OPT_RR if udp_size else b"")
    return Query(qid, flags, question, name.lower(), q.qtype, udp_size)


def _worth_parsing(data: bytes) -> bool:
    """Cheap checks that settle most garbage as FORMERR before dnslib spends time on it: one question,
    a name of valid labels (a compression pointer is left to dnslib), and no bytes after a message
    that says nothing follows the question."""
    if data[4:6] != b"\x00\x01":
        return False
    i, n = 12, len(data)
    while i < n:
        length = data[i]
        if length == 0:
            break
        if length & 0xC0 == 0xC0:
            return True  # compressed question: dnslib follows (and checks) the pointer
        if length > 63 or i - 12 + length + 1 > 255:
            return False
        i += length + 1
    end = i + 5
    if end > n:
        return False
    # Records announced but none there, or bytes that no count announces: malformed either way.
    return (end < n) == (data[6:12] != b"\x00\x00\x00\x00\x00\x00")


def error_reply(qid: bytes, flags: int, rcode: int, question: bytes = b"", opt: bytes = b"") -> bytes:
    """A header-only error (plus the question and an OPT when we have them)."""
    out_flags = QR | (flags & (0x7800 | RD | CD)) | rcode
    return qid + _ERROR.pack(out_flags, 1 if question else 0, 0, 0, 1 if opt else 0) + question + opt


# ---- rendering -------------------------------------------------------------------------------------


def render(q: Query, t: Template, ra: bool, udp: bool) -> bytes:
    """The reply to `q` from a template; truncated (TC, question only) when it does not fit UDP."""
    flags = QR | (q.flags & (RD | CD)) | t.flags | (RA if ra else 0)
    if q.edns:
        out = q.qid + flags.to_bytes(2, "big") + t.counts_edns + q.question + t.tail + OPT_RR
    else:
        out = q.qid + flags.to_bytes(2, "big") + t.counts + q.question + t.tail
    if len(out) > q.limit(udp):
        return truncated(q, flags)
    return out


def truncated(q: Query, flags: int) -> bytes:
    """TC=1 with the question only (RFC 2181 9: the client retries over TCP); keeps the OPT (RFC 6891)."""
    counts = _COUNTS.pack(1, 0, 0, 1 if q.edns else 0)
    return q.qid + (flags | TC).to_bytes(2, "big") + counts + q.question + (OPT_RR if q.edns else b"")


def fit(q: Query, reply: bytes, udp: bool) -> bytes:
    """A reply built elsewhere (forwarded), truncated to the client's limit."""
    if len(reply) <= q.limit(udp):
        return reply
    return truncated(q, (reply[2] << 8) | reply[3])


_RDATA = {
    rec.A: lambda d: A(d[0]),
    rec.AAAA: lambda d: AAAA(d[0]),
    rec.CNAME: lambda d: CNAME(d[0]),
    rec.PTR: lambda d: PTR(d[0]),
    rec.NS: lambda d: NS(d[0]),
    rec.TXT: lambda d: TXT(d[0]),
    rec.SRV: lambda d: SRV(d[0], d[1], d[2], d[3]),
    rec.SOA: lambda d: SOAData(d[0], d[1], d[2:7]),
}


def to_dnslib(rr: rec.RR) -> RR:
    name, rtype, ttl, rdata = rr
    return RR(name, rtype, ttl=ttl, rdata=_RDATA[rtype](rdata))


def build_template(name: str, qtype: int, answer: rec.Answer) -> Template:
    """The template for (name, qtype) from the table's answer, packed by dnslib with name compression."""
    msg = DNSRecord(DNSHeader(id=0, qr=1, aa=1, rcode=answer.rcode), q=DNSQuestion(name, qtype))
    for rr in answer.answers:
        msg.add_answer(to_dnslib(rr))
    for rr in answer.authority:
        msg.add_auth(to_dnslib(rr))
    for rr in answer.additional:
        msg.add_ar(to_dnslib(rr))
    packed = msg.pack()
    qlen = len(name_to_wire(name)) + 4
    return Template.make(AA | answer.rcode, len(answer.answers), len(answer.authority),
                         len(answer.additional), packed[12 + qlen:])


def soa_wire(rr: rec.RR) -> bytes:
    """An SOA record without compression, valid after any question."""
    name, _, ttl, (mname, rname, *numbers) = rr
    rdata = name_to_wire(mname) + name_to_wire(rname) + struct.pack(">IIIII", *numbers)
    return name_to_wire(name) + struct.pack(">HHIH", rec.SOA, _IN, ttl, len(rdata)) + rdata


class Answers:
    """Precomputed templates for every (name, qtype) of a RecordTable, kept in step with it.

    Writers (the table's updater thread) replace entries one by one; readers only do dict lookups,
    which are atomic in CPython, so a query never sees a half-built template. New entries go in before
    stale ones go out, so a name being rebuilt never looks missing.
    """

    def __init__(self, table: rec.RecordTable) -> None:
        self.table = table
        self.positive: dict[tuple[bytes, int], Template] = {}
        self.cname: dict[bytes, Template] = {}
        self.existing: dict[bytes, str] = {}  # wire name -> its zone (NODATA when the qtype is missing)
        self.negative: dict[str, tuple[Template, Template]] = {}  # zone -> (NODATA, NXDOMAIN)
        self._qtypes: dict[bytes, tuple[int, ...]] = {}
        self._domain_wire = name_to_wire(table.domain)
        self._apex = table.domain
        self.templates_built = 0
        self._notimp = Template.make(rec.NOTIMP, 0, 0, 0, b"")
        self.set_serial(table.serial)
        self.update(table.existing_names())

    def set_serial(self, serial: int) -> None:
        """A new SOA serial: rebuild the negative tails and the apex SOA answer (a handful of bytes)."""
        self.table.serial = serial
        for zone in self.table.zones():
            soa = soa_wire(self.table.soa(zone))
            self.negative[zone] = (Template.make(AA | rec.NOERROR, 0, 1, 0, soa),
                                   Template.make(AA | rec.NXDOMAIN, 0, 1, 0, soa))
        answer = self.table.resolve(self._apex, rec.SOA)
        assert answer is not None
        self.positive[(self._domain_wire, rec.SOA)] = build_template(self._apex, rec.SOA, answer)

    def update(self, names: Iterable[str]) -> int:
        """Rebuild the templates of these names; returns how many templates were built."""
        built = 0
        for name in names:
            built += self._update_name(name)
        self.templates_built += built
        return built

    def _update_name(self, name: str) -> int:
        key = name_to_wire(name)
        records = self.table.records(name)
        if self.table.exists(name):
            zone = self.table.zone_of(name)
            if zone is not None:
                self.existing[key] = zone
        rtypes = tuple(sorted({r[0] for r in records} - {rec.CNAME}))
        built = 0
        fresh: dict[tuple[bytes, int], Template] = {}
        for rtype in rtypes:
            answer = self.table.resolve(name, rtype)
            if answer is not None:
                fresh[(key, rtype)] = build_template(name, rtype, answer)
        if any(r[0] == rec.CNAME for r in records):
            answer = self.table.resolve(name, rec.CNAME)
            if answer is not None:
                self.cname[key] = build_template(name, rec.CNAME, answer)
                built += 1
        else:
            self.cname.pop(key, None)
        self.positive.update(fresh)
        for rtype in self._qtypes.get(key, ()):
            if rtype not in rtypes and not (name == self._apex and rtype == rec.SOA):
                self.positive.pop((key, rtype), None)
        if rtypes:
            self._qtypes[key] = rtypes
        else:
            self._qtypes.pop(key, None)
        if not self.table.exists(name):
            self.existing.pop(key, None)
        return built + len(fresh)

    def lookup(self, q: Query) -> Template | None:
        """The template answering q, or None when the name is outside our zones (forward it)."""
        key = q.key
        t = self.positive.get((key, q.qtype))
        if t is not None:
            return t
        t = self.cname.get(key)
        if t is not None:
            return t
        zone = self.existing.get(key)
        if zone is not None:
            if q.qtype == rec.ANY:
                return self._any(key)
            return self.negative[zone][0]
        if q.qtype in (AXFR, IXFR):
            return self._notimp  # no zone transfers (CoreDNS answers them only with the transfer plugin)
        if self._in_domain(key):
            return self.negative[self._apex][1]
        if key.endswith(b"\x07in-addr\x04arpa\x00"):
            zone = self.table.zone_of(str(DNSLabel(split_labels(key))))
            if zone is not None:
                return self.negative[zone][1]
        return None

    def _in_domain(self, key: bytes) -> bool:
        """The wire name is the cluster domain or below it (walking labels, not a byte suffix match)."""
        i, n, tail = 0, len(key), self._domain_wire
        while i < n:
            if key[i] == tail[0] and key[i:] == tail:
                return True
            if key[i] == 0:
                return False
            i += key[i] + 1
        return False

    def _any(self, key: bytes) -> Template:
        """qtype ANY, rare enough to build on demand (RFC 8482 would allow a minimal answer)."""
        name = str(DNSLabel(split_labels(key))).rstrip(".")
        answer = self.table.resolve(name, rec.ANY)
        assert answer is not None
        return build_template(name, rec.ANY, answer)


def qtype_name(qtype: int) -> str:
    return str(QTYPE.get(qtype, str(qtype)))


