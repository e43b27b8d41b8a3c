"""Registry of the object kinds netk8s knows: apiVersion, plural/short names, scope."""

from __future__ import annotations

from dataclasses import dataclass

from netk8s.errors import ValidationError


@dataclass(frozen=True)
class KindInfo:
    kind: str
    api_version: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool


KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo("Namespace", "v1", "namespaces", ("ns",), False),
        KindInfo("Node", "v1", "nodes", ("no",), False),
        KindInfo("Pod", "v1", "pods", ("po",), True),
        KindInfo("Service", "v1", "services", ("svc",), True),
        KindInfo("Endpoints", "v1", "endpoints", ("ep",), True),
        KindInfo("ConfigMap", "v1", "configmaps", ("cm",), True),
        KindInfo("EndpointSlice", "discovery.k8s.io/v1", "endpointslices", (), True),
        KindInfo("Deployment", "apps/v1", "deployments", ("deploy",), True),
        KindInfo("ReplicaSet", "apps/v1", "replicasets", ("rs",), True),
        KindInfo("StatefulSet", "apps/v1", "statefulsets", ("sts",), True),
        KindInfo("Secret", "v1", "secrets", (), True),
        KindInfo("Ingress", "networking.k8s.io/v1", "ingresses", ("ing",), True),
        KindInfo("IngressClass", "networking.k8s.io/v1", "ingressclasses", (), False),
        KindInfo("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", ("netpol",), True),
    )
}


def resolve_kind(word: str) -> KindInfo:
    """Map what a user types (`pod`, `pods`, `po`, `Pod`, `deploy`, `deployment.apps`) to a kind."""
    w = word.strip().lower().split(".", 1)[0]
    for info in KINDS.values():
        if w in (info.kind.lower(), info.plural, *info.short_names):
            return info
    raise ValidationError(f'error: the server doesn\'t have a resource type "{word}"')


def kind_info(kind: str) -> KindInfo:
    """The KindInfo of a canonical kind name (`Pod`)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValidationError(f"kind: unknown kind {kind!r}") from None


def object_key(obj: dict) -> tuple[str, str, str]:
    """(kind, namespace, name) of an object; namespace is "" for cluster-scoped kinds."""
    meta = obj.get("metadata") or {}
    kind = obj["kind"]
    ns = meta.get("namespace", "default") if kind_info(kind).namespaced else ""
    return kind, ns or "", meta["name"]


def ref(obj: dict) -> str:
    """kubectl's `kind/name` reference, used in messages (`deployment/web`)."""
    return f"{obj.get('kind', '?').lower()}/{(obj.get('metadata') or {}).get('name', '?')}"
