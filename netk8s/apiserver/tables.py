"""kubectl's table columns for every served kind, and the meta.k8s.io/v1 Table the API server returns.

Pure: objects are plain dicts in Kubernetes' shape, the current time comes in as `now` (seconds since
the epoch). The column definitions (names, types, descriptions, priority 1 for `-o wide`) and the cell
rules follow kube-apiserver's printers (kubernetes/kubernetes pkg/printers/internalversion/printers.go),
which is where kubectl's `get` columns come from. Both the API server (`to_table`, for
`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`) and the netk8s CLI's printers use this module.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netk8s.model import schema as sch
from netk8s.model.status import condition, is_ready

NONE = "<none>"
UNKNOWN = "<unknown>"

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
            reason = "Running" if is_ready(pod) else "NotReady"

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
    states = ["Unknown" if condition(obj, "Ready") is None else "Ready" if is_ready(obj) else "NotReady"]
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


def _configmap_row(obj: dict, now: float, wide: bool) -> list[str]:
    data = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [str(data), format_age(_meta(obj).get("creationTimestamp"), now)]


def ingress_hosts(ingress: dict) -> str:
    """formatHosts (printers.go): up to 3 rule hosts, `*` when no rule names one."""
    rules = _spec(ingress).get("rules") or []
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == _MAX_LISTED:
            more = True
        if not more and rule.get("host"):
            hosts.append(str(rule["host"]))
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - _MAX_LISTED} more..." if more else text


def _ingress_row(obj: dict, now: float, wide: bool) -> list[str]:
    spec = _spec(obj)
    return [str(spec.get("ingressClassName") or NONE), ingress_hosts(obj), load_balancer_ips(obj, wide),
            "80, 443" if spec.get("tls") else "80", format_age(_meta(obj).get("creationTimestamp"), now)]


def _ingressclass_row(obj: dict, now: float, wide: bool) -> list[str]:
    spec = _spec(obj)
    params = spec.get("parameters")
    shown = NONE
    if params:
        shown = str(params.get("kind", "")) + (f".{params['apiGroup']}" if params.get("apiGroup") else "")
        shown += f"/{params.get('name', '')}"
    return [str(spec.get("controller", "")), shown, format_age(_meta(obj).get("creationTimestamp"), now)]


def _secret_row(obj: dict, now: float, wide: bool) -> list[str]:
    count = len(obj.get("data") or {}) + len(obj.get("stringData") or {})
    return [str(obj.get("type") or "Opaque"), str(count), format_age(_meta(obj).get("creationTimestamp"), now)]


def _generic_row(obj: dict, now: float, wide: bool) -> list[str]:
    return [format_age(_meta(obj).get("creationTimestamp"), now)]


RowFn = Callable[[dict, float, bool], list[str]]


# --------------------------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class Column:
    """One TableColumnDefinition; `integer` cells go out as numbers (printers.go appends int64s)."""

    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""
    integer_cell: bool = False

    @property
    def header(self) -> str:
        """kubectl prints column names upper-cased (`Nominated Node` -> `NOMINATED NODE`)."""
        return self.name.upper()

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format, "description": self.description,
                "priority": self.priority}


def _doc(definition: str, field: str) -> str:
    """A field's description from the schemas: printers.go uses the types' SwaggerDoc() the same way."""
    props = sch.definitions().get(definition, {}).get("properties") or {}
    return str((props.get(field) or {}).get("description", ""))


_CORE, _APPS, _META = "io.k8s.api.core.v1.", "io.k8s.api.apps.v1.", "io.k8s.apimachinery.pkg.apis.meta.v1."


def _name_column() -> Column:
    return Column("Name", format="name", description=_doc(_META + "ObjectMeta", "name"))


def _age() -> Column:
    return Column("Age", description=_doc(_META + "ObjectMeta", "creationTimestamp"))


def _int_col(name: str, definition: str, field: str, priority: int = 0) -> Column:
    return Column(name, "integer", _doc(definition, field), priority, integer_cell=True)


def _col(name: str, definition: str, field: str, priority: int = 0) -> Column:
    return Column(name, description=_doc(definition, field), priority=priority)


_READY_PODS = "Number of the pod with ready state"
_CONTAINERS = Column("Containers", description="Names of each container in the template.", priority=1)
_IMAGES = Column("Images", description="Images referenced by each container in the template.", priority=1)


def _columns_by_kind() -> dict[str, tuple[list[Column], RowFn]]:
    """kind -> (columns after Name, row function), as printers.go AddHandlers declares them."""
    spec, status = _CORE + "PodSpec", _CORE + "PodStatus"
    svc = _CORE + "ServiceSpec"
    node_info, node_status = _CORE + "NodeSystemInfo", _CORE + "NodeStatus"
    return {
        "Pod": ([
            Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
            Column("Status", description="The aggregate status of the containers in this pod."),
            Column("Restarts", description="The number of times the containers in this pod have been restarted "
                                           "and when the last container in this pod has restarted."),
            _age(),
            _col("IP", status, "podIP", 1), _col("Node", spec, "nodeName", 1),
            _col("Nominated Node", status, "nominatedNodeName", 1), _col("Readiness Gates", spec, "readinessGates", 1),
        ], _pod_row),
        "Deployment": ([
            Column("Ready", description=_READY_PODS),
            _int_col("Up-to-date", _APPS + "DeploymentStatus", "updatedReplicas"),
            _int_col("Available", _APPS + "DeploymentStatus", "availableReplicas"),
            _age(), _CONTAINERS, _IMAGES, _col("Selector", _APPS + "DeploymentSpec", "selector", 1),
        ], _deployment_row),
        "ReplicaSet": ([
            _int_col("Desired", _APPS + "ReplicaSetSpec", "replicas"),
            _int_col("Current", _APPS + "ReplicaSetStatus", "replicas"),
            _int_col("Ready", _APPS + "ReplicaSetStatus", "readyReplicas"),
            _age(), _CONTAINERS, _IMAGES, _col("Selector", _APPS + "ReplicaSetSpec", "selector", 1),
        ], _replicaset_row),
        "StatefulSet": ([Column("Ready", description=_READY_PODS), _age(), _CONTAINERS, _IMAGES], _statefulset_row),
        "Node": ([
            Column("Status", description="The status of the node"),
            Column("Roles", description="The roles of the node"),
            _age(), _col("Version", node_info, "kubeletVersion"),
            _col("Internal-IP", node_status, "addresses", 1), _col("External-IP", node_status, "addresses", 1),
            _col("OS-Image", node_info, "osImage", 1), _col("Kernel-Version", node_info, "kernelVersion", 1),
            _col("Container-Runtime", node_info, "containerRuntimeVersion", 1),
        ], _node_row),
        "Namespace": ([Column("Status", description="The status of the namespace"), _age()], _namespace_row),
        "Service": ([
            _col("Type", svc, "type"), _col("Cluster-IP", svc, "clusterIP"), _col("External-IP", svc, "externalIPs"),
            _col("Port(s)", svc, "ports"), _age(), _col("Selector", svc, "selector", 1),
        ], _service_row),
        "Endpoints": ([_col("Endpoints", _CORE + "Endpoints", "subsets"), _age()], _endpoints_row),
        "EndpointSlice": ([
            _col("AddressType", "io.k8s.api.discovery.v1.EndpointSlice", "addressType"),
            _col("Ports", "io.k8s.api.discovery.v1.EndpointSlice", "ports"),
            _col("Endpoints", "io.k8s.api.discovery.v1.EndpointSlice", "endpoints"), _age(),
        ], _endpointslice_row),
        # printers.go: the Data column is declared a string but carries an int64 count.
        "ConfigMap": ([Column("Data", description=_doc(_CORE + "ConfigMap", "data"), integer_cell=True), _age()],
                      _configmap_row),
        "Secret": ([_col("Type", _CORE + "Secret", "type"),
                    Column("Data", description=_doc(_CORE + "Secret", "data"), integer_cell=True), _age()],
                   _secret_row),
        "Ingress": ([
            Column("Class", description="The name of the IngressClass resource that should be used for this Ingress."),
            Column("Hosts", description="Hosts that incoming requests are matched against before the ingress rule"),
            Column("Address", description="Address is a list containing ingress points for the load-balancer"),
            Column("Ports", description="Ports of TLS configurations that open"), _age(),
        ], _ingress_row),
        "IngressClass": ([
            Column("Controller", description="Controller that is responsible for handling this class"),
            Column("Parameters", description="A reference to a resource with additional parameters"), _age(),
        ], _ingressclass_row),
        "NetworkPolicy": ([
            _col("Pod-Selector", "io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector"), _age(),
        ], _networkpolicy_row),
    }


def _networkpolicy_row(obj: dict, now: float, wide: bool) -> list[str]:
    """printNetworkPolicy: POD-SELECTOR is FormatLabelSelector of spec.podSelector (`<none>` for {})."""
    return [format_label_selector(_spec(obj).get("podSelector")), format_age(_meta(obj).get("creationTimestamp"), now)]


_TABLES: dict[str, tuple[list[Column], RowFn]] = {}


def _table(kind: str) -> tuple[list[Column], RowFn]:
    if not _TABLES:
        _TABLES.update(_columns_by_kind())
    return _TABLES.get(kind) or ([_age()], _generic_row)


def columns(kind: str, wide: bool = True) -> list[Column]:
    """The kind's columns after Name; the priority-1 ones only when `wide`."""
    return [c for c in _table(kind)[0] if wide or c.priority == 0]


def row_cells(kind: str, obj: dict, now: float, wide: bool = False) -> list[str]:
    """The cells after Name of one object, as text (`wide`: with the priority-1 columns)."""
    return _table(kind)[1](obj, now, wide)


# ----------------------------------------------------------------------------------------------- Table

INCLUDE_OBJECT = ("None", "Metadata", "Object")

# printers.go podSuccessConditions / podFailedConditions: a finished pod's row says it completed.
_POD_DONE = {
    "Succeeded": {"type": "Completed", "status": "True", "reason": "",
                  "message": "The pod has completed successfully."},
    "Failed": {"type": "Completed", "status": "True", "reason": "", "message": "The pod failed."},
}


def _cell(column: Column, text: str) -> Any:
    if column.integer_cell:
        try:
            return int(text)
        except ValueError:
            return text
    return text


def to_table(kind: str, objects: list[dict], now: float, include_object: str = "Metadata",
             resource_version: str = "", continue_token: str = "") -> dict:
    """A meta.k8s.io/v1 Table of `objects` with every column (kube-apiserver prints with Wide=true);
    each row carries the object per `includeObject` (None, Metadata as PartialObjectMetadata, Object)."""
    if include_object not in INCLUDE_OBJECT:
        raise ValueError(f"includeObject: must be one of {', '.join(INCLUDE_OBJECT)}, got {include_object!r}")
    cols = columns(kind, wide=True)
    rows = []
    for obj in objects:
        texts = row_cells(kind, obj, now, wide=True)
        row: dict[str, Any] = {"cells": [_meta(obj).get("name", ""), *(_cell(c, t) for c, t in zip(cols, texts))]}
        if kind == "Pod" and _status(obj).get("phase") in _POD_DONE:
            row["conditions"] = [_POD_DONE[_status(obj)["phase"]]]
        if include_object == "Object":
            row["object"] = obj
        elif include_object == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": _meta(obj)}
        rows.append(row)
    metadata: dict[str, str] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": [c.definition() for c in [_name_column(), *cols]], "rows": rows}
