"""`describe ingress`, `describe ingressclass` and `describe secret` (kubectl's IngressDescriber,
IngressClassDescriber and SecretDescriber: a Secret shows each key's size, never its value)."""

from __future__ import annotations

import base64
import binascii

from netk8s.apiserver.tables import load_balancer_ips
from netk8s.cli.describe.common import (
    Writer,
    annotations_multiline,
    describe_events,
    events_for,
    labels_multiline,
    metadata_block,
)
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import _meta


def secret_sizes(secret: dict) -> dict[str, int]:
    sizes = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            sizes[key] = len(base64.b64decode(str(value), validate=True))
        except (binascii.Error, ValueError):
            sizes[key] = len(str(value))
    return sizes


@describer("Secret")
def describe_secret(w: Writer, secret: dict, related: dict[str, list[dict]], now: float) -> None:
    meta = _meta(secret)
    metadata_block(w, meta, meta.get("namespace", ""))
    w.write(0, f"\nType:\t{secret.get('type') or 'Opaque'}\n\n")
    w.write(0, "Data\n====\n")
    for key, size in sorted(secret_sizes(secret).items()):
        w.write(0, f"{key}:\t{size} bytes\n")


def _backend(backend: dict | None) -> str:
    if not backend:
        return "<default>"
    if backend.get("resource"):
        res = backend["resource"]
        return f"APIGroup: {res.get('apiGroup', '')}, Kind: {res.get('kind', '')}, Name: {res.get('name', '')}"
    svc = backend.get("service") or {}
    port = svc.get("port") or {}
    return f"{svc.get('name', '')}:{port.get('name') or port.get('number', '')}"


@describer("Ingress")
def describe_ingress(w: Writer, ing: dict, related: dict[str, list[dict]], now: float) -> None:
    """describeIngressV1: class, default backend, TLS, the rules table, annotations, events."""
    meta, spec = _meta(ing), ing.get("spec") or {}
    w.write(0, f"Name:\t{meta.get('name', '')}\n")
    labels_multiline(w, "Labels", meta.get("labels"))
    w.write(0, f"Namespace:\t{meta.get('namespace', '')}\n")
    w.write(0, f"Address:\t{load_balancer_ips(ing, True)}\n")
    w.write(0, f"Ingress Class:\t{spec.get('ingressClassName') or '<none>'}\n")
    w.write(0, f"Default backend:\t{_backend(spec.get('defaultBackend'))}\n")
    if spec.get("tls"):
        w.write(0, "TLS:\n")
        for tls in spec["tls"]:
            w.write(1, f"{tls.get('secretName') or 'SNI'} terminates {','.join(tls.get('hosts') or [])}\n")
    w.write(0, "Rules:\n")
    w.write(1, "Host\tPath\tBackends\n")
    w.write(1, "----\t----\t--------\n")
    for rule in spec.get("rules") or []:
        w.write(1, f"{rule.get('host') or '*'}\t\t\n")
        for path in (rule.get("http") or {}).get("paths") or []:
            w.write(2, f"\t{path.get('path', '')}\t{_backend(path.get('backend'))}\n")
    annotations_multiline(w, "Annotations", meta.get("annotations"))
    describe_events(w, events_for(ing, related), now)


@describer("IngressClass")
def describe_ingress_class(w: Writer, cls: dict, related: dict[str, list[dict]], now: float) -> None:
    """describeIngressClassV1: controller and parameters."""
    meta, spec = _meta(cls), cls.get("spec") or {}
    metadata_block(w, meta, None)
    w.write(0, f"Controller:\t{spec.get('controller', '')}\n")
    params = spec.get("parameters")
    if params:
        w.write(0, "Parameters:\n")
        for title, key in (("APIGroup", "apiGroup"), ("Kind", "kind"), ("Name", "name"),
                           ("Namespace", "namespace"), ("Scope", "scope")):
            if params.get(key):
                w.write(1, f"{title}:\t{params[key]}\n")
    describe_events(w, events_for(cls, related), now)
