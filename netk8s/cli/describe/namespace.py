"""`describe namespace` (kubectl's NamespaceDescriber)."""

from __future__ import annotations

from netk8s.cli.describe.common import Writer, annotations_multiline, labels_multiline
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import _meta, _status


@describer("Namespace")
def describe_namespace(w: Writer, ns: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(ns)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"Status:\t{_status(ns).get('phase') or 'Active'}\n")
    w.write(0, "\n")
    w.write(0, "No resource quota.\n")
    w.write(0, "\n")
    w.write(0, "No LimitRange resource.\n")
