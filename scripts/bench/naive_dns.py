"""The naive DNS baseline: a dnslib UDP server that parses every query and builds every reply from scratch.

`python -m scripts.bench.naive_dns HOSTS_FILE IP PORT` (HOSTS_FILE: `ip name` lines, like /etc/hosts).
No cache, no pre-packed answers, one thread: what a first attempt at a cluster DNS server looks like.
"""

from __future__ import annotations

import socket
import sys

from dnslib import QTYPE, RCODE, RR, A, DNSRecord


def load_hosts(path: str) -> dict[str, str]:
    table: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and not words[0].startswith("#"):
                for name in words[1:]:
                    table[name.rstrip(".").lower() + "."] = words[0]
    return table


def answer(table: dict[str, str], data: bytes) -> bytes:
    req = DNSRecord.parse(data)
    reply = req.reply()
    q = req.q
    name = str(q.qname).lower()
    ip = table.get(name)
    if ip is None:
        reply.header.rcode = RCODE.NXDOMAIN
    elif q.qtype in (QTYPE.A, QTYPE.ANY):
        reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=30))
    return reply.pack()


def main() -> int:
    table = load_hosts(sys.argv[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((sys.argv[2], int(sys.argv[3])))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(table, data), peer)
        except Exception:  # noqa: BLE001, S112 - a malformed query must not stop the server
            continue


if __name__ == "__main__":
    sys.exit(main())
