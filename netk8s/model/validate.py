"""Validation of (defaulted) objects, following Kubernetes' API validation for the kinds netk8s serves.

Every error is one ValidationError with a one-line message `<kind>/<name>: <field path> <problem>`,
e.g. `pod/x: spec.containers[0].ports[0].containerPort must be between 1 and 65535, got 70000`.
Rules follow pkg/apis/core/validation, pkg/apis/apps/validation, pkg/apis/discovery/validation and
apimachinery's IsDNS1123Label/IsDNS1123Subdomain/IsDNS1035Label/IsValidPortName.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import NoReturn

from netk8s import config
from netk8s.errors import ValidationError
from netk8s.model import fields
from netk8s.model import labels as lbl
from netk8s.model.defaults import PROBE_FIELDS, apply_defaults
from netk8s.model.kinds import KINDS, KindInfo, object_key
from netk8s.model.networking import convert_legacy_ingress, is_legacy_ingress

DNS1123_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1035_LABEL_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
IANA_SVC_NAME_RE = re.compile(r"[-a-z0-9]+")
ENV_VAR_NAME_RE = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")

PROTOCOLS = ("TCP", "UDP", "SCTP")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
TRAFFIC_POLICIES = ("Cluster", "Local")
AFFINITIES = ("None", "ClientIP")
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCHES = 32
MAX_AFFINITY_TIMEOUT = 86400
MAX_ANNOTATIONS_BYTES = 256 * 1024
MAX_SLICE_ENDPOINTS = 1000
MAX_SLICE_ADDRESSES = 100
MAX_SLICE_PORTS = 100


class _Invalid(Exception):
    """Internal: the first problem found, as a field path and a problem text."""

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem
        self.hint = hint


def _fail(path: str, problem: str, hint: str = "") -> NoReturn:
    raise _Invalid(path, problem, hint)


def _one_line(text: str, limit: int = 100) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: object) -> str:
    """A value for a message: JSON-ish, one line, short."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return _one_line(text, 80)


def _ref(obj: dict) -> str:
    kind = obj.get("kind")
    kind_s = kind.lower() if isinstance(kind, str) and kind else "?"
    meta = obj.get("metadata")
    name = "?"
    if isinstance(meta, dict):
        if isinstance(meta.get("name"), str) and meta["name"]:
            name = meta["name"]
        elif isinstance(meta.get("generateName"), str) and meta["generateName"]:
            name = meta["generateName"]
    return _one_line(f"{kind_s}/{name}")


# ---------------------------------------------------------------------------------------------------------
# Name syntax helpers (return a problem or None)


def dns1123_label_error(value: str) -> str | None:
    if len(value) > 63:
        return f"must be no more than 63 characters, got {len(value)}"
    if not DNS1123_LABEL_RE.fullmatch(value):
        return ("must be a lowercase RFC 1123 label (lower case alphanumeric characters or '-', "
                f"starting and ending with an alphanumeric character), got {_show(value)}")
    return None


def dns1123_subdomain_error(value: str) -> str | None:
    if len(value) > 253:
        return f"must be no more than 253 characters, got {len(value)}"
    if not DNS1123_SUBDOMAIN_RE.fullmatch(value):
        return ("must be a lowercase RFC 1123 subdomain (lower case alphanumeric characters, '-' or '.', "
                f"starting and ending with an alphanumeric character), got {_show(value)}")
    return None


def dns1035_label_error(value: str) -> str | None:
    if len(value) > 63:
        return f"must be no more than 63 characters, got {len(value)}"
    if not DNS1035_LABEL_RE.fullmatch(value):
        return ("must be a DNS-1035 label (lower case alphanumeric characters or '-', starting with a "
                f"letter and ending with an alphanumeric character), got {_show(value)}")
    return None


def iana_svc_name_error(value: str) -> str | None:
    """IsValidPortName: <= 15 chars, [-a-z0-9], at least one letter, no '--', no '-' at either end."""
    if len(value) > 15:
        return f"must be no more than 15 characters, got {_show(value)}"
    if not IANA_SVC_NAME_RE.fullmatch(value):
        return f"must contain only lower case alphanumeric characters and '-', got {_show(value)}"
    if not re.search(r"[a-z]", value):
        return f"must contain at least one letter (a-z), got {_show(value)}"
    if "--" in value:
        return f"must not contain consecutive hyphens, got {_show(value)}"
    if value.startswith("-") or value.endswith("-"):
        return f"must not begin or end with a hyphen, got {_show(value)}"
    return None


def _ip_problem(value: object, version: int | None = None, special_ok: bool = True) -> str | None:
    if not isinstance(value, str):
        return f"must be a valid IP address string, got {_show(value)}"
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        want = f"IPv{version}" if version else "IP"
        return f"must be a valid {want} address, got {_show(value)}"
    if version is not None and ip.version != version:
        return f"must be a valid IPv{version} address, got {_show(value)}"
    if not special_ok:
        # core validation validateNonSpecialIP: endpoints cannot be these.
        for what, bad in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                          ("link-local", ip.is_link_local), ("multicast", ip.is_multicast)):
            if bad:
                return f"may not be a {what} address, got {_show(value)}"
    return None


# ---------------------------------------------------------------------------------------------------------
# Typed field helpers (they call _fail)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: object, path: str, lo: int | None = None, hi: int | None = None) -> int:
    if not _is_int(value):
        _fail(path, f"must be an integer, got {_show(value)}")
    assert isinstance(value, int)
    if lo is not None and hi is not None and not lo <= value <= hi:
        _fail(path, f"must be between {lo} and {hi}, got {value}")
    if lo is not None and value < lo:
        _fail(path, f"must be greater than or equal to {lo}, got {value}")
    if hi is not None and value > hi:
        _fail(path, f"must be less than or equal to {hi}, got {value}")
    return value


def _opt_int(d: dict, key: str, path: str, lo: int | None = None, hi: int | None = None) -> None:
    if d.get(key) is not None:
        _int(d[key], f"{path}.{key}", lo, hi)


def _port_number(value: object, path: str) -> int:
    if not _is_int(value):
        _fail(path, f"must be an integer between 1 and 65535, got {_show(value)}")
    return _int(value, path, 1, 65535)


def _mapping(value: object, path: str, required: bool = False) -> dict:
    if value is None:
        if required:
            _fail(path, "is required")
        return {}
    if not isinstance(value, dict):
        _fail(path, f"must be a mapping, got {_show(value)}")
    return value


def _list(value: object, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(path, f"must be a list, got {_show(value)}")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"must be a string, got {_show(value)}")
    return value


def _opt_bool(d: dict, key: str, path: str) -> None:
    if d.get(key) is not None and not isinstance(d[key], bool):
        _fail(f"{path}.{key}", f"must be true or false, got {_show(d[key])}")


def _enum(value: object, path: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        _fail(path, f"must be one of {', '.join(allowed)}, got {_show(value)}")
    assert isinstance(value, str)
    return value


def _name(value: object, path: str, check: str = "subdomain") -> str:
    if value is None or value == "":
        _fail(path, "is required")
    text = _str(value, path)
    fn = {"subdomain": dns1123_subdomain_error, "label": dns1123_label_error,
          "dns1035": dns1035_label_error}[check]
    err = fn(text)
    if err:
        _fail(path, err)
    return text


def _label_map(value: object, path: str) -> dict:
    m = _mapping(value, path)
    for k, v in m.items():
        err = lbl.validate_label_key(k) or lbl.validate_label_value(v)
        if err:
            _fail(f"{path}[{_one_line(str(k), 80)}]", err)
    return m


def _label_selector(value: object, path: str) -> lbl.Selector:
    err = lbl.label_selector_error(value)
    if err:
        rel, problem = err
        _fail(f"{path}.{rel}" if rel else path, problem)
    assert isinstance(value, dict)
    return lbl.selector_from_label_selector(value)


# ---------------------------------------------------------------------------------------------------------
# metadata


def _metadata(obj: dict, info: KindInfo) -> None:
    meta = _mapping(obj.get("metadata"), "metadata")
    name, gen = meta.get("name"), meta.get("generateName")
    check = {"Service": "dns1035", "Namespace": "label"}.get(info.kind, "subdomain")
    if name is None or name == "":
        if gen is None or gen == "":
            _fail("metadata.name", "is required (or metadata.generateName)")
        prefix = _str(gen, "metadata.generateName")
        # apimachinery maskTrailingDash: a generateName may end in '-'.
        masked = prefix[:-1] + "a" if len(prefix) > 1 and prefix.endswith("-") else prefix
        _name(masked, "metadata.generateName", check)
    else:
        _name(name, "metadata.name", check)
    if info.namespaced and meta.get("namespace") not in (None, ""):
        _name(meta["namespace"], "metadata.namespace", "label")
    _label_map(meta.get("labels"), "metadata.labels")
    annotations = _mapping(meta.get("annotations"), "metadata.annotations")
    total = 0
    for k, v in annotations.items():
        path = f"metadata.annotations[{_one_line(str(k), 80)}]"
        err = lbl.validate_label_key(k.lower() if isinstance(k, str) else k)
        if err:
            _fail(path, err.replace("label key", "annotation key"))
        if not isinstance(v, str):
            _fail(path, f"annotation value must be a string (quote it), got {_show(v)}")
        total += len(k) + len(v)
    if total > MAX_ANNOTATIONS_BYTES:
        _fail("metadata.annotations", f"total size must be no more than {MAX_ANNOTATIONS_BYTES} bytes")


# ---------------------------------------------------------------------------------------------------------
# Pods


def _probe_port(value: object, path: str, port_names: set[str]) -> None:
    if value is None or value == "":
        _fail(path, "is required")
    if _is_int(value):
        _port_number(value, path)
        return
    if not isinstance(value, str):
        _fail(path, f"must be a port number or a port name, got {_show(value)}")
    err = iana_svc_name_error(value)
    if err:
        _fail(path, err)
    if value not in port_names:
        known = ", ".join(sorted(port_names)) or "none"
        _fail(path, f"names port {_show(value)} which is not among this container's ports (named: {known})")


def _probe(probe: object, path: str, port_names: set[str], which: str) -> None:
    pr = _mapping(probe, path)
    handlers = [h for h in PROBE_HANDLERS if pr.get(h) is not None]
    if not handlers:
        _fail(path, "must specify a handler: one of httpGet, tcpSocket or exec")
    if len(handlers) > 1:
        _fail(path, f"may not specify more than one handler, got {' and '.join(handlers)}")
    handler = handlers[0]
    hp = f"{path}.{handler}"
    h = _mapping(pr[handler], hp)
    if handler == "exec":
        cmd = _list(h.get("command"), f"{hp}.command")
        if not cmd:
            _fail(f"{hp}.command", "is required")
        for i, arg in enumerate(cmd):
            _str(arg, f"{hp}.command[{i}]")
    elif handler in ("httpGet", "tcpSocket"):
        _probe_port(h.get("port"), f"{hp}.port", port_names)
        if handler == "httpGet":
            if h.get("path") is not None:
                _str(h["path"], f"{hp}.path")
            if h.get("scheme") not in (None, ""):
                _enum(h["scheme"], f"{hp}.scheme", ("HTTP", "HTTPS"))
            for i, hdr in enumerate(_list(h.get("httpHeaders"), f"{hp}.httpHeaders")):
                hdr_m = _mapping(hdr, f"{hp}.httpHeaders[{i}]")
                _str(hdr_m.get("name"), f"{hp}.httpHeaders[{i}].name")
                _str(hdr_m.get("value", ""), f"{hp}.httpHeaders[{i}].value")
    else:
        _port_number(h.get("port"), f"{hp}.port")
    _opt_int(pr, "initialDelaySeconds", path, lo=0)
    for key in ("timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold",
                "terminationGracePeriodSeconds"):
        _opt_int(pr, key, path, lo=1)
    if which in ("livenessProbe", "startupProbe") and pr.get("successThreshold") not in (None, 1):
        _fail(f"{path}.successThreshold", f"must be 1 for a {which}, got {_show(pr['successThreshold'])}")


def _container(ctr: object, path: str, names: set[str], init: bool) -> None:
    c = _mapping(ctr, path)
    name = _name(c.get("name"), f"{path}.name", "label")
    if name in names:
        _fail(f"{path}.name", f"duplicate container name {_show(name)}")
    names.add(name)
    image = c.get("image")
    if image is None or (isinstance(image, str) and not image.strip()):
        _fail(f"{path}.image", "is required")
    _str(image, f"{path}.image")
    for key in ("command", "args"):
        for i, arg in enumerate(_list(c.get(key), f"{path}.{key}")):
            _str(arg, f"{path}.{key}[{i}]")
    if c.get("workingDir") is not None:
        _str(c["workingDir"], f"{path}.workingDir")
    if c.get("imagePullPolicy") not in (None, ""):
        _enum(c["imagePullPolicy"], f"{path}.imagePullPolicy", ("Always", "IfNotPresent", "Never"))
    port_names: set[str] = set()
    for j, port in enumerate(_list(c.get("ports"), f"{path}.ports")):
        pp = f"{path}.ports[{j}]"
        p = _mapping(port, pp)
        if p.get("containerPort") is None:
            _fail(f"{pp}.containerPort", "is required")
        _port_number(p["containerPort"], f"{pp}.containerPort")
        if p.get("hostPort") not in (None, 0):
            _port_number(p["hostPort"], f"{pp}.hostPort")
        _enum(p.get("protocol", "TCP"), f"{pp}.protocol", PROTOCOLS)
        if p.get("hostIP") not in (None, ""):
            err = _ip_problem(p["hostIP"])
            if err:
                _fail(f"{pp}.hostIP", err)
        pname = p.get("name")
        if pname not in (None, ""):
            _str(pname, f"{pp}.name")
            err = iana_svc_name_error(pname)
            if err:
                _fail(f"{pp}.name", err)
            if pname in port_names:
                _fail(f"{pp}.name", f"duplicate port name {_show(pname)}")
            port_names.add(pname)
    for j, env in enumerate(_list(c.get("env"), f"{path}.env")):
        ep = f"{path}.env[{j}]"
        e = _mapping(env, ep)
        ename = _str(e.get("name"), f"{ep}.name")
        if not ENV_VAR_NAME_RE.fullmatch(ename):
            _fail(f"{ep}.name", f"must be a valid environment variable name, got {_show(ename)}")
        if e.get("value") is not None:
            _str(e["value"], f"{ep}.value")
    for which in PROBE_FIELDS:
        if c.get(which) is None:
            continue
        if init and c.get("restartPolicy") != "Always":
            _fail(f"{path}.{which}", "may not be set for init containers")
        _probe(c[which], f"{path}.{which}", port_names, which)


def _pod_spec(spec_value: object, path: str, in_template: bool) -> None:
    spec = _mapping(spec_value, path, required=True)
    containers = _list(spec.get("containers"), f"{path}.containers")
    if not containers:
        _fail(f"{path}.containers", "must have at least one container")
    names: set[str] = set()
    for i, ctr in enumerate(_list(spec.get("initContainers"), f"{path}.initContainers")):
        _container(ctr, f"{path}.initContainers[{i}]", names, init=True)
    for i, ctr in enumerate(containers):
        _container(ctr, f"{path}.containers[{i}]", names, init=False)
    restart = spec.get("restartPolicy") or "Always"
    _enum(restart, f"{path}.restartPolicy", RESTART_POLICIES)
    if in_template and restart != "Always":
        _fail(f"{path}.restartPolicy", f"must be Always for a workload's pod template, got {_show(restart)}")
    dns_policy = _enum(spec.get("dnsPolicy") or "ClusterFirst", f"{path}.dnsPolicy", DNS_POLICIES)
    dns_config = _mapping(spec.get("dnsConfig"), f"{path}.dnsConfig")
    nameservers = _list(dns_config.get("nameservers"), f"{path}.dnsConfig.nameservers")
    if dns_policy == "None" and not nameservers:
        _fail(f"{path}.dnsConfig.nameservers", "is required when dnsPolicy is None (at least one nameserver)")
    if len(nameservers) > MAX_DNS_NAMESERVERS:
        _fail(f"{path}.dnsConfig.nameservers", f"must have at most {MAX_DNS_NAMESERVERS} entries")
    for i, ns in enumerate(nameservers):
        err = _ip_problem(ns)
        if err:
            _fail(f"{path}.dnsConfig.nameservers[{i}]", err)
    searches = _list(dns_config.get("searches"), f"{path}.dnsConfig.searches")
    if len(searches) > MAX_DNS_SEARCHES:
        _fail(f"{path}.dnsConfig.searches", f"must have at most {MAX_DNS_SEARCHES} entries")
    for i, s in enumerate(searches):
        text = _str(s, f"{path}.dnsConfig.searches[{i}]")
        _name(text.removesuffix(".") or text, f"{path}.dnsConfig.searches[{i}]")
    for i, opt in enumerate(_list(dns_config.get("options"), f"{path}.dnsConfig.options")):
        o = _mapping(opt, f"{path}.dnsConfig.options[{i}]")
        if not o.get("name"):
            _fail(f"{path}.dnsConfig.options[{i}].name", "is required")
        _str(o["name"], f"{path}.dnsConfig.options[{i}].name")
        if o.get("value") is not None:
            _str(o["value"], f"{path}.dnsConfig.options[{i}].value")
    for key in ("hostname", "subdomain"):
        if spec.get(key) not in (None, ""):
            _name(spec[key], f"{path}.{key}", "label")
    for key in ("nodeName", "serviceAccountName"):
        if spec.get(key) not in (None, ""):
            _name(spec[key], f"{path}.{key}")
    for i, alias in enumerate(_list(spec.get("hostAliases"), f"{path}.hostAliases")):
        ap = f"{path}.hostAliases[{i}]"
        a = _mapping(alias, ap)
        if a.get("ip") in (None, ""):
            _fail(f"{ap}.ip", "is required")
        err = _ip_problem(a["ip"])
        if err:
            _fail(f"{ap}.ip", err)
        for j, host in enumerate(_list(a.get("hostnames"), f"{ap}.hostnames")):
            _name(host, f"{ap}.hostnames[{j}]")
    _opt_int(spec, "terminationGracePeriodSeconds", path, lo=0)
    _opt_int(spec, "activeDeadlineSeconds", path, lo=1)
    for key in ("enableServiceLinks", "hostNetwork", "shareProcessNamespace", "automountServiceAccountToken"):
        _opt_bool(spec, key, path)
    _label_map(spec.get("nodeSelector"), f"{path}.nodeSelector")


def _validate_pod(obj: dict) -> None:
    _pod_spec(obj.get("spec"), "spec", in_template=False)


# ---------------------------------------------------------------------------------------------------------
# Workloads


def _validate_workload(obj: dict) -> None:
    kind = obj["kind"]
    spec = _mapping(obj.get("spec"), "spec", required=True)
    if spec.get("replicas") is not None:
        _int(spec["replicas"], "spec.replicas", lo=0)
    if spec.get("selector") is None:
        _fail("spec.selector", "is required")
    selector = _label_selector(spec["selector"], "spec.selector")
    if selector.empty:
        _fail("spec.selector", f"must not be empty for a {kind} (it would select every pod)")
    template = _mapping(spec.get("template"), "spec.template", required=True)
    tmeta = _mapping(template.get("metadata"), "spec.template.metadata")
    tlabels = _label_map(tmeta.get("labels"), "spec.template.metadata.labels")
    if not tlabels:
        _fail("spec.template.metadata.labels", "is required (the selector must match them)")
    if not selector.matches(tlabels):
        _fail("spec.selector", "does not match spec.template.metadata.labels",
              hint=f"selector {selector} vs labels "
                   f"{','.join(f'{k}={v}' for k, v in sorted(tlabels.items()))}")
    _pod_spec(template.get("spec"), "spec.template.spec", in_template=True)
    _opt_int(spec, "minReadySeconds", "spec", lo=0)
    _opt_int(spec, "revisionHistoryLimit", "spec", lo=0)
    if kind == "Deployment":
        strategy = _mapping(spec.get("strategy"), "spec.strategy")
        stype = _enum(strategy.get("type") or "RollingUpdate", "spec.strategy.type", ("RollingUpdate", "Recreate"))
        if stype == "Recreate" and strategy.get("rollingUpdate") is not None:
            _fail("spec.strategy.rollingUpdate", "may not be specified when strategy type is Recreate")
        _opt_int(spec, "progressDeadlineSeconds", "spec", lo=1)
        _opt_bool(spec, "paused", "spec")
    if kind == "StatefulSet":
        svc = spec.get("serviceName")
        if svc in (None, ""):
            _fail("spec.serviceName", "is required (the headless Service that governs the pods' DNS names)")
        _name(svc, "spec.serviceName", "dns1035")
        _enum(spec.get("podManagementPolicy") or "OrderedReady", "spec.podManagementPolicy",
              ("OrderedReady", "Parallel"))
        strategy = _mapping(spec.get("updateStrategy"), "spec.updateStrategy")
        _enum(strategy.get("type") or "RollingUpdate", "spec.updateStrategy.type", ("RollingUpdate", "OnDelete"))


# ---------------------------------------------------------------------------------------------------------
# Services


def _service_ports(spec: dict, svc_type: str, headless: bool) -> None:
    ports = _list(spec.get("ports"), "spec.ports")
    if not ports and svc_type != "ExternalName" and not headless:
        _fail("spec.ports", "is required (at least one port)")
    require_name = len(ports) > 1
    names: dict[str, int] = {}
    port_protos: dict[tuple[int, str], int] = {}
    node_ports: dict[tuple[int, str], int] = {}
    lo, hi = config.NODEPORT_RANGE
    for i, port in enumerate(ports):
        pp = f"spec.ports[{i}]"
        p = _mapping(port, pp)
        name = p.get("name")
        if name in (None, ""):
            if require_name:
                _fail(f"{pp}.name", "is required when the Service has more than one port")
        else:
            _name(name, f"{pp}.name", "label")
            if name in names:
                _fail(f"{pp}.name", f"duplicate port name {_show(name)} (also spec.ports[{names[name]}])")
            names[name] = i
        if p.get("port") is None:
            _fail(f"{pp}.port", "is required")
        number = _port_number(p["port"], f"{pp}.port")
        proto = _enum(p.get("protocol") or "TCP", f"{pp}.protocol", PROTOCOLS)
        if (number, proto) in port_protos:
            _fail(f"{pp}.port", f"duplicate port {number}/{proto} (also spec.ports[{port_protos[number, proto]}])")
        port_protos[number, proto] = i
        target = p.get("targetPort")
        if target not in (None, "", 0):
            if _is_int(target):
                _port_number(target, f"{pp}.targetPort")
            elif isinstance(target, str):
                err = iana_svc_name_error(target)
                if err:
                    _fail(f"{pp}.targetPort", f"must be a port number or an IANA service name: {err}")
            else:
                _fail(f"{pp}.targetPort", f"must be a port number or a port name, got {_show(target)}")
        node_port = p.get("nodePort")
        if node_port not in (None, 0):
            if svc_type not in ("NodePort", "LoadBalancer"):
                _fail(f"{pp}.nodePort", f"may not be used when spec.type is {svc_type}")
            if not _is_int(node_port):
                _fail(f"{pp}.nodePort", f"must be an integer, got {_show(node_port)}")
            if not lo <= node_port <= hi:
                _fail(f"{pp}.nodePort", f"must be in the NodePort range {lo}-{hi}, got {node_port}")
            if (node_port, proto) in node_ports:
                _fail(f"{pp}.nodePort", f"duplicate nodePort {node_port}/{proto} "
                                        f"(also spec.ports[{node_ports[node_port, proto]}])")
            node_ports[node_port, proto] = i
        if p.get("appProtocol") is not None:
            _str(p["appProtocol"], f"{pp}.appProtocol")


def _validate_service(obj: dict) -> None:
    spec = _mapping(obj.get("spec"), "spec", required=True)
    svc_type = _enum(spec.get("type") or "ClusterIP", "spec.type", SERVICE_TYPES)
    external = svc_type in ("NodePort", "LoadBalancer")
    cluster_ip = spec.get("clusterIP")
    headless = cluster_ip == "None"
    if cluster_ip not in (None, "", "None"):
        if svc_type == "ExternalName":
            _fail("spec.clusterIP", f"must be empty for an ExternalName Service, got {_show(cluster_ip)}")
        err = _ip_problem(cluster_ip, version=4)
        if err:
            _fail("spec.clusterIP", f"{err} (or \"None\" for a headless Service)")
        if ipaddress.ip_address(cluster_ip) not in config.SERVICE_CIDR:
            _fail("spec.clusterIP", f"{cluster_ip} is not in the service CIDR {config.SERVICE_CIDR}")
    if headless and external:
        _fail("spec.clusterIP", f"may not be \"None\" for a {svc_type} Service")
    cluster_ips = _list(spec.get("clusterIPs"), "spec.clusterIPs")
    if cluster_ips and cluster_ip not in (None, "") and cluster_ips[0] != cluster_ip:
        _fail("spec.clusterIPs[0]", f"must match spec.clusterIP {_show(cluster_ip)}, got {_show(cluster_ips[0])}")
    for i, fam in enumerate(_list(spec.get("ipFamilies"), "spec.ipFamilies")):
        _enum(fam, f"spec.ipFamilies[{i}]", ("IPv4", "IPv6"))
    if spec.get("ipFamilyPolicy") not in (None, ""):
        _enum(spec["ipFamilyPolicy"], "spec.ipFamilyPolicy", ("SingleStack", "PreferDualStack", "RequireDualStack"))
    _service_ports(spec, svc_type, headless)
    if svc_type == "ExternalName":
        ext = spec.get("externalName")
        if ext in (None, ""):
            _fail("spec.externalName", "is required for an ExternalName Service")
        text = _str(ext, "spec.externalName")
        _name(text.removesuffix("."), "spec.externalName")
    else:
        _label_map(spec.get("selector"), "spec.selector")
    affinity = _enum(spec.get("sessionAffinity") or "None", "spec.sessionAffinity", AFFINITIES)
    sac = _mapping(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
    if affinity == "ClientIP":
        if svc_type == "ExternalName":
            _fail("spec.sessionAffinity", "must be None for an ExternalName Service")
        client_ip = _mapping(sac.get("clientIP"), "spec.sessionAffinityConfig.clientIP")
        if client_ip.get("timeoutSeconds") is not None:
            _int(client_ip["timeoutSeconds"], "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                 1, MAX_AFFINITY_TIMEOUT)
    elif sac:
        _fail("spec.sessionAffinityConfig", "must not be set when sessionAffinity is None")
    external_ips = _list(spec.get("externalIPs"), "spec.externalIPs")
    for i, ip in enumerate(external_ips):
        err = _ip_problem(ip)
        if not err and ipaddress.ip_address(ip).is_unspecified:
            err = f"may not be unspecified, got {_show(ip)}"
        if err:
            _fail(f"spec.externalIPs[{i}]", err)
    etp = spec.get("externalTrafficPolicy")
    if etp not in (None, ""):
        _enum(etp, "spec.externalTrafficPolicy", TRAFFIC_POLICIES)
        # core validation: only externally-accessible Services (NodePort, LoadBalancer, or externalIPs).
        if not external and not (svc_type == "ClusterIP" and external_ips):
            _fail("spec.externalTrafficPolicy",
                  f"may only be set when spec.type is NodePort or LoadBalancer (or with externalIPs), "
                  f"not {svc_type}")
    if spec.get("internalTrafficPolicy") not in (None, ""):
        _enum(spec["internalTrafficPolicy"], "spec.internalTrafficPolicy", TRAFFIC_POLICIES)
    hc = spec.get("healthCheckNodePort")
    if hc not in (None, 0):
        if svc_type != "LoadBalancer" or etp != "Local":
            _fail("spec.healthCheckNodePort",
                  "may only be set when spec.type is LoadBalancer and externalTrafficPolicy is Local")
        lo, hi = config.NODEPORT_RANGE
        _int(hc, "spec.healthCheckNodePort", lo, hi)
    if spec.get("loadBalancerIP") not in (None, ""):
        err = _ip_problem(spec["loadBalancerIP"], version=4)
        if err:
            _fail("spec.loadBalancerIP", err)
    ranges = _list(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges")
    if ranges and svc_type != "LoadBalancer":
        _fail("spec.loadBalancerSourceRanges", "may only be used when spec.type is LoadBalancer")
    for i, cidr in enumerate(ranges):
        try:
            ipaddress.ip_network(_str(cidr, f"spec.loadBalancerSourceRanges[{i}]").strip(), strict=False)
        except ValueError:
            _fail(f"spec.loadBalancerSourceRanges[{i}]", f"must be a CIDR like 192.168.0.0/16, got {_show(cidr)}")
    if spec.get("allocateLoadBalancerNodePorts") is not None and svc_type != "LoadBalancer":
        _fail("spec.allocateLoadBalancerNodePorts", "may only be used when spec.type is LoadBalancer")
    _opt_bool(spec, "allocateLoadBalancerNodePorts", "spec")
    _opt_bool(spec, "publishNotReadyAddresses", "spec")


# ---------------------------------------------------------------------------------------------------------
# Endpoints and EndpointSlices


def _endpoint_port(port: object, path: str, require_name: bool, names: dict[str, int],
                   allow_null_port: bool) -> None:
    p = _mapping(port, path)
    name = p.get("name")
    if name in (None, ""):
        if require_name:
            _fail(f"{path}.name", "is required when there is more than one port")
    else:
        _name(name, f"{path}.name", "label")
        if name in names:
            _fail(f"{path}.name", f"duplicate port name {_show(name)}")
        names[name] = 1
    if p.get("port") is None:
        if not allow_null_port:
            _fail(f"{path}.port", "is required")
    else:
        _port_number(p["port"], f"{path}.port")
    _enum(p.get("protocol") or "TCP", f"{path}.protocol", PROTOCOLS)
    if p.get("appProtocol") is not None:
        _str(p["appProtocol"], f"{path}.appProtocol")


def _validate_endpoints(obj: dict) -> None:
    for i, subset in enumerate(_list(obj.get("subsets"), "subsets")):
        sp = f"subsets[{i}]"
        s = _mapping(subset, sp)
        addresses = _list(s.get("addresses"), f"{sp}.addresses")
        not_ready = _list(s.get("notReadyAddresses"), f"{sp}.notReadyAddresses")
        if not addresses and not not_ready:
            _fail(sp, "must specify addresses or notReadyAddresses")
        for key, items in (("addresses", addresses), ("notReadyAddresses", not_ready)):
            for j, addr in enumerate(items):
                ap = f"{sp}.{key}[{j}]"
                a = _mapping(addr, ap)
                if a.get("ip") in (None, ""):
                    _fail(f"{ap}.ip", "is required")
                err = _ip_problem(a["ip"], special_ok=False)
                if err:
                    _fail(f"{ap}.ip", err)
                if a.get("hostname") not in (None, ""):
                    _name(a["hostname"], f"{ap}.hostname", "label")
                if a.get("nodeName") not in (None, ""):
                    _name(a["nodeName"], f"{ap}.nodeName")
                _mapping(a.get("targetRef"), f"{ap}.targetRef")
        ports = _list(s.get("ports"), f"{sp}.ports")
        names: dict[str, int] = {}
        for j, port in enumerate(ports):
            _endpoint_port(port, f"{sp}.ports[{j}]", len(ports) > 1, names, allow_null_port=False)


def _validate_endpointslice(obj: dict) -> None:
    address_type = _enum(obj.get("addressType") or "IPv4", "addressType", ADDRESS_TYPES)
    endpoints = _list(obj.get("endpoints"), "endpoints")
    if len(endpoints) > MAX_SLICE_ENDPOINTS:
        _fail("endpoints", f"must have at most {MAX_SLICE_ENDPOINTS} items")
    for i, ep in enumerate(endpoints):
        epp = f"endpoints[{i}]"
        e = _mapping(ep, epp)
        addresses = _list(e.get("addresses"), f"{epp}.addresses")
        if not addresses:
            _fail(f"{epp}.addresses", "must have at least one address")
        if len(addresses) > MAX_SLICE_ADDRESSES:
            _fail(f"{epp}.addresses", f"must have at most {MAX_SLICE_ADDRESSES} items")
        for j, addr in enumerate(addresses):
            ap = f"{epp}.addresses[{j}]"
            if address_type == "FQDN":
                _name(addr, ap)
            else:
                err = _ip_problem(addr, version=4 if address_type == "IPv4" else 6, special_ok=False)
                if err:
                    _fail(ap, err)
        conditions = _mapping(e.get("conditions"), f"{epp}.conditions")
        for key in ("ready", "serving", "terminating"):
            _opt_bool(conditions, key, f"{epp}.conditions")
        if e.get("hostname") not in (None, ""):
            _name(e["hostname"], f"{epp}.hostname", "label")
        if e.get("nodeName") not in (None, ""):
            _name(e["nodeName"], f"{epp}.nodeName")
        if e.get("zone") is not None:
            _str(e["zone"], f"{epp}.zone")
        _mapping(e.get("targetRef"), f"{epp}.targetRef")
    ports = _list(obj.get("ports"), "ports")
    if len(ports) > MAX_SLICE_PORTS:
        _fail("ports", f"must have at most {MAX_SLICE_PORTS} items")
    names: dict[str, int] = {}
    for j, port in enumerate(ports):
        _endpoint_port(port, f"ports[{j}]", False, names, allow_null_port=True)


# ---------------------------------------------------------------------------------------------------------
# ConfigMaps

CONFIG_MAP_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")
MAX_CONFIG_MAP_BYTES = 1024 * 1024  # core validation: MaxSecretSize, used for ConfigMaps too


def _config_map_key(key: object, path: str) -> None:
    """IsConfigMapKey: [-._a-zA-Z0-9]+, at most 253 characters, not "." nor "..", not starting with ".."."""
    if not isinstance(key, str) or not key:
        _fail(path, f"must be a non-empty string key, got {_show(key)}")
    assert isinstance(key, str)
    if len(key) > 253:
        _fail(path, f"must be no more than 253 characters, got {len(key)}")
    if not CONFIG_MAP_KEY_RE.fullmatch(key):
        _fail(path, "a valid config key must consist of alphanumeric characters, '-', '_' or '.', "
                    f"got {_show(key)}")
    if key in (".", "..") or key.startswith(".."):
        _fail(path, f'must not be "." or ".." nor start with "..", got {_show(key)}')


def _validate_configmap(obj: dict) -> None:
    data = _mapping(obj.get("data"), "data")
    binary = _mapping(obj.get("binaryData"), "binaryData")
    total = 0
    for key, value in data.items():
        path = f"data[{_one_line(str(key), 80)}]"
        _config_map_key(key, path)
        total += len(_str(value, path).encode())
    for key, value in binary.items():
        path = f"binaryData[{_one_line(str(key), 80)}]"
        _config_map_key(key, path)
        if key in data:
            _fail(path, "duplicate of key present in data")
        text = _str(value, path)
        if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", text) or len(text) % 4:
            _fail(path, "must be base64-encoded bytes")
        total += len(text) * 3 // 4
    if total > MAX_CONFIG_MAP_BYTES:
        _fail("data", f"total size must be no more than {MAX_CONFIG_MAP_BYTES} bytes, got {total}")
    if obj.get("immutable") is not None and not isinstance(obj["immutable"], bool):
        _fail("immutable", f"must be true or false, got {_show(obj['immutable'])}")


# ---------------------------------------------------------------------------------------------------------
# Cluster-scoped kinds


def _validate_namespace(obj: dict) -> None:
    spec = _mapping(obj.get("spec"), "spec")
    for i, fin in enumerate(_list(spec.get("finalizers"), "spec.finalizers")):
        _str(fin, f"spec.finalizers[{i}]")


def _validate_node(obj: dict) -> None:
    spec = _mapping(obj.get("spec"), "spec")
    cidrs = [spec["podCIDR"]] if spec.get("podCIDR") not in (None, "") else []
    cidrs += _list(spec.get("podCIDRs"), "spec.podCIDRs")
    for cidr in cidrs:
        try:
            ipaddress.ip_network(_str(cidr, "spec.podCIDR"))
        except ValueError:
            _fail("spec.podCIDR", f"must be a valid CIDR, got {_show(cidr)}")
    _opt_bool(spec, "unschedulable", "spec")


# ---------------------------------------------------------------------------------------------------------
# NetworkPolicy (pkg/apis/networking/validation/validation.go ValidateNetworkPolicySpec)

POLICY_TYPES = ("Ingress", "Egress")


def _cidr(value: object, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if value is None or value == "":
        _fail(path, "is required")
    try:
        return ipaddress.ip_network(_str(value, path), strict=False)
    except ValueError:
        _fail(path, f"must be a valid CIDR (e.g. 10.0.0.0/16), got {_show(value)}")


def _policy_port(port: object, path: str) -> None:
    """ValidateNetworkPolicyPort: protocol, numeric or named port, endPort only with a numeric port."""
    p = _mapping(port, path)
    if p.get("protocol") is not None:
        _enum(p["protocol"], f"{path}.protocol", PROTOCOLS)
    value, end = p.get("port"), p.get("endPort")
    if value is None:
        if end is not None:
            _fail(f"{path}.endPort", "may not be specified when `port` is not specified")
        return
    if isinstance(value, str):  # an IntOrString holding a string is a port name, even "80"
        if end is not None:
            _fail(f"{path}.endPort", "may not be specified when `port` is non-numeric")
        err = iana_svc_name_error(value)
        if err:
            _fail(f"{path}.port", err)
        return
    number = _port_number(value, f"{path}.port")
    if end is not None:
        end_number = _port_number(end, f"{path}.endPort")
        if end_number < number:
            _fail(f"{path}.endPort", f"must be greater than or equal to `port` ({number}), got {end_number}")


def _policy_peer(peer: object, path: str) -> None:
    """ValidateNetworkPolicyPeer: at least one selector or an ipBlock, and an ipBlock alone."""
    p = _mapping(peer, path)
    given = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if p.get(k) is not None]
    if not given:
        _fail(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    if "ipBlock" in given and len(given) > 1:
        _fail(path, "may not specify both ipBlock and another peer")
    for key in ("podSelector", "namespaceSelector"):
        if p.get(key) is not None:
            _label_selector(p[key], f"{path}.{key}")
    if p.get("ipBlock") is not None:
        block = _mapping(p["ipBlock"], f"{path}.ipBlock")
        cidr = _cidr(block.get("cidr"), f"{path}.ipBlock.cidr")
        for i, exc in enumerate(_list(block.get("except"), f"{path}.ipBlock.except")):
            sub = _cidr(exc, f"{path}.ipBlock.except[{i}]")
            if sub.version != cidr.version or not sub.subnet_of(cidr) or sub.prefixlen <= cidr.prefixlen:  # type: ignore[arg-type]
                _fail(f"{path}.ipBlock.except[{i}]", f"must be a strict subset of `cidr` ({cidr}), got {_show(exc)}")


def _validate_networkpolicy(obj: dict) -> None:
    spec = _mapping(obj.get("spec"), "spec", required=True)
    _label_selector(spec.get("podSelector") if spec.get("podSelector") is not None else {}, "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_list(spec.get(direction), f"spec.{direction}")):
            path = f"spec.{direction}[{i}]"
            r = _mapping(rule, path)
            for j, port in enumerate(_list(r.get("ports"), f"{path}.ports")):
                _policy_port(port, f"{path}.ports[{j}]")
            for j, peer in enumerate(_list(r.get(peers), f"{path}.{peers}")):
                _policy_peer(peer, f"{path}.{peers}[{j}]")
    types = _list(spec.get("policyTypes"), "spec.policyTypes")
    for i, t in enumerate(types):
        _enum(t, f"spec.policyTypes[{i}]", POLICY_TYPES)
    if len(types) > len(POLICY_TYPES):
        _fail("spec.policyTypes", "may not specify more than two policyTypes")


_BY_KIND = {
    "Pod": _validate_pod,
    "Deployment": _validate_workload,
    "ReplicaSet": _validate_workload,
    "StatefulSet": _validate_workload,
    "Service": _validate_service,
    "Endpoints": _validate_endpoints,
    "EndpointSlice": _validate_endpointslice,
    "ConfigMap": _validate_configmap,
    "Namespace": _validate_namespace,
    "Node": _validate_node,
    "NetworkPolicy": _validate_networkpolicy,
}


def _validate(obj: dict) -> None:
    kind = obj.get("kind")
    if kind is None or kind == "":
        _fail("kind", "is required")
    if not isinstance(kind, str):
        _fail("kind", f"must be a string, got {_show(kind)}")
    info = KINDS.get(kind)
    if info is None:
        close = [k for k in KINDS if k.lower() == kind.lower()]
        hint = f"kinds are case-sensitive: use {close[0]}" if close else ""
        _fail("kind", f"{_show(kind)} is not a kind netk8s serves (known: {', '.join(sorted(KINDS))})", hint)
    api = obj.get("apiVersion")
    if api is None or api == "":
        _fail("apiVersion", f"is required (use {info.api_version} for {kind})")
    if api != info.api_version:
        _fail("apiVersion", f"{_show(api)} does not serve kind {kind}; use {_show(info.api_version)}",
              hint=f"set apiVersion: {info.api_version}")
    _metadata(obj, info)
    _validator(kind)(obj)


def _validator(kind: str) -> Callable[[dict], None]:
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    # Imported here: validate_ingress builds on this module's field helpers.
    from netk8s.model.validate_ingress import VALIDATORS

    return VALIDATORS[kind]


def validate(obj: dict) -> None:
    """Check one (defaulted) object; raise ValidationError `<kind>/<name>: <field> <problem>` if invalid."""
    if not isinstance(obj, dict):
        raise ValidationError(f"object: must be a mapping, got {_show(obj)}")
    try:
        _validate(obj)
    except _Invalid as err:
        raise ValidationError(f"{_ref(obj)}: {err.path} {err.problem}", hint=err.hint,
                              field=err.path, problem=err.problem) from None


def validate_batch(objs: list[tuple[str, dict]], warnings: list[str] | None = None) -> list[dict]:
    """Default and validate each (origin, object) of one apply; refuse the same object twice.

    Returns the defaulted objects in order. An error message ends with `(in <origin>)`. A v1beta1
    Ingress is converted to networking.k8s.io/v1 first; the warning naming the moved fields is appended
    to `warnings` (the CLI prints it as kubectl prints a server's Warning header).
    """
    out: list[dict] = []
    seen: dict[tuple[str, str, str], str] = {}
    for origin, obj in objs:
        if is_legacy_ingress(obj):
            obj, warning = convert_legacy_ingress(obj)
            if warnings is not None:
                warnings.append(f"{_ref(obj)}: {warning} (in {origin})")
        try:
            # kubectl's default --validate=strict: unknown/duplicate fields refused, quantities parsed.
            obj, _ = fields.check(obj, obj.get("kind") if isinstance(obj.get("kind"), str) else None, strict=True)
        except ValidationError as err:
            raise ValidationError(f"{_ref(obj)}: {err.message} (in {origin})", hint=err.hint) from None
        defaulted = apply_defaults(obj)
        try:
            validate(defaulted)
        except ValidationError as err:
            raise ValidationError(f"{err.message} (in {origin})", hint=err.hint) from None
        meta = defaulted.get("metadata") or {}
        if meta.get("name"):
            key = object_key(defaulted)
            if key in seen:
                raise ValidationError(
                    f"{_ref(defaulted)}: duplicate object in this apply (docs {seen[key]} and {origin})",
                    hint="each object may appear once per apply")
            seen[key] = origin
        out.append(defaulted)
    return out
