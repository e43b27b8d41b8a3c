"""resource.Quantity arithmetic for describe: parsing, kubectl's canonical format, a pod's QoS class."""

from __future__ import annotations

import re
from typing import Any

from netk8s.cli.printers import _spec

_QTY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|K|M|G|T|P|E)?$")
_QTY_FACTORS = {None: 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9,
                "T": 1e12, "P": 1e15, "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30,
                "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}


def parse_quantity(value: Any) -> float:
    """A resource.Quantity as a number of base units (cores, bytes); 0 when unparsable."""
    m = _QTY_RE.match(str(value).strip()) if value is not None else None
    if m is None:
        return 0.0
    return float(m.group(1)) * _QTY_FACTORS[m.group(2)]


def format_quantity(name: str, amount: float) -> str:
    """A summed quantity in kubectl's canonical shape: cpu in millicores (`250m`, `1`), memory in
    the largest binary unit that divides it (`192Mi`), else a plain number."""
    if amount == 0:
        return "0"
    if name == "cpu":
        milli = round(amount * 1000)
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    whole = round(amount)
    for suffix, factor in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20),
                           ("Ki", 2**10)):
        if whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)


def pod_requests_limits(pod: dict) -> tuple[dict[str, float], dict[str, float]]:
    reqs: dict[str, float] = {}
    limits: dict[str, float] = {}
    for c in _spec(pod).get("containers") or []:
        res = c.get("resources") or {}
        for name, qty in (res.get("requests") or {}).items():
            reqs[name] = reqs.get(name, 0.0) + parse_quantity(qty)
        for name, qty in (res.get("limits") or {}).items():
            limits[name] = limits.get(name, 0.0) + parse_quantity(qty)
    return reqs, limits


def pod_qos_class(pod: dict) -> str:
    """qos.GetPodQOS: BestEffort without requests/limits; Guaranteed when every container limits cpu
    and memory and requests (defaulting to the limits) equal them; else Burstable."""
    containers = [*(_spec(pod).get("initContainers") or []), *(_spec(pod).get("containers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits = {k: parse_quantity(v) for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        reqs = {k: parse_quantity(v) for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        if any(v != 0 for v in (*limits.values(), *reqs.values())):
            any_set = True
        reqs = {**limits, **reqs}
        if set(limits) != {"cpu", "memory"} or any(reqs.get(k) != limits[k] for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
