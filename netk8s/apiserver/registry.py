"""The one write path: what the API server does to an object before and instead of storing it.

Like kube-apiserver's registry strategies (pkg/registry/*/strategy.go) and admission: every create,
update and patch goes through admit_create()/admit_update() (status and metadata the request may not
change, defaults, validation, the namespace check, ClusterIP/NodePort/LoadBalancer allocation), and
every delete through delete(), which marks pods and namespaces for graceful deletion and cascades a
workload's deletion to what it owns (ownerReferences). Synchronous, over a Store; callers serialise
writes so allocation sees every Service.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass

from netk8s.apiserver.resources import has_status
from netk8s.errors import Conflict, Forbidden, NotFound, ValidationError
from netk8s.model import svcalloc
from netk8s.model.defaults import apply_defaults
from netk8s.model.kinds import KINDS, kind_info
from netk8s.model.validate import validate
from netk8s.store.base import Store, key_of, normalize_key

# metadata the server owns; a write cannot set or clear it (ObjectMetaUpdateValidation).
SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")
# Who owns what, for cascading deletion: owner kind -> kinds that carry its ownerReference.
DEPENDENT_KINDS: dict[str, tuple[str, ...]] = {
    "Deployment": ("ReplicaSet",),
    "ReplicaSet": ("Pod",),
    "StatefulSet": ("Pod",),
}
PROPAGATION = ("Foreground", "Background", "Orphan")
DEFAULT_POD_GRACE = 30


def check_namespace(store: Store, obj: dict) -> None:
    """A namespaced object needs its Namespace, and not one being terminated (NamespaceLifecycle)."""
    kind = obj["kind"]
    if not kind_info(kind).namespaced:
        return
    ns = (obj.get("metadata") or {}).get("namespace") or "default"
    cur = store.try_get("Namespace", "", ns)
    if cur is None:
        raise NotFound(f'namespaces "{ns}" not found')
    if cur["metadata"].get("deletionTimestamp"):
        raise Forbidden(f"unable to create new content in namespace {ns} because it is being terminated")


def _allocate(store: Store, obj: dict, current: dict | None) -> dict:
    if obj["kind"] != "Service":
        return obj
    return svcalloc.allocate(obj, current, store.list("Service")[0])


def _checked(obj: dict) -> dict:
    out = apply_defaults(obj)
    validate(out)
    return out


def admit_create(store: Store, obj: dict) -> dict:
    """The object as it would be created: defaulted, validated, allocated; its namespace checked."""
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    for field in (*SERVER_META, "resourceVersion", "generation"):
        meta.pop(field, None)
    if obj.get("kind") == "Pod":
        # the pod strategy's PrepareForCreate: a new pod's status is the server's, and it starts Pending
        # (so the first watch event already says so: `kubectl get pods -w` prints STATUS Pending)
        obj["status"] = {"phase": "Pending"}
    out = _checked(obj)
    check_namespace(store, out)
    return _allocate(store, out, None)


def admit_update(store: Store, obj: dict, current: dict, subresource: str = "") -> dict:
    """The object as an update of `current` would store it.

    On the main resource of a kind with a status subresource the status is kept from `current`; on
    `status` only the status is taken from `obj` (pkg/registry/*/strategy.go PrepareForUpdate)."""
    if subresource == "status":
        new = copy.deepcopy(current)
        new["status"] = copy.deepcopy(obj.get("status"))
        if new["status"] is None:
            del new["status"]
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            new["metadata"]["resourceVersion"] = rv
        else:
            new["metadata"].pop("resourceVersion", None)
    else:
        new = copy.deepcopy(obj)
        if has_status(current["kind"]):
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
    meta = new.setdefault("metadata", {})
    # netk8s's controllers (graceful_delete_op) mark a pod for deletion with an update that sets
    # deletionTimestamp; kube-apiserver would need a DELETE for that. Setting it once is accepted,
    # changing or clearing it is not.
    marking = subresource == "" and not current["metadata"].get("deletionTimestamp") and \
        bool(meta.get("deletionTimestamp"))
    for field in SERVER_META:
        if marking and field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            continue
        if field in current["metadata"]:
            meta[field] = current["metadata"][field]
        else:
            meta.pop(field, None)
    if current["kind"] == "Pod" and (current.get("spec") or {}).get("nodeName"):
        # a bound pod stays on its node (pods/binding sets nodeName once)
        new.setdefault("spec", {})["nodeName"] = current["spec"]["nodeName"]
    out = _checked(new)
    return _allocate(store, out, current)


def dry_run_created(obj: dict, now: str) -> dict:
    """What a dry-run create answers: the object with the metadata the store would give it."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
    key = key_of(out)
    if key[1]:
        meta["namespace"] = key[1]
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now
    meta["generation"] = 1
    meta.pop("resourceVersion", None)
    return out


def dry_run_updated(obj: dict, current: dict) -> dict:
    """What a dry-run update answers: the object with current's resourceVersion and generation bumped
    when the spec changed (as the store would write it)."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    rv = meta.get("resourceVersion")
    if rv not in (None, "") and str(rv) != current["metadata"]["resourceVersion"]:
        raise stale(current)
    meta["resourceVersion"] = current["metadata"]["resourceVersion"]
    generation = int(current["metadata"].get("generation") or 1)
    meta["generation"] = generation + 1 if out.get("spec") != current.get("spec") else generation
    return out


def stale(current: dict) -> Conflict:
    info = kind_info(current["kind"])
    group = info.api_version.split("/")[0] if "/" in info.api_version else ""
    plural = f"{info.plural}.{group}" if group else info.plural
    return Conflict(f'Operation cannot be fulfilled on {plural} "{current["metadata"]["name"]}": the object has '
                    "been modified; please apply your changes to the latest version and try again")


@dataclass
class Deleted:
    """What a delete did: the object (as marked, or as it was when removed) and whether it is gone."""

    obj: dict
    gone: bool


def _mark(store: Store, cur: dict, grace: int, now: str, dry_run: bool) -> dict:
    """Set deletionTimestamp (graceful deletion: the node agent stops the pod, then removes it)."""
    new = copy.deepcopy(cur)
    meta = new["metadata"]
    if meta.get("deletionTimestamp"):
        # a second delete may only shorten the grace period (rest/delete.go BeforeDelete)
        if grace >= int(meta.get("deletionGracePeriodSeconds") or 0):
            return cur
    else:
        meta["deletionTimestamp"] = now
    meta["deletionGracePeriodSeconds"] = grace
    if cur["kind"] == "Namespace":
        new.setdefault("status", {})["phase"] = "Terminating"
    return new if dry_run else store.update(new)


def namespace_empty(store: Store, namespace: str) -> bool:
    """No object of any namespaced kind is left in `namespace`."""
    return all(not store.list(info.kind, namespace)[0] for info in KINDS.values() if info.namespaced)


def _dependents(store: Store, owner: dict) -> list[dict]:
    kinds = DEPENDENT_KINDS.get(owner["kind"], ())
    uid = owner["metadata"].get("uid")
    ns = owner["metadata"].get("namespace") or "default"
    out = []
    for kind in kinds:
        for obj in store.list(kind, ns)[0]:
            if any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or []):
                out.append(obj)
    return out


def _orphan(store: Store, owner: dict, dry_run: bool) -> None:
    uid = owner["metadata"].get("uid")
    for dep in _dependents(store, owner):
        dep["metadata"]["ownerReferences"] = [r for r in dep["metadata"].get("ownerReferences") or []
                                              if r.get("uid") != uid]
        if not dep["metadata"]["ownerReferences"]:
            del dep["metadata"]["ownerReferences"]
        if not dry_run:
            try:
                store.update(dep)
            except (NotFound, Conflict):
                continue  # gone or changed meanwhile: the garbage collector settles it


def delete(store: Store, kind: str, namespace: str, name: str, now: str, grace: int | None = None,
           propagation: str | None = None, precondition_rv: str | None = None,
           precondition_uid: str | None = None, dry_run: bool = False) -> Deleted:
    """Delete like kube-apiserver. A pod bound to a node is marked with deletionTimestamp for its
    grace period (0 removes it now); a Namespace is marked Terminating (the controller empties and
    removes it). Other objects are removed, and their dependents follow: Background/Foreground delete
    them too (pods gracefully), Orphan drops the ownerReference instead. Foreground is served like
    Background with the dependents removed first: the owner does not wait for its pods' graceful stop."""
    if propagation is not None and propagation not in PROPAGATION:
        raise ValidationError(f"propagationPolicy: Unsupported value: {propagation!r}: supported values: "
                              + ", ".join(f'"{p}"' for p in PROPAGATION), field="propagationPolicy",
                              problem=f'Unsupported value: "{propagation}"')
    key = normalize_key(kind, namespace, name)
    cur = store.get(*key)
    meta = cur["metadata"]
    if precondition_uid and precondition_uid != meta.get("uid"):
        raise Conflict(f'Operation cannot be fulfilled on {kind_info(kind).plural} "{name}": Precondition failed: '
                       f"UID in precondition: {precondition_uid}, UID in object meta: {meta.get('uid')}")
    if precondition_rv and str(precondition_rv) != meta["resourceVersion"]:
        raise Conflict(f'Operation cannot be fulfilled on {kind_info(kind).plural} "{name}": Precondition failed: '
                       f"ResourceVersion in precondition: {precondition_rv}, "
                       f"ResourceVersion in object meta: {meta['resourceVersion']}")
    if kind == "Namespace":
        # The first delete marks it Terminating; the namespace controller empties it and deletes it
        # again, which removes it (kube-apiserver: once spec.finalizers are cleared by that controller).
        if not meta.get("deletionTimestamp") or not namespace_empty(store, name):
            return Deleted(_mark(store, cur, 0, now, dry_run), False)
        if dry_run:
            return Deleted(cur, True)
        return Deleted(store.delete(*key, resource_version=precondition_rv), True)
    if kind == "Pod" and (cur.get("spec") or {}).get("nodeName") and grace != 0:
        period = grace if grace is not None else int((cur.get("spec") or {}).get("terminationGracePeriodSeconds",
                                                                                   DEFAULT_POD_GRACE))
        if period > 0:
            return Deleted(_mark(store, cur, period, now, dry_run), False)
    if propagation == "Orphan":
        _orphan(store, cur, dry_run)
    elif DEPENDENT_KINDS.get(kind):
        for dep in _dependents(store, cur):
            try:
                delete(store, dep["kind"], dep["metadata"].get("namespace", ""), dep["metadata"]["name"], now,
                       None, "Background", dry_run=dry_run)
            except NotFound:
                continue
    if dry_run:
        return Deleted(cur, True)
    try:
        return Deleted(store.delete(*key, resource_version=precondition_rv), True)
    except NotFound:
        return Deleted(cur, True)
