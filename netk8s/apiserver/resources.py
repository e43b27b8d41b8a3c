"""The API resources the server serves, derived from model/kinds.py, plus the registry of extra subresources.

Every kind in KINDS becomes a resource at Kubernetes' path (`/api/v1/...` for apiVersion v1,
`/apis/GROUP/VERSION/...` otherwise), so kinds added to the registry later need no route code.
Subresources `status` and `scale` are built in; others (pods/log, pods/exec, pods/portforward) are
added with register() by the modules named in HANDLER_MODULES, which the app imports at start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from netk8s.model.kinds import KINDS, KindInfo

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
# kube-apiserver serves no deletecollection on namespaces (pkg/registry/core/namespace/storage).
NO_DELETECOLLECTION = frozenset({"Namespace"})
# Kinds whose storage has no status subresource (Endpoints, EndpointSlice, ConfigMap, Secret, ...).
NO_STATUS_KINDS = frozenset({"Endpoints", "EndpointSlice", "ConfigMap", "Secret", "IngressClass",
                             "NetworkPolicy", "ServiceAccount", "Event"})
SCALE_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet"})
# Kinds whose DELETE answers with the deleted object instead of a Status (ReturnDeletedObject in
# pkg/registry/core/pod/storage and service/storage; the OpenAPI spec, and so generated clients, say so).
RETURN_DELETED_OBJECT = frozenset({"Pod", "Service"})
# `kubectl get all` expands the "all" category (pkg/registry/*/storage Categories()).
ALL_CATEGORY = frozenset({"Pod", "Service", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet",
                          "Job", "CronJob", "ReplicationController"})

# Modules that register subresource handlers when imported (pods/exec, pods/log, pods/portforward).
HANDLER_MODULES: tuple[str, ...] = ("netk8s.apiserver.streams",)

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Subresource:
    """An extra subresource: `kind`/`name` (Pod/exec), its verbs for discovery, the kind it answers
    with as (group, version, kind), and an aiohttp handler `async (request, target) -> StreamResponse`
    where target is the app's Target (info, namespace, name, subresource) of the request. The request
    is already authenticated and authorized (verb from the HTTP method: GET get, POST create, ...);
    `request.app[netk8s.apiserver.app.APP_KEY]` is the ApiServer (its `store`, `read()` for store calls
    off the event loop). Errors raised as NetK8sError become Status answers."""

    kind: str
    name: str
    verbs: tuple[str, ...]
    response_kind: tuple[str, str, str]
    handler: Handler


SUBRESOURCES: dict[tuple[str, str], Subresource] = {}


def register(sub: Subresource) -> None:
    """Serve `sub` (idempotent: registering the same kind/name again replaces it)."""
    SUBRESOURCES[(sub.kind, sub.name)] = sub


def has_status(kind: str) -> bool:
    return kind not in NO_STATUS_KINDS


def split_api_version(api_version: str) -> tuple[str, str]:
    """("apps", "v1") for apps/v1, ("", "v1") for the core group."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def kinds_of(group_version: str) -> list[KindInfo]:
    return [k for k in KINDS.values() if k.api_version == group_version]


def group_versions() -> list[str]:
    """Every served group/version other than the core v1, in registry order."""
    out: list[str] = []
    for k in KINDS.values():
        if k.api_version != "v1" and k.api_version not in out:
            out.append(k.api_version)
    return out


def by_plural(group_version: str, plural: str) -> KindInfo | None:
    for k in KINDS.values():
        if k.api_version == group_version and k.plural == plural:
            return k
    return None


def subresources_of(info: KindInfo) -> list[tuple[str, tuple[str, ...], tuple[str, str, str]]]:
    """(name, verbs, (group, version, kind)) of each subresource of a kind."""
    group, version = split_api_version(info.api_version)
    out: list[tuple[str, tuple[str, ...], tuple[str, str, str]]] = []
    if has_status(info.kind):
        out.append(("status", ("get", "patch", "update"), (group, version, info.kind)))
    if info.kind in SCALE_KINDS:
        out.append(("scale", ("get", "patch", "update"), ("autoscaling", "v1", "Scale")))
    for (kind, name), sub in sorted(SUBRESOURCES.items()):
        if kind == info.kind:
            out.append((name, sub.verbs, sub.response_kind))
    return out


def verbs_of(info: KindInfo) -> list[str]:
    return [v for v in VERBS if not (v == "deletecollection" and info.kind in NO_DELETECOLLECTION)]
