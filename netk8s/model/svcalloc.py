"""Service allocation (pure): ClusterIP, nodePorts and healthCheckNodePort, as the API server assigns them.

The CLI's `apply` calls allocate() before it writes a Service, with the Service as stored (if any) and
every Service in the cluster. It follows kubernetes/kubernetes pkg/registry/core/service:
- storage/alloc.go: clusterIP from the service CIDR, random in the upper band of the range (the lower
  band is kept for static requests: KEP-3070), "None" = headless; on update the clusterIP is kept
  (patchAllocatedValues) and may not change except to/from ExternalName.
- portallocator: nodePorts from 30000-32767, random in the upper band (KEP-3668); a nodePort number is
  taken once cluster-wide whatever the protocol; existing ones are kept on update.
- storage/storage.go dropTypeDependentFields: a type change releases what the new type does not need.
Errors read like the API server's: `service/web: spec.clusterIP: Invalid value: "10.96.0.10": provided
IP is already allocated`.
"""

from __future__ import annotations

import copy
import ipaddress
import random
from collections.abc import Iterable

from netk8s import config
from netk8s.errors import ValidationError

HEADLESS = "None"
EXTERNAL_NAME = "ExternalName"
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
# Services that own a well-known address (the API server and the cluster DNS).
RESERVED_IPS: dict[str, tuple[str, str]] = {
    str(config.KUBERNETES_SERVICE_IP): ("default", "kubernetes"),
    str(config.DNS_SERVICE_IP): ("kube-system", "kube-dns"),
}


# ---- small helpers ---------------------------------------------------------------------------------


def _spec(svc: dict | None) -> dict:
    spec = (svc or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def _ident(svc: dict) -> tuple[str, str]:
    md = svc.get("metadata") or {}
    return str(md.get("namespace") or "default"), str(md.get("name") or "")


def _ref(svc: dict) -> str:
    return f"service/{_ident(svc)[1] or '?'}"


def _svc_type(svc: dict | None) -> str:
    return str(_spec(svc).get("type") or "ClusterIP")


def _invalid(svc: dict, path: str, value: object, problem: str, hint: str = "") -> ValidationError:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return ValidationError(f"{_ref(svc)}: {path}: Invalid value: {shown}: {problem}", hint=hint,
                           field=path, problem=f"Invalid value: {shown}: {problem}")


def needs_cluster_ip(svc: dict | None) -> bool:
    """Every type but ExternalName has a clusterIP field (an address, or "None" when headless)."""
    return svc is not None and _svc_type(svc) != EXTERNAL_NAME


def needs_node_ports(svc: dict | None) -> bool:
    """NodePort, and LoadBalancer unless spec.allocateLoadBalancerNodePorts is false."""
    if svc is None:
        return False
    t = _svc_type(svc)
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and _spec(svc).get("allocateLoadBalancerNodePorts") is not False


def needs_health_check_node_port(svc: dict | None) -> bool:
    """A LoadBalancer with externalTrafficPolicy Local gets a healthCheckNodePort."""
    return (svc is not None and _svc_type(svc) == "LoadBalancer"
            and _spec(svc).get("externalTrafficPolicy") == "Local")


def _cluster_ips_of(svc: dict) -> set[str]:
    spec = _spec(svc)
    ips = {str(ip) for ip in spec.get("clusterIPs") or [] if ip}
    if spec.get("clusterIP"):
        ips.add(str(spec["clusterIP"]))
    ips.discard(HEADLESS)
    return ips


def _node_ports_of(svc: dict) -> set[int]:
    spec = _spec(svc)
    used = {int(p["nodePort"]) for p in spec.get("ports") or []
            if isinstance(p, dict) and isinstance(p.get("nodePort"), int) and p["nodePort"]}
    hc = spec.get("healthCheckNodePort")
    if isinstance(hc, int) and hc:
        used.add(hc)
    return used


def _others(svc: dict, all_services: Iterable[dict]) -> list[dict]:
    me = _ident(svc)
    return [s for s in all_services if _ident(s) != me]


def _band_offset(size: int, divisor: int, cap: int) -> int:
    """Size of the lower (static) band: min(max(16, size/divisor), cap), as upstream's allocators."""
    return min(max(16, size // divisor), cap)


def _random_free(lo: int, hi: int, band: int, taken: set[int], rng: random.Random) -> int | None:
    """A free value of [lo, hi]: random start in the upper band, scanning forward (upstream's
    randomScanStrategyWithOffset), then the lower band. None when all are taken."""
    size = hi - lo + 1
    band = min(band, size)
    upper = size - band
    if upper > 0:
        start = rng.randrange(upper)
        for i in range(upper):
            value = lo + band + (start + i) % upper
            if value not in taken:
                return value
    if band > 0:
        start = rng.randrange(band)
        for i in range(band):
            value = lo + (start + i) % band
            if value not in taken:
                return value
    return None


# ---- ClusterIP -------------------------------------------------------------------------------------


def _service_range() -> tuple[int, int]:
    """First and last assignable address of the service CIDR (no network, no broadcast address)."""
    net = config.SERVICE_CIDR
    return int(net.network_address) + 1, int(net.broadcast_address) - 1


def _check_requested_ip(svc: dict, ip: str, taken: set[str]) -> None:
    lo, hi = _service_range()
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise _invalid(svc, "spec.clusterIP", ip, "must be a valid IP address or \"None\"") from None
    if addr.version != 4 or not lo <= int(addr) <= hi:
        raise _invalid(svc, "spec.clusterIP", ip, "provided IP is not in the valid range",
                       hint=f"the range of valid IPs is {config.SERVICE_CIDR}")
    owner = RESERVED_IPS.get(ip)
    if ip in taken or (owner is not None and owner != _ident(svc)):
        raise _invalid(svc, "spec.clusterIP", ip, "provided IP is already allocated",
                       hint="leave spec.clusterIP out to get a free address")


def _pick_ip(svc: dict, taken: set[str], rng: random.Random) -> str:
    ident = _ident(svc)
    for ip, owner in RESERVED_IPS.items():
        if owner == ident and ip not in taken:
            return ip
    lo, hi = _service_range()
    taken_ints = {int(ipaddress.ip_address(ip)) for ip in taken | set(RESERVED_IPS)
                  if ipaddress.ip_address(ip).version == 4}
    band = _band_offset(hi - lo + 1, 16, 256)
    value = _random_free(lo, hi, band, taken_ints, rng)
    if value is None:
        raise ValidationError(f"{_ref(svc)}: spec.clusterIP: Internal error: range is full",
                              hint=f"the service CIDR {config.SERVICE_CIDR} has no free address")
    return str(ipaddress.ip_address(value))


def _requested_ip(spec: dict) -> str:
    ip = spec.get("clusterIP")
    if ip in (None, ""):
        ips = spec.get("clusterIPs") or []
        ip = ips[0] if ips else ""
    return str(ip or "")


def _allocate_cluster_ip(svc: dict, existing: dict | None, others: list[dict], rng: random.Random) -> None:
    spec = svc["spec"]
    old_spec = _spec(existing)
    if not needs_cluster_ip(svc):
        # Release: an ExternalName Service has no VIP. A value the user set on purpose is refused.
        requested = _requested_ip(spec)
        if requested and requested != _requested_ip(old_spec):
            raise _invalid(svc, "spec.clusterIP", requested, "must be empty for an ExternalName Service")
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(key, None)
        return
    requested = _requested_ip(spec)
    old_ip = _requested_ip(old_spec) if needs_cluster_ip(existing) else ""
    if old_ip:
        if not requested:
            requested = old_ip  # patchAllocatedValues: unset on update means "keep"
        elif requested != old_ip:
            raise _invalid(svc, "spec.clusterIP", requested, "field is immutable",
                           hint=f"it is {old_ip}; delete and re-create the Service to change it")
    ips = spec.get("clusterIPs")
    if ips and requested and ips[0] != requested:
        raise _invalid(svc, "spec.clusterIPs[0]", ips[0], f"must match spec.clusterIP \"{requested}\"")
    if requested == HEADLESS:
        spec["clusterIP"] = HEADLESS
        spec["clusterIPs"] = [HEADLESS]
        _ip_families(svc, headless=True)
        return
    taken = set().union(*(_cluster_ips_of(o) for o in others)) if others else set()
    if requested:
        if requested != old_ip:
            _check_requested_ip(svc, requested, taken)
        ip = requested
    else:
        ip = _pick_ip(svc, taken, rng)
    spec["clusterIP"] = ip
    spec["clusterIPs"] = [ip]
    _ip_families(svc, headless=False)


def _ip_families(svc: dict, headless: bool) -> None:
    """Single-stack IPv4 cluster: ipFamilies [IPv4]; policy SingleStack, or RequireDualStack for a
    selector-less headless Service (storage/alloc.go initIPFamilyFields)."""
    spec = svc["spec"]
    families = spec.get("ipFamilies") or []
    for i, fam in enumerate(families):
        if fam != "IPv4":
            raise _invalid(svc, f"spec.ipFamilies[{i}]", fam, "not configured on this cluster")
    spec["ipFamilies"] = ["IPv4"]
    policy = spec.get("ipFamilyPolicy")
    if headless and not spec.get("selector"):
        spec["ipFamilyPolicy"] = policy or "RequireDualStack"
        return
    if policy == "RequireDualStack":
        raise _invalid(svc, "spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services")
    spec["ipFamilyPolicy"] = policy or "SingleStack"


# ---- nodePorts -------------------------------------------------------------------------------------


def _check_node_port(svc: dict, path: str, port: object, taken: set[int]) -> int:
    lo, hi = config.NODEPORT_RANGE
    if not isinstance(port, int) or isinstance(port, bool):
        raise _invalid(svc, path, port, "must be an integer")
    if not lo <= port <= hi:
        raise _invalid(svc, path, port, "provided port is not in the valid range",
                       hint=f"the range of valid ports is {lo}-{hi}")
    if port in taken:
        raise _invalid(svc, path, port, "provided port is already allocated",
                       hint="leave nodePort out to get a free port")
    return port


def _next_node_port(svc: dict, path: str, taken: set[int], rng: random.Random) -> int:
    lo, hi = config.NODEPORT_RANGE
    value = _random_free(lo, hi, _band_offset(hi - lo + 1, 32, 128), taken, rng)
    if value is None:
        raise ValidationError(f"{_ref(svc)}: {path}: Internal error: range is full",
                              hint=f"every port of {lo}-{hi} is in use; delete a NodePort Service")
    return value


def _old_node_port(port: dict, old_ports: list[dict], used_by_new: set[int]) -> int:
    """The nodePort the stored Service had for this port: same port/protocol, else same name."""
    proto = port.get("protocol") or "TCP"
    free = [p for p in old_ports if p.get("nodePort") and p["nodePort"] not in used_by_new]
    for p in free:
        if p.get("port") == port.get("port") and (p.get("protocol") or "TCP") == proto:
            return int(p["nodePort"])
    for p in free:
        if (p.get("name") or "") == (port.get("name") or ""):
            return int(p["nodePort"])
    return 0


def _allocate_node_ports(svc: dict, existing: dict | None, others: list[dict], rng: random.Random) -> None:
    spec = svc["spec"]
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    old_ports = [p for p in _spec(existing).get("ports") or [] if isinstance(p, dict)]
    old_numbers = {int(p["nodePort"]) for p in old_ports if isinstance(p.get("nodePort"), int) and p["nodePort"]}
    if _svc_type(svc) == "LoadBalancer" and not needs_node_ports(svc):
        # allocateLoadBalancerNodePorts: false -> none allocated; ones the manifest names are kept/checked.
        _allocate_requested_node_ports(svc, ports, old_numbers, others)
        return
    if not needs_node_ports(svc):
        # dropTypeDependentFields: nodePorts the stored Service had are released; new ones are refused.
        for i, p in enumerate(ports):
            number = p.get("nodePort")
            if not number or number in old_numbers:
                p.pop("nodePort", None)
            else:
                raise _invalid(svc, f"spec.ports[{i}].nodePort", number,
                               f"may not be used when `type` is '{_svc_type(svc)}'")
        return
    keep = needs_node_ports(existing)
    requested = {int(p["nodePort"]) for p in ports if isinstance(p.get("nodePort"), int) and p["nodePort"]}
    if keep:
        for p in ports:
            if not p.get("nodePort"):
                old = _old_node_port(p, old_ports, requested)
                if old:
                    p["nodePort"] = old
                    requested.add(old)
    kept = old_numbers if keep else set()
    _allocate_requested_node_ports(svc, ports, kept, others)
    taken = set().union(*(_node_ports_of(o) for o in others)) if others else set()
    taken |= {int(p["nodePort"]) for p in ports if p.get("nodePort")}
    taken |= {int(spec["healthCheckNodePort"])} if isinstance(spec.get("healthCheckNodePort"), int) else set()
    taken |= _node_ports_of(existing) if existing is not None else set()  # e.g. the old healthCheckNodePort
    for i, p in enumerate(ports):
        if not p.get("nodePort"):
            p["nodePort"] = _next_node_port(svc, f"spec.ports[{i}].nodePort", taken, rng)
            taken.add(p["nodePort"])


def _allocate_requested_node_ports(svc: dict, ports: list[dict], kept: set[int], others: list[dict]) -> None:
    """Check every nodePort set on the Service: in range and not another Service's (a number may
    serve one TCP and one UDP port of the same Service)."""
    taken = set().union(*(_node_ports_of(o) for o in others)) if others else set()
    mine: dict[tuple[int, str], int] = {}
    for i, p in enumerate(ports):
        number = p.get("nodePort")
        if not number:
            continue
        path = f"spec.ports[{i}].nodePort"
        proto = str(p.get("protocol") or "TCP")
        if (number, proto) in mine:
            raise _invalid(svc, path, number, "provided port is already allocated",
                           hint=f"spec.ports[{mine[number, proto]}] uses it too")
        if number not in kept:
            _check_node_port(svc, path, number, taken)
        mine[number, proto] = i


def _allocate_health_check(svc: dict, existing: dict | None, others: list[dict], rng: random.Random) -> None:
    spec = svc["spec"]
    old_hc = _spec(existing).get("healthCheckNodePort") if needs_health_check_node_port(existing) else None
    if not needs_health_check_node_port(svc):
        hc = spec.get("healthCheckNodePort")
        if hc in (None, 0) or hc == _spec(existing).get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
            return
        raise _invalid(svc, "spec.healthCheckNodePort", hc,
                       "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'")
    hc = spec.get("healthCheckNodePort") or old_hc
    taken = set().union(*(_node_ports_of(o) for o in others)) if others else set()
    taken |= {int(p["nodePort"]) for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")}
    if hc:
        if hc != old_hc:
            _check_node_port(svc, "spec.healthCheckNodePort", hc, taken)
        spec["healthCheckNodePort"] = hc
    else:
        spec["healthCheckNodePort"] = _next_node_port(svc, "spec.healthCheckNodePort", taken, rng)


def _drop_type_dependent(svc: dict, existing: dict | None) -> None:
    """Fields the new type does not use go away when they are left as they were (dropTypeDependentFields)."""
    spec = svc["spec"]
    old = _spec(existing)
    t = _svc_type(svc)
    external = t in NODE_PORT_TYPES or (t == "ClusterIP" and spec.get("externalIPs"))
    if not external and "externalTrafficPolicy" in spec and spec["externalTrafficPolicy"] == old.get(
            "externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy")
    if t != "LoadBalancer" and "allocateLoadBalancerNodePorts" in spec and spec[
            "allocateLoadBalancerNodePorts"] == old.get("allocateLoadBalancerNodePorts"):
        spec.pop("allocateLoadBalancerNodePorts")
    if t == EXTERNAL_NAME and spec.get("internalTrafficPolicy") == old.get("internalTrafficPolicy"):
        spec.pop("internalTrafficPolicy", None)


# ---- entry point -----------------------------------------------------------------------------------


def allocate(svc: dict, existing: dict | None, all_services: list[dict], rng_seed: int | None = None) -> dict:
    """The Service with its clusterIP, nodePorts and healthCheckNodePort filled in (a copy).

    `existing` is the stored version when this is an update (None on create); `all_services` is every
    Service in the cluster (the one being written may be among them: it is ignored). `rng_seed` makes
    the random choice of free addresses/ports deterministic (tests). Raises ValidationError on a
    collision, an address/port out of range, or a change of an immutable clusterIP.
    """
    out = copy.deepcopy(svc)
    if not isinstance(out.get("spec"), dict):
        out["spec"] = {}
    if existing is not None and not isinstance(existing.get("spec"), dict):
        existing = None
    rng = random.Random(rng_seed)
    others = _others(out, all_services)
    _drop_type_dependent(out, existing)
    _allocate_cluster_ip(out, existing, others, rng)
    _allocate_node_ports(out, existing, others, rng)
    _allocate_health_check(out, existing, others, rng)
    return out

