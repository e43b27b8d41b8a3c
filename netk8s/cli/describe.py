"""kubectl-describe-like text for every kind netk8s serves (`netk8s describe KIND NAME`).

Pure formatting. Each describer writes kubectl's lines, tab-separated exactly as
kubernetes/kubectl pkg/describe/describe.go does, and the whole text goes through the same
tabwriter (minwidth 0, padding 2), so keys line up per block the way kubectl's do. `related` carries
the other objects a description needs: "Endpoints"/"EndpointSlice" for a Service, "ReplicaSet" for a
Deployment, "Pod" for a Node/ReplicaSet/StatefulSet, and optionally "Event". Timestamps print in UTC.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from typing import Any

from netk8s.cli.describe_netpol import describe_networkpolicy
from netk8s.cli.printers import (
    NONE,
    _int,
    _meta,
    _spec,
    _status,
    format_endpoints,
    format_label_selector,
    format_labels,
    human_duration,
    node_roles,
    parse_time,
    tabwrite,
)

_PADDING = 2  # describe's tabwriter: tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
_MAX_ANNOTATION_LEN = 140
_SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _Writer:
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


# ------------------------------------------------------------------------------------------ helpers


def format_rfc1123z(value: str | None) -> str:
    """Go's time.RFC1123Z (`Mon, 02 Jan 2006 15:04:05 -0700`) in UTC; Go's zero time when missing."""
    seconds = parse_time(value)
    if seconds is None:
        return "Mon, 01 Jan 0001 00:00:00 +0000"
    t = _dt.datetime.fromtimestamp(int(seconds), tz=_dt.timezone.utc)
    return f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} " \
           f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0000"


def _bool(value: Any) -> str:
    """printBool: True/False."""
    return "True" if value else "False"


def _or_none(value: str) -> str:
    return value if value else NONE


def _int_or_string(value: Any) -> str:
    return str(value) if value is not None else ""


def _controller_of(obj: dict) -> dict | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _controlled_by(obj: dict, owner: dict) -> bool:
    ref = _controller_of(obj)
    if ref is None or ref.get("kind") != owner.get("kind"):
        return False
    uid = _meta(owner).get("uid")
    if uid and ref.get("uid"):
        return ref["uid"] == uid
    return ref.get("name") == _meta(owner).get("name")


def _same_namespace(a: dict, b: dict) -> bool:
    return (_meta(a).get("namespace") or "default") == (_meta(b).get("namespace") or "default")


def _labels_multiline(w: _Writer, title: str, labels: dict | None) -> None:
    """printLabelsMultiline: first label after the title, the rest on aligned continuation lines."""
    w.write(0, f"{title}:\t")
    if not labels:
        w.write(0, f"{NONE}\n")
        return
    for i, key in enumerate(sorted(labels)):
        if i:
            w.write(0, "\t")
        w.write(0, f"{key}={labels[key]}\n")


def _annotations_multiline(w: _Writer, title: str, annotations: dict | None) -> None:
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


def _tolerations_multiline(w: _Writer, title: str, tolerations: list[dict] | None) -> None:
    """printPodTolerationsMultiline: `key=value:effect op=Exists for Ns`, one per line."""
    w.write(0, f"{title}:\t")
    if not tolerations:
        w.write(0, f"{NONE}\n")
        return
    for i, tol in enumerate(tolerations):
        if i:
            w.write(0, "\t")
        key, value, effect = tol.get("key") or "", tol.get("value") or "", tol.get("effect") or ""
        text = key + (f"={value}" if value else "") + (f":{effect}" if effect else "")
        if tol.get("operator") == "Exists" and not value:
            text += " op=Exists" if key or effect else "op=Exists"
        if tol.get("tolerationSeconds") is not None:
            text += f" for {tol['tolerationSeconds']}s"
        w.write(0, text + "\n")


def _taints_multiline(w: _Writer, title: str, taints: list[dict] | None) -> None:
    w.write(0, f"{title}:\t")
    if not taints:
        w.write(0, f"{NONE}\n")
        return
    for i, taint in enumerate(taints):
        if i:
            w.write(0, "\t")
        value = taint.get("value") or ""
        w.write(0, f"{taint.get('key', '')}{'=' + value if value else ''}:{taint.get('effect', '')}\n")


def _describe_events(w: _Writer, events: list[dict], now: float) -> None:
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


def _events_for(obj: dict, related: dict[str, list[dict]]) -> list[dict]:
    meta = _meta(obj)
    out = []
    for e in related.get("Event") or []:
        inv = e.get("involvedObject") or e.get("regarding") or {}
        if inv.get("kind", obj.get("kind")) == obj.get("kind") and inv.get("name", meta.get("name")) == \
                meta.get("name"):
            out.append(e)
    return out


# ------------------------------------------------------------------------------------- quantities

_QTY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|K|M|G|T|P|E)?$")
_QTY_FACTORS = {None: 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9,
                "T": 1e12, "P": 1e15, "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30,
                "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}


def parse_quantity(value: Any) -> float:
    """A resource.Quantity as a number of base units (cores, bytes); 0 when unparsable."""
    m = _QTY_RE.match(str(value).strip()) if value is not None else None
    if m is None:
        return 0.0
    return float(m.group(1)) * _QTY_FACTORS[m.group(2)]


def format_quantity(name: str, amount: float) -> str:
    """A summed quantity in kubectl's canonical shape: cpu in millicores (`250m`, `1`), memory in
    the largest binary unit that divides it (`192Mi`), else a plain number."""
    if amount == 0:
        return "0"
    if name == "cpu":
        milli = round(amount * 1000)
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    whole = round(amount)
    for suffix, factor in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20),
                           ("Ki", 2**10)):
        if whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)


def _pod_requests_limits(pod: dict) -> tuple[dict[str, float], dict[str, float]]:
    reqs: dict[str, float] = {}
    limits: dict[str, float] = {}
    for c in _spec(pod).get("containers") or []:
        res = c.get("resources") or {}
        for name, qty in (res.get("requests") or {}).items():
            reqs[name] = reqs.get(name, 0.0) + parse_quantity(qty)
        for name, qty in (res.get("limits") or {}).items():
            limits[name] = limits.get(name, 0.0) + parse_quantity(qty)
    return reqs, limits


def pod_qos_class(pod: dict) -> str:
    """qos.GetPodQOS: BestEffort without requests/limits; Guaranteed when every container limits cpu
    and memory and requests (defaulting to the limits) equal them; else Burstable."""
    containers = [*(_spec(pod).get("initContainers") or []), *(_spec(pod).get("containers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits = {k: parse_quantity(v) for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        reqs = {k: parse_quantity(v) for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        if any(v != 0 for v in (*limits.values(), *reqs.values())):
            any_set = True
        reqs = {**limits, **reqs}
        if set(limits) != {"cpu", "memory"} or any(reqs.get(k) != limits[k] for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# ------------------------------------------------------------------------------------- containers


def describe_probe(probe: dict) -> str:
    """DescribeProbe, with the API server's defaults for unset fields (timeout 1s, period 10s,
    success 1, failure 3, HTTP scheme, path /)."""
    attrs = (f"delay={_int(probe.get('initialDelaySeconds'))}s timeout={_int(probe.get('timeoutSeconds'), 1)}s "
             f"period={_int(probe.get('periodSeconds'), 10)}s #success={_int(probe.get('successThreshold'), 1)} "
             f"#failure={_int(probe.get('failureThreshold'), 3)}")
    if probe.get("exec") is not None:
        return f"exec [{' '.join(str(a) for a in probe['exec'].get('command') or [])}] {attrs}"
    if probe.get("httpGet") is not None:
        http = probe["httpGet"]
        scheme = str(http.get("scheme") or "HTTP").lower()
        host, port = str(http.get("host") or ""), _int_or_string(http.get("port"))
        netloc = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}") if port else host
        path = str(http.get("path") or "/")
        if not path.startswith("/"):
            path = "/" + path
        return f"http-get {scheme}://{netloc}{path} {attrs}"
    if probe.get("tcpSocket") is not None:
        tcp = probe["tcpSocket"]
        return f"tcp-socket {tcp.get('host') or ''}:{_int_or_string(tcp.get('port'))} {attrs}"
    if probe.get("grpc") is not None:
        grpc = probe["grpc"]
        return f"grpc <pod>:{_int(grpc.get('port'))} {grpc.get('service') or ''} {attrs}"
    return f"unknown {attrs}"


def _resolve_field(pod: dict | None, path: str) -> str:
    """EnvValueRetriever: the value a downward-API fieldRef resolves to for this pod."""
    if pod is None:
        return ""
    meta, spec, status = _meta(pod), _spec(pod), _status(pod)
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"), "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": ",".join(str(i.get("ip", "")) for i in status.get("podIPs") or []) or None,
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    return ""


def _describe_env(w: _Writer, container: dict, pod: dict | None) -> None:
    env = container.get("env") or []
    w.write(2, "Environment:" + ("" if env else f"\t{NONE}") + "\n")
    for e in env:
        name, source = e.get("name", ""), e.get("valueFrom")
        if source is None:
            for i, line in enumerate(str(e.get("value") or "").split("\n")):
                w.write(3, f"{name}:\t{line}\n" if i == 0 else f"\t{line}\n")
        elif source.get("fieldRef") is not None:
            ref = source["fieldRef"]
            path = ref.get("fieldPath", "")
            w.write(3, f"{name}:\t{_resolve_field(pod, path)} ({ref.get('apiVersion') or 'v1'}:{path})\n")
        elif source.get("resourceFieldRef") is not None:
            ref = source["resourceFieldRef"]
            w.write(3, f"{name}:\t{ref.get('containerName') or container.get('name', '')} "
                       f"({ref.get('resource', '')})\n")
        elif source.get("secretKeyRef") is not None:
            ref = source["secretKeyRef"]
            w.write(3, f"{name}:\t<set to the key '{ref.get('key', '')}' in secret '{ref.get('name', '')}'>\t"
                       f"Optional: {str(bool(ref.get('optional'))).lower()}\n")
        elif source.get("configMapKeyRef") is not None:
            ref = source["configMapKeyRef"]
            w.write(3, f"{name}:\t<set to the key '{ref.get('key', '')}' of config map "
                       f"'{ref.get('name', '')}'>\tOptional: {str(bool(ref.get('optional'))).lower()}\n")


def _describe_state(w: _Writer, title: str, state: dict) -> None:
    """describeStatus: Running (Started), Waiting (Reason), Terminated (Reason, Exit Code, times)."""
    if state.get("running") is not None:
        w.write(2, f"{title}:\tRunning\n")
        w.write(3, f"Started:\t{format_rfc1123z(state['running'].get('startedAt'))}\n")
    elif state.get("waiting") is not None:
        waiting = state["waiting"]
        w.write(2, f"{title}:\tWaiting\n")
        if waiting.get("reason"):
            w.write(3, f"Reason:\t{waiting['reason']}\n")
        # kubectl leaves the message to Events; netk8s records no events, so it shows it here.
        if waiting.get("message"):
            w.write(3, f"Message:\t{waiting['message']}\n")
    elif state.get("terminated") is not None:
        term = state["terminated"]
        w.write(2, f"{title}:\tTerminated\n")
        if term.get("reason"):
            w.write(3, f"Reason:\t{term['reason']}\n")
        if term.get("message"):
            w.write(3, f"Message:\t{term['message']}\n")
        w.write(3, f"Exit Code:\t{_int(term.get('exitCode'))}\n")
        if _int(term.get("signal")) > 0:
            w.write(3, f"Signal:\t{_int(term.get('signal'))}\n")
        w.write(3, f"Started:\t{format_rfc1123z(term.get('startedAt'))}\n")
        w.write(3, f"Finished:\t{format_rfc1123z(term.get('finishedAt'))}\n")
    else:
        w.write(2, f"{title}:\tWaiting\n")


def _describe_containers(w: _Writer, label: str, containers: list[dict], statuses: list[dict] | None,
                         pod: dict | None, space: str = "") -> None:
    """describeContainers: one block per container, as kubectl lays it out."""
    by_name = {s.get("name"): s for s in statuses or []}
    w.write(0, f"{space}{label}:{'' if containers else ' ' + NONE}\n")
    name_indent = " " if space else ""
    for c in containers:
        status = by_name.get(c.get("name"))
        w.write(1, f"{name_indent}{c.get('name', '')}:\n")
        if status is not None:
            w.write(2, f"Container ID:\t{status.get('containerID') or ''}\n")
        w.write(2, f"Image:\t{c.get('image', '')}\n")
        if status is not None:
            w.write(2, f"Image ID:\t{status.get('imageID') or ''}\n")
        ports = c.get("ports") or []
        port_list = [f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}"
                     + (f" ({p['name']})" if p.get("name") else "") for p in ports]
        host_list = [f"{_int(p.get('hostPort'))}/{p.get('protocol') or 'TCP'}" for p in ports]
        w.write(2, (f"Ports:\t{', '.join(port_list)}" if len(port_list) > 1
                    else f"Port:\t{_or_none(''.join(port_list))}") + "\n")
        w.write(2, (f"Host Ports:\t{', '.join(host_list)}" if len(host_list) > 1
                    else f"Host Port:\t{_or_none(''.join(host_list))}") + "\n")
        for title, words in (("Command", c.get("command")), ("Args", c.get("args"))):
            if words:
                w.write(2, f"{title}:\n")
                for word in words:
                    for line in str(word).split("\n"):
                        w.write(3, f"{line}\n")
        if status is not None:
            _describe_state(w, "State", status.get("state") or {})
            last = status.get("lastState") or {}
            if last.get("terminated") is not None:
                _describe_state(w, "Last State", last)
            w.write(2, f"Ready:\t{_bool(status.get('ready'))}\n")
            w.write(2, f"Restart Count:\t{_int(status.get('restartCount'))}\n")
        resources = c.get("resources") or {}
        for title, key in (("Limits", "limits"), ("Requests", "requests")):
            values = resources.get(key) or {}
            if values:
                w.write(2, f"{title}:\n")
                for name in sorted(values):
                    w.write(3, f"{name}:\t{values[name]}\n")
        for title, key in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe"),
                           ("Startup", "startupProbe")):
            if c.get(key) is not None:
                w.write(2, f"{title}:\t{describe_probe(c[key])}\n")
        _describe_env(w, c, pod)
        mounts = sorted(c.get("volumeMounts") or [], key=lambda m: str(m.get("mountPath", "")))
        w.write(2, "Mounts:" + ("" if mounts else f"\t{NONE}") + "\n")
        for m in mounts:
            flags = ["ro" if m.get("readOnly") else "rw"]
            if m.get("subPath"):
                flags.append(f'path="{m["subPath"]}"')
            w.write(3, f"{m.get('mountPath', '')} from {m.get('name', '')} ({','.join(flags)})\n")


def _describe_volumes(w: _Writer, volumes: list[dict] | None, space: str = "") -> None:
    if not volumes:
        w.write(0, f"{space}Volumes:\t{NONE}\n")
        return
    w.write(0, f"{space}Volumes:\n")
    name_indent = " " if space else ""
    for vol in volumes:
        w.write(1, f"{name_indent}{vol.get('name', '')}:\n")
        if vol.get("emptyDir") is not None:
            w.write(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n")
            w.write(2, f"Medium:\t{vol['emptyDir'].get('medium') or ''}\n")
            w.write(2, f"SizeLimit:\t{vol['emptyDir'].get('sizeLimit') or '<unset>'}\n")
        elif vol.get("hostPath") is not None:
            w.write(2, "Type:\tHostPath (bare host directory volume)\n")
            w.write(2, f"Path:\t{vol['hostPath'].get('path', '')}\n")
            w.write(2, f"HostPathType:\t{vol['hostPath'].get('type') or ''}\n")
        elif vol.get("configMap") is not None:
            w.write(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n")
            w.write(2, f"Name:\t{vol['configMap'].get('name', '')}\n")
            w.write(2, f"Optional:\t{str(bool(vol['configMap'].get('optional'))).lower()}\n")
        else:
            kinds = [k for k in vol if k != "name"]
            w.write(2, f"Type:\t{kinds[0] if kinds else '<unknown>'} (a volume netk8s does not describe)\n")


def _describe_pod_template(w: _Writer, template: dict | None) -> None:
    """DescribePodTemplate: labels, annotations, containers and volumes indented under the owner."""
    w.write(0, "Pod Template:\n")
    if template is None:
        w.write(1, "<unset>")
        return
    meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    _labels_multiline(w, "  Labels", meta.get("labels"))
    if meta.get("annotations"):
        _annotations_multiline(w, "  Annotations", meta.get("annotations"))
    if spec.get("serviceAccountName"):
        w.write(1, f"Service Account:\t{spec['serviceAccountName']}\n")
    if spec.get("initContainers"):
        _describe_containers(w, "Init Containers", spec["initContainers"], None, None, "  ")
    _describe_containers(w, "Containers", spec.get("containers") or [], None, None, "  ")
    _describe_volumes(w, spec.get("volumes"), "  ")
    if spec.get("priorityClassName"):
        w.write(1, f"Priority Class Name:\t{spec['priorityClassName']}\n")
    _labels_multiline(w, "  Node-Selectors", spec.get("nodeSelector"))
    _tolerations_multiline(w, "  Tolerations", spec.get("tolerations"))


def _pods_status(owner: dict, pods: list[dict]) -> str:
    counts = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    for pod in pods:
        if _same_namespace(pod, owner) and _controlled_by(pod, owner):
            phase = _status(pod).get("phase") or "Pending"
            if phase in counts:
                counts[phase] += 1
    return (f"{counts['Running']} Running / {counts['Pending']} Waiting / {counts['Succeeded']} Succeeded / "
            f"{counts['Failed']} Failed")


def _conditions_table(w: _Writer, conditions: list[dict] | None) -> None:
    """The Type/Status/Reason table of workload conditions."""
    if not conditions:
        return
    w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
    w.write(1, "----\t------\t------\n")
    for c in conditions:
        w.write(1, f"{c.get('type', '')} \t{c.get('status', '')}\t{c.get('reason', '')}\n")


# ---------------------------------------------------------------------------------------- by kind


def _describe_pod(w: _Writer, pod: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(pod), _spec(pod), _status(pod)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    # The priority admission plugin always sets spec.priority (0 without a PriorityClass).
    w.write(0, f"Priority:\t{_int(spec.get('priority'))}\n")
    if spec.get("priorityClassName"):
        w.write(0, f"Priority Class Name:\t{spec['priorityClassName']}\n")
    if spec.get("serviceAccountName"):
        w.write(0, f"Service Account:\t{spec['serviceAccountName']}\n")
    node = spec.get("nodeName")
    w.write(0, f"Node:\t{node}/{status.get('hostIP') or ''}\n" if node else f"Node:\t{NONE}\n")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{format_rfc1123z(status['startTime'])}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    phase = status.get("phase") or ""
    deleted = parse_time(meta.get("deletionTimestamp"))
    if meta.get("deletionTimestamp") and phase not in ("Failed", "Succeeded"):
        lasts = "<unknown>" if deleted is None else human_duration(deleted - now)
        w.write(0, f"Status:\tTerminating (lasts {lasts})\n")
        w.write(0, f"Termination Grace Period:\t{_int(meta.get('deletionGracePeriodSeconds'), 30)}s\n")
    else:
        w.write(0, f"Status:\t{phase}\n")
    if status.get("reason"):
        w.write(0, f"Reason:\t{status['reason']}\n")
    if status.get("message"):
        w.write(0, f"Message:\t{status['message']}\n")
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
    ref = _controller_of(pod)
    if ref is not None:
        w.write(0, f"Controlled By:\t{ref.get('kind', '')}/{ref.get('name', '')}\n")
    if status.get("nominatedNodeName"):
        w.write(0, f"NominatedNodeName:\t{status['nominatedNodeName']}\n")
    if spec.get("initContainers"):
        _describe_containers(w, "Init Containers", spec["initContainers"], status.get("initContainerStatuses"),
                             pod)
    _describe_containers(w, "Containers", spec.get("containers") or [], status.get("containerStatuses"), pod)
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
    _describe_volumes(w, spec.get("volumes"))
    w.write(0, f"QoS Class:\t{pod_qos_class(pod)}\n")
    _labels_multiline(w, "Node-Selectors", spec.get("nodeSelector"))
    _tolerations_multiline(w, "Tolerations", spec.get("tolerations"))
    _describe_events(w, _events_for(pod, related), now)


def _new_and_old_replicasets(deploy: dict, replicasets: list[dict]) -> tuple[list[dict], dict | None]:
    """deploymentutil.GetAllReplicaSets: the new RS has the deployment's pod template (ignoring the
    pod-template-hash label); the old ones are the other owned RSs that still want pods."""
    owned = [rs for rs in replicasets if _same_namespace(rs, deploy) and _controlled_by(rs, deploy)]
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


def _describe_deployment(w: _Writer, d: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(d), _spec(d), _status(d)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    w.write(0, f"CreationTimestamp:\t{format_rfc1123z(meta.get('creationTimestamp'))}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
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
        w.write(0, f"RollingUpdateStrategy:\t{_int_or_string(ru.get('maxUnavailable', '25%'))} max unavailable, "
                   f"{_int_or_string(ru.get('maxSurge', '25%'))} max surge\n")
    _describe_pod_template(w, spec.get("template"))
    _conditions_table(w, status.get("conditions"))
    old, new = _new_and_old_replicasets(d, related.get("ReplicaSet") or [])
    w.write(0, f"OldReplicaSets:\t{_replicasets_by_labels(old)}\n")
    w.write(0, f"NewReplicaSet:\t{_replicasets_by_labels([new] if new else [])}\n")
    _describe_events(w, _events_for(d, related), now)


def _describe_replicaset(w: _Writer, rs: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(rs), _spec(rs), _status(rs)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    ref = _controller_of(rs)
    if ref is not None:
        w.write(0, f"Controlled By:\t{ref.get('kind', '')}/{ref.get('name', '')}\n")
    w.write(0, f"Replicas:\t{_int(status.get('replicas'))} current / {_int(spec.get('replicas'), 1)} desired\n")
    w.write(0, f"Pods Status:\t{_pods_status(rs, related.get('Pod') or [])}\n")
    _describe_pod_template(w, spec.get("template"))
    _conditions_table(w, status.get("conditions"))
    _describe_events(w, _events_for(rs, related), now)


def _describe_statefulset(w: _Writer, sts: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(sts), _spec(sts), _status(sts)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    w.write(0, f"CreationTimestamp:\t{format_rfc1123z(meta.get('creationTimestamp'))}\n")
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"Replicas:\t{_int(spec.get('replicas'), 1)} desired | {_int(status.get('replicas'))} total\n")
    update = spec.get("updateStrategy") or {}
    w.write(0, f"Update Strategy:\t{update.get('type') or 'RollingUpdate'}\n")
    ru = update.get("rollingUpdate") or {}
    if ru.get("partition") is not None:
        w.write(1, f"Partition:\t{_int(ru['partition'])}\n")
        if ru.get("maxUnavailable") is not None:
            w.write(1, f"MaxUnavailable:\t{_int_or_string(ru['maxUnavailable'])}\n")
    w.write(0, f"Pods Status:\t{_pods_status(sts, related.get('Pod') or [])}\n")
    _describe_pod_template(w, spec.get("template"))
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
    _describe_events(w, _events_for(sts, related), now)


def _describe_node(w: _Writer, node: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(node), _spec(node), _status(node)
    name = meta.get("name", "")
    w.write(0, f"Name:\t{name}\n")
    w.write(0, f"Roles:\t{','.join(node_roles(node)) or NONE}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"CreationTimestamp:\t{format_rfc1123z(meta.get('creationTimestamp'))}\n")
    _taints_multiline(w, "Taints", spec.get("taints"))
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
    for title, key in (("Capacity", "capacity"), ("Allocatable", "allocatable")):
        values = status.get(key) or {}
        if values:
            w.write(0, f"{title}:\n")
            for res in sorted(values):
                w.write(1, f"{res}:\t{values[res]}\n")
    info = status.get("nodeInfo") or {}
    w.write(0, "System Info:\n")
    for title, key in (("Machine ID", "machineID"), ("System UUID", "systemUUID"), ("Boot ID", "bootID"),
                       ("Kernel Version", "kernelVersion"), ("OS Image", "osImage"),
                       ("Operating System", "operatingSystem"), ("Architecture", "architecture"),
                       ("Container Runtime Version", "containerRuntimeVersion"),
                       ("Kubelet Version", "kubeletVersion"), ("Kube-Proxy Version", "kubeProxyVersion")):
        w.write(0, f"  {title}:\t{info.get(key) or ''}\n")
    if spec.get("podCIDR"):
        w.write(0, f"PodCIDR:\t{spec['podCIDR']}\n")
    if spec.get("podCIDRs"):
        w.write(0, f"PodCIDRs:\t{','.join(spec['podCIDRs'])}\n")
    if spec.get("providerID"):
        w.write(0, f"ProviderID:\t{spec['providerID']}\n")
    pods = [p for p in related.get("Pod") or []
            if _spec(p).get("nodeName") == name and _status(p).get("phase") not in ("Succeeded", "Failed")]
    _describe_node_resources(w, node, pods, now)
    _describe_events(w, _events_for(node, related), now)


def _describe_node_resources(w: _Writer, node: dict, pods: list[dict], now: float) -> None:
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
        req, lim = _pod_requests_limits(pod)
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


def _describe_namespace(w: _Writer, ns: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(ns)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"Status:\t{_status(ns).get('phase') or 'Active'}\n")
    w.write(0, "\n")
    w.write(0, "No resource quota.\n")
    w.write(0, "\n")
    w.write(0, "No LimitRange resource.\n")


def _service_endpoints(svc: dict, related: dict[str, list[dict]], port_name: str) -> str:
    """The Endpoints line of one service port: from the Service's Endpoints object, else from its
    EndpointSlices (kubectl >= 1.33 reads slices), `<none>` when there is neither."""
    name = _meta(svc).get("name")
    endpoints = [e for e in related.get("Endpoints") or []
                 if _meta(e).get("name") == name and _same_namespace(e, svc)]
    if endpoints:
        return format_endpoints(endpoints[0], {port_name})
    slices = [s for s in related.get("EndpointSlice") or [] if _same_namespace(s, svc)
              and (_meta(s).get("labels") or {}).get("kubernetes.io/service-name") == name]
    if not slices:
        return NONE
    listed: list[str] = []
    count = 0
    for s in slices:
        ready_addrs = [str((ep.get("addresses") or [""])[0]) for ep in s.get("endpoints") or []
                       if (ep.get("conditions") or {}).get("ready") is not False]
        ports = s.get("ports") or []
        if not ports:
            listed += ready_addrs
            count += len(ready_addrs)
            continue
        for port in ports:
            if (port.get("name") or "") == port_name:
                listed += [f"[{a}]:{port.get('port')}" if ":" in a else f"{a}:{port.get('port')}"
                           for a in ready_addrs]
                count += len(ready_addrs)
    ret = ",".join(listed[:3])
    return f"{ret} + {count - 3} more..." if count > 3 else ret


def _describe_service(w: _Writer, svc: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(svc), _spec(svc), _status(svc)
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ip = spec.get("clusterIP") or ""
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"Selector:\t{format_labels(spec.get('selector'))}\n")
    w.write(0, f"Type:\t{svc_type}\n")
    # The API server defaults IP families for every type but ExternalName.
    policy = spec.get("ipFamilyPolicy")
    families = spec.get("ipFamilies") or []
    if svc_type != "ExternalName":
        policy = policy or "SingleStack"
        families = families or ["IPv6" if ":" in cluster_ip else "IPv4"]
    if policy:
        w.write(0, f"IP Family Policy:\t{policy}\n")
    w.write(0, f"IP Families:\t{','.join(families) or NONE}\n")
    w.write(0, f"IP:\t{cluster_ip}\n")
    cluster_ips = spec.get("clusterIPs") or ([cluster_ip] if cluster_ip else [])
    w.write(0, f"IPs:\t{','.join(cluster_ips) or NONE}\n")
    if spec.get("externalIPs"):
        w.write(0, f"External IPs:\t{','.join(spec['externalIPs'])}\n")
    if spec.get("loadBalancerIP"):
        w.write(0, f"IP:\t{spec['loadBalancerIP']}\n")
    if spec.get("loadBalancerClass"):
        w.write(0, f"LoadBalancer Class:\t{spec['loadBalancerClass']}\n")
    if spec.get("externalName"):
        w.write(0, f"External Name:\t{spec['externalName']}\n")
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        parts = [(i.get("ip") or i.get("hostname") or "") + (f" ({i['ipMode']})" if i.get("ipMode") else "")
                 for i in ingress]
        w.write(0, f"LoadBalancer Ingress:\t{', '.join(parts)}\n")
    for port in spec.get("ports") or []:
        name = port.get("name") or "<unset>"
        proto = port.get("protocol") or "TCP"
        target = port.get("targetPort", port.get("port"))
        w.write(0, f"Port:\t{name}\t{port.get('port')}/{proto}\n")
        w.write(0, f"TargetPort:\t{target}/{proto}\n")
        if _int(port.get("nodePort")):
            w.write(0, f"NodePort:\t{name}\t{_int(port.get('nodePort'))}/{proto}\n")
        w.write(0, f"Endpoints:\t{_service_endpoints(svc, related, port.get('name') or '')}\n")
    w.write(0, f"Session Affinity:\t{spec.get('sessionAffinity') or 'None'}\n")
    external_policy = spec.get("externalTrafficPolicy") or (
        "Cluster" if svc_type in ("NodePort", "LoadBalancer") else "")
    if external_policy:
        w.write(0, f"External Traffic Policy:\t{external_policy}\n")
    internal_policy = spec.get("internalTrafficPolicy") or ("Cluster" if svc_type != "ExternalName" else "")
    if internal_policy:
        w.write(0, f"Internal Traffic Policy:\t{internal_policy}\n")
    if _int(spec.get("healthCheckNodePort")):
        w.write(0, f"HealthCheck NodePort:\t{_int(spec['healthCheckNodePort'])}\n")
    if spec.get("loadBalancerSourceRanges"):
        w.write(0, f"LoadBalancer Source Ranges:\t{','.join(spec['loadBalancerSourceRanges'])}\n")
    _describe_events(w, _events_for(svc, related), now)


def _describe_endpoints(w: _Writer, ep: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(ep)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, "Subsets:\n")
    for subset in ep.get("subsets") or []:
        ready = ",".join(str(a.get("ip", "")) for a in subset.get("addresses") or [])
        not_ready = ",".join(str(a.get("ip", "")) for a in subset.get("notReadyAddresses") or [])
        w.write(1, f"Addresses:\t{_or_none(ready)}\n")
        w.write(1, f"NotReadyAddresses:\t{_or_none(not_ready)}\n")
        if subset.get("ports"):
            w.write(1, "Ports:\n")
            w.write(2, "Name\tPort\tProtocol\n")
            w.write(2, "----\t----\t--------\n")
            for port in subset["ports"]:
                w.write(2, f"{port.get('name') or '<unset>'}\t{port.get('port')}\t{port.get('protocol') or 'TCP'}\n")
        w.write(0, "\n")
    _describe_events(w, _events_for(ep, related), now)


def _describe_endpointslice(w: _Writer, eps: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(eps)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or 'default'}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    w.write(0, f"AddressType:\t{eps.get('addressType', '')}\n")
    ports = eps.get("ports") or []
    if not ports:
        w.write(0, "Ports: <unset>\n")
    else:
        w.write(0, "Ports:\n")
        w.write(1, "Name\tPort\tProtocol\n")
        w.write(1, "----\t----\t--------\n")
        for port in ports:
            number = "<unset>" if port.get("port") is None else str(port["port"])
            w.write(1, f"{port.get('name') or '<unset>'}\t{number}\t{port.get('protocol') or 'TCP'}\n")
    endpoints = eps.get("endpoints") or []
    if not endpoints:
        w.write(0, "Endpoints: <none>\n")
    else:
        w.write(0, "Endpoints:\n")
        for ep in endpoints:
            w.write(1, f"- Addresses:\t{', '.join(ep.get('addresses') or []) or NONE}\n")
            w.write(2, "Conditions:\n")
            ready = (ep.get("conditions") or {}).get("ready")
            w.write(3, f"Ready:\t{'<unset>' if ready is None else str(bool(ready)).lower()}\n")
            w.write(2, f"Hostname:\t{ep.get('hostname') or '<unset>'}\n")
            target = ep.get("targetRef")
            if target:
                w.write(2, f"TargetRef:\t{target.get('kind', '')}/{target.get('name', '')}\n")
            w.write(2, f"NodeName:\t{ep.get('nodeName') or '<unset>'}\n")
            w.write(2, f"Zone:\t{ep.get('zone') or '<unset>'}\n")
    _describe_events(w, _events_for(eps, related), now)


def _describe_generic(w: _Writer, obj: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(obj)
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    if meta.get("namespace"):
        w.write(0, f"Namespace:\t{meta['namespace']}\n")
    _labels_multiline(w, "Labels", meta.get("labels"))
    _annotations_multiline(w, "Annotations", meta.get("annotations"))
    _describe_events(w, _events_for(obj, related), now)


_DESCRIBERS: dict[str, Callable[[_Writer, dict, dict[str, list[dict]], float], None]] = {
    "Pod": _describe_pod,
    "Deployment": _describe_deployment,
    "ReplicaSet": _describe_replicaset,
    "StatefulSet": _describe_statefulset,
    "Node": _describe_node,
    "Namespace": _describe_namespace,
    "Service": _describe_service,
    "Endpoints": _describe_endpoints,
    "EndpointSlice": _describe_endpointslice,
    "NetworkPolicy": lambda w, obj, related, now: describe_networkpolicy(w, obj, _labels_multiline,
                                                                      _annotations_multiline),
}


def describe(obj: dict, related: dict[str, list[dict]], now: float) -> str:
    """`netk8s describe` text for one object, laid out like `kubectl describe` (no trailing newline).

    related: other objects by kind that the description draws on (see the module docstring); kinds
    left out are treated as none existing."""
    w = _Writer()
    _DESCRIBERS.get(obj.get("kind", ""), _describe_generic)(w, obj, related or {}, now)
    return w.text()
