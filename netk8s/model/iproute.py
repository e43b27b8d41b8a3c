"""Pure text for `ip -batch -`: many address changes on one link sent to ONE `ip` process.

Why: kube-ipvs0 holds one /32 per ClusterIP / external IP, so a full IPVS sync of 10,000 Services adds
~10,000 addresses. One netlink request per address from Python (pyroute2, a socket opened per call) made
a full sync of 100 Services take 18.6 s in a QEMU TCG guest, 10.1 s with one `ip -batch -` (same guest;
an earlier run measured 424 s at 1,000 Services; batched, those 1,000 addresses take 1.7 s: BENCHMARKS.md
section 9). The text is plain `ip` commands, one a line (ip(8): "-b, -batch FILENAME").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

# ip(8) takes a device name of at most IFNAMSIZ-1 = 15 bytes with no whitespace or '/'
_MAX_IFNAME = 15


def _device(name: str) -> str:
    if not name or len(name) > _MAX_IFNAME or any(c.isspace() or c == "/" for c in name):
        raise ValueError(f"device: {name!r} is not a link name (1-{_MAX_IFNAME} characters, no space or '/')")
    return name


def _host(ip: str) -> str:
    try:
        return str(ipaddress.IPv4Address(ip))
    except ValueError:
        raise ValueError(f"address: {ip!r} is not an IPv4 address") from None


def address_batch(device: str, add: Iterable[str], delete: Iterable[str],
                  present: Iterable[str] | None = None) -> str:
    """`ip -batch` lines that put each of `add` on `device` as a /32 and take each of `delete` off it.

    Idempotent by construction: `address replace` adds an address or leaves it as it is (no "File exists"
    error, which would stop the batch); a delete is only written for an address in `present` (the
    link's addresses as read before; None: write every delete). Deletes come first, each address once,
    in the given order; an address both added and deleted is added. "" when there is nothing to do.
    """
    dev = _device(device)
    adds = list(dict.fromkeys(_host(ip) for ip in add))
    have = None if present is None else {_host(ip) for ip in present}
    dels = [ip for ip in dict.fromkeys(_host(ip) for ip in delete)
            if ip not in adds and (have is None or ip in have)]
    lines = [f"address delete {ip}/32 dev {dev}" for ip in dels]
    lines += [f"address replace {ip}/32 dev {dev}" for ip in adds]
    return "".join(f"{line}\n" for line in lines)


def parse_addresses(text: str) -> set[str]:
    """The IPv4 addresses in `ip -o -4 address show` output (one line per address: "5: kube-ipvs0    inet
    10.96.0.1/32 scope global kube-ipvs0 ..."), without their prefix length.

    Why text: listing kube-ipvs0's 1,000 addresses through pyroute2 took 25 s in a TCG guest (its
    Python netlink parser), `ip -o -4 address show` 0.5 s (BENCHMARKS.md section 9)."""
    out = set()
    for line in text.splitlines():
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word == "inet":
                out.add(words[i + 1].split("/")[0])
                break
    return out
