"""Endpoints, EndpointSlice and EndpointSlice-mirroring controllers (pure): who serves each Service.

Follows kubernetes/kubernetes pkg/controller/endpoint (v1 Endpoints, RepackSubsets),
pkg/controller/endpointslice (slices with ready/serving/terminating conditions) and
pkg/controller/endpointslicemirroring (slices mirrored from user-supplied Endpoints of selector-less
Services). Level-triggered: every pass computes the wanted objects from the whole snapshot and writes
only what differs, so a second pass yields no ops.

Differences from upstream, on purpose: slice names are deterministic (`<svc>-<5 chars>` from the
owner's uid and the port mapping) instead of generateName, and the Endpoints this controller writes
carry the annotation MANAGED_ANNOTATION so that only those are deleted with their Service (upstream
deletes whatever Endpoints has the Service's name, even one applied before its Service).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json

from netk8s.controller.reconcile import (
    FuncReconciler,
    Snapshot,
    delete_op,
    is_deleting,
    is_pod_ready,
    is_terminal,
    labels_of,
    meta,
    name_of,
    namespace_of,
    uid_of,
    update_op,
)
from netk8s.model.labels import selector_from_set
from netk8s.store.base import Op

DISCOVERY_API = "discovery.k8s.io/v1"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
LABEL_HEADLESS = "service.kubernetes.io/headless"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
MIRROR_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
MANAGED_ANNOTATION = "endpoints.netk8s.io/managed-by"
ENDPOINTS_CONTROLLER = "endpoint-controller"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # utilrand's alphabet, as generateName uses
NAME_SUFFIX_LEN = 5
MAX_GENERATED_PREFIX = 63 - NAME_SUFFIX_LEN  # apiserver's maxGeneratedNameLength


# ---- services and pods -----------------------------------------------------------------------------


def _spec(obj: dict | None) -> dict:
    spec = (obj or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def has_selector(svc: dict) -> bool:
    """A Service the endpoints controllers compute endpoints for: non-empty selector, not ExternalName."""
    return bool(_spec(svc).get("selector")) and _spec(svc).get("type") != "ExternalName"


def is_headless(svc: dict) -> bool:
    """Not helper.IsServiceIPSet: clusterIP "None" (or not allocated)."""
    return _spec(svc).get("clusterIP") in (None, "", "None")


def pod_ip(pod: dict) -> str:
    """status.podIP, the address the node agent reported (the IPAM annotation is not enough)."""
    return str((pod.get("status") or {}).get("podIP") or "")


def should_pod_be_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """endpointslice util ShouldPodBeInEndpoints: not Succeeded/Failed, has an IP, and not being
    deleted unless terminating pods are wanted."""
    if is_terminal(pod) or not pod_ip(pod):
        return False
    return include_terminating or not is_deleting(pod)


def find_port(pod: dict, svc_port: dict) -> int | None:
    """podutil.FindPort: a named targetPort is the pod's container port with that name and the Service
    port's protocol (sidecar init containers count); a number is used as is; None if not found."""
    target = svc_port.get("targetPort")
    if target in (None, "", 0):
        target = svc_port.get("port")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    proto = svc_port.get("protocol") or "TCP"
    spec = _spec(pod)
    containers = list(spec.get("containers") or [])
    containers += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for ctr in containers:
        for port in ctr.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == proto:
                return int(port["containerPort"])
    return None


def _svc_ports(svc: dict) -> list[dict]:
    return [p for p in _spec(svc).get("ports") or [] if isinstance(p, dict)]


def _endpoint_port(svc_port: dict, number: int) -> dict:
    out: dict = {}
    if svc_port.get("name"):
        out["name"] = svc_port["name"]
    out["port"] = number
    out["protocol"] = svc_port.get("protocol") or "TCP"
    if svc_port.get("appProtocol"):
        out["appProtocol"] = svc_port["appProtocol"]
    return out


def _target_ref(pod: dict) -> dict:
    return {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod), "uid": uid_of(pod)}


def _hostname(pod: dict, svc: dict) -> str:
    """ShouldSetHostname: spec.hostname, when spec.subdomain names this Service (same namespace)."""
    spec = _spec(pod)
    if spec.get("hostname") and spec.get("subdomain") == name_of(svc) and namespace_of(pod) == namespace_of(svc):
        return str(spec["hostname"])
    return ""


def _ip_key(ip: str) -> tuple[int, int, str]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0, ip)
    return (addr.version, int(addr), ip)


def selected_pods(snapshot: Snapshot, svc: dict) -> list[dict]:
    """Pods in the Service's namespace whose labels match its selector, by name."""
    selector = selector_from_set(_spec(svc).get("selector"))
    pods = [p for p in snapshot.list("Pod", namespace_of(svc)) if selector.matches(labels_of(p))]
    return sorted(pods, key=name_of)


# ---- v1 Endpoints ----------------------------------------------------------------------------------


def _address(pod: dict, svc: dict) -> dict:
    out: dict = {"ip": pod_ip(pod)}
    hostname = _hostname(pod, svc)
    if hostname:
        out["hostname"] = hostname
    if _spec(pod).get("nodeName"):
        out["nodeName"] = _spec(pod)["nodeName"]
    out["targetRef"] = _target_ref(pod)
    return out


def _canon(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _address_order(a: dict) -> tuple:
    """LessEndpointAddress: by IP, then by the target's uid."""
    return (_ip_key(a["ip"]), (a.get("targetRef") or {}).get("uid", ""))


def repack_subsets(entries: list[tuple[dict, dict | None, bool]]) -> list[dict]:
    """endpoints.RepackSubsets: (address, port or None, ready) entries -> subsets, one per set of
    addresses sharing the same ports; addresses sorted by IP, ports by name/number."""
    by_port: dict[str, dict[str, tuple[dict, bool]]] = {}
    ports: dict[str, dict | None] = {}
    for addr, port, ready in entries:
        pkey = _canon(port)
        ports[pkey] = port
        akey = _canon([addr["ip"], (addr.get("targetRef") or {}).get("uid", "")])
        seen = by_port.setdefault(pkey, {})
        # mapAddressByPort: "not ready always trumps ready" for one address and port
        seen[akey] = (addr, ready and (akey not in seen or seen[akey][1]))
    groups: dict[str, tuple[dict[str, tuple[dict, bool]], list[dict]]] = {}
    for pkey, addrs in by_port.items():
        gkey = _canon(sorted((k, r) for k, (_, r) in addrs.items()))
        group = groups.setdefault(gkey, (addrs, []))
        port = ports[pkey]
        if port is not None:
            group[1].append(port)
    subsets: list[dict] = []
    for addrs, port_list in groups.values():
        ready_addrs = sorted((a for a, r in addrs.values() if r), key=_address_order)
        not_ready_addrs = sorted((a for a, r in addrs.values() if not r), key=_address_order)
        subset: dict = {}
        if ready_addrs:
            subset["addresses"] = ready_addrs
        if not_ready_addrs:
            subset["notReadyAddresses"] = not_ready_addrs
        if port_list:
            subset["ports"] = sorted(port_list, key=lambda p: (p.get("name", ""), p["port"], p["protocol"]))
        subsets.append(subset)

    def subset_key(s: dict) -> tuple:
        first = (s.get("addresses") or s.get("notReadyAddresses") or [{"ip": ""}])[0]
        return (_ip_key(first["ip"]), _canon(s.get("ports")))
    return sorted(subsets, key=subset_key)


def desired_subsets(svc: dict, pods: list[dict]) -> list[dict]:
    """The subsets the endpoints controller computes for a Service with a selector."""
    publish = bool(_spec(svc).get("publishNotReadyAddresses"))
    ports = _svc_ports(svc)
    entries: list[tuple[dict, dict | None, bool]] = []
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish):
            continue
        addr = _address(pod, svc)
        ready = publish or is_pod_ready(pod)
        if not ports:
            if _spec(svc).get("clusterIP") == "None":  # headless Services may have no ports
                entries.append((addr, None, ready))
            continue
        for sp in ports:
            number = find_port(pod, sp)
            if number is not None:
                entries.append((addr, _endpoint_port(sp, number), ready))
    return repack_subsets(entries)


def _endpoints_labels(svc: dict) -> dict[str, str]:
    labels = labels_of(svc)
    if is_headless(svc):
        labels[LABEL_HEADLESS] = ""
    else:
        labels.pop(LABEL_HEADLESS, None)
    return labels


def _managed_endpoints(ep: dict) -> bool:
    return (meta(ep).get("annotations") or {}).get(MANAGED_ANNOTATION) == ENDPOINTS_CONTROLLER


def endpoints_ops(svc: dict, pods: list[dict], current: dict | None) -> list[Op]:
    """Create or update the Service's v1 Endpoints when its content differs."""
    subsets = desired_subsets(svc, pods)
    labels = _endpoints_labels(svc)
    if current is None:
        return [Op("create", {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name_of(svc), "namespace": namespace_of(svc), "labels": labels,
                         "annotations": {MANAGED_ANNOTATION: ENDPOINTS_CONTROLLER}},
            "subsets": subsets,
        })]
    if current.get("subsets") == subsets and labels_of(current) == labels and _managed_endpoints(current):
        return []
    new = copy.deepcopy(current)
    new["metadata"]["labels"] = labels
    new["metadata"]["annotations"] = {**(meta(current).get("annotations") or {}),
                                      MANAGED_ANNOTATION: ENDPOINTS_CONTROLLER}
    new["subsets"] = subsets
    return [update_op(new)]


# ---- EndpointSlices --------------------------------------------------------------------------------


def slice_name(base: str, owner_uid: str, ports_key: str) -> str:
    """`<base>-<5 chars>`, stable for one owner and port mapping (a deterministic generateName)."""
    digest = int.from_bytes(hashlib.sha256(f"{owner_uid}/{ports_key}".encode()).digest()[:8], "big")
    chars = []
    for _ in range(NAME_SUFFIX_LEN):
        digest, r = divmod(digest, len(NAME_ALPHABET))
        chars.append(NAME_ALPHABET[r])
    return f"{base}-"[:MAX_GENERATED_PREFIX] + "".join(chars)


def _slice_port(svc_port: dict, number: int) -> dict:
    out = {"name": svc_port.get("name") or "", "port": number, "protocol": svc_port.get("protocol") or "TCP"}
    if svc_port.get("appProtocol"):
        out["appProtocol"] = svc_port["appProtocol"]
    return out


def pod_to_endpoint(pod: dict, svc: dict) -> dict:
    """podToEndpoint: ready only when serving and not terminating (always with publishNotReadyAddresses)."""
    serving = is_pod_ready(pod)
    terminating = is_deleting(pod)
    ready = bool(_spec(svc).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: dict = {"addresses": [pod_ip(pod)],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    hostname = _hostname(pod, svc)
    if hostname:
        ep["hostname"] = hostname
    ep["targetRef"] = _target_ref(pod)
    if _spec(pod).get("nodeName"):
        ep["nodeName"] = _spec(pod)["nodeName"]
    return ep


def _owner_ref(owner: dict, api_version: str, kind: str) -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": name_of(owner), "uid": uid_of(owner),
            "controller": True, "blockOwnerDeletion": True}


def _sort_endpoints(eps: list[dict]) -> list[dict]:
    return sorted(eps, key=lambda e: (_ip_key(e["addresses"][0]), (e.get("targetRef") or {}).get("name", "")))


def desired_slices(svc: dict, pods: list[dict]) -> list[dict]:
    """The EndpointSlices of a Service with a selector: one per distinct port mapping (a placeholder
    with no endpoints when no pod qualifies)."""
    ports = _svc_ports(svc)
    groups: dict[str, tuple[list[dict], list[dict]]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        mapped = [_slice_port(sp, n) for sp in ports if (n := find_port(pod, sp)) is not None]
        key = _canon(mapped)
        groups.setdefault(key, (mapped, []))[1].append(pod_to_endpoint(pod, svc))
    if not groups:
        groups[_canon([])] = ([], [])
    labels = {k: v for k, v in labels_of(svc).items() if k not in (LABEL_SERVICE_NAME, LABEL_MANAGED_BY)}
    labels[LABEL_SERVICE_NAME] = name_of(svc)
    labels[LABEL_MANAGED_BY] = SLICE_CONTROLLER
    if is_headless(svc):
        labels[LABEL_HEADLESS] = ""
    owner = _owner_ref(svc, "v1", "Service")
    out = []
    for key, (mapped, eps) in sorted(groups.items()):
        out.append({
            "apiVersion": DISCOVERY_API, "kind": "EndpointSlice",
            "metadata": {"name": slice_name(name_of(svc), uid_of(svc) or f"{namespace_of(svc)}/{name_of(svc)}", key),
                         "namespace": namespace_of(svc), "labels": dict(labels), "ownerReferences": [owner]},
            "addressType": "IPv4",
            "endpoints": _sort_endpoints(eps),
            "ports": mapped,
        })
    return out


def _mirror_endpoint(addr: dict, ready: bool) -> dict | None:
    """addressToEndpoint: only the ready condition is set on mirrored endpoints."""
    try:
        ip = str(ipaddress.ip_address(addr.get("ip", "")))
    except ValueError:
        return None
    ep: dict = {"addresses": [ip], "conditions": {"ready": ready}}
    if addr.get("hostname"):
        ep["hostname"] = addr["hostname"]
    if addr.get("targetRef"):
        ep["targetRef"] = copy.deepcopy(addr["targetRef"])
    if addr.get("nodeName"):
        ep["nodeName"] = addr["nodeName"]
    return ep


def mirrored_slices(endpoints: dict) -> list[dict]:
    """EndpointSlices mirrored from a user-supplied Endpoints object, one per distinct port set."""
    groups: dict[str, tuple[list[dict], list[dict]]] = {}
    for subset in endpoints.get("subsets") or []:
        ports = [{"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP",
                  **({"appProtocol": p["appProtocol"]} if p.get("appProtocol") else {})}
                 for p in subset.get("ports") or []]
        group = groups.setdefault(_canon(ports), (ports, []))
        for addrs, ready in ((subset.get("addresses") or [], True), (subset.get("notReadyAddresses") or [], False)):
            for addr in addrs:
                if (ep := _mirror_endpoint(addr, ready)) is not None:
                    group[1].append(ep)
    labels = {**labels_of(endpoints), LABEL_SERVICE_NAME: name_of(endpoints), LABEL_MANAGED_BY: MIRROR_CONTROLLER}
    annotations = {k: v for k, v in (meta(endpoints).get("annotations") or {}).items()
                   if k not in (LAST_APPLIED_ANNOTATION, TRIGGER_TIME_ANNOTATION, MANAGED_ANNOTATION)}
    owner = _owner_ref(endpoints, "v1", "Endpoints")
    out = []
    for key, (ports, eps) in sorted(groups.items()):
        md: dict = {"name": slice_name(name_of(endpoints), uid_of(endpoints) or name_of(endpoints), key),
                    "namespace": namespace_of(endpoints), "labels": dict(labels), "ownerReferences": [owner]}
        if annotations:
            md["annotations"] = dict(annotations)
        out.append({"apiVersion": DISCOVERY_API, "kind": "EndpointSlice", "metadata": md,
                    "addressType": "IPv4", "endpoints": _sort_endpoints(eps), "ports": ports})
    return out


_SLICE_FIELDS = ("addressType", "endpoints", "ports")


def _slice_differs(current: dict, want: dict) -> bool:
    if any(current.get(f) != want.get(f) for f in _SLICE_FIELDS):
        return True
    cm, wm = meta(current), meta(want)
    return (cm.get("labels") or {}) != wm["labels"] or (cm.get("ownerReferences") or []) != wm[
        "ownerReferences"] or (cm.get("annotations") or {}) != (wm.get("annotations") or {})


def sync_slices(want: list[dict], current: list[dict]) -> list[Op]:
    """Ops that turn the `current` slices (of one manager, one Service) into `want`."""
    ops: list[Op] = []
    by_name = {name_of(s): s for s in current}
    for slc in want:
        cur = by_name.pop(name_of(slc), None)
        if cur is None:
            ops.append(Op("create", slc))
        elif _slice_differs(cur, slc):
            new = copy.deepcopy(cur)
            new["metadata"]["labels"] = slc["metadata"]["labels"]
            new["metadata"]["ownerReferences"] = slc["metadata"]["ownerReferences"]
            if slc["metadata"].get("annotations") or new["metadata"].get("annotations"):
                new["metadata"]["annotations"] = slc["metadata"].get("annotations") or {}
            for f in _SLICE_FIELDS:
                new[f] = slc[f]
            ops.append(update_op(new))
    ops.extend(delete_op(s) for _, s in sorted(by_name.items()))
    return ops


# ---- the reconciler --------------------------------------------------------------------------------


def _managed_by(slc: dict) -> str:
    return labels_of(slc).get(LABEL_MANAGED_BY, "")


def _service_of(slc: dict) -> str:
    return labels_of(slc).get(LABEL_SERVICE_NAME, "")


def _should_mirror(svc: dict | None, endpoints: dict | None, user_slices: bool) -> bool:
    """endpointslicemirroring shouldMirror: a Service without a selector, Endpoints not marked
    skip-mirror and not a leader-election record, and (netk8s) no EndpointSlices from the user."""
    if svc is None or endpoints is None or _spec(svc).get("selector") or user_slices:
        return False
    if labels_of(endpoints).get(LABEL_SKIP_MIRROR) == "true":
        return False
    return LEADER_ANNOTATION not in (meta(endpoints).get("annotations") or {})


def reconcile_namespace(snapshot: Snapshot, namespace: str) -> list[Op]:
    """Endpoints and EndpointSlices of every Service in one namespace."""
    services = {name_of(s): s for s in snapshot.list("Service", namespace) if not is_deleting(s)}
    endpoints = {name_of(e): e for e in snapshot.list("Endpoints", namespace)}
    slices = snapshot.list("EndpointSlice", namespace)
    by_service: dict[str, list[dict]] = {}
    for slc in slices:
        if _service_of(slc):
            by_service.setdefault(_service_of(slc), []).append(slc)
    ops: list[Op] = []
    for name in sorted(set(services) | set(endpoints) | set(by_service)):
        svc = services.get(name)
        ep = endpoints.get(name)
        own = by_service.get(name, [])
        mine = [s for s in own if _managed_by(s) == SLICE_CONTROLLER]
        mirrored = [s for s in own if _managed_by(s) == MIRROR_CONTROLLER]
        user = any(_managed_by(s) not in (SLICE_CONTROLLER, MIRROR_CONTROLLER) for s in own)
        if svc is not None and has_selector(svc):
            pods = selected_pods(snapshot, svc)
            ops.extend(endpoints_ops(svc, pods, ep))
            ops.extend(sync_slices(desired_slices(svc, pods), mine))
        else:
            if ep is not None and _managed_endpoints(ep) and (svc is None or _spec(svc).get("type") == "ExternalName"):
                ops.append(delete_op(ep))
            ops.extend(sync_slices([], mine))
        want_mirror = mirrored_slices(ep) if ep is not None and _should_mirror(svc, ep, user) else []
        ops.extend(sync_slices(want_mirror, mirrored))
    return ops


def reconcile_endpoints(snapshot: Snapshot, now: float) -> list[Op]:
    """Endpoints + EndpointSlices for Services with a selector, mirrored slices for the others, and
    cleanup of what the controllers wrote for Services that are gone."""
    namespaces = {namespace_of(o) or "default" for kind in ("Service", "Endpoints", "EndpointSlice")
                  for o in snapshot.list(kind)}
    ops: list[Op] = []
    for ns in sorted(namespaces):
        ops.extend(reconcile_namespace(snapshot, ns))
    return ops


ENDPOINTS = FuncReconciler("endpoints", reconcile_endpoints)
