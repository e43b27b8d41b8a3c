"""`describe statefulset` (kubectl's StatefulSetDescriber)."""

from __future__ import annotations

from netk8s.cli.describe.common import (
    Writer,
    annotations_multiline,
    describe_events,
    events_for,
    format_rfc1123z,
    int_or_string,
    labels_multiline,
    pods_status,
)
from netk8s.cli.describe.containers import describe_pod_template
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import NONE, _int, _meta, _spec, _status, format_label_selector


@describer("StatefulSet")
def describe_statefulset(w: Writer, sts: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(sts), _spec(sts), _status(sts)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    w.write(0, f"CreationTimestamp:\t{format_rfc1123z(meta.get('creationTimestamp'))}\n")
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"Replicas:\t{_int(spec.get('replicas'), 1)} desired | {_int(status.get('replicas'))} total\n")
    update = spec.get("updateStrategy") or {}
    w.write(0, f"Update Strategy:\t{update.get('type') or 'RollingUpdate'}\n")
    ru = update.get("rollingUpdate") or {}
    if ru.get("partition") is not None:
        w.write(1, f"Partition:\t{_int(ru['partition'])}\n")
        if ru.get("maxUnavailable") is not None:
            w.write(1, f"MaxUnavailable:\t{int_or_string(ru['maxUnavailable'])}\n")
    w.write(0, f"Pods Status:\t{pods_status(sts, related.get('Pod') or [])}\n")
    describe_pod_template(w, spec.get("template"))
    claims = spec.get("volumeClaimTemplates") or []
    if not claims:
        w.write(0, f"Volume Claims:\t{NONE}\n")
    else:
        w.write(0, "Volume Claims:\n")
        for claim in claims:
            cmeta, cspec = claim.get("metadata") or {}, claim.get("spec") or {}
            w.write(1, f"Name:\t{cmeta.get('name', '')}\n")
            w.write(1, f"StorageClass:\t{cspec.get('storageClassName') or ''}\n")
            storage = ((cspec.get("resources") or {}).get("requests") or {}).get("storage")
            w.write(1, f"Capacity:\t{storage or '<default>'}\n")
            w.write(1, f"Access Modes:\t{','.join(cspec.get('accessModes') or []) or '<default>'}\n")
    describe_events(w, events_for(sts, related), now)
