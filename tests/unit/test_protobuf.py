"""application/vnd.kubernetes.protobuf bodies: the bodies the real kubectl sends, the wire primitives, errors."""

from __future__ import annotations

import pytest

from netk8s.apiserver import protowire as pw
from netk8s.apiserver.decode import decode_body
from netk8s.apiserver.protobuf import decode_protobuf, message_for
from netk8s.errors import ValidationError

PB = "application/vnd.kubernetes.protobuf"

# Request bodies recorded from kubectl v1.34 (`kubectl create service clusterip foo --tcp=80:8080
# --tcp=443:8443`, `create service nodeport np --tcp=80:80 --node-port=30080`, `create configmap cm1
# --from-literal=a=b --from-literal=c=d`, `create secret generic s1 --from-literal=pw=hunter2`,
# `create namespace n1`, `create deployment d2 --image nginx --replicas 0 --port 80`,
# `create service externalname ext --external-name example.com`), as hex.
KUBECTL = {
    "service_clusterip": (
        "6b3873000a0d0a0276311207536572766963651288010a1f0a03666f6f12001a0022002a003200380042005a0a0a0361"
        "70701203666f6f12610a1b0a0738302d38303830120354435018502207080010903f1a0028000a1d0a083434332d3834"
        "3433120354435018bb032207080010fb411a002800120a0a036170701203666f6f1a002209436c757374657249503a00"
        "420052005a00600068001a020a001a002200"
    ),
    "service_nodeport": (
        "6b3873000a0d0a02763112075365727669636512640a1d0a026e7012001a0022002a003200380042005a090a03617070"
        "12026e70123f0a1a0a0538302d3830120354435018502206080010501a002880eb0112090a0361707012026e701a0022"
        "084e6f6465506f72743a00420052005a00600068001a020a001a002200"
    ),
    "configmap": (
        "6b3873000a0f0a0276311209436f6e6669674d617012250a130a03636d3112001a0022002a0032003800420012060a01"
        "6112016212060a01631201641a002200"
    ),
    "secret": (
        "6b3873000a0c0a027631120653656372657412250a120a02733112001a0022002a00320038004200120d0a0270771207"
        "68756e746572321a001a002200"
    ),
    "namespace": (
        "6b3873000a0f0a02763112094e616d657370616365121a0a120a026e3112001a0022002a0032003800420012001a020a"
        "001a002200"
    ),
    "deployment_replicas_0": (
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b4010a1d0a02643212001a0022002a0032003800"
        "42005a090a03617070120264321284010800120b0a090a03617070120264321a6b0a1b0a0012001a0022002a00320038"
        "0042005a090a0361707012026432124c122e0a056e67696e7812056e67696e782a00320a0a001000185022002a004200"
        "6a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00"
        "280038001a0c0800100018002000280038001a002200"
    ),
    "service_externalname": (
        "6b3873000a0d0a027631120753657276696365125a0a1f0a0365787412001a0022002a003200380042005a0a0a036170"
        "7012036578741233120a0a0361707012036578741a00220c45787465726e616c4e616d653a004200520b6578616d706c"
        "652e636f6d5a00600068001a020a001a002200"
    ),
}

# What `kubectl create ... --dry-run=client -o json` prints for the same commands (the JSON shape).
WANT = {
    "service_clusterip": {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "foo", "labels": {"app": "foo"}},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
                           {"name": "443-8443", "protocol": "TCP", "port": 443, "targetPort": 8443}],
                 "selector": {"app": "foo"}, "type": "ClusterIP"},
        "status": {"loadBalancer": {}}},
    "service_nodeport": {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "labels": {"app": "np"}},
        "spec": {"ports": [{"name": "80-80", "protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": 30080}],
                 "selector": {"app": "np"}, "type": "NodePort"},
        "status": {"loadBalancer": {}}},
    "configmap": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "b", "c": "d"}},
    "secret": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"pw": "aHVudGVyMg=="}},
    "namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n1"}, "spec": {}, "status": {}},
    "deployment_replicas_0": {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d2", "labels": {"app": "d2"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d2"}}, "strategy": {},
                 "template": {"metadata": {"labels": {"app": "d2"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                       "ports": [{"containerPort": 80}], "resources": {}}]}}},
        "status": {}},
    "service_externalname": {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "labels": {"app": "ext"}},
        "spec": {"selector": {"app": "ext"}, "type": "ExternalName", "externalName": "example.com"},
        "status": {"loadBalancer": {}}},
}


@pytest.mark.parametrize("name", sorted(KUBECTL))
def test_kubectl_create_bodies(name: str) -> None:
    obj, warnings = decode_body(bytes.fromhex(KUBECTL[name]), PB, None, strict=True)
    assert obj == WANT[name] and warnings == []


# ------------------------------------------------------------------------------------ hand-built bodies


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + field(1, field(1, api_version.encode()) + field(2, kind.encode())) + field(2, raw)


def test_special_types_inline_structs_and_pointer_zeros() -> None:
    # Field numbers from k8s.io/api/core/v1/generated.proto: ObjectMeta name=1 creationTimestamp=8;
    # PodSpec containers=2 terminationGracePeriodSeconds=4 volumes=1; Container name=1 image=2
    # resources=8 readinessProbe=11; Probe handler=1 (embedded ProbeHandler: httpGet=2) timeoutSeconds=2;
    # HTTPGetAction port=2 (IntOrString type=1 strVal=3); Volume name=1 volumeSource=2 (emptyDir=2).
    meta = field(1, b"p") + field(8, field(1, 1714564800))
    port = field(1, 1) + field(3, b"http")
    probe = field(1, field(2, field(2, port))) + field(2, 0)
    limits = field(1, field(1, b"cpu") + field(2, field(1, b"500m")))
    container = field(1, b"c") + field(2, b"busybox") + field(8, limits) + field(11, probe)
    volume = field(1, b"scratch") + field(2, field(2, b""))
    spec = field(1, volume) + field(2, container) + field(4, 0)
    obj = decode_protobuf(envelope("v1", "Pod", field(1, meta) + field(2, spec)))
    assert obj["metadata"] == {"name": "p", "creationTimestamp": "2024-05-01T12:00:00Z"}
    ctr = obj["spec"]["containers"][0]
    assert ctr["readinessProbe"] == {"httpGet": {"port": "http"}}  # ProbeHandler inlined, timeout 0 dropped
    assert ctr["resources"] == {"limits": {"cpu": "500m"}}
    assert obj["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    assert obj["spec"]["terminationGracePeriodSeconds"] == 0  # a pointer field: the explicit 0 stays


def test_int32_sent_as_ten_byte_varint_is_negative() -> None:
    assert pw.signed(pw.read_varint(varint(-1), 0)[0], 32) == -1
    assert pw.signed((1 << 64) - 7, 64) == -7
    assert pw.zigzag(3) == -2 and pw.zigzag(4) == 2
    assert pw.packed_varints(varint(1) + varint(300)) == [1, 300]


def test_unknown_fields_of_newer_clients_are_ignored() -> None:
    raw = field(1, field(1, b"s")) + field(99, b"future")
    assert decode_protobuf(envelope("v1", "ConfigMap", raw)) == {"apiVersion": "v1", "kind": "ConfigMap",
                                                                 "metadata": {"name": "s"}}


def test_message_names() -> None:
    assert message_for("apps/v1", "Deployment") == "k8s.io.api.apps.v1.Deployment"
    assert message_for("discovery.k8s.io/v1", "EndpointSlice") == "k8s.io.api.discovery.v1.EndpointSlice"
    assert message_for("v1", "DeleteOptions") == "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"
    assert message_for("v1", "Nope") is None


@pytest.mark.parametrize(("body", "words"), [
    (b"{}", "missing the k8s"),
    (envelope("v1", "Nope", b""), "no protobuf decoding for v1 Nope"),
    (b"k8s\x00" + b"\x0a\x05ab", "invalid protobuf: truncated"),
    (envelope("v1", "ConfigMap", b"\x0b"), "invalid protobuf: unsupported wire type 3"),
    (b"k8s\x00" + field(1, field(1, b"v1") + field(2, b"ConfigMap")) + field(3, b"gzip"), "contentEncoding"),
], ids=["no-magic", "unknown-kind", "truncated", "group-wire-type", "encoding"])
def test_bad_bodies(body: bytes, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        decode_body(body, PB, None, strict=False)
    assert words in info.value.message


def test_generator_reads_descriptors_from_a_binary() -> None:
    import gzip
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "gen_proto_fields.py"
    spec = importlib.util.spec_from_file_location("gen_proto_fields", path)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    # FileDescriptorProto{name=1, package=2, message_type=4{name=1, field=2{name=1 number=3 label=4 type=5}}}
    fld = field(1, b"replicas") + field(3, 1) + field(4, 1) + field(5, 5)
    msg = field(1, b"ScaleSpec") + field(2, fld)
    fdp = field(1, b"k8s.io/api/autoscaling/v1/generated.proto") + field(2, b"k8s.io.api.autoscaling.v1") + field(4, msg)
    blob = b"\x00junk" + gzip.compress(fdp, mtime=0) + b"more junk"
    (found,) = gen.descriptors(blob)
    out: dict = {}
    gen._message(bytes(field(1, b"ScaleSpec") + field(2, fld)), "k8s.io.api.autoscaling.v1", out)
    assert found == fdp
    assert out == {"k8s.io.api.autoscaling.v1.ScaleSpec": {"fields": {"1": ["replicas", "int32", "", False]}}}
