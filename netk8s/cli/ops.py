"""What the CLI commands do with the store: apply, delete, scale, wait. No printing, no click."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from netk8s.errors import Conflict, NotFound, ValidationError
from netk8s.model import networking, svcalloc
from netk8s.model.kinds import kind_info, object_key
from netk8s.model.labels import Selector
from netk8s.model.status import is_ready, rfc3339
from netk8s.store.base import Op, Store, mutate

# Fields of a stored object that `apply` keeps when the manifest does not set them (allocations).
KEEP_SPEC_FIELDS = {"Service": ("clusterIP", "clusterIPs", "healthCheckNodePort"),
                    # set by the DefaultIngressClass admission when the Ingress was created
                    "Ingress": ("ingressClassName",)}


@dataclass
class ApplyResult:
    obj: dict
    action: str  # created | configured | unchanged


def kubectl_name(obj: dict) -> str:
    """`deployment.apps/web`, `pod/x`, `service/y` as kubectl prints them."""
    info = kind_info(obj["kind"])
    group = info.api_version.split("/")[0] if "/" in info.api_version else ""
    return f"{info.kind.lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


def merge_for_apply(existing: dict, desired: dict) -> dict:
    """The manifest replaces labels, annotations and spec; the store keeps identity and status."""
    new = copy.deepcopy(existing)
    meta = desired.get("metadata") or {}
    new["metadata"]["labels"] = meta.get("labels") or {}
    kept_annotations = {k: v for k, v in (existing["metadata"].get("annotations") or {}).items()
                        if k.startswith("netk8s.io/")}
    annotations = {**kept_annotations, **(meta.get("annotations") or {})}
    if annotations or "annotations" in existing["metadata"]:
        new["metadata"]["annotations"] = annotations
    for key, value in desired.items():
        if key in ("metadata", "status", "apiVersion", "kind"):
            continue
        new[key] = copy.deepcopy(value)
    for key in [k for k in existing if k not in desired and k not in ("metadata", "status", "apiVersion", "kind")]:
        del new[key]
    kind = desired["kind"]
    if kind in KEEP_SPEC_FIELDS and "spec" in new:
        old_spec = existing.get("spec") or {}
        for f in KEEP_SPEC_FIELDS[kind]:
            if f not in new["spec"] and f in old_spec:
                new["spec"][f] = old_spec[f]
    if kind == "Pod":
        # Pod spec is immutable except a few fields; keep what the scheduler/IPAM decided.
        old_spec = existing.get("spec") or {}
        if old_spec.get("nodeName") and not new["spec"].get("nodeName"):
            new["spec"]["nodeName"] = old_spec["nodeName"]
    new["apiVersion"] = desired.get("apiVersion", existing.get("apiVersion"))
    return new


def check_namespaces(store: Store, objs: list[dict]) -> None:
    """Like the API server: a namespaced object needs its Namespace (existing or in the same apply)."""
    created = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    for obj in objs:
        if not kind_info(obj["kind"]).namespaced:
            continue
        ns = obj["metadata"].get("namespace", "default")
        if ns in created:
            continue
        cur = store.try_get("Namespace", "", ns)
        if cur is None or cur["metadata"].get("deletionTimestamp"):
            name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
            state = "not found" if cur is None else "is being terminated"
            raise ValidationError(f'{obj["kind"].lower()}/{name}: metadata.namespace "{ns}" {state}',
                                  hint=f"create it first: a v1 Namespace named {ns}")


def apply_objects(store: Store, objs: list[dict], retries: int = 5) -> list[ApplyResult]:
    """Apply every object in one store transaction: all of them or none."""
    check_namespaces(store, objs)
    for _ in range(retries):
        ops: list[Op] = []
        plan: list[tuple[dict, str]] = []
        services = None
        for obj in objs:
            if not (obj.get("metadata") or {}).get("name"):  # generateName: always a new object
                if obj["kind"] == "Ingress":
                    obj = networking.admit_default_class(obj, store.list("IngressClass")[0])
                ops.append(Op("create", obj))
                plan.append((obj, "created"))
                continue
            kind, ns, name = object_key(obj)
            cur = store.try_get(kind, ns, name)
            if kind == "Ingress" and cur is None:  # admission on create, as kube-apiserver's
                obj = networking.admit_default_class(obj, store.list("IngressClass")[0])
            if kind == "Service":
                # Like the API server: allocate ClusterIP / NodePorts before the write, refuse conflicts.
                if services is None:
                    services = store.list("Service")[0]
                base = merge_for_apply(cur, obj) if cur is not None else obj
                obj = svcalloc.allocate(base, cur, [s for s in services if object_key(s) != (kind, ns, name)])
                services = [s for s in services if object_key(s) != (kind, ns, name)] + [obj]
                if cur is not None:
                    obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": cur["metadata"]["resourceVersion"]}}
            if cur is None:
                ops.append(Op("create", obj))
                plan.append((obj, "created"))
                continue
            if cur["metadata"].get("deletionTimestamp"):
                raise ValidationError(f"{kind.lower()}/{name}: is being deleted; try again when it is gone")
            new = merge_for_apply(cur, obj) if kind != "Service" else obj
            if new == cur:
                plan.append((cur, "unchanged"))
                continue
            ops.append(Op("update", new))
            plan.append((new, "configured"))
        try:
            stored = iter(store.transaction(ops)) if ops else iter(())
        except Conflict:
            continue
        results = []
        for obj, action in plan:
            results.append(ApplyResult(next(stored) if action != "unchanged" else obj, action))
        return results
    raise Conflict("apply: objects kept changing while applying; try again")


def now_rfc3339() -> str:
    return rfc3339(time.time())


def delete_object(store: Store, kind: str, ns: str, name: str, grace: int | None = None) -> dict:
    """Delete like the API server: pods on a node are marked (graceful), everything else removed."""
    cur = store.get(kind, ns, name)
    if kind == "Pod" and (cur.get("spec") or {}).get("nodeName"):
        period = grace if grace is not None else (cur.get("spec") or {}).get("terminationGracePeriodSeconds", 30)

        def mark(o: dict) -> dict | None:
            if o["metadata"].get("deletionTimestamp"):
                return None
            o["metadata"]["deletionTimestamp"] = now_rfc3339()
            o["metadata"]["deletionGracePeriodSeconds"] = int(period)
            return o

        mutate(store, kind, ns, name, mark)
        return cur
    if kind == "Namespace":
        def mark_ns(o: dict) -> dict | None:
            if o["metadata"].get("deletionTimestamp"):
                return None
            o["metadata"]["deletionTimestamp"] = now_rfc3339()
            o.setdefault("status", {})["phase"] = "Terminating"
            return o

        mutate(store, kind, ns, name, mark_ns)
        return cur
    try:
        return store.delete(kind, ns, name)
    except NotFound:
        return cur


def wait_gone(store: Store, keys: list[tuple[str, str, str, str]], timeout: float) -> list[tuple[str, str, str, str]]:
    """Wait until objects (kind, ns, name, uid) are gone; returns those still present at the deadline."""
    deadline = time.monotonic() + timeout
    left = list(keys)
    while left and time.monotonic() < deadline:
        left = [k for k in left if (o := store.try_get(k[0], k[1], k[2])) is not None and o["metadata"]["uid"] == k[3]]
        if left:
            store.watch(store.revision(), [k[0] for k in left], timeout=0.2)
    return left


pod_ready = is_ready


def select(objs: list[dict], selector: Selector | None) -> list[dict]:
    if selector is None:
        return objs
    return [o for o in objs if selector.matches((o.get("metadata") or {}).get("labels") or {})]
