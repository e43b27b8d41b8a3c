"""kubectl-describe-like text for every kind netk8s serves (`netk8s describe KIND NAME`).

Pure formatting. Each kind has its describer in a module of this package, registered with
`@describer("Kind")` (registry.py); a kind without one gets the generic metadata + events text.
Each describer writes kubectl's lines, tab-separated exactly as kubernetes/kubectl
pkg/describe/describe.go does, and the whole text goes through the same tabwriter (minwidth 0,
padding 2), so keys line up per block the way kubectl's do. `related` carries the other objects a
description needs: "Endpoints"/"EndpointSlice" for a Service, "ReplicaSet" for a Deployment, "Pod"
for a Node/ReplicaSet/StatefulSet, and optionally "Event". Timestamps print in UTC.

A new kind: a module here with one `@describer("Kind")` function, imported below.
"""

from __future__ import annotations

# Importing the kind modules registers their describers.
from netk8s.cli.describe import (  # noqa: F401
    deployment,
    endpoints,
    endpointslice,
    namespace,
    networking,
    networkpolicy_text,
    node,
    pod,
    replicaset,
    service,
    statefulset,
)
from netk8s.cli.describe.common import Writer, describe_generic, format_rfc1123z
from netk8s.cli.describe.containers import describe_probe
from netk8s.cli.describe.quantity import format_quantity, parse_quantity, pod_qos_class
from netk8s.cli.describe.registry import DESCRIBERS, describer

__all__ = ["DESCRIBERS", "describe", "describe_probe", "describer", "format_quantity", "format_rfc1123z",
           "parse_quantity", "pod_qos_class"]


def describe(obj: dict, related: dict[str, list[dict]], now: float) -> str:
    """`netk8s describe` text for one object, laid out like `kubectl describe` (no trailing newline).

    related: other objects by kind that the description draws on (see the module docstring); kinds
    left out are treated as none existing."""
    w = Writer()
    DESCRIBERS.get(obj.get("kind", ""), describe_generic)(w, obj, related or {}, now)
    return w.text()
