"""Ingress, IngressClass and Secret helpers shared by validation, the API and the ingress controller: the
v1beta1 -> v1 Ingress conversion, Secret defaulting (stringData -> data) and the class-selection rules.

Pure: no I/O. Conversion follows kubernetes pkg/apis/networking/v1beta1/conversion.go (serviceName and
servicePort become service.name and service.port.number or .name; spec.backend becomes
spec.defaultBackend; v1beta1 defaults pathType to ImplementationSpecific, pkg/apis/networking/v1beta1
/defaults.go).
"""

from __future__ import annotations

import base64
import copy

from netk8s.errors import ValidationError

NETWORKING_V1 = "networking.k8s.io/v1"
# API versions kube-apiserver served Ingress in before networking.k8s.io/v1 (removed in 1.22).
LEGACY_INGRESS_VERSIONS = ("networking.k8s.io/v1beta1", "extensions/v1beta1")
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
TLS_SECRET_TYPE = "kubernetes.io/tls"
TLS_CERT_KEY = "tls.crt"
TLS_PRIVATE_KEY_KEY = "tls.key"
# IngressClass annotation that marks the cluster's default class (networking/v1 IngressClass docs).
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
# The deprecated class annotation, still honoured by ingress-nginx when spec.ingressClassName is unset.
CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def is_legacy_ingress(obj: object) -> bool:
    return (isinstance(obj, dict) and obj.get("kind") == "Ingress"
            and obj.get("apiVersion") in LEGACY_INGRESS_VERSIONS)


def _convert_backend(backend: object, path: str, moved: list[str]) -> object:
    """A v1beta1 IngressBackend as a v1 one; `moved` collects the renamed fields' paths."""
    if not isinstance(backend, dict) or not ({"serviceName", "servicePort"} & backend.keys()):
        return backend
    out = {k: v for k, v in backend.items() if k not in ("serviceName", "servicePort")}
    service: dict = {"name": backend.get("serviceName")}
    port = backend.get("servicePort")
    if isinstance(port, str) and not port.isdigit():
        service["port"] = {"name": port}
        moved.append(f"{path}.serviceName/servicePort -> {path}.service.name/service.port.name")
    else:
        service["port"] = {"number": int(port) if isinstance(port, str) else port}
        moved.append(f"{path}.serviceName/servicePort -> {path}.service.name/service.port.number")
    out["service"] = service
    return out


def convert_legacy_ingress(obj: dict) -> tuple[dict, str]:
    """A networking.k8s.io/v1beta1 (or extensions/v1beta1) Ingress as networking.k8s.io/v1, and the warning
    kube-apiserver-style clients print: the removed version and every field that moved.

    Tolerant of malformed input: what does not have the expected shape is left for validation to report.
    """
    old_version = obj.get("apiVersion")
    out = copy.deepcopy(obj)
    out["apiVersion"] = NETWORKING_V1
    moved: list[str] = []
    spec = out.get("spec")
    if isinstance(spec, dict):
        if "backend" in spec:
            spec["defaultBackend"] = _convert_backend(spec.pop("backend"), "spec.backend", moved)
            moved.append("spec.backend -> spec.defaultBackend")
        rules = spec.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            http = rule.get("http") if isinstance(rule, dict) else None
            paths = http.get("paths") if isinstance(http, dict) else None
            for j, p in enumerate(paths if isinstance(paths, list) else []):
                if not isinstance(p, dict):
                    continue
                where = f"spec.rules[{i}].http.paths[{j}]"
                if "backend" in p:
                    p["backend"] = _convert_backend(p["backend"], f"{where}.backend", moved)
                if p.get("pathType") in (None, ""):
                    p["pathType"] = "ImplementationSpecific"
                    moved.append(f"{where}.pathType defaulted to ImplementationSpecific")
    warning = (f"{old_version} Ingress is deprecated in v1.19+, unavailable in v1.22+; "
               f"converted to {NETWORKING_V1} Ingress")
    if moved:
        warning += " (" + "; ".join(moved) + ")"
    return out, warning


def default_secret(obj: dict) -> None:
    """Secret defaults: type Opaque; stringData merged into data as base64 (it wins on a clash) and
    dropped, as the API server stores Secrets (pkg/apis/core/v1/conversion.go)."""
    if obj.get("type") in (None, ""):
        obj["type"] = "Opaque"
    string_data = obj.get("stringData")
    if isinstance(string_data, dict) and all(isinstance(v, str) for v in string_data.values()):
        data: dict = obj["data"] if isinstance(obj.get("data"), dict) else {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()
        obj["data"] = data
        del obj["stringData"]


def secret_bytes(secret: dict, key: str) -> bytes | None:
    """One decoded value of a Secret's data, or None when missing or not base64."""
    value = (secret.get("data") or {}).get(key)
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def ingress_class_of(ingress: dict) -> str | None:
    """The class an Ingress asks for: spec.ingressClassName, else the deprecated annotation, else None."""
    name = (ingress.get("spec") or {}).get("ingressClassName")
    if name:
        return str(name)
    annotation = ((ingress.get("metadata") or {}).get("annotations") or {}).get(CLASS_ANNOTATION)
    return str(annotation) if annotation else None


def default_class_names(classes: list[dict]) -> list[str]:
    """The IngressClasses annotated as the cluster default, sorted."""
    return sorted(c["metadata"]["name"] for c in classes
                  if ((c.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true")


def admit_default_class(ingress: dict, classes: list[dict]) -> dict:
    """kube-apiserver's DefaultIngressClass admission (on create): an Ingress with neither
    spec.ingressClassName nor the class annotation gets the default IngressClass's name. More than one
    default class is refused (plugin/pkg/admission/network/defaultingressclass)."""
    spec = ingress.get("spec")
    if not isinstance(spec, dict) or spec.get("ingressClassName") is not None:
        return ingress
    if CLASS_ANNOTATION in ((ingress.get("metadata") or {}).get("annotations") or {}):
        return ingress
    defaults = default_class_names(classes)
    if len(defaults) > 1:
        name = (ingress.get("metadata") or {}).get("name", "?")
        raise ValidationError(f"ingress/{name}: {len(defaults)} default IngressClasses were found, only 1 allowed "
                              f"({', '.join(defaults)})",
                              hint=f"set spec.ingressClassName, or remove {DEFAULT_CLASS_ANNOTATION} from all but one")
    if not defaults:
        return ingress
    out = copy.deepcopy(ingress)
    out["spec"]["ingressClassName"] = defaults[0]
    return out
