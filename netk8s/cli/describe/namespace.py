"""`describe namespace` (kubectl's NamespaceDescriber)."""

from __future__ import annotations

from netk8s.cli.describe.common import Writer, metadata_block
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import _meta, _status


@describer("Namespace")
def describe_namespace(w: Writer, ns: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(ns)
    metadata_block(w, meta, None)
    w.write(0, f"Status:\t{_status(ns).get('phase') or 'Active'}\n")
    w.write(0, "\n")
    w.write(0, "No resource quota.\n")
    w.write(0, "\n")
    w.write(0, "No LimitRange resource.\n")
