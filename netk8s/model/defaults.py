"""Kubernetes defaulting: fill the fields the API server would fill in, on a copy of the object.

Mirrors pkg/apis/core/v1/defaults.go and pkg/apis/apps/v1/defaults.go for the kinds netk8s serves.
Tolerant of malformed input (wrong types are left alone for validate.py to report).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from netk8s.model.kinds import KINDS
from netk8s.model.networking import default_secret

PROBE_DEFAULTS = {
    "initialDelaySeconds": 0,
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}
PROBE_FIELDS = ("livenessProbe", "readinessProbe", "startupProbe")
EXTERNAL_TYPES = ("NodePort", "LoadBalancer")
DEFAULT_AFFINITY_TIMEOUT = 10800


def _unset(d: dict, key: str) -> bool:
    """A field is unset when missing, null or the empty string (as for Go zero-valued strings)."""
    v = d.get(key)
    return v is None or (isinstance(v, str) and v == "")


def _set(d: dict, key: str, value: Any) -> None:
    if _unset(d, key):
        d[key] = value


def _dicts(value: object) -> list[dict]:
    """The mapping items of a list field (anything else is ignored here)."""
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _default_probe(probe: object) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in PROBE_DEFAULTS.items():
        _set(probe, key, value)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        _set(http, "path", "/")
        _set(http, "scheme", "HTTP")


def _default_container(ctr: dict) -> None:
    for port in _dicts(ctr.get("ports")):
        _set(port, "protocol", "TCP")
    for field in PROBE_FIELDS:
        _default_probe(ctr.get(field))


def default_pod_spec(spec: object) -> None:
    """Fill a pod spec in place (a Pod's spec or a workload's spec.template.spec)."""
    if not isinstance(spec, dict):
        return
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "enableServiceLinks", True)
    for ctr in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        _default_container(ctr)


def _default_pod(obj: dict) -> None:
    default_pod_spec(obj.get("spec"))


def _default_workload(obj: dict) -> dict | None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None
    _set(spec, "replicas", 1)
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_spec(template.get("spec"))
    return spec


def _default_deployment(obj: dict) -> None:
    spec = _default_workload(obj)
    if spec is None:
        return
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _default_rolling_update(spec, "strategy", {"maxUnavailable": "25%", "maxSurge": "25%"})


def _default_rolling_update(spec: dict, field: str, rolling: dict) -> None:
    """spec[field] defaults to a RollingUpdate strategy whose rollingUpdate gets `rolling`'s defaults."""
    _set(spec, field, {})
    strategy = spec[field]
    if isinstance(strategy, dict):
        _set(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            _set(strategy, "rollingUpdate", {})
            ru = strategy["rollingUpdate"]
            if isinstance(ru, dict):
                for key, value in rolling.items():
                    _set(ru, key, value)


def _default_replicaset(obj: dict) -> None:
    _default_workload(obj)


def _default_statefulset(obj: dict) -> None:
    spec = _default_workload(obj)
    if spec is None:
        return
    _set(spec, "podManagementPolicy", "OrderedReady")
    _set(spec, "revisionHistoryLimit", 10)
    _default_rolling_update(spec, "updateStrategy", {"partition": 0})


def _default_service(obj: dict) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    svc_type = spec["type"]
    if spec["sessionAffinity"] == "ClientIP":
        _set(spec, "sessionAffinityConfig", {})
        sac = spec["sessionAffinityConfig"]
        if isinstance(sac, dict):
            _set(sac, "clientIP", {})
            if isinstance(sac["clientIP"], dict):
                _set(sac["clientIP"], "timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
    for port in _dicts(spec.get("ports")):
        _set(port, "protocol", "TCP")
        if port.get("targetPort") in (None, "", 0) and port.get("port") is not None:
            port["targetPort"] = port["port"]
    # core/v1 defaults.go: internalTrafficPolicy for every type but ExternalName; externalTrafficPolicy
    # for externally-accessible Services (NodePort, LoadBalancer, or ClusterIP with externalIPs).
    if svc_type != "ExternalName":
        _set(spec, "internalTrafficPolicy", "Cluster")
    if svc_type in EXTERNAL_TYPES or (svc_type == "ClusterIP" and spec.get("externalIPs")):
        _set(spec, "externalTrafficPolicy", "Cluster")
    if svc_type == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)


def _default_endpoints(obj: dict) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            _set(port, "protocol", "TCP")


def _default_endpointslice(obj: dict) -> None:
    _set(obj, "addressType", "IPv4")
    for port in _dicts(obj.get("ports")):
        _set(port, "protocol", "TCP")


def _default_networkpolicy(obj: dict) -> None:
    """SetDefaults_NetworkPolicy / _NetworkPolicyPort (pkg/apis/networking/v1/defaults.go): protocol TCP;
    policyTypes Ingress, plus Egress when egress rules are given."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            for port in _dicts(rule.get("ports")):
                _set(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    if spec.get("podSelector") is None:
        spec["podSelector"] = {}


_BY_KIND: dict[str, Callable[[dict], None]] = {
    "Pod": _default_pod,
    "Deployment": _default_deployment,
    "ReplicaSet": _default_replicaset,
    "StatefulSet": _default_statefulset,
    "Service": _default_service,
    "Endpoints": _default_endpoints,
    "EndpointSlice": _default_endpointslice,
    "Secret": default_secret,
    "NetworkPolicy": _default_networkpolicy,
}


def apply_defaults(obj: dict) -> dict:
    """A deep copy of `obj` with Kubernetes defaults filled in; the input is not changed."""
    out = copy.deepcopy(obj)
    if not isinstance(out, dict):
        return out
    kind = out.get("kind")
    kind = kind if isinstance(kind, str) else ""
    if out.get("metadata") is None:
        out["metadata"] = {}
    meta = out["metadata"]
    if isinstance(meta, dict):
        info = KINDS.get(kind)
        if info is not None and info.namespaced:
            _set(meta, "namespace", "default")
        if meta.get("labels") is None:
            meta["labels"] = {}
    fn = _BY_KIND.get(kind)
    if fn is not None:
        fn(out)
    return out
