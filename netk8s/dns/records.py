"""Pure: the cluster DNS record table (Kubernetes DNS-Based Service Discovery 1.1.0), updated incrementally.

The table is fed store events for Services, EndpointSlices and Pods. Every record belongs to an *owner*
(one Service with its slices and subdomain pods, one (namespace, pod IP), or the static records), and a
change recomputes only the owners it touches: reverse indexes map a slice to its Service, a pod IP to its
pods and a subdomain to its pods. apply() returns the names whose answers changed, so the wire layer
rebuilds only those. Nothing here does I/O or reads the clock.

Choices, following CoreDNS's kubernetes plugin where the specification leaves room:
- pod records `a-b-c-d.<ns>.pod.<zone>` are "verified" (CoreDNS `pods verified`): answered only when a
  pod with that IP exists in that namespace (Succeeded/Failed pods do not count: their IP is free again).
- endpoint names (`<hostname>.<svc>` and `a-b-c-d.<svc>`) are served for every Service with endpoints,
  as CoreDNS does; SRV per endpoint and PTR for endpoint hostnames only for headless Services (spec).
- ExternalName answers the CNAME for every query type and does not chase it (the client's resolver
  follows it, as with CoreDNS for targets outside the cluster).
- an EndpointSlice endpoint counts when conditions.ready is not false (nil means ready, per the API),
  or always when the Service has publishNotReadyAddresses.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain

from netk8s import config

# Record types (RFC 1035 / 2782 / 6891 numbers), kept here so the pure table does not need dnslib.
A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, OPT, ANY = 1, 2, 5, 6, 12, 16, 28, 33, 41, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

SPEC_VERSION = "1.1.0"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
# CoreDNS's SOA timers (plugin/kubernetes: refresh 7200, retry 1800, expire 86400).
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400

Record = tuple[int, tuple]  # (rtype, rdata); rdata: A (ip,), SRV (prio, weight, port, target), PTR/CNAME/NS (target,), TXT (text,)
RR = tuple[str, int, int, tuple]  # (owner name, rtype, ttl, rdata) as it goes on the wire
Owner = tuple[str, ...]

_LABEL = re.compile(r"^[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class DnsConfig:
    """What the table serves: the cluster zone, TTL and the CIDRs whose reverse names it owns."""

    domain: str = config.CLUSTER_DOMAIN
    ttl: int = 5  # CoreDNS kubernetes plugin `ttl` default
    service_cidr: str = str(config.SERVICE_CIDR)
    cluster_cidr: str = str(config.CLUSTER_CIDR)
    dns_ip: str = str(config.DNS_SERVICE_IP)  # A of ns.dns.<zone>, the NS of the zone (as CoreDNS)


@dataclass(frozen=True)
class Answer:
    """An authoritative answer: rcode and the three sections (the SOA goes in authority when negative)."""

    rcode: int
    answers: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()


def normalize(name: str) -> str:
    """Lowercase, no trailing dot: DNS names compare case-insensitively (RFC 4343)."""
    return name.rstrip(".").lower()


def valid_name(name: str) -> bool:
    """A name we can put on the wire: labels of 1-63 characters [a-z0-9-_], at most 253 in all."""
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def dashed(ip: str) -> str:
    """10.244.1.5 -> 10-244-1-5 (the spec's IP-as-label form)."""
    return ip.replace(".", "-").replace(":", "-")


def reverse_name(ip: str) -> str:
    """10.96.0.10 -> 10.0.96.10.in-addr.arpa."""
    return ipaddress.ip_address(ip).reverse_pointer


def parse_reverse(name: str) -> str | None:
    """d.c.b.a.in-addr.arpa -> a.b.c.d, or None for anything else (partial names included)."""
    labels = name.split(".")
    if len(labels) != 6 or labels[4:] != ["in-addr", "arpa"]:
        return None
    octets = labels[:4]
    if not all(o.isdigit() and len(o) <= 3 and str(int(o)) == o and int(o) < 256 for o in octets):
        return None
    return ".".join(reversed(octets))


def reverse_zone(cidr: ipaddress.IPv4Network) -> str:
    """The in-addr.arpa zone on the octet boundary at or above a CIDR (10.244.0.0/16 -> 244.10.in-addr.arpa)."""
    octets = str(cidr.network_address).split(".")[: cidr.prefixlen // 8]
    return ".".join([*reversed(octets), "in-addr", "arpa"])


def _ipv4(value: object) -> str | None:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        return None
    return str(addr) if addr.version == 4 else None


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class _PodInfo:
    """What DNS needs of a Pod (a status-only change that keeps these is a no-op)."""

    ip: str | None
    hostname: str
    subdomain: str


@dataclass(frozen=True)
class _Endpoint:
    ip: str
    hostname: str
    ports: tuple[tuple[str, int, str], ...]  # (name, port, protocol) of the endpoint's slice


class RecordTable:
    """Names -> records for one cluster zone, kept current by apply(event type, object)."""

    def __init__(self, cfg: DnsConfig | None = None) -> None:
        self.cfg = cfg or DnsConfig()
        self.domain = normalize(self.cfg.domain)
        self.ttl = int(self.cfg.ttl)
        self.serial = 1
        nets = [ipaddress.ip_network(self.cfg.service_cidr, strict=False),
                ipaddress.ip_network(self.cfg.cluster_cidr, strict=False)]
        self._reverse_nets = [(n, reverse_zone(n)) for n in nets if isinstance(n, ipaddress.IPv4Network)]
        self._services: dict[tuple[str, str], dict] = {}
        self._slices: dict[tuple[str, str], dict] = {}
        self._slice_owner: dict[tuple[str, str], str] = {}  # slice key -> its Service's name
        self._svc_slices: dict[tuple[str, str], set[str]] = {}  # (ns, svc) -> slice names
        self._pods: dict[tuple[str, str], _PodInfo] = {}
        self._pods_by_ip: dict[tuple[str, str], set[str]] = {}  # (ns, ip) -> pod names
        self._pods_by_sub: dict[tuple[str, str], set[str]] = {}  # (ns, subdomain) -> pod names
        self._contrib: dict[Owner, dict[str, tuple[Record, ...]]] = {}
        self._by_name: dict[str, dict[Owner, tuple[Record, ...]]] = {}
        self._merged: dict[str, tuple[Record, ...]] = {}
        self._children: dict[str, int] = {}  # existing names below a name (empty non-terminals)
        self.owners_recomputed = 0  # for tests: how much work an update did
        self._set_contrib(("static",), self._static_records())

    # ---- queries ---------------------------------------------------------------------------------

    def records(self, name: str) -> tuple[Record, ...]:
        return self._merged.get(normalize(name), ())

    def names(self) -> list[str]:
        """Every name with records (sorted)."""
        return sorted(self._merged)

    def existing_names(self) -> list[str]:
        """Every name that exists: with records, or an empty non-terminal above some (sorted)."""
        return sorted(self._merged.keys() | self._children.keys())

    def exists(self, name: str) -> bool:
        """The name has records, or names below it do (an empty non-terminal), or it is the apex."""
        n = normalize(name)
        return n in self._merged or self._children.get(n, 0) > 0 or n == self.domain

    def zones(self) -> list[str]:
        """The zones this table is authoritative for: the cluster domain and the reverse zones."""
        return [self.domain, *(zone for _, zone in self._reverse_nets)]

    def zone_of(self, name: str) -> str | None:
        """The zone this server is authoritative for that holds `name`, or None (forward it)."""
        n = normalize(name)
        if n == self.domain or n.endswith("." + self.domain):
            return self.domain
        ip = parse_reverse(n)
        if ip is not None:
            addr = ipaddress.ip_address(ip)
            for net, zone in self._reverse_nets:
                if addr in net:
                    return zone
        return None

    def soa(self, zone: str) -> RR:
        """The zone's SOA (CoreDNS's shape); minimum = TTL, so negative answers are cached that long."""
        rdata = (f"ns.dns.{self.domain}", f"hostmaster.{self.domain}", self.serial % (1 << 32),
                 SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.ttl)
        return (zone, SOA, self.ttl, rdata)

    def resolve(self, name: str, qtype: int) -> Answer | None:
        """The authoritative answer to (name, qtype), or None when the name is outside our zones."""
        n = normalize(name)
        zone = self.zone_of(n)
        if zone is None:
            return None
        recs = self._merged.get(n, ())
        if n == self.domain and qtype in (SOA, ANY):
            extra = tuple(self._rr(n, r) for r in recs) if qtype == ANY else ()
            return Answer(NOERROR, (self.soa(zone), *extra))
        cname = [r for r in recs if r[0] == CNAME]
        if cname:
            return Answer(NOERROR, tuple(self._rr(n, r) for r in cname))
        wanted = [r for r in recs if qtype in (ANY, r[0])]
        if wanted:
            return Answer(NOERROR, tuple(self._rr(n, r) for r in wanted), (), self._additional(wanted))
        if self.exists(n):
            return Answer(NOERROR, (), (self.soa(zone),))
        return Answer(NXDOMAIN, (), (self.soa(zone),))

    def _rr(self, name: str, rec: Record) -> RR:
        return (name, rec[0], self.ttl, rec[1])

    def _additional(self, recs: list[Record]) -> tuple[RR, ...]:
        """A records of SRV targets (the spec's additional section for SRV answers)."""
        out: list[RR] = []
        for target in dict.fromkeys(r[1][3] for r in recs if r[0] == SRV):
            out.extend(self._rr(target, r) for r in self._merged.get(target, ()) if r[0] == A)
        return tuple(out)

    # ---- updates ---------------------------------------------------------------------------------

    def apply_events(self, events: Iterable[tuple[str, dict]]) -> set[str]:
        """Apply (event type, object) pairs; the names whose answers changed."""
        dirty: set[str] = set()
        for etype, obj in events:
            dirty |= self.apply(etype, obj)
        return dirty

    def apply(self, etype: str, obj: dict) -> set[str]:
        """One store event (ADDED/MODIFIED/DELETED) of a Service, EndpointSlice or Pod; the names
        whose answers changed. Other kinds are ignored."""
        kind = obj.get("kind") if isinstance(obj, dict) else None
        meta = _dict(obj.get("metadata")) if isinstance(obj, dict) else {}
        name, ns = meta.get("name"), meta.get("namespace") or "default"
        if not isinstance(name, str) or not name or not isinstance(ns, str):
            return set()
        deleted = etype == "DELETED"
        if kind == "Service":
            return self._on_service(ns, name, None if deleted else obj)
        if kind == "EndpointSlice":
            return self._on_slice(ns, name, None if deleted else obj)
        if kind == "Pod":
            return self._on_pod(ns, name, None if deleted else obj)
        return set()

    def _on_service(self, ns: str, name: str, obj: dict | None) -> set[str]:
        if obj is None:
            self._services.pop((ns, name), None)
        else:
            self._services[(ns, name)] = obj
        return self._recompute(("svc", ns, name))

    def _on_slice(self, ns: str, name: str, obj: dict | None) -> set[str]:
        key = (ns, name)
        before = self._slice_owner.pop(key, None)
        if before is not None:
            self._svc_slices.get((ns, before), set()).discard(name)
            if not self._svc_slices.get((ns, before)):
                self._svc_slices.pop((ns, before), None)
        self._slices.pop(key, None)
        after = None
        if obj is not None:
            owner = _dict(_dict(obj.get("metadata")).get("labels")).get(LABEL_SERVICE_NAME)
            if isinstance(owner, str) and owner:
                after = owner
                self._slices[key] = obj
                self._slice_owner[key] = owner
                self._svc_slices.setdefault((ns, owner), set()).add(name)
        dirty: set[str] = set()
        for svc in dict.fromkeys(s for s in (before, after) if s):
            dirty |= self._recompute(("svc", ns, svc))
        return dirty

    def _on_pod(self, ns: str, name: str, obj: dict | None) -> set[str]:
        old = self._pods.get((ns, name))
        new = self._pod_info(obj) if obj is not None else None
        if old == new:
            return set()  # e.g. a readiness change: endpoints follow through the slices
        if old is not None:
            if old.ip:
                self._discard(self._pods_by_ip, (ns, old.ip), name)
            if old.subdomain:
                self._discard(self._pods_by_sub, (ns, old.subdomain), name)
        if new is None:
            self._pods.pop((ns, name), None)
        else:
            self._pods[(ns, name)] = new
            if new.ip:
                self._pods_by_ip.setdefault((ns, new.ip), set()).add(name)
            if new.subdomain:
                self._pods_by_sub.setdefault((ns, new.subdomain), set()).add(name)
        owners: dict[Owner, None] = {}
        for info in (old, new):
            if info is not None and info.ip:
                owners[("pod", ns, info.ip)] = None
            if info is not None and info.subdomain:
                owners[("svc", ns, info.subdomain)] = None
        dirty: set[str] = set()
        for owner in owners:
            dirty |= self._recompute(owner)
        return dirty

    @staticmethod
    def _discard(index: dict[tuple[str, str], set[str]], key: tuple[str, str], name: str) -> None:
        names = index.get(key)
        if names is not None:
            names.discard(name)
            if not names:
                del index[key]

    @staticmethod
    def _pod_info(pod: dict) -> _PodInfo:
        spec, status = _dict(pod.get("spec")), _dict(pod.get("status"))
        terminal = status.get("phase") in ("Succeeded", "Failed")
        ip = None if terminal else _ipv4(status.get("podIP"))
        hostname, sub = _str(spec.get("hostname")), _str(spec.get("subdomain"))
        return _PodInfo(ip, hostname.lower() if sub else "", sub.lower() if hostname else "")

    # ---- owners ----------------------------------------------------------------------------------

    def _recompute(self, owner: Owner) -> set[str]:
        self.owners_recomputed += 1
        if owner[0] == "svc":
            new = self._service_records(owner[1], owner[2])
        elif owner[0] == "pod":
            new = self._pod_records(owner[1], owner[2])
        else:
            new = self._static_records()
        return self._set_contrib(owner, new)

    def _static_records(self) -> dict[str, list[Record]]:
        out: dict[str, list[Record]] = {
            f"dns-version.{self.domain}": [(TXT, (SPEC_VERSION,))],
            self.domain: [(NS, (f"ns.dns.{self.domain}",))],
        }
        if _ipv4(self.cfg.dns_ip):
            out[f"ns.dns.{self.domain}"] = [(A, (str(_ipv4(self.cfg.dns_ip)),))]
        return out

    def _pod_records(self, ns: str, ip: str) -> dict[str, list[Record]]:
        if not self._pods_by_ip.get((ns, ip)):
            return {}
        return {f"{dashed(ip)}.{ns.lower()}.pod.{self.domain}": [(A, (ip,))]}

    def _endpoints(self, ns: str, name: str, publish: bool) -> list[_Endpoint]:
        """Addresses of the Service's EndpointSlices that DNS publishes, with their slice's ports."""
        out: list[_Endpoint] = []
        for slice_name in sorted(self._svc_slices.get((ns, name), ())):
            slc = self._slices[(ns, slice_name)]
            if slc.get("addressType", "IPv4") != "IPv4":
                continue
            ports = []
            for p in _list(slc.get("ports")):
                p = _dict(p)
                pname, number = p.get("name") or "", p.get("port")
                if isinstance(pname, str) and isinstance(number, int) and not isinstance(number, bool):
                    ports.append((pname.lower(), number, str(p.get("protocol") or "TCP").lower()))
            for ep in _list(slc.get("endpoints")):
                ep = _dict(ep)
                if _dict(ep.get("conditions")).get("ready") is False and not publish:
                    continue
                hostname = _str(ep.get("hostname"))
                for addr in _list(ep.get("addresses")):
                    ip = _ipv4(addr)
                    if ip:
                        out.append(_Endpoint(ip, hostname.lower(), tuple(ports)))
        return out

    def _service_records(self, ns: str, name: str) -> dict[str, list[Record]]:
        svc = self._services.get((ns, name))
        if svc is None:
            return {}
        spec = _dict(svc.get("spec"))
        base = f"{name}.{ns}.svc.{self.domain}".lower()
        out: dict[str, list[Record]] = {}

        def add(owner_name: str, rec: Record) -> None:
            out.setdefault(owner_name, []).append(rec)

        if spec.get("type") == "ExternalName":
            target = normalize(str(spec.get("externalName") or ""))
            if valid_name(target):
                add(base, (CNAME, (target,)))
            return out
        endpoints = self._endpoints(ns, name, bool(spec.get("publishNotReadyAddresses")))
        cluster_ip = _ipv4(spec.get("clusterIP"))
        if cluster_ip:  # a ClusterIP (NodePort, LoadBalancer) Service: the VIP
            add(base, (A, (cluster_ip,)))
            add(reverse_name(cluster_ip), (PTR, (base,)))
            for p in _list(spec.get("ports")):
                p = _dict(p)
                pname, number = str(p.get("name") or "").lower(), p.get("port")
                if pname and _PORT_NAME.match(pname) and isinstance(number, int):
                    proto = str(p.get("protocol") or "TCP").lower()
                    add(f"_{pname}._{proto}.{base}", (SRV, (0, 100, number, base)))
        else:  # headless: the endpoints themselves; no ready endpoint -> the name does not exist
            for ep in endpoints:
                add(base, (A, (ep.ip,)))
                target = f"{ep.hostname or dashed(ep.ip)}.{base}"
                for pname, number, proto in ep.ports:
                    if pname and _PORT_NAME.match(pname):
                        add(f"_{pname}._{proto}.{base}", (SRV, (0, 0, number, target)))
                if ep.hostname:
                    add(reverse_name(ep.ip), (PTR, (f"{ep.hostname}.{base}",)))
        for ep in endpoints:
            add(f"{dashed(ep.ip)}.{base}", (A, (ep.ip,)))
            if ep.hostname:
                add(f"{ep.hostname}.{base}", (A, (ep.ip,)))
        # A pod whose spec.hostname/subdomain names this Service resolves as <hostname>.<svc> once its
        # IP is among the Service's endpoints (what makes StatefulSet pod names work).
        ips = {ep.ip for ep in endpoints}
        for pod_name in sorted(self._pods_by_sub.get((ns, name.lower()), ())):
            info = self._pods[(ns, pod_name)]
            if info.ip in ips and info.hostname:
                add(f"{info.hostname}.{base}", (A, (info.ip,)))
        return {n: self._srv_weights(recs) for n, recs in out.items() if valid_name(n)}

    @staticmethod
    def _srv_weights(recs: list[Record]) -> list[Record]:
        """Headless SRV sets share the weight equally (CoreDNS: 100 / number of records)."""
        srv = [r for r in recs if r[0] == SRV and r[1][1] == 0]
        if not srv:
            return recs
        weight = max(1, 100 // len(set(srv)))
        return [(SRV, (r[1][0], weight, *r[1][2:])) if r in srv else r for r in recs]

    # ---- bookkeeping ------------------------------------------------------------------------------

    def _set_contrib(self, owner: Owner, new_lists: dict[str, list[Record]]) -> set[str]:
        new = {n: tuple(sorted(set(recs))) for n, recs in new_lists.items() if recs}
        old = self._contrib.get(owner, {})
        if new:
            self._contrib[owner] = new
        else:
            self._contrib.pop(owner, None)
        dirty: set[str] = set()
        for name in old.keys() | new.keys():
            if old.get(name) == new.get(name):
                continue
            per = self._by_name.setdefault(name, {})
            if name in new:
                per[owner] = new[name]
            else:
                per.pop(owner, None)
            if not per:
                del self._by_name[name]
            merged = tuple(sorted(set(chain.from_iterable(per.values()))))
            had = name in self._merged
            if merged:
                self._merged[name] = merged
            else:
                self._merged.pop(name, None)
            dirty.add(name)
            if had != bool(merged):
                dirty |= self._count_ancestors(name, 1 if merged else -1)
        # An SRV answer carries its targets' A records: rebuild it when a target changed.
        for name, recs in new.items():
            if name not in dirty and any(r[0] == SRV and r[1][3] in dirty for r in recs):
                dirty.add(name)
        return dirty

    def _count_ancestors(self, name: str, delta: int) -> set[str]:
        """Keep the count of existing names below each ancestor inside the zone; the ancestors whose
        existence (NODATA vs NXDOMAIN) flipped."""
        changed: set[str] = set()
        if not name.endswith("." + self.domain):
            return changed
        labels = name.split(".")
        stop = len(self.domain.split("."))
        for i in range(1, len(labels) - stop):
            anc = ".".join(labels[i:])
            before = self.exists(anc)
            count = self._children.get(anc, 0) + delta
            if count > 0:
                self._children[anc] = count
            else:
                self._children.pop(anc, None)
            if self.exists(anc) != before:
                changed.add(anc)
        return changed
