"""A fake IPVS kernel for tests: IPVS services, ipsets, kube-ipvs0 and iptables (FakeRestore), rejecting what
the kernel rejects, and a packet tracer over them.

FakeIpvs implements netk8s.proxy.backend_ipvs.IpvsKernel, so IpvsBackend runs on it unchanged. What it
refuses, as ip_vs/ipset/ipvsadm do: a service added twice (`File exists`), a real server added to a
missing service or twice, editing or deleting what is not there, an unknown scheduler, a weight outside
0..65535; an ipset created twice, an entry added twice or to a missing set, an entry whose shape does not
fit the set type, destroying a set an iptables rule still uses; an address on a missing kube-ipvs0.
`ipvsadm --restore` applies line by line and stops at the first failure (earlier lines stay applied).

`trace` simulates new connections one at a time (netk8s.proxy.tracer_ipvs.plan enumerates them all from
the read-back): nat PREROUTING/OUTPUT through the product's iptables tracer (with the ipsets
answering `-m set`), then IPVS when the destination is a kube-ipvs0 address or a node IP with a virtual
server (the scheduler: `rr` in order, `sh` by source hash, anything else as rr; persistence keeps a
client on its real server for the timeout), then the hairpin masquerade of KUBE-LOOP-BACK.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from netk8s.errors import KernelError
from netk8s.model import naming
from netk8s.proxy.render_ipvs import IPSETS, PROTOCOLS, SCHEDULERS
from netk8s.proxy.testing.fake_iptables import FakeRestore
from netk8s.proxy.tracer_iptables import trace as trace_iptables
from netk8s.proxy.tracer_ipvs import ipset_lookup

_FLAG_PROTO = {flag: proto for proto, flag in PROTOCOLS.items()}
_SET_TYPES = {name: kind for name, kind, _ in IPSETS}


@dataclass
class FakeReal:
    weight: int
    active: int = 0
    inactive: int = 0


@dataclass
class FakeService:
    scheduler: str
    persistence: int | None
    reals: dict[tuple[str, int], FakeReal] = field(default_factory=dict)
    next_rr: int = 0
    sticky: dict[str, tuple[tuple[str, int], float]] = field(default_factory=dict)  # client -> (real, until)


def _entry_ok(kind: str, entry: str) -> bool:
    try:
        if kind == "bitmap:port":
            return 0 <= int(entry) <= 65535
        parts = entry.split(",")
        want = {"hash:ip,port": 2, "hash:ip,port,ip": 3}[kind]
        if len(parts) != want:
            return False
        ipaddress.IPv4Address(parts[0])
        proto, _, port = parts[1].partition(":")
        if proto not in ("tcp", "udp", "sctp") or not 0 <= int(port) <= 65535:
            return False
        if want == 3:
            ipaddress.IPv4Address(parts[2])
        return True
    except (ValueError, KeyError):
        return False


class FakeIpvs:
    """In-memory IPVS + ipset + kube-ipvs0 + iptables (FakeRestore) of one node."""

    def __init__(self, node_ips: Iterable[str] = ()) -> None:
        self.services: dict[tuple[str, str, int], FakeService] = {}
        self.sets: dict[str, tuple[str, set[str]]] = {}
        self.device: set[str] | None = None  # kube-ipvs0's addresses, None: no device
        self.iptables = FakeRestore()
        self.node_ips = set(node_ips)
        self.calls: list[str] = []  # what was sent, in order (ipvsadm/ipset texts, "addr +ip", ...)

    # ----- IpvsKernel: reading back -----------------------------------------------------------------
    def ipvsadm_list(self) -> str:
        lines = ["IP Virtual Server version 1.2.1 (size=4096)", "Prot LocalAddress:Port Scheduler Flags",
                 "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"]
        for (proto, ip, port), svc in sorted(self.services.items()):
            flags = f" persistent {svc.persistence}" if svc.persistence is not None else ""
            lines.append(f"{proto}  {ip}:{port} {svc.scheduler}{flags}")
            for (rip, rport), r in sorted(svc.reals.items()):
                lines.append(f"  -> {rip}:{rport}".ljust(34) + f"Masq    {r.weight:<6} {r.active:<10} {r.inactive}")
        return "\n".join(lines) + "\n"

    def ipset_save(self) -> str:
        out = []
        for name, (kind, entries) in sorted(self.sets.items()):
            out.append(f"create {name} {kind}")
            out += [f"add {name} {e}" for e in sorted(entries)]
        return "\n".join(out) + ("\n" if out else "")

    def device_addresses(self) -> set[str] | None:
        return None if self.device is None else set(self.device)

    # ----- IpvsKernel: changing -------------------------------------------------------------------
    def ensure_device(self) -> None:
        if self.device is None:
            self.device = set()
            self.calls.append("device +kube-ipvs0")

    def delete_device(self) -> None:
        self.device = None
        self.calls.append("device -kube-ipvs0")

    def set_addresses(self, add: list[str], delete: list[str]) -> None:
        if (add or delete) and self.device is None:
            raise KernelError(f"Cannot find device \"{naming.KUBE_IPVS_DEVICE}\"")
        for ip in delete:
            self.device.discard(ip)  # type: ignore[union-attr]
            self.calls.append(f"addr -{ip}")
        for ip in add:
            self.device.add(ip)  # type: ignore[union-attr]
            self.calls.append(f"addr +{ip}")

    def ipvsadm_restore(self, text: str) -> None:
        if not text:
            return
        self.calls.append(text)
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    self._ipvsadm(shlex.split(line))
                except KernelError as exc:
                    raise KernelError(f"ipvsadm --restore: line {n} failed: {exc}: {line}") from None

    def _ipvsadm(self, w: list[str]) -> None:
        cmd, flag, addr = w[0], w[1], w[2]
        if flag not in _FLAG_PROTO:
            raise KernelError(f"unknown service flag {flag}")
        ip, _, port = addr.rpartition(":")
        key = (_FLAG_PROTO[flag], ip, int(port))
        opts: dict[str, str] = {}
        flags: set[str] = set()
        rest = iter(w[3:])
        for tok in rest:
            if tok in ("-m", "-g", "-i"):  # forwarding method flags take no value
                flags.add(tok)
            else:
                opts[tok] = next(rest, "")
        svc = self.services.get(key)
        if cmd in ("-A", "-E"):
            sched = opts.get("-s", "wlc")
            if sched not in SCHEDULERS:
                raise KernelError(f"Scheduler not found: {sched}")
            pers = int(opts["-p"]) if "-p" in opts else None
            if cmd == "-A":
                if svc is not None:
                    raise KernelError("Service already exists")
                self.services[key] = FakeService(sched, pers)
            else:
                if svc is None:
                    raise KernelError("No such service")
                svc.scheduler, svc.persistence = sched, pers
            return
        if svc is None:
            raise KernelError("No such service")
        if cmd == "-D":
            del self.services[key]
            return
        rip, _, rport = opts["-r"].rpartition(":")
        real = (rip, int(rport))
        if cmd in ("-a", "-e"):
            if "-m" not in flags:
                raise KernelError("only masquerading (-m) is modelled")
            weight = int(opts.get("-w", "1"))
            if not 0 <= weight <= 65535:
                raise KernelError("Illegal weight specified")
            if cmd == "-a":
                if real in svc.reals:
                    raise KernelError("Destination already exists")
                svc.reals[real] = FakeReal(weight)
            else:
                if real not in svc.reals:
                    raise KernelError("No such destination")
                svc.reals[real].weight = weight
            return
        if cmd == "-d":
            if real not in svc.reals:
                raise KernelError("No such destination")
            del svc.reals[real]
            return
        raise KernelError(f"unknown command {cmd}")

    def ipset_restore(self, text: str) -> None:
        if not text:
            return
        self.calls.append(text)
        for n, line in enumerate(text.splitlines(), 1):
            w = line.split()
            if not w:
                continue
            try:
                self._ipset(w)
            except KernelError as exc:
                raise KernelError(f"ipset v7.17: Error in line {n}: {exc}") from None

    def _ipset(self, w: list[str]) -> None:
        cmd, name = w[0], w[1]
        if cmd == "create":
            if name in self.sets:
                raise KernelError("Set cannot be created: set with the same name already exists")
            self.sets[name] = (w[2], set())
            return
        if name not in self.sets:
            raise KernelError("The set with the given name does not exist")
        kind, entries = self.sets[name]
        if cmd == "destroy":
            users = [r.text for c in self.iptables.tables.get("nat", {}).values() for r in c.rules
                     if r.match_set is not None and r.match_set[1] == name]
            if users:
                raise KernelError("Set cannot be destroyed: it is in use by a kernel component")
            del self.sets[name]
        elif cmd == "flush":
            entries.clear()
        elif cmd in ("add", "del"):
            entry = w[2]
            if not _entry_ok(kind, entry):
                raise KernelError(f"Syntax error: {entry!r} is not a valid {kind} entry")
            if cmd == "add":
                if entry in entries:
                    raise KernelError("Element cannot be added to the set: it's already added")
                entries.add(entry)
            else:
                if entry not in entries:
                    raise KernelError("Element cannot be deleted from the set: it's not added")
                entries.discard(entry)
        else:
            raise KernelError(f"unknown command {cmd}")

    # ----- IpvsKernel: iptables (the FakeRestore) -----------------------------------------------------
    def restore(self, text: str) -> None:
        for line in text.splitlines():  # a rule naming a set that does not exist is refused (xt_set)
            words = line.split()
            if "--match-set" in words:
                name = words[words.index("--match-set") + 1]
                if name not in self.sets:
                    raise KernelError(f"iptables-restore: Set {name} doesn't exist.")
        self.iptables.restore(text)

    def save(self, table: str) -> str:
        return self.iptables.save(table)

    def ensure_rules(self, rules: Mapping[str, Mapping[str, Sequence[str]]]) -> list[str]:
        return self.iptables.ensure_rules({t: {c: tuple(r) for c, r in cs.items()} for t, cs in rules.items()})

    def chain_exists(self, table: str, chain: str) -> bool:
        return self.iptables.chain_exists(table, chain)

    # ----- tests' levers ------------------------------------------------------------------------
    def connections(self, vip: str, port: int, real: str, active: int, proto: str = "TCP") -> None:
        """Pretend `active` connections are open to the real server `real` (`ip:port`)."""
        rip, _, rport = real.rpartition(":")
        self.services[(proto, vip, port)].reals[(rip, int(rport))].active = active

    def lookup(self, name: str, dirs: str, src: str, proto: str, dst: str, dport: int) -> bool:
        """`-m set --match-set NAME DIRS` for a packet (the product's lookup: netk8s.proxy.tracer_ipvs)."""
        return ipset_lookup({n: entries for n, (_kind, entries) in self.sets.items()})(name, dirs, src, proto, dst, dport)


@dataclass
class IpvsTrace:
    """Where a new connection went: `verdict` (DNAT, ACCEPT: no virtual server, NO-DESTINATION: a virtual
    server without a real server of weight > 0, or the iptables verdict), the real server, and whether the
    packet leaves masqueraded."""

    verdict: str
    real: str | None
    masquerade: bool
    path: list[str]


def trace(k: FakeIpvs, src: str, proto: str, dst: str, dport: int, *, now: float = 0.0,
          hook: str = "PREROUTING") -> IpvsTrace:
    """Follow a new connection's first packet (module docstring)."""
    local = (k.device or set()) | k.node_ips
    nat = trace_iptables(k.iptables.ruleset(), src, proto, dst, dport, local_dst_ips=local, hook=hook,
                         ipsets=k.lookup)
    if nat.verdict in ("DROP", "REJECT"):
        return IpvsTrace(nat.verdict, None, False, nat.path)
    svc = k.services.get((proto.upper(), dst, dport))
    if svc is None or dst not in local:
        return IpvsTrace("ACCEPT", None, nat.masquerade, nat.path)
    usable = [r for r, real in sorted(svc.reals.items()) if real.weight > 0]
    if not usable:
        return IpvsTrace("NO-DESTINATION", None, nat.masquerade, nat.path)
    pinned = svc.sticky.get(src)
    if svc.persistence is not None and pinned is not None and pinned[1] >= now and pinned[0] in usable:
        real = pinned[0]
    elif svc.scheduler == "sh":
        real = usable[int(hashlib.sha256(src.encode()).hexdigest(), 16) % len(usable)]
    else:
        real = usable[svc.next_rr % len(usable)]
        svc.next_rr += 1
    if svc.persistence is not None:
        svc.sticky[src] = (real, now + svc.persistence)
    hairpin = k.lookup(naming.IPSET_LOOP_BACK, "dst,dst,src", src, proto.lower(), real[0], real[1])
    return IpvsTrace("DNAT", f"{real[0]}:{real[1]}", nat.masquerade or hairpin, nat.path + ["ipvs"])
