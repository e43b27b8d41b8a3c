"""`describe node` (kubectl's NodeDescriber), with the non-terminated pods and allocated resources."""

from __future__ import annotations

from netk8s.cli.describe.common import (
    Writer,
    annotations_multiline,
    describe_events,
    events_for,
    format_rfc1123z,
    labels_multiline,
    optional,
    resource_lists,
    taints_multiline,
)
from netk8s.cli.describe.quantity import format_quantity, parse_quantity, pod_requests_limits
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import NONE, _meta, _spec, _status, human_duration, node_roles, parse_time


@describer("Node")
def describe_node(w: Writer, node: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(node), _spec(node), _status(node)
    name = meta.get("name", "")
    w.write(0, f"Name:\t{name}\n")
    w.write(0, f"Roles:\t{','.join(node_roles(node)) or NONE}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"CreationTimestamp:\t{format_rfc1123z(meta.get('creationTimestamp'))}\n")
    taints_multiline(w, "Taints", spec.get("taints"))
    w.write(0, f"Unschedulable:\t{str(bool(spec.get('unschedulable'))).lower()}\n")
    if status.get("conditions"):
        w.write(0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
        w.write(1, "----\t------\t-----------------\t------------------\t------\t-------\n")
        for c in status["conditions"]:
            w.write(1, f"{c.get('type', '')} \t{c.get('status', '')} \t"
                       f"{format_rfc1123z(c.get('lastHeartbeatTime'))} \t"
                       f"{format_rfc1123z(c.get('lastTransitionTime'))} \t{c.get('reason', '')} \t"
                       f"{c.get('message', '')}\n")
    w.write(0, "Addresses:\n")
    for addr in status.get("addresses") or []:
        w.write(1, f"{addr.get('type', '')}:\t{addr.get('address', '')}\n")
    resource_lists(w, 0, status, (("Capacity", "capacity"), ("Allocatable", "allocatable")))
    info = status.get("nodeInfo") or {}
    w.write(0, "System Info:\n")
    for title, key in (("Machine ID", "machineID"), ("System UUID", "systemUUID"), ("Boot ID", "bootID"),
                       ("Kernel Version", "kernelVersion"), ("OS Image", "osImage"),
                       ("Operating System", "operatingSystem"), ("Architecture", "architecture"),
                       ("Container Runtime Version", "containerRuntimeVersion"),
                       ("Kubelet Version", "kubeletVersion"), ("Kube-Proxy Version", "kubeProxyVersion")):
        w.write(0, f"  {title}:\t{info.get(key) or ''}\n")
    optional(w, 0, "PodCIDR", spec.get("podCIDR"))
    if spec.get("podCIDRs"):
        w.write(0, f"PodCIDRs:\t{','.join(spec['podCIDRs'])}\n")
    optional(w, 0, "ProviderID", spec.get("providerID"))
    pods = [p for p in related.get("Pod") or []
            if _spec(p).get("nodeName") == name and _status(p).get("phase") not in ("Succeeded", "Failed")]
    _describe_node_resources(w, node, pods, now)
    describe_events(w, events_for(node, related), now)


def _describe_node_resources(w: Writer, node: dict, pods: list[dict], now: float) -> None:
    """describeNodeResource: the Non-terminated Pods table and the Allocated resources summary."""
    status = _status(node)
    allocatable = status.get("allocatable") or status.get("capacity") or {}
    alloc = {res: parse_quantity(allocatable.get(res)) for res in ("cpu", "memory", "ephemeral-storage")}

    def cell(res: str, amount: float) -> str:
        pct = int(amount / alloc[res] * 100) if alloc[res] else 0
        return f"{format_quantity(res, amount)} ({pct}%)"

    w.write(0, f"Non-terminated Pods:\t({len(pods)} in total)\n")
    w.write(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n")
    w.write(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n")
    totals_req: dict[str, float] = {}
    totals_lim: dict[str, float] = {}
    for pod in pods:
        req, lim = pod_requests_limits(pod)
        for res, amount in req.items():
            totals_req[res] = totals_req.get(res, 0.0) + amount
        for res, amount in lim.items():
            totals_lim[res] = totals_lim.get(res, 0.0) + amount
        age = parse_time(_meta(pod).get("creationTimestamp"))
        w.write(1, f"{_meta(pod).get('namespace') or 'default'}\t{_meta(pod).get('name', '')}\t\t"
                   f"{cell('cpu', req.get('cpu', 0.0))}\t{cell('cpu', lim.get('cpu', 0.0))}\t"
                   f"{cell('memory', req.get('memory', 0.0))}\t{cell('memory', lim.get('memory', 0.0))}\t"
                   f"{'<unknown>' if age is None else human_duration(now - age)}\n")
    w.write(0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n")
    w.write(1, "Resource\tRequests\tLimits\n")
    w.write(1, "--------\t--------\t------\n")
    for res in ("cpu", "memory", "ephemeral-storage"):
        w.write(1, f"{res}\t{cell(res, totals_req.get(res, 0.0))}\t{cell(res, totals_lim.get(res, 0.0))}\n")
