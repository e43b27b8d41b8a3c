"""nfnetlink_log: bind one NFLOG group in a namespace and read the packets nft's `log group N` sends it.

pyroute2 (0.9) has no nfnetlink_log socket, so this speaks the protocol directly on an
AF_NETLINK/NETLINK_NETFILTER socket (include/uapi/linux/netfilter/nfnetlink_log.h, the messages
`ulogd`'s and tcpdump's `nflog:N` reader libnetfilter_log sends): a CONFIG message with the BIND
command for the group, a copy mode (the first `COPY_RANGE` bytes of each packet are enough for the
IPv4 and L4 headers) and a queue threshold of 1 (deliver every packet at once, not in batches of
100). The socket keeps the namespace it was opened in (netlink(7)), so one opened in a node's
namespace reads that node's group from any thread.

A group has at most one listener per namespace: binding a group another socket holds fails (EPERM on
this kernel, nfnetlink_log.c: the instance belongs to another port id); `NflogReader.open` raises a
KernelError that says so.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import struct
from dataclasses import dataclass

from netk8s.dataplane.netns import open_socket
from netk8s.errors import KernelError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

# config attributes and commands
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2

# packet attributes
NFULA_TIMESTAMP = 3
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10

COPY_RANGE = 96
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 132: "SCTP"}


@dataclass(frozen=True)
class LoggedPacket:
    """One packet a `log group` rule sent: its prefix and the IPv4 5-tuple read from its headers."""

    prefix: str
    protocol: str  # TCP, UDP, SCTP, ICMP or the number
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    timestamp: float = 0.0  # 0: the kernel sent none
    indev: int = 0
    outdev: int = 0


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def config_message(group: int, seq: int, attrs: bytes) -> bytes:
    """A NFULNL_MSG_CONFIG request for `group` (nfgenmsg: AF_UNSPEC, version 0, res_id = group)."""
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, group) + attrs
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                         NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    return header + body


def parse_packet(payload: bytes, prefix: str, timestamp: float = 0.0, indev: int = 0, outdev: int = 0) -> LoggedPacket | None:
    """The 5-tuple of an IPv4 packet's first bytes (None for anything else)."""
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    ihl = (payload[0] & 0x0F) * 4
    proto = payload[9]
    src, dst = str(ipaddress.IPv4Address(payload[12:16])), str(ipaddress.IPv4Address(payload[16:20]))
    sport = dport = 0
    if proto in (6, 17, 132) and len(payload) >= ihl + 4:
        sport, dport = struct.unpack_from("!HH", payload, ihl)
    return LoggedPacket(prefix, PROTOCOLS.get(proto, str(proto)), src, dst, sport, dport, timestamp, indev, outdev)


def parse_messages(data: bytes) -> list[LoggedPacket]:
    """Every NFULNL_MSG_PACKET in one datagram from the socket, as LoggedPackets."""
    out: list[LoggedPacket] = []
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            attrs = _attrs(data[off + 20:off + length])  # after nlmsghdr (16) and nfgenmsg (4)
            prefix = attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")
            ts = 0.0
            if len(attrs.get(NFULA_TIMESTAMP, b"")) == 16:
                sec, usec = struct.unpack("!QQ", attrs[NFULA_TIMESTAMP])
                ts = sec + usec / 1e6
            dev = {k: struct.unpack("!I", attrs[k])[0] for k in (NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV)
                   if len(attrs.get(k, b"")) == 4}
            pkt = parse_packet(attrs.get(NFULA_PAYLOAD, b""), prefix, ts,
                               dev.get(NFULA_IFINDEX_INDEV, 0), dev.get(NFULA_IFINDEX_OUTDEV, 0))
            if pkt is not None:
                out.append(pkt)
        off += (length + 3) & ~3
    return out


class NflogReader:
    """The listener of one NFLOG group in one namespace (None: this process's)."""

    def __init__(self, sock: socket.socket, group: int) -> None:
        self.sock = sock
        self.group = group

    @classmethod
    def open(cls, netns: str | None, group: int) -> NflogReader:
        if not 0 <= group <= 65535:
            raise KernelError(f"nflog group: must be 0-65535, got {group}")
        sock = open_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            sock.bind((0, 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            reader = cls(sock, group)
            reader._configure()
        except BaseException:
            sock.close()
            raise
        return reader

    def _request(self, seq: int, attrs: bytes) -> None:
        self.sock.send(config_message(self.group, seq, attrs))
        self.sock.settimeout(5.0)
        try:
            while True:
                data = self.sock.recv(65536)
                _length, kind, _flags, got_seq = struct.unpack_from("=IHHI", data)
                if kind == NLMSG_ERROR and got_seq == seq:
                    code = -struct.unpack_from("=i", data, 16)[0]
                    if code == 0:
                        return
                    what = "is bound by another listener (one per namespace)" if code in (errno.EBUSY, errno.EPERM) else \
                        f"refused: {errno.errorcode.get(code, code)}"
                    raise KernelError(f"nflog group {self.group}: {what}",
                                      hint="is another reader (ulogd, tcpdump -i nflog) using this group?")
        except OSError as exc:
            raise KernelError(f"nflog group {self.group}: {exc}") from exc
        finally:
            self.sock.settimeout(None)

    def _configure(self) -> None:
        self._request(1, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])))
        self._request(2, _attr(NFULA_CFG_MODE, struct.pack("!IBx", COPY_RANGE, NFULNL_COPY_PACKET)))
        self._request(3, _attr(NFULA_CFG_QTHRESH, struct.pack("!I", 1)))
        self._request(4, _attr(NFULA_CFG_TIMEOUT, struct.pack("!I", 10)))  # 1/100 s

    def read(self, timeout: float = 0.0) -> list[LoggedPacket]:
        """The packets waiting (waiting up to `timeout` s for the first); [] when none came."""
        out: list[LoggedPacket] = []
        wait = timeout
        while select.select([self.sock], [], [], wait)[0]:
            try:
                data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped log messages: keep reading
                    continue
                raise KernelError(f"nflog group {self.group}: {exc}") from exc
            out += parse_messages(data)
            wait = 0.0
        return out

    def close(self) -> None:
        self.sock.close()
