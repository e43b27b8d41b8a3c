"""What every describer shares: kubectl's PrefixWriter, the metadata blocks (labels, annotations,
tolerations, taints), owner references, the Events table and the fallback describer for other kinds."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from netk8s.cli.printers import NONE, _int, _meta, _status, human_duration, parse_time, tabwrite

_PADDING = 2  # describe's tabwriter: tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
_MAX_ANNOTATION_LEN = 140
_SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Writer:
    """kubectl's PrefixWriter: each level indents two spaces; flush() closes a tabwriter block."""

    def __init__(self) -> None:
        self._done: list[str] = []
        self._buf: list[str] = []

    def write(self, level: int, text: str) -> None:
        self._buf.append("  " * level + text)

    def flush(self) -> None:
        self._done.append(tabwrite("".join(self._buf), 0, _PADDING))
        self._buf = []

    def text(self) -> str:
        self.flush()
        return "".join(self._done).rstrip("\n")


def format_rfc1123z(value: str | None) -> str:
    """Go's time.RFC1123Z (`Mon, 02 Jan 2006 15:04:05 -0700`) in UTC; Go's zero time when missing."""
    seconds = parse_time(value)
    if seconds is None:
        return "Mon, 01 Jan 0001 00:00:00 +0000"
    t = _dt.datetime.fromtimestamp(int(seconds), tz=_dt.timezone.utc)
    return f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} " \
           f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0000"


def print_bool(value: Any) -> str:
    """printBool: True/False."""
    return "True" if value else "False"


def or_none(value: str) -> str:
    return value if value else NONE


def int_or_string(value: Any) -> str:
    return str(value) if value is not None else ""


def controller_of(obj: dict) -> dict | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def controlled_by(obj: dict, owner: dict) -> bool:
    ref = controller_of(obj)
    if ref is None or ref.get("kind") != owner.get("kind"):
        return False
    uid = _meta(owner).get("uid")
    if uid and ref.get("uid"):
        return ref["uid"] == uid
    return ref.get("name") == _meta(owner).get("name")


def same_namespace(a: dict, b: dict) -> bool:
    return (_meta(a).get("namespace") or "default") == (_meta(b).get("namespace") or "default")


def multiline(w: Writer, title: str, lines: list[str]) -> None:
    """kubectl's *Multiline printers: the first line after the title, the rest on aligned continuation
    lines, `<none>` when there are none."""
    w.write(0, f"{title}:\t")
    if not lines:
        w.write(0, f"{NONE}\n")
        return
    for i, line in enumerate(lines):
        w.write(0, ("\t" if i else "") + f"{line}\n")


def labels_multiline(w: Writer, title: str, labels: dict | None) -> None:
    """printLabelsMultiline: `key=value`, sorted by key."""
    labels = labels or {}
    multiline(w, title, [f"{key}={labels[key]}" for key in sorted(labels)])


def metadata_block(w: Writer, meta: dict, namespace: str | None) -> None:
    """Name, Namespace (when `namespace` is not None), Labels, Annotations: the head of most describers."""
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    if namespace is not None:
        w.write(0, f"Namespace:\t{namespace}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    annotations_multiline(w, "Annotations", meta.get("annotations"))


def optional(w: Writer, level: int, title: str, value: Any) -> None:
    """A `Title:<tab>value` line only when the field is set (kubectl's `if x != "" { w.Write(...) }`)."""
    if value:
        w.write(level, f"{title}:\t{value}\n")


def resource_lists(w: Writer, level: int, source: dict, titles: tuple[tuple[str, str], ...]) -> None:
    """Blocks of `name: quantity` lines per resource list (Limits/Requests, Capacity/Allocatable)."""
    for title, key in titles:
        values = source.get(key) or {}
        if values:
            w.write(level, f"{title}:\n")
            for name in sorted(values):
                w.write(level + 1, f"{name}:\t{values[name]}\n")


def annotations_multiline(w: Writer, title: str, annotations: dict | None) -> None:
    """printAnnotationsMultiline: sorted, last-applied-configuration skipped, long values folded."""
    annotations = annotations or {}
    w.write(0, f"{title}:\t")
    keys = sorted(k for k in annotations if k not in _SKIP_ANNOTATIONS)
    if not keys:
        w.write(0, f"{NONE}\n")
        return
    for i, key in enumerate(keys):
        if i:
            w.write(0, "\t")
        value = str(annotations[key]).removesuffix("\n")
        if len(value) + len(key) + 2 > _MAX_ANNOTATION_LEN or "\n" in value:
            w.write(0, f"{key}:\n")
            for line in value.split("\n"):
                short = line if len(line) <= _MAX_ANNOTATION_LEN - 2 else line[: _MAX_ANNOTATION_LEN - 2] + "..."
                w.write(0, f"\t  {short}\n")
        else:
            w.write(0, f"{key}: {value}\n")


def toleration_text(tol: dict) -> str:
    """printPodTolerationsMultiline's `key=value:effect op=Exists for Ns`."""
    key, value, effect = tol.get("key") or "", tol.get("value") or "", tol.get("effect") or ""
    text = key + (f"={value}" if value else "") + (f":{effect}" if effect else "")
    if tol.get("operator") == "Exists" and not value:
        text += " op=Exists" if key or effect else "op=Exists"
    if tol.get("tolerationSeconds") is not None:
        text += f" for {tol['tolerationSeconds']}s"
    return text


def tolerations_multiline(w: Writer, title: str, tolerations: list[dict] | None) -> None:
    multiline(w, title, [toleration_text(t) for t in tolerations or []])


def taints_multiline(w: Writer, title: str, taints: list[dict] | None) -> None:
    multiline(w, title, [f"{t.get('key', '')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect', '')}"
                         for t in taints or []])


def describe_events(w: Writer, events: list[dict], now: float) -> None:
    """DescribeEvents: `Events:  <none>`, or the Type/Reason/Age/From/Message table."""
    if not events:
        w.write(0, f"Events:\t{NONE}\n")
        return
    w.flush()
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")

    def first_seen(e: dict) -> float | None:
        return parse_time(e.get("eventTime")) or parse_time(e.get("firstTimestamp"))

    def since(t: float | None) -> str:
        return "<unknown>" if t is None else human_duration(now - t)

    for e in sorted(events, key=lambda e: parse_time(e.get("lastTimestamp")) or first_seen(e) or 0.0):
        first = since(first_seen(e))
        if _int(e.get("count")) > 1:
            interval = f"{since(parse_time(e.get('lastTimestamp')))} (x{_int(e.get('count'))} over {first})"
        else:
            interval = first
        source = (e.get("source") or {}).get("component") or e.get("reportingComponent") or ""
        w.write(1, f"{e.get('type', '')}\t{e.get('reason', '')}\t{interval}\t{source}\t"
                   f"{str(e.get('message', '')).strip()}\n")


def events_for(obj: dict, related: dict[str, list[dict]]) -> list[dict]:
    meta = _meta(obj)
    out = []
    for e in related.get("Event") or []:
        inv = e.get("involvedObject") or e.get("regarding") or {}
        if inv.get("kind", obj.get("kind")) == obj.get("kind") and inv.get("name", meta.get("name")) == \
                meta.get("name"):
            out.append(e)
    return out


def pods_status(owner: dict, pods: list[dict]) -> str:
    counts = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    for pod in pods:
        if same_namespace(pod, owner) and controlled_by(pod, owner):
            phase = _status(pod).get("phase") or "Pending"
            if phase in counts:
                counts[phase] += 1
    return (f"{counts['Running']} Running / {counts['Pending']} Waiting / {counts['Succeeded']} Succeeded / "
            f"{counts['Failed']} Failed")


def conditions_table(w: Writer, conditions: list[dict] | None) -> None:
    """The Type/Status/Reason table of workload conditions."""
    if not conditions:
        return
    w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
    w.write(1, "----\t------\t------\n")
    for c in conditions:
        w.write(1, f"{c.get('type', '')} \t{c.get('status', '')}\t{c.get('reason', '')}\n")


def describe_generic(w: Writer, obj: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(obj)
    metadata_block(w, meta, meta.get("namespace") or None)
    describe_events(w, events_for(obj, related), now)
