"""Validation of networking.k8s.io/v1 Ingress and IngressClass and of v1 Secret, as kube-apiserver does it.

Rules and wording follow pkg/apis/networking/validation/validation.go (ValidateIngressSpec,
validateIngressBackend, validateHTTPIngressPath, ValidateIngressClass) and pkg/apis/core/validation
(ValidateSecret, IsConfigMapKey, IsWildcardDNS1123Subdomain). The field helpers are validate.py's;
validate.py looks these functions up by kind.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable

from netk8s.model import networking
from netk8s.model.validate import (
    _enum,
    _fail,
    _int,
    _is_int,
    _list,
    _mapping,
    _name,
    _show,
    _str,
    dns1123_subdomain_error,
    iana_svc_name_error,
)

CONFIG_MAP_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")
# apimachinery IsDomainPrefixedPath: a DNS subdomain, '/', then a path of these characters.
PATH_SEGMENT_RE = re.compile(r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+")
MAX_SECRET_BYTES = 1024 * 1024
MAX_CONTROLLER_LEN = 250
# validateHTTPIngressPath: what an Exact or Prefix path may not contain or end with.
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")
PARAMETER_SCOPES = ("Cluster", "Namespace")


def _host(value: object, path: str) -> None:
    """A rule or TLS host: a DNS-1123 subdomain, or `*.` and one (IsWildcardDNS1123Subdomain); no IP."""
    text = _str(value, path)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        _fail(path, f"must be a DNS name, not an IP address, got {_show(text)}")
    if "*" in text:
        rest = text[2:] if text.startswith("*.") else ""
        if not rest or "*" in rest or dns1123_subdomain_error(rest):
            _fail(path, "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain "
                        f"(e.g. '*.example.com'), got {_show(text)}")
        return
    err = dns1123_subdomain_error(text)
    if err:
        _fail(path, err)


def _backend(value: object, path: str) -> None:
    backend = _mapping(value, path, required=True)
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        _fail(path, "cannot set both service and resource backends")
    if service is None and resource is None:
        _fail(path, "one backend (`service` or `resource`) must be specified")
    if resource is not None:
        res = _mapping(resource, f"{path}.resource")
        for key in ("kind", "name"):
            if not res.get(key):
                _fail(f"{path}.resource.{key}", "is required")
        if res.get("apiGroup") is not None:
            _str(res["apiGroup"], f"{path}.resource.apiGroup")
        return
    svc = _mapping(service, f"{path}.service")
    _name(svc.get("name"), f"{path}.service.name", "dns1035")
    port = _mapping(svc.get("port"), f"{path}.service.port", required=True)
    name, number = port.get("name"), port.get("number")
    if name not in (None, "") and number not in (None, 0):
        _fail(f"{path}.service.port", "cannot set both port name & port number")
    if name not in (None, ""):
        err = iana_svc_name_error(_str(name, f"{path}.service.port.name"))
        if err:
            _fail(f"{path}.service.port.name", err)
    elif number not in (None, 0):
        if not _is_int(number):
            _fail(f"{path}.service.port.number", f"must be an integer between 1 and 65535, got {_show(number)}")
        _int(number, f"{path}.service.port.number", 1, 65535)
    else:
        _fail(f"{path}.service.port", "port name or number is required")


def _http_path(value: object, path: str) -> None:
    item = _mapping(value, path)
    if item.get("pathType") in (None, ""):
        _fail(f"{path}.pathType", "is required: pathType must be specified (Exact, Prefix or ImplementationSpecific)")
    path_type = _enum(item["pathType"], f"{path}.pathType", networking.PATH_TYPES)
    text = _str(item.get("path", ""), f"{path}.path") if item.get("path") is not None else ""
    if path_type in ("Exact", "Prefix"):
        if not text.startswith("/"):
            _fail(f"{path}.path", f"must be an absolute path, got {_show(text)}")
        for seq in INVALID_PATH_SEQUENCES:
            if seq in text:
                _fail(f"{path}.path", f"must not contain '{seq}', got {_show(text)}")
        for suffix in INVALID_PATH_SUFFIXES:
            if text.endswith(suffix):
                _fail(f"{path}.path", f"cannot end with '{suffix}', got {_show(text)}")
    elif text and not text.startswith("/"):
        _fail(f"{path}.path", f"must be an absolute path, got {_show(text)}")
    _backend(item.get("backend"), f"{path}.backend")


def validate_ingress(obj: dict) -> None:
    spec = _mapping(obj.get("spec"), "spec", required=True)
    rules = _list(spec.get("rules"), "spec.rules")
    if spec.get("defaultBackend") is None and not rules:
        _fail("spec", "either `defaultBackend` or `rules` must be specified")
    if spec.get("defaultBackend") is not None:
        _backend(spec["defaultBackend"], "spec.defaultBackend")
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        _name(class_name, "spec.ingressClassName")
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if networking.CLASS_ANNOTATION in annotations:
            _fail(f"metadata.annotations[{networking.CLASS_ANNOTATION}]",
                  "can not be set when the class field is also set")
    for i, rule_value in enumerate(rules):
        where = f"spec.rules[{i}]"
        rule = _mapping(rule_value, where)
        if rule.get("host") not in (None, ""):
            _host(rule["host"], f"{where}.host")
        http = rule.get("http")
        if http is None:
            continue
        paths = _list(_mapping(http, f"{where}.http").get("paths"), f"{where}.http.paths")
        if not paths:
            _fail(f"{where}.http.paths", "is required: at least one path")
        for j, p in enumerate(paths):
            _http_path(p, f"{where}.http.paths[{j}]")
    for i, tls_value in enumerate(_list(spec.get("tls"), "spec.tls")):
        tls = _mapping(tls_value, f"spec.tls[{i}]")
        for j, host in enumerate(_list(tls.get("hosts"), f"spec.tls[{i}].hosts")):
            _host(host, f"spec.tls[{i}].hosts[{j}]")
        if tls.get("secretName") not in (None, ""):
            _name(tls["secretName"], f"spec.tls[{i}].secretName")


def validate_ingress_class(obj: dict) -> None:
    spec = _mapping(obj.get("spec"), "spec")
    controller = spec.get("controller")
    if controller in (None, ""):
        _fail("spec.controller", "is required (a domain-prefixed path such as k8s.io/ingress-nginx)")
    text = _str(controller, "spec.controller")
    if len(text) > MAX_CONTROLLER_LEN:
        _fail("spec.controller", f"must be no more than {MAX_CONTROLLER_LEN} characters, got {len(text)}")
    domain, slash, rest = text.partition("/")
    if not slash or not rest or dns1123_subdomain_error(domain) or not PATH_SEGMENT_RE.fullmatch(rest):
        _fail("spec.controller", f"must be a domain-prefixed path (such as k8s.io/ingress-nginx), got {_show(text)}")
    if spec.get("parameters") is not None:
        params = _mapping(spec["parameters"], "spec.parameters")
        for key in ("kind", "name"):
            if not params.get(key):
                _fail(f"spec.parameters.{key}", "is required")
        scope = params.get("scope")
        if scope is not None:
            _enum(scope, "spec.parameters.scope", PARAMETER_SCOPES)
        if scope == "Namespace" and not params.get("namespace"):
            _fail("spec.parameters.namespace", "is required when scope is Namespace")
        if scope != "Namespace" and params.get("namespace"):
            _fail("spec.parameters.namespace", "must not be set when scope is Cluster")


def validate_secret(obj: dict) -> None:
    secret_type = _str(obj.get("type"), "type")
    data = _mapping(obj.get("data"), "data")
    total = 0
    for key, value in data.items():
        path = f"data[{key}]"
        if not isinstance(key, str) or len(key) > 253 or not CONFIG_MAP_KEY_RE.fullmatch(key):
            _fail(path, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'")
        text = _str(value, path)
        try:
            total += len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            _fail(path, "must be base64-encoded (use stringData for plain text)")
    if total > MAX_SECRET_BYTES:
        _fail("data", f"may not be more than {MAX_SECRET_BYTES} bytes, got {total}")
    if secret_type == networking.TLS_SECRET_TYPE:
        for key in (networking.TLS_CERT_KEY, networking.TLS_PRIVATE_KEY_KEY):
            if key not in data:
                _fail(f"data[{key}]", f"is required for a {networking.TLS_SECRET_TYPE} Secret")
    if obj.get("immutable") is not None and not isinstance(obj["immutable"], bool):
        _fail("immutable", f"must be true or false, got {_show(obj['immutable'])}")


VALIDATORS: dict[str, Callable[[dict], None]] = {
    "Ingress": validate_ingress,
    "IngressClass": validate_ingress_class,
    "Secret": validate_secret,
}
