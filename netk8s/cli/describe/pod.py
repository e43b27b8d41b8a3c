"""`describe pod` (kubectl's PodDescriber)."""

from __future__ import annotations

from netk8s.cli.describe.common import (
    Writer,
    annotations_multiline,
    controller_of,
    describe_events,
    events_for,
    format_rfc1123z,
    labels_multiline,
    optional,
    tolerations_multiline,
)
from netk8s.cli.describe.containers import describe_containers, describe_volumes
from netk8s.cli.describe.quantity import pod_qos_class
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import NONE, _int, _meta, _spec, _status, human_duration, parse_time


@describer("Pod")
def describe_pod(w: Writer, pod: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(pod), _spec(pod), _status(pod)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    # The priority admission plugin always sets spec.priority (0 without a PriorityClass).
    w.write(0, f"Priority:\t{_int(spec.get('priority'))}\n")
    optional(w, 0, "Priority Class Name", spec.get("priorityClassName"))
    optional(w, 0, "Service Account", spec.get("serviceAccountName"))
    node = spec.get("nodeName")
    w.write(0, f"Node:\t{node}/{status.get('hostIP') or ''}\n" if node else f"Node:\t{NONE}\n")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{format_rfc1123z(status['startTime'])}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    phase = status.get("phase") or ""
    deleted = parse_time(meta.get("deletionTimestamp"))
    if meta.get("deletionTimestamp") and phase not in ("Failed", "Succeeded"):
        lasts = "<unknown>" if deleted is None else human_duration(deleted - now)
        w.write(0, f"Status:\tTerminating (lasts {lasts})\n")
        w.write(0, f"Termination Grace Period:\t{_int(meta.get('deletionGracePeriodSeconds'), 30)}s\n")
    else:
        w.write(0, f"Status:\t{phase}\n")
    optional(w, 0, "Reason", status.get("reason"))
    optional(w, 0, "Message", status.get("message"))
    w.write(0, f"IP:\t{status.get('podIP') or ''}\n")
    ips = [str(i.get("ip", "")) for i in status.get("podIPs") or []]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]  # objects written without podIPs: the single podIP is the list
    if ips:
        w.write(0, "IPs:\n")
        for ip in ips:
            w.write(1, f"IP:\t{ip}\n")
    else:
        w.write(0, f"IPs:\t{NONE}\n")
    ref = controller_of(pod)
    if ref is not None:
        w.write(0, f"Controlled By:\t{ref.get('kind', '')}/{ref.get('name', '')}\n")
    optional(w, 0, "NominatedNodeName", status.get("nominatedNodeName"))
    if spec.get("initContainers"):
        describe_containers(w, "Init Containers", spec["initContainers"], status.get("initContainerStatuses"),
                             pod)
    describe_containers(w, "Containers", spec.get("containers") or [], status.get("containerStatuses"), pod)
    gates = spec.get("readinessGates") or []
    if gates:
        w.write(0, "Readiness Gates:\n  Type\tStatus\n")
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        for g in gates:
            w.write(1, f"{g.get('conditionType', '')} \t{conds.get(g.get('conditionType')) or '<none>'} \n")
    if status.get("conditions"):
        w.write(0, "Conditions:\n  Type\tStatus\n")
        for c in status["conditions"]:
            w.write(1, f"{c.get('type', '')} \t{c.get('status', '')} \n")
    describe_volumes(w, spec.get("volumes"))
    w.write(0, f"QoS Class:\t{pod_qos_class(pod)}\n")
    labels_multiline(w, "Node-Selectors", spec.get("nodeSelector"))
    tolerations_multiline(w, "Tolerations", spec.get("tolerations"))
    describe_events(w, events_for(pod, related), now)
