"""Pure: the NetworkPolicy drop log, one JSON line per packet a logged drop rule sent to NFLOG.

The node agent reads its NFLOG group (netk8s.dataplane.nflog) and turns each packet into a `Drop`:
the 5-tuple from its headers, the chain from the log prefix (netk8s.policy.nftables.LOG_PREFIX), and
from the model it rendered that chain with: the pod the chain guards, the direction, the policies that
isolate it, and which pods the two addresses belong to. `netk8s policy drops` reads the lines back.
Only the first packet of a connection reaches a pod's chain (established traffic is accepted before),
so a TCP connection that is dropped shows its SYN and the SYN's retransmissions.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from netk8s.policy.model import Model

FILE_NAME = "policy-drops.jsonl"
MAX_BYTES = 1 << 20  # the agent starts a new file (keeping one old one, FILE_NAME + ".1") past this


@dataclass(frozen=True)
class ChainInfo:
    """What a drop chain stands for: the pod it guards, the direction, the policies isolating it."""

    pod: str
    direction: str
    isolated_by: tuple[str, ...]


@dataclass(frozen=True)
class Drop:
    time: float
    node: str
    direction: str  # ingress: the destination was isolated; egress: the source was
    pod: str  # the pod whose chain dropped it
    isolated_by: tuple[str, ...]
    protocol: str
    src: str
    sport: int
    dst: str
    dport: int
    src_pod: str = ""  # "" when the address is no pod's (a node, the external client)
    dst_pod: str = ""

    def to_json(self) -> str:
        d = asdict(self)
        d["isolated_by"] = list(self.isolated_by)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Drop | None:
        """A Drop from one line of the file (None for a torn or foreign line)."""
        try:
            d = json.loads(line)
            return cls(float(d["time"]), str(d["node"]), str(d["direction"]), str(d["pod"]),
                       tuple(d.get("isolated_by") or ()), str(d["protocol"]), str(d["src"]), int(d.get("sport") or 0),
                       str(d["dst"]), int(d.get("dport") or 0), str(d.get("src_pod") or ""),
                       str(d.get("dst_pod") or ""))
        except (ValueError, KeyError, TypeError):
            return None


def chain_infos(model: Model, chains: dict[str, str]) -> dict[str, ChainInfo]:
    """chain -> ChainInfo for the chains a node programmed (`NodeRules.comments`: chain -> pod key)."""
    out = {}
    for chain, pod in chains.items():
        direction = "ingress" if chain.startswith("in-") else "egress"
        pp = model.policies.get(pod)
        by = () if pp is None else (pp.ingress_by if direction == "ingress" else pp.egress_by)
        out[chain] = ChainInfo(pod, direction, tuple(by))
    return out


def drop_of(info: ChainInfo, node: str, when: float, protocol: str, src: str, sport: int, dst: str, dport: int,
            pods_by_ip: dict[str, str]) -> Drop:
    return Drop(when, node, info.direction, info.pod, info.isolated_by, protocol, src, sport, dst, dport,
                pods_by_ip.get(src, ""), pods_by_ip.get(dst, ""))


def _end(ip: str, port: int, pod: str) -> str:
    where = f"{ip}:{port}" if port else ip
    return f"{pod} ({where})" if pod else where


def format_drop(d: Drop) -> str:
    """One line of `netk8s policy drops`."""
    stamp = time.strftime("%H:%M:%S", time.localtime(d.time)) + f".{int(d.time * 1000) % 1000:03d}"
    by = ", ".join(d.isolated_by) or "?"
    return (f"{stamp}  {d.node:<6} {d.protocol:<4} {_end(d.src, d.sport, d.src_pod)} -> "
            f"{_end(d.dst, d.dport, d.dst_pod)}  dropped: {d.direction} of {d.pod} isolated by {by}")


def parse_lines(text: str) -> list[Drop]:
    return [d for d in (Drop.from_json(line) for line in text.splitlines() if line.strip()) if d is not None]
