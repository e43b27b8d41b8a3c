"""`describe replicaset` (kubectl's ReplicaSetDescriber)."""

from __future__ import annotations

from netk8s.cli.describe.common import (
    Writer,
    annotations_multiline,
    conditions_table,
    controller_of,
    describe_events,
    events_for,
    labels_multiline,
    pods_status,
)
from netk8s.cli.describe.containers import describe_pod_template
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import _int, _meta, _spec, _status, format_label_selector


@describer("ReplicaSet")
def describe_replicaset(w: Writer, rs: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(rs), _spec(rs), _status(rs)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    ref = controller_of(rs)
    if ref is not None:
        w.write(0, f"Controlled By:\t{ref.get('kind', '')}/{ref.get('name', '')}\n")
    w.write(0, f"Replicas:\t{_int(status.get('replicas'))} current / {_int(spec.get('replicas'), 1)} desired\n")
    w.write(0, f"Pods Status:\t{pods_status(rs, related.get('Pod') or [])}\n")
    describe_pod_template(w, spec.get("template"))
    conditions_table(w, status.get("conditions"))
    describe_events(w, events_for(rs, related), now)
