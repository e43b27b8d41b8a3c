"""application/vnd.kubernetes.protobuf request bodies to objects in their JSON shape.

kubectl's `create` generators (`kubectl create service clusterip`, `create configmap`, `create secret`,
`create namespace`, `create deployment`) send protobuf, not JSON. A body is the 4-byte magic `k8s\\0`
and a runtime.Unknown (typeMeta, raw) whose raw bytes are the object's message
(k8s.io/apimachinery/pkg/runtime/serializer/protobuf). Field numbers and types come from
proto_fields.json, generated from Kubernetes' own descriptors by scripts/gen_proto_fields.py, which also
marks embedded structs (Probe's ProbeHandler, Volume's VolumeSource) that JSON inlines.

The JSON shape follows the types' JSON encoding: Time as RFC 3339, IntOrString as a number or a
string, Quantity as its string, bytes as base64, map entries as objects, RawExtension and FieldsV1 as
the JSON they carry. Go's generated marshalers write every non-pointer field, empty or not, where its
JSON encoding (`omitempty`) leaves zero values out: so empty strings, 0 and false are dropped, except
for the pointer fields in KEEP_ZERO, where an explicit 0 or false means something (`replicas: 0`).
"""

from __future__ import annotations

import base64
import json
import struct
from functools import cache
from importlib import resources
from typing import Any

from netk8s.apiserver import protowire as pw
from netk8s.errors import ValidationError
from netk8s.model.schema import split_api_version
from netk8s.model.status import rfc3339

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
META = "k8s.io.apimachinery.pkg.apis.meta.v1."
UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"

# Pointer fields (*int32, *int64, *bool in the Go types) of the served kinds, as `Message.field`:
# the marshaler writes them only when set, so a 0 or false on the wire is the client's explicit value.
KEEP_ZERO = frozenset({
    "DeploymentSpec.replicas", "ReplicaSetSpec.replicas", "StatefulSetSpec.replicas", "ScaleSpec.replicas",
    "DeploymentSpec.revisionHistoryLimit", "DeploymentSpec.progressDeadlineSeconds",
    "StatefulSetSpec.revisionHistoryLimit", "RollingUpdateStatefulSetStrategy.partition",
    "PodSpec.terminationGracePeriodSeconds", "PodSpec.activeDeadlineSeconds", "PodSpec.enableServiceLinks",
    "PodSpec.automountServiceAccountToken", "PodSpec.shareProcessNamespace", "PodSpec.setHostnameAsFQDN",
    "PodSpec.hostUsers", "PodSpec.priority", "Probe.terminationGracePeriodSeconds",
    "PodSecurityContext.runAsUser", "PodSecurityContext.runAsGroup", "PodSecurityContext.fsGroup",
    "PodSecurityContext.runAsNonRoot", "SecurityContext.runAsUser", "SecurityContext.runAsGroup",
    "SecurityContext.runAsNonRoot", "SecurityContext.privileged", "SecurityContext.readOnlyRootFilesystem",
    "SecurityContext.allowPrivilegeEscalation", "ServiceSpec.allocateLoadBalancerNodePorts",
    "ClientIPConfig.timeoutSeconds", "ConfigMap.immutable", "Secret.immutable", "EndpointConditions.ready",
    "EndpointConditions.serving", "EndpointConditions.terminating", "EndpointPort.port",
    "ConfigMapKeySelector.optional", "SecretKeySelector.optional", "ConfigMapVolumeSource.optional",
    "SecretVolumeSource.optional", "ConfigMapVolumeSource.defaultMode", "SecretVolumeSource.defaultMode",
    "KeyToPath.mode", "ObjectMeta.deletionGracePeriodSeconds", "DeleteOptions.gracePeriodSeconds",
    "DeleteOptions.orphanDependents",
})


@cache
def messages() -> dict[str, dict]:
    text = (resources.files("netk8s.apiserver") / "proto_fields.json").read_text(encoding="utf-8")
    table: dict[str, dict] = json.loads(text)["messages"]
    return table


def message_for(api_version: str, kind: str) -> str | None:
    """`apps/v1` Deployment -> k8s.io.api.apps.v1.Deployment (meta kinds such as DeleteOptions too)."""
    group, version = split_api_version(api_version)
    package = group.split(".", 1)[0] if group else "core"
    for name in (f"k8s.io.api.{package}.{version}.{kind}", META + kind):
        if name in messages():
            return name
    return None


def _time(seconds: int, nanos: int, micro: bool) -> str | None:
    if seconds == 0 and nanos == 0:
        return None  # the zero Time marshals as null
    stamp = rfc3339(seconds)
    if micro:
        return stamp.removesuffix("Z") + f".{nanos // 1000:06d}Z"  # metav1.MicroTime: RFC 3339, microseconds
    return stamp


def _duration(ns: int) -> str:
    """Go's time.Duration.String() for whole units (metav1.Duration's JSON form)."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = rest / 10**9
    text = f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _scalar(typ: str, wire: int, value: int | bytes) -> Any:
    if typ == "string":
        return bytes(value).decode("utf-8") if isinstance(value, bytes) else value
    if typ == "bytes":
        return base64.b64encode(bytes(value)).decode() if isinstance(value, bytes) else value
    if isinstance(value, bytes):
        raise pw.WireError(f"a {typ} field sent as bytes")
    if typ == "bool":
        return bool(value)
    if typ in ("int32", "int64"):
        return pw.signed(value, 32 if typ == "int32" else 64)
    if typ in ("sint32", "sint64"):
        return pw.zigzag(value)
    if typ in ("double", "float"):
        return struct.unpack("<d" if typ == "double" else "<f",
                             value.to_bytes(8 if typ == "double" else 4, "little"))[0]
    return value


def _special(name: str, raw: dict[int, Any]) -> tuple[bool, Any]:
    """The JSON form of the wrapper types; (False, None) for an ordinary message."""
    if name in (META + "Time", META + "MicroTime"):
        return True, _time(int(raw.get(1, 0)), int(raw.get(2, 0)), name.endswith("MicroTime"))
    if name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        if int(raw.get(1, 0)) == 1:
            return True, bytes(raw.get(3, b"")).decode()
        return True, pw.signed(int(raw.get(2, 0)), 32)
    if name == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        return True, bytes(raw.get(1, b"")).decode()
    if name == META + "Duration":
        return True, _duration(pw.signed(int(raw.get(1, 0)), 64))
    if name in ("k8s.io.apimachinery.pkg.runtime.RawExtension", META + "FieldsV1"):
        data = bytes(raw.get(1, b""))
        return True, json.loads(data) if data else None
    return False, None


def decode_message(data: bytes, name: str) -> Any:
    """One message as JSON-shaped data."""
    spec = messages().get(name)
    if spec is None:
        raise pw.WireError(f"no protobuf description of {name}")
    table = spec["fields"]
    if name.startswith((META + "Time", META + "MicroTime", META + "Duration", META + "FieldsV1",
                        "k8s.io.apimachinery.pkg.util.intstr.", "k8s.io.apimachinery.pkg.api.resource.",
                        "k8s.io.apimachinery.pkg.runtime.RawExtension")):
        raw: dict[int, Any] = {n: v for n, _, v in pw.fields(data)}
        return _special(name, raw)[1]
    out: dict[str, Any] = {}
    for number, wire, value in pw.fields(data):
        info = table.get(str(number))
        if info is None:
            continue  # a newer client's field: ignored, as the Go decoder does
        field, typ, type_name, repeated = info[:4]
        if typ == "message" and len(info) > 4:  # an embedded Go struct: inlined in JSON
            if not isinstance(value, bytes):
                raise pw.WireError(f"{name}.{field}: a message sent as a number")
            out.update(decode_message(value, type_name))
            continue
        if typ == "message":
            if not isinstance(value, bytes):
                raise pw.WireError(f"{name}.{field}: a message sent as a number")
            sub = messages().get(type_name) or {}
            if sub.get("map"):
                entry = decode_message(value, type_name)
                out.setdefault(field, {})[entry.get("key", "")] = entry.get("value", _empty(sub))
                continue
            item = decode_message(value, type_name)
        elif repeated and wire == pw.LENGTH and typ not in ("string", "bytes"):
            out.setdefault(field, []).extend(_scalar(typ, pw.VARINT, v) for v in pw.packed_varints(bytes(value)))
            continue
        else:
            item = _scalar(typ, wire, value)
        if repeated:
            out.setdefault(field, []).append(item)
        elif item is None or item == "" or (item in (0, False) and typ != "message"
                                            and f"{name.rsplit('.', 1)[-1]}.{field}" not in KEEP_ZERO):
            continue
        else:
            out[field] = item
    return out


def _empty(entry: dict) -> Any:
    """The value of a map entry that sent none: "" for strings, {} for messages."""
    value = entry["fields"].get("2") or ["", "string", "", False]
    return {} if value[1] == "message" else "" if value[1] in ("string", "bytes") else 0


def decode_protobuf(body: bytes) -> dict:
    """A Kubernetes protobuf body (magic, runtime.Unknown) as the object's JSON-shaped dict."""
    if not body.startswith(MAGIC):
        raise ValidationError("body: not a Kubernetes protobuf message (missing the k8s\\0 prefix)")
    try:
        envelope = {n: v for n, _, v in pw.fields(body[len(MAGIC):])}
        type_meta = {n: bytes(v).decode() for n, _, v in pw.fields(bytes(envelope.get(1, b"")))}
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        encoding = bytes(envelope.get(3, b"")).decode()
        if encoding:
            raise ValidationError(f"body: protobuf contentEncoding {encoding!r} is not supported")
        name = message_for(api_version, kind)
        if name is None:
            raise ValidationError(f"body: no protobuf decoding for {api_version or '?'} {kind or '?'}")
        obj = decode_message(bytes(envelope.get(2, b"")), name)
    except (pw.WireError, UnicodeDecodeError, ValueError) as err:
        raise ValidationError(f"body: invalid protobuf: {err}") from None
    if not isinstance(obj, dict):
        raise ValidationError("body: the protobuf message is not an object")
    return {"apiVersion": api_version, "kind": kind, **obj}
