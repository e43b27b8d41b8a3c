"""kubectl-faithful output for `netk8s get`: tables (`-o wide`), `-o name`, `-o json`, `-o yaml`.

Pure formatting: objects are plain dicts in Kubernetes' shape, the current time comes in as `now`
(seconds since the epoch). Every column rule follows kubectl's table printers
(kubernetes/kubernetes pkg/printers/internalversion/printers.go) so that scripts written against kubectl
read netk8s the same way. Renderers return text without a trailing newline; the CLI prints it.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable
from typing import Any

import yaml

from netk8s.model.kinds import KINDS

NONE = "<none>"
UNKNOWN = "<unknown>"

# kubectl's `get` tabwriter: minwidth 6, tabwidth 4, padding 3, pad with spaces
# (k8s.io/cli-runtime/pkg/printers/tabwriter.go).
TABLE_MINWIDTH = 6
TABLE_PADDING = 3

# printers.go: loadBalancerWidth; narrow output cuts longer ingress lists to 13 chars + "...".
_LB_WIDTH = 16
_MAX_LISTED = 3  # Endpoints/EndpointSlice cells list 3 addresses then " + N more..."

_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$"
)


# --------------------------------------------------------------------------------------------- time


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (`2024-05-01T10:00:00Z`, any fraction
    length, any offset), or None when it is missing or not a timestamp."""
    if not value or not isinstance(value, str):
        return None
    m = _RFC3339_RE.match(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    if zone in (None, "Z", "z"):
        tz = _dt.timezone.utc
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        stamp = _dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        return None
    seconds = stamp.timestamp()
    if frac:
        seconds += int(frac) / 10 ** len(frac)
    return seconds


def human_duration(seconds_f: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, exactly (Go integer truncation)."""
    seconds = int(seconds_f)  # Go: int(d.Seconds()) truncates toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = int(seconds_f // 60)
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = int(seconds_f // 3600)
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def format_age(created_rfc3339: str | None, now: float) -> str:
    """kubectl's AGE cell (translateTimestampSince): `<unknown>` without a timestamp."""
    created = parse_time(created_rfc3339)
    if created is None:
        return UNKNOWN
    return human_duration(now - created)


# ---------------------------------------------------------------------------------------- tabwriter


def tabwrite(text: str, minwidth: int, padding: int) -> str:
    """Align tab-terminated cells the way Go's text/tabwriter does (pad char ' ', no flags).

    A column's width is set per *block*: the run of consecutive lines that have a cell in that column;
    the text after a line's last tab is not a cell and is never padded. kubectl's `get` and `describe`
    both print through this, which is what lines up "Labels:" continuation lines and the like.
    """
    trailing_newline = text.endswith("\n")
    raw = text[:-1] if trailing_newline else text
    lines = [line.split("\t") for line in raw.split("\n")] if raw or trailing_newline else []
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                parts.append(cell)
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(" " * (widths[j] - len(cell)))
            out.append("".join(parts))

    def format_block(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    format_block(0, len(lines))
    return "\n".join(out) + ("\n" if trailing_newline else "")


# ------------------------------------------------------------------------------------ small helpers


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def _status(obj: dict) -> dict:
    return obj.get("status") or {}


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: `a=1,b=2` sorted by key, `<none>` when empty."""
    if not labels:
        return NONE
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_label_selector(selector: dict | None) -> str:
    """metav1.FormatLabelSelector: matchLabels and matchExpressions as one selector string sorted by
    key (`app=web,tier in (a,b)`), `<none>` when it selects everything or is missing."""
    if not selector:
        return NONE
    reqs: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        reqs.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = ",".join(sorted(str(v) for v in expr.get("values") or []))
        if op == "In":
            reqs.append((key, f"{key} in ({values})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({values})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
        else:
            return "<error>"
    if not reqs:
        return NONE
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))


def _api_group(obj: dict) -> str:
    info = KINDS.get(obj.get("kind", ""))
    api_version = info.api_version if info else str(obj.get("apiVersion") or "v1")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def qualified_name(obj: dict) -> str:
    """kubectl's `kind.group/name` (`pod/web-abc`, `deployment.apps/web`)."""
    kind = str(obj.get("kind") or "").lower()
    group = _api_group(obj)
    resource = f"{kind}.{group}" if group else kind
    return f"{resource}/{_meta(obj).get('name', '')}"


def _containers_cells(obj: dict) -> list[str]:
    """layoutContainerCells: comma-joined container names and images of the pod template."""
    containers = ((_spec(obj).get("template") or {}).get("spec") or {}).get("containers") or []
    return [",".join(str(c.get("name", "")) for c in containers),
            ",".join(str(c.get("image", "")) for c in containers)]


def _list_with_more(items: list[str], count: int, unset: str) -> str:
    """listWithMoreString: the first 3, then ` + N more...`; `unset` when there is nothing."""
    ret = ",".join(items[:_MAX_LISTED])
    if count > _MAX_LISTED:
        return f"{ret} + {count - _MAX_LISTED} more..."
    return ret or unset


def _join_host_port(host: str, port: Any) -> str:
    """net.JoinHostPort: brackets around IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -------------------------------------------------------------------------------------------- rows


def pod_status_reason(pod: dict) -> tuple[str, int, int, int, float | None]:
    """printPod's core: (STATUS, ready containers, total containers, restarts, last restart time)."""
    spec, status = _spec(pod), _status(pod)
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or status.get("containerStatuses") or [])
    total += sum(1 for c in init_specs.values() if c.get("restartPolicy") == "Always")
    ready = restarts = 0
    last_restart: float | None = None

    def note_restart(cs: dict) -> None:
        nonlocal last_restart
        finished = parse_time(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += _int(cs.get("restartCount"))
        note_restart(cs)
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        sidecar = (init_specs.get(cs.get("name")) or {}).get("restartPolicy") == "Always"
        if term is not None and _int(term.get("exitCode")) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            if term.get("reason"):
                reason = "Init:" + term["reason"]
            elif _int(term.get("signal")):
                reason = f"Init:Signal:{_int(term.get('signal'))}"
            else:
                reason = f"Init:ExitCode:{_int(term.get('exitCode'))}"
        elif wait is not None and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in status.get("conditions") or [])
    if not initializing or initialized:
        restarts = sum(_int(cs.get("restartCount")) for cs in init_statuses
                       if (init_specs.get(cs.get("name")) or {}).get("restartPolicy") == "Always")
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            note_restart(cs)
            state = cs.get("state") or {}
            wait, term = state.get("waiting"), state.get("terminated")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                sig = _int(term.get("signal"))
                reason = f"Signal:{sig}" if sig else f"ExitCode:{_int(term.get('exitCode'))}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or [])
            reason = "Running" if pod_ready else "NotReady"

    deleting = bool(_meta(pod).get("deletionTimestamp"))
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def _pod_row(pod: dict, now: float, wide: bool) -> list[str]:
    reason, ready, total, restarts, last_restart = pod_status_reason(pod)
    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"
    row = [f"{ready}/{total}", reason, restarts_cell, format_age(_meta(pod).get("creationTimestamp"), now)]
    if wide:
        spec, status = _spec(pod), _status(pod)
        ips = status.get("podIPs") or []
        pod_ip = (ips[0].get("ip") if ips else status.get("podIP")) or NONE
        gates = spec.get("readinessGates") or []
        gates_cell = NONE
        if gates:
            conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
            true = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
            gates_cell = f"{true}/{len(gates)}"
        row += [pod_ip, spec.get("nodeName") or NONE, status.get("nominatedNodeName") or NONE, gates_cell]
    return row


def _deployment_row(obj: dict, now: float, wide: bool) -> list[str]:
    spec, status = _spec(obj), _status(obj)
    row = [f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), 1)}",
           str(_int(status.get("updatedReplicas"))), str(_int(status.get("availableReplicas"))),
           format_age(_meta(obj).get("creationTimestamp"), now)]
    if wide:
        row += _containers_cells(obj) + [format_label_selector(spec.get("selector"))]
    return row


def _replicaset_row(obj: dict, now: float, wide: bool) -> list[str]:
    spec, status = _spec(obj), _status(obj)
    row = [str(_int(spec.get("replicas"), 1)), str(_int(status.get("replicas"))),
           str(_int(status.get("readyReplicas"))), format_age(_meta(obj).get("creationTimestamp"), now)]
    if wide:
        row += _containers_cells(obj) + [format_label_selector(spec.get("selector"))]
    return row


def _statefulset_row(obj: dict, now: float, wide: bool) -> list[str]:
    spec, status = _spec(obj), _status(obj)
    row = [f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), 1)}",
           format_age(_meta(obj).get("creationTimestamp"), now)]
    if wide:
        row += _containers_cells(obj)
    return row


def node_roles(node: dict) -> list[str]:
    """findNodeRoles: `node-role.kubernetes.io/<role>` labels and `kubernetes.io/role`, sorted."""
    roles: set[str] = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    return sorted(roles)


def _node_address(node: dict, kind: str) -> str:
    for addr in _status(node).get("addresses") or []:
        if addr.get("type") == kind:
            return str(addr.get("address", ""))
    return NONE


def _node_row(obj: dict, now: float, wide: bool) -> list[str]:
    status = _status(obj)
    states = []
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            states = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if _spec(obj).get("unschedulable"):
        states.append("SchedulingDisabled")
    info = status.get("nodeInfo") or {}
    row = [",".join(states), ",".join(node_roles(obj)) or NONE,
           format_age(_meta(obj).get("creationTimestamp"), now), str(info.get("kubeletVersion", ""))]
    if wide:
        row += [_node_address(obj, "InternalIP"), _node_address(obj, "ExternalIP"),
                info.get("osImage") or UNKNOWN, info.get("kernelVersion") or UNKNOWN,
                info.get("containerRuntimeVersion") or UNKNOWN]
    return row


def _namespace_row(obj: dict, now: float, wide: bool) -> list[str]:
    # The API server defaults a namespace's phase to Active.
    return [_status(obj).get("phase") or "Active", format_age(_meta(obj).get("creationTimestamp"), now)]


def load_balancer_ips(svc: dict, wide: bool) -> str:
    """loadBalancerStatusStringer: ingress IPs (or hostnames) sorted and de-duplicated."""
    found = set()
    for ing in (_status(svc).get("loadBalancer") or {}).get("ingress") or []:
        if ing.get("ip"):
            found.add(ing["ip"])
        elif ing.get("hostname"):
            found.add(ing["hostname"])
    text = ",".join(sorted(found))
    if not wide and len(text) > _LB_WIDTH:
        text = text[: _LB_WIDTH - 3] + "..."
    return text


def service_external_ip(svc: dict, wide: bool = False) -> str:
    """getServiceExternalIP: what EXTERNAL-IP shows for each Service type."""
    spec = _spec(svc)
    svc_type = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) or NONE
    if svc_type == "LoadBalancer":
        lb = load_balancer_ips(svc, wide)
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return str(spec.get("externalName", ""))
    return UNKNOWN


def service_ports(svc: dict) -> str:
    """makePortString: `80/TCP`, `80:30080/TCP` with a nodePort, comma-joined."""
    pieces = []
    for port in _spec(svc).get("ports") or []:
        proto = port.get("protocol") or "TCP"
        node_port = _int(port.get("nodePort"))
        if node_port > 0:
            pieces.append(f"{port.get('port')}:{node_port}/{proto}")
        else:
            pieces.append(f"{port.get('port')}/{proto}")
    return ",".join(pieces)


def service_cluster_ip(svc: dict) -> str:
    spec = _spec(svc)
    ips = spec.get("clusterIPs") or []
    return str(ips[0] if ips else spec.get("clusterIP") or NONE)


def _service_row(obj: dict, now: float, wide: bool) -> list[str]:
    spec = _spec(obj)
    row = [spec.get("type") or "ClusterIP", service_cluster_ip(obj), service_external_ip(obj, wide),
           service_ports(obj) or NONE, format_age(_meta(obj).get("creationTimestamp"), now)]
    if wide:
        row.append(format_labels(spec.get("selector")))
    return row


def format_endpoints(endpoints: dict | None, port_names: set[str] | None = None) -> str:
    """formatEndpoints: ready `ip:port` pairs (all ports, or only the named ones), 3 then ` + N more...`,
    `<none>` when there are no subsets."""
    subsets = (endpoints or {}).get("subsets") or []
    if not subsets:
        return NONE
    listed: list[str] = []
    count = 0
    for subset in subsets:
        addresses = [str(a.get("ip", "")) for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        if not ports:
            # Headless services may have no ports: list bare addresses.
            count += len(addresses)
            listed += addresses
            continue
        for port in ports:
            if port_names is None or (port.get("name") or "") in port_names:
                count += len(addresses)
                listed += [_join_host_port(ip, port.get("port")) for ip in addresses]
    ret = ",".join(listed[:_MAX_LISTED])
    if count > _MAX_LISTED:
        return f"{ret} + {count - _MAX_LISTED} more..."
    return ret


def _endpoints_row(obj: dict, now: float, wide: bool) -> list[str]:
    return [format_endpoints(obj), format_age(_meta(obj).get("creationTimestamp"), now)]


def _endpointslice_row(obj: dict, now: float, wide: bool) -> list[str]:
    ports = []
    for port in obj.get("ports") or []:
        if port.get("port") is not None:
            ports.append(str(port["port"]))
        elif port.get("name") is not None:
            ports.append(str(port["name"]))
        else:
            ports.append("*")
    addresses = [str(a) for ep in obj.get("endpoints") or [] for a in ep.get("addresses") or []]
    return [str(obj.get("addressType", "")), _list_with_more(ports, len(ports), "<unset>"),
            _list_with_more(addresses, len(addresses), "<unset>"),
            format_age(_meta(obj).get("creationTimestamp"), now)]


def _networkpolicy_row(obj: dict, now: float, wide: bool) -> list[str]:
    """printNetworkPolicy: POD-SELECTOR is FormatLabelSelector of spec.podSelector (`<none>` for {})."""
    return [format_label_selector(_spec(obj).get("podSelector")), format_age(_meta(obj).get("creationTimestamp"), now)]


def _generic_row(obj: dict, now: float, wide: bool) -> list[str]:
    return [format_age(_meta(obj).get("creationTimestamp"), now)]


RowFn = Callable[[dict, float, bool], list[str]]

# kind -> (columns after NAME, extra wide columns, row function)
_TABLES: dict[str, tuple[list[str], list[str], RowFn]] = {
    "Pod": (["READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
            _pod_row),
    "Deployment": (["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"],
                   _deployment_row),
    "ReplicaSet": (["DESIRED", "CURRENT", "READY", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"],
                   _replicaset_row),
    "StatefulSet": (["READY", "AGE"], ["CONTAINERS", "IMAGES"], _statefulset_row),
    "Node": (["STATUS", "ROLES", "AGE", "VERSION"],
             ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"], _node_row),
    "Namespace": (["STATUS", "AGE"], [], _namespace_row),
    "Service": (["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], ["SELECTOR"], _service_row),
    "Endpoints": (["ENDPOINTS", "AGE"], [], _endpoints_row),
    "EndpointSlice": (["ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], [], _endpointslice_row),
    "NetworkPolicy": (["POD-SELECTOR", "AGE"], [], _networkpolicy_row),
}


# ------------------------------------------------------------------------------------------ render


def table_rows(kind: str, objs: list[dict], now: float, wide: bool = False, all_namespaces: bool = False,
               show_kind: bool = False) -> list[list[str]]:
    """The table as cells, header first (what render_table aligns)."""
    columns, wide_columns, row_fn = _TABLES.get(kind, (["AGE"], [], _generic_row))
    info = KINDS.get(kind)
    with_ns = all_namespaces and (info is None or info.namespaced)
    header = (["NAMESPACE"] if with_ns else []) + ["NAME"] + columns + (wide_columns if wide else [])
    rows = [header]
    for obj in objs:
        meta = _meta(obj)
        name = qualified_name({**obj, "kind": obj.get("kind") or kind}) if show_kind else meta.get("name", "")
        row = ([str(meta.get("namespace") or "")] if with_ns else []) + [str(name)]
        rows.append(row + row_fn(obj, now, wide))
    return rows


def render_table(kind: str, objs: list[dict], now: float, wide: bool = False, all_namespaces: bool = False,
                 show_kind: bool = False) -> str:
    """`netk8s get KIND` as kubectl prints it; "" for no objects (the CLI prints "No resources found")."""
    if not objs:
        return ""
    rows = table_rows(kind, objs, now, wide, all_namespaces, show_kind)
    text = "".join("\t".join(cell.replace("\t", " ") for cell in row) + "\n" for row in rows)
    return tabwrite(text, TABLE_MINWIDTH, TABLE_PADDING).rstrip("\n")


def render_name(objs: list[dict]) -> str:
    """`-o name`: one `kind.group/name` line per object."""
    return "\n".join(qualified_name(obj) for obj in objs)


def as_list(objs: list[dict]) -> dict:
    """The `List` kubectl wraps several objects in."""
    return {"apiVersion": "v1", "items": list(objs), "kind": "List", "metadata": {"resourceVersion": ""}}


def render_json(obj_or_list: dict | list[dict]) -> str:
    """`-o json`: keys sorted, 4-space indent, like kubectl; a list becomes a `List`."""
    doc = as_list(obj_or_list) if isinstance(obj_or_list, list) else obj_or_list
    text = json.dumps(doc, indent=4, sort_keys=True, ensure_ascii=False)
    # Go's encoding/json escapes these inside strings (they only occur inside strings in JSON).
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


class _KubeYamlDumper(yaml.SafeDumper):
    """SafeDumper tuned towards sigs.k8s.io/yaml output: strings that cannot be plain are
    double-quoted (`"1"`, `""`), multi-line strings use a literal block."""

    def choose_scalar_style(self) -> str:
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_KubeYamlDumper.add_representer(str, _represent_str)


def render_yaml(obj_or_list: dict | list[dict]) -> str:
    """`-o yaml`: block style, keys sorted, like kubectl; a list becomes a `List`."""
    doc = as_list(obj_or_list) if isinstance(obj_or_list, list) else obj_or_list
    text = yaml.dump(doc, Dumper=_KubeYamlDumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True)
    return text.rstrip("\n")
