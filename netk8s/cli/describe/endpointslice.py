"""`describe endpointslice` (kubectl's EndpointSliceDescriber)."""

from __future__ import annotations

from netk8s.cli.describe.common import (
    Writer,
    describe_events,
    events_for,
    metadata_block,
)
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import NONE, _meta


@describer("EndpointSlice")
def describe_endpointslice(w: Writer, eps: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(eps)
    metadata_block(w, meta, meta.get("namespace") or "default")
    w.write(0, f"AddressType:\t{eps.get('addressType', '')}\n")
    ports = eps.get("ports") or []
    if not ports:
        w.write(0, "Ports: <unset>\n")
    else:
        w.write(0, "Ports:\n")
        w.write(1, "Name\tPort\tProtocol\n")
        w.write(1, "----\t----\t--------\n")
        for port in ports:
            number = "<unset>" if port.get("port") is None else str(port["port"])
            w.write(1, f"{port.get('name') or '<unset>'}\t{number}\t{port.get('protocol') or 'TCP'}\n")
    endpoints = eps.get("endpoints") or []
    if not endpoints:
        w.write(0, "Endpoints: <none>\n")
    else:
        w.write(0, "Endpoints:\n")
        for ep in endpoints:
            w.write(1, f"- Addresses:\t{', '.join(ep.get('addresses') or []) or NONE}\n")
            w.write(2, "Conditions:\n")
            ready = (ep.get("conditions") or {}).get("ready")
            w.write(3, f"Ready:\t{'<unset>' if ready is None else str(bool(ready)).lower()}\n")
            w.write(2, f"Hostname:\t{ep.get('hostname') or '<unset>'}\n")
            target = ep.get("targetRef")
            if target:
                w.write(2, f"TargetRef:\t{target.get('kind', '')}/{target.get('name', '')}\n")
            w.write(2, f"NodeName:\t{ep.get('nodeName') or '<unset>'}\n")
            w.write(2, f"Zone:\t{ep.get('zone') or '<unset>'}\n")
    describe_events(w, events_for(eps, related), now)
