"""`describe endpoints` (kubectl's EndpointsDescriber)."""

from __future__ import annotations

from netk8s.cli.describe.common import (
    Writer,
    describe_events,
    events_for,
    metadata_block,
    or_none,
)
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import _meta


@describer("Endpoints")
def describe_endpoints(w: Writer, ep: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(ep)
    metadata_block(w, meta, meta.get("namespace") or "default")
    w.write(0, "Subsets:\n")
    for subset in ep.get("subsets") or []:
        ready = ",".join(str(a.get("ip", "")) for a in subset.get("addresses") or [])
        not_ready = ",".join(str(a.get("ip", "")) for a in subset.get("notReadyAddresses") or [])
        w.write(1, f"Addresses:\t{or_none(ready)}\n")
        w.write(1, f"NotReadyAddresses:\t{or_none(not_ready)}\n")
        if subset.get("ports"):
            w.write(1, "Ports:\n")
            w.write(2, "Name\tPort\tProtocol\n")
            w.write(2, "----\t----\t--------\n")
            for port in subset["ports"]:
                w.write(2, f"{port.get('name') or '<unset>'}\t{port.get('port')}\t{port.get('protocol') or 'TCP'}\n")
        w.write(0, "\n")
    describe_events(w, events_for(ep, related), now)
