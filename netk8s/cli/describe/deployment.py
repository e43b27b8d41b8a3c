"""`describe deployment` (kubectl's DeploymentDescriber), with its old and new ReplicaSets."""

from __future__ import annotations

from netk8s.cli.describe.common import (
    Writer,
    annotations_multiline,
    conditions_table,
    controlled_by,
    describe_events,
    events_for,
    format_rfc1123z,
    int_or_string,
    labels_multiline,
    same_namespace,
)
from netk8s.cli.describe.containers import describe_pod_template
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import NONE, _int, _meta, _spec, _status, format_label_selector, parse_time


def _new_and_old_replicasets(deploy: dict, replicasets: list[dict]) -> tuple[list[dict], dict | None]:
    """deploymentutil.GetAllReplicaSets: the new RS has the deployment's pod template (ignoring the
    pod-template-hash label); the old ones are the other owned RSs that still want pods."""
    owned = [rs for rs in replicasets if same_namespace(rs, deploy) and controlled_by(rs, deploy)]
    template = _spec(deploy).get("template") or {}

    def without_hash(t: dict) -> dict:
        meta = dict(t.get("metadata") or {})
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != "pod-template-hash"}
        meta["labels"] = labels
        return {**t, "metadata": meta}

    new = next((rs for rs in owned if without_hash(_spec(rs).get("template") or {}) == without_hash(template)),
               None)
    if new is None and owned:
        # Templates differ only by defaults the controller filled in: the newest RS is the new one.
        new = max(owned, key=lambda rs: (parse_time(_meta(rs).get("creationTimestamp")) or 0.0,
                                         _meta(rs).get("name", "")))
    old = [rs for rs in owned if rs is not new and _int(_spec(rs).get("replicas"), 1) != 0]
    return old, new


def _replicasets_by_labels(rss: list[dict]) -> str:
    if not rss:
        return NONE
    return ", ".join(f"{_meta(rs).get('name', '')} ({_int(_status(rs).get('replicas'))}/"
                     f"{_int(_spec(rs).get('replicas'), 1)} replicas created)" for rs in rss)


@describer("Deployment")
def describe_deployment(w: Writer, d: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(d), _spec(d), _status(d)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    w.write(0, f"CreationTimestamp:\t{format_rfc1123z(meta.get('creationTimestamp'))}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}\n")
    w.write(0, f"Replicas:\t{_int(spec.get('replicas'), 1)} desired | {_int(status.get('updatedReplicas'))} "
               f"updated | {_int(status.get('replicas'))} total | {_int(status.get('availableReplicas'))} "
               f"available | {_int(status.get('unavailableReplicas'))} unavailable\n")
    strategy = spec.get("strategy") or {}
    strategy_type = strategy.get("type") or "RollingUpdate"
    w.write(0, f"StrategyType:\t{strategy_type}\n")
    w.write(0, f"MinReadySeconds:\t{_int(spec.get('minReadySeconds'))}\n")
    if strategy_type == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        w.write(0, f"RollingUpdateStrategy:\t{int_or_string(ru.get('maxUnavailable', '25%'))} max unavailable, "
                   f"{int_or_string(ru.get('maxSurge', '25%'))} max surge\n")
    describe_pod_template(w, spec.get("template"))
    conditions_table(w, status.get("conditions"))
    old, new = _new_and_old_replicasets(d, related.get("ReplicaSet") or [])
    w.write(0, f"OldReplicaSets:\t{_replicasets_by_labels(old)}\n")
    w.write(0, f"NewReplicaSet:\t{_replicasets_by_labels([new] if new else [])}\n")
    describe_events(w, events_for(d, related), now)
