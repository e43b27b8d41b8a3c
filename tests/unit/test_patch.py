"""PATCH semantics: JSON patch, merge patch, strategic merge patch as kubectl sends it, server-side apply."""

from __future__ import annotations

import copy
import json

import pytest

from netk8s.apiserver.patch import apply_patch, server_side_apply, track_update
from netk8s.errors import Conflict, ValidationError

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONP = "application/json-patch+json"
NOW = "2024-05-01T12:00:00Z"
LAST = "kubectl.kubernetes.io/last-applied-configuration"


def deployment(**spec: object) -> dict:
    base = {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "nginx", "image": "nginx:1.14.2",
                     "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                     "env": [{"name": "A", "value": "1"}],
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                    {"name": "sidecar", "image": "busybox"},
                ],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "tolerations": [{"key": "a", "operator": "Exists"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["one"]}],
            },
        },
    }
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                         "finalizers": ["a/x", "b/y"]},
            "spec": base}


def service() -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}]}}


def pod_status() -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}}


def tpl(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def c0(obj: dict) -> dict:
    return tpl(obj)["containers"][0]


# Each case: (name, kind, current, patch body as kubectl sends it, check(result)).
# The bodies are what `kubectl apply` computes (strategicpatch.CreateThreeWayMergePatch) for the edit in
# the name, or what kubectl patch/label/scale and the kubelet send.
SMP_CASES = [
    ("apply-replicas-3-to-5", "Deployment", deployment(),
     {"metadata": {"annotations": {LAST: "{}"}}, "spec": {"replicas": 5}},
     lambda o: o["spec"]["replicas"] == 5 and o["metadata"]["annotations"][LAST] == "{}"
     and len(tpl(o)["containers"]) == 2),
    ("apply-image-change", "Deployment", deployment(),
     {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                                     "containers": [{"image": "nginx:1.16.1", "name": "nginx"}]}}}},
     lambda o: c0(o)["image"] == "nginx:1.16.1" and c0(o)["ports"][1]["containerPort"] == 443
     and [c["name"] for c in tpl(o)["containers"]] == ["nginx", "sidecar"]),
    ("apply-remove-container-port", "Deployment", deployment(),
     {"spec": {"template": {"spec": {
         "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
         "containers": [{"$setElementOrder/ports": [{"containerPort": 80}], "name": "nginx",
                         "ports": [{"$patch": "delete", "containerPort": 443}]}]}}}},
     lambda o: c0(o)["ports"] == [{"containerPort": 80, "protocol": "TCP"}]),
    ("apply-add-env-keeps-server-only-container", "Deployment", deployment(),
     {"spec": {"template": {"spec": {
         "$setElementOrder/containers": [{"name": "nginx"}],
         "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "B"}], "env": [{"name": "B", "value": "2"}],
                         "name": "nginx"}]}}}},
     lambda o: c0(o)["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
     and [c["name"] for c in tpl(o)["containers"]] == ["nginx", "sidecar"]),
    ("apply-new-container-first", "Deployment", deployment(),
     {"spec": {"template": {"spec": {
         "$setElementOrder/containers": [{"name": "init"}, {"name": "nginx"}, {"name": "sidecar"}],
         "containers": [{"image": "alpine", "name": "init"}]}}}},
     lambda o: [c["name"] for c in tpl(o)["containers"]] == ["init", "nginx", "sidecar"]),
    ("apply-reorder-containers", "Deployment", deployment(),
     {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}]}}}},
     lambda o: [c["name"] for c in tpl(o)["containers"]] == ["sidecar", "nginx"]),
    ("apply-remove-container", "Deployment", deployment(),
     {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                                     "containers": [{"$patch": "delete", "name": "sidecar"}]}}}},
     lambda o: [c["name"] for c in tpl(o)["containers"]] == ["nginx"]),
    ("apply-remove-label", "Deployment", deployment(),
     {"metadata": {"labels": {"tier": None}}},
     lambda o: o["metadata"]["labels"] == {"app": "web"}),
    ("apply-strategy-recreate-retainkeys", "Deployment", deployment(),
     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
     lambda o: o["spec"]["strategy"] == {"type": "Recreate"}),
    ("apply-volume-emptydir-to-configmap", "Deployment", deployment(),
     {"spec": {"template": {"spec": {"$setElementOrder/volumes": [{"name": "data"}],
                                     "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"},
                                                  "emptyDir": None, "name": "data"}]}}}},
     lambda o: tpl(o)["volumes"] == [{"name": "data", "configMap": {"name": "cfg"}}]),
    ("apply-volumemount-by-mountpath", "Deployment", deployment(),
     {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                                     "containers": [{"$setElementOrder/volumeMounts": [{"mountPath": "/data"}],
                                                     "name": "nginx",
                                                     "volumeMounts": [{"mountPath": "/data", "readOnly": True}]}]}}}},
     lambda o: c0(o)["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]),
    ("tolerations-are-replaced", "Deployment", deployment(),
     {"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}},
     lambda o: tpl(o)["tolerations"] == [{"key": "b", "operator": "Exists"}]),
    ("hostaliases-merge-by-ip", "Deployment", deployment(),
     {"spec": {"template": {"spec": {"hostAliases": [{"ip": "10.0.0.2", "hostnames": ["two"]},
                                                     {"ip": "10.0.0.1", "hostnames": ["uno"]}]}}}},
     # no $setElementOrder: the patch's order wins (normalizeElementOrder)
     lambda o: tpl(o)["hostAliases"] == [{"ip": "10.0.0.2", "hostnames": ["two"]},
                                         {"ip": "10.0.0.1", "hostnames": ["uno"]}]),
    ("labels-patch-replace", "Deployment", deployment(),
     {"metadata": {"labels": {"$patch": "replace", "only": "this"}}},
     lambda o: o["metadata"]["labels"] == {"only": "this"}),
    ("finalizers-delete-from-primitive-list", "Deployment", deployment(),
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}},
     lambda o: o["metadata"]["finalizers"] == ["b/y"]),
    ("finalizers-merge-union", "Deployment", deployment(),
     {"metadata": {"finalizers": ["c/z", "a/x"]}},
     # mergeSortedSlice: patch items first unless both are in the live list in the other order
     lambda o: o["metadata"]["finalizers"] == ["c/z", "a/x", "b/y"]),
    ("containers-list-patch-replace", "Deployment", deployment(),
     {"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}},
     lambda o: tpl(o)["containers"] == [{"name": "only", "image": "x"}]),
    ("kubectl-scale-patch", "Deployment", deployment(), {"spec": {"replicas": 0}},
     lambda o: o["spec"]["replicas"] == 0),
    ("service-add-port-keeps-nodeport", "Service", service(),
     {"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
               "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}},
     lambda o: o["spec"]["ports"] == [
         {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080},
         {"name": "https", "port": 443, "targetPort": 8443}] and o["spec"]["clusterIP"] == "10.96.0.20"),
    ("service-change-targetport", "Service", service(),
     {"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"port": 80, "targetPort": 9090}]}},
     lambda o: o["spec"]["ports"][0]["targetPort"] == 9090 and o["spec"]["ports"][0]["nodePort"] == 30080),
    ("service-type-clusterip-nodeport-null", "Service", service(),
     {"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"nodePort": None, "port": 80}],
               "type": "ClusterIP"}},
     lambda o: o["spec"]["type"] == "ClusterIP" and "nodePort" not in o["spec"]["ports"][0]),
    ("kubelet-status-conditions-by-type", "Pod", pod_status(),
     {"status": {"$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
                 "conditions": [{"type": "Ready", "status": "True"}]}},
     lambda o: o["status"]["conditions"] == [{"type": "PodScheduled", "status": "True"},
                                             {"type": "Ready", "status": "True"}]),
    ("unknown-field-list-replaced", "Deployment", deployment(),
     {"spec": {"extra": [1, 2]}},
     lambda o: o["spec"]["extra"] == [1, 2]),
]


@pytest.mark.parametrize(("name", "kind", "current", "body", "check"), SMP_CASES, ids=[c[0] for c in SMP_CASES])
def test_strategic_merge_patch(name: str, kind: str, current: dict, body: dict, check: object) -> None:
    before = copy.deepcopy(current)
    out = apply_patch(SMP, current, json.dumps(body).encode(), kind)
    assert callable(check) and check(out), json.dumps(out, indent=1)
    assert current == before  # the input object is not modified


SMP_ERRORS = [
    ("missing-merge-key", {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
     "spec.template.spec.containers"),
    ("retainkeys-mismatch", {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
     "spec.strategy"),
    ("bad-directive", {"metadata": {"labels": {"$patch": "explode"}}}, "metadata.labels"),
    ("not-an-object", [1], "strategic merge patch must be a JSON object"),
]


@pytest.mark.parametrize(("name", "body", "field"), SMP_ERRORS, ids=[c[0] for c in SMP_ERRORS])
def test_strategic_merge_patch_errors_name_the_field(name: str, body: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        apply_patch(SMP, deployment(), json.dumps(body).encode(), "Deployment")
    assert info.value.message.startswith("patch: ")
    assert field in info.value.message


MERGE_CASES = [
    # RFC 7386 appendix A, with kubectl's own merge patches.
    ("rfc-replace", {"a": "b"}, {"a": "c"}, {"a": "c"}),
    ("rfc-add", {"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ("rfc-remove", {"a": "b"}, {"a": None}, {}),
    ("rfc-remove-nested", {"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ("rfc-array-replaced", {"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ("rfc-nested", {"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ("rfc-array-of-objects", {"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ("rfc-deep", {"e": None}, {"a": {"bb": {"ccc": None}}}, {"e": None, "a": {"bb": {}}}),
    ("kubectl-patch-type-merge-lists-replaced", {"spec": {"ports": [{"port": 80}, {"port": 81}]}},
     {"spec": {"ports": [{"port": 82}]}}, {"spec": {"ports": [{"port": 82}]}}),
]


@pytest.mark.parametrize(("name", "current", "patch", "want"), MERGE_CASES, ids=[c[0] for c in MERGE_CASES])
def test_merge_patch(name: str, current: dict, patch: dict, want: dict) -> None:
    assert apply_patch(MERGE, current, json.dumps(patch).encode(), "Pod") == want


JSON_CASES = [
    ("add-label", [{"op": "add", "path": "/metadata/labels/x", "value": "1"}],
     lambda o: o["metadata"]["labels"]["x"] == "1"),
    ("replace-image", [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:2"}],
     lambda o: c0(o)["image"] == "nginx:2"),
    ("remove-port", [{"op": "remove", "path": "/spec/template/spec/containers/0/ports/1"}],
     lambda o: len(c0(o)["ports"]) == 1),
    ("test-then-replace", [{"op": "test", "path": "/spec/replicas", "value": 3},
                           {"op": "replace", "path": "/spec/replicas", "value": 4}],
     lambda o: o["spec"]["replicas"] == 4),
    ("escaped-label-key", [{"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "w"}],
     lambda o: o["metadata"]["labels"]["app.kubernetes.io/name"] == "w"),
]


@pytest.mark.parametrize(("name", "ops", "check"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_json_patch(name: str, ops: list, check: object) -> None:
    out = apply_patch(JSONP, deployment(), json.dumps(ops).encode(), "Deployment")
    assert callable(check) and check(out)


@pytest.mark.parametrize(("ops", "words"), [
    ([{"op": "test", "path": "/spec/replicas", "value": 9}], "testing value failed"),
    ([{"op": "remove", "path": "/spec/nope"}], "cannot be applied"),
    ([{"op": "jump", "path": "/spec"}], "cannot be applied"),
    ({"op": "add"}, "must be a list"),
], ids=["test-fails", "remove-missing", "bad-op", "not-a-list"])
def test_json_patch_errors(ops: object, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        apply_patch(JSONP, deployment(), json.dumps(ops).encode(), "Deployment")
    assert info.value.message.startswith("patch: ") and words in info.value.message


def test_bad_json_and_unknown_type() -> None:
    with pytest.raises(ValidationError, match="not valid JSON"):
        apply_patch(SMP, deployment(), b"{nope", "Deployment")
    with pytest.raises(ValidationError, match="unsupported patch type"):
        apply_patch("text/plain", deployment(), b"{}", "Deployment")


# ------------------------------------------------------------------------------------ server-side apply


def applied_deployment(replicas: int = 3, image: str = "nginx:1.14.2", env: bool = True) -> dict:
    ctr: dict = {"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}
    if env:
        ctr["env"] = [{"name": "A", "value": "1"}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [ctr]}}}}


def managers(obj: dict) -> list[tuple[str, str]]:
    return [(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]]


def test_apply_creates_with_managed_fields_in_fieldsv1() -> None:
    out = server_side_apply(None, applied_deployment(), "kubectl", False, "Deployment", NOW)
    (entry,) = out["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply" and entry["time"] == NOW
    assert entry["fieldsType"] == "FieldsV1" and entry["apiVersion"] == "apps/v1"
    fields = entry["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {"f:app": {}}}
    ctr = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert ctr["."] == {} and ctr["f:image"] == {}
    # ports are keyed by containerPort and protocol, the protocol defaulted as the schema says.
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in ctr["f:ports"]
    assert "f:replicas" in fields["f:spec"] and "f:name" not in fields["f:metadata"]


def test_apply_twice_is_unchanged() -> None:
    first = server_side_apply(None, applied_deployment(), "kubectl", False, "Deployment", NOW)
    second = server_side_apply(first, applied_deployment(), "kubectl", False, "Deployment", "2024-05-02T00:00:00Z")
    strip = [{k: v for k, v in e.items() if k != "time"} for e in second["metadata"]["managedFields"]]
    assert strip == [{k: v for k, v in e.items() if k != "time"} for e in first["metadata"]["managedFields"]]
    assert {k: v for k, v in second.items() if k != "metadata"} == {k: v for k, v in first.items() if k != "metadata"}


def test_apply_conflict_with_another_manager_names_fields_and_manager() -> None:
    live = server_side_apply(None, applied_deployment(), "kubectl", False, "Deployment", NOW)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    scaled = track_update(live, scaled, "kube-controller-manager", "Deployment", NOW)
    with pytest.raises(Conflict) as info:
        server_side_apply(scaled, applied_deployment(replicas=3), "kubectl", False, "Deployment", NOW)
    assert info.value.message == ('Apply failed with 1 conflict: conflict with "kube-controller-manager" '
                                  'using apps/v1: .spec.replicas')
    assert info.value.causes == [{"reason": "FieldManagerConflict",  # type: ignore[attr-defined]
                                  "message": 'conflict with "kube-controller-manager" using apps/v1',
                                  "field": ".spec.replicas"}]


def test_apply_conflicts_listed_per_manager() -> None:
    live = server_side_apply(None, applied_deployment(), "kubectl", False, "Deployment", NOW)
    edited = copy.deepcopy(live)
    edited["spec"]["replicas"] = 5
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9"
    edited = track_update(live, edited, "kubectl-edit", "Deployment", NOW)
    with pytest.raises(Conflict) as info:
        server_side_apply(edited, applied_deployment(), "kubectl", False, "Deployment", NOW)
    assert info.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-edit" using apps/v1:\n'
        '- .spec.replicas\n- .spec.template.spec.containers[name="nginx"].image')


def test_force_takes_ownership() -> None:
    live = server_side_apply(None, applied_deployment(), "kubectl", False, "Deployment", NOW)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    scaled = track_update(live, scaled, "hpa", "Deployment", NOW)
    out = server_side_apply(scaled, applied_deployment(replicas=2), "kubectl", True, "Deployment", NOW)
    assert out["spec"]["replicas"] == 2
    assert ("hpa", "Update") not in managers(out)  # it owned nothing else


def test_same_value_is_shared_not_a_conflict() -> None:
    live = server_side_apply(None, applied_deployment(), "alice", False, "Deployment", NOW)
    out = server_side_apply(live, applied_deployment(), "bob", False, "Deployment", NOW)
    assert managers(out) == [("alice", "Apply"), ("bob", "Apply")]


def test_fields_dropped_from_config_are_removed_unless_owned_by_others() -> None:
    live = server_side_apply(None, applied_deployment(), "kubectl", False, "Deployment", NOW)
    out = server_side_apply(live, applied_deployment(env=False), "kubectl", False, "Deployment", NOW)
    assert "env" not in out["spec"]["template"]["spec"]["containers"][0]
    shared = server_side_apply(live, applied_deployment(), "other", False, "Deployment", NOW)
    kept = server_side_apply(shared, applied_deployment(env=False), "kubectl", False, "Deployment", NOW)
    assert kept["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_apply_keeps_fields_set_by_others_and_identity() -> None:
    live = server_side_apply(None, applied_deployment(), "kubectl", False, "Deployment", NOW)
    live["metadata"].update(uid="u1", resourceVersion="7", creationTimestamp=NOW)
    live["status"] = {"replicas": 3}
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    out = server_side_apply(live, applied_deployment(image="nginx:2"), "kubectl", False, "Deployment", NOW)
    ctr = out["spec"]["template"]["spec"]["containers"][0]
    assert ctr["image"] == "nginx:2" and ctr["imagePullPolicy"] == "IfNotPresent"
    assert out["metadata"]["uid"] == "u1" and out["status"] == {"replicas": 3}


def test_track_update_records_changed_fields() -> None:
    old = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"a": "1"}
    out = track_update(old, new, "kubectl-label", "Service", NOW)
    (entry,) = out["metadata"]["managedFields"]
    assert entry["operation"] == "Update"
    assert entry["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}}


# ------------------------------------------------------------------- bodies captured from the real kubectl
# Recorded from kubectl v1.32 (`kubectl apply -f` of the edited manifest, `kubectl set image`,
# `kubectl label`) against a server answering with these live objects; the last-applied annotation text
# is shortened to "..." (it is a plain string value to the patch).

LIVE_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                 "annotations": {LAST: "..."}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
             "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                 "containers": [
                     {"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}, {"containerPort": 443}],
                      "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                     {"name": "sidecar", "image": "busybox"}],
                 "volumes": [{"name": "data", "emptyDir": {}}]}}},
}

# d1 -> d2: replicas 5, label tier dropped, strategy Recreate, image bumped, port 443 and the sidecar
# removed, env B added, the volume from emptyDir to a ConfigMap.
KUBECTL_APPLY_EDIT = (
    '{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"..."},"labels":{"tier":null}},'
    '"spec":{"replicas":5,"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"},"template":'
    '{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"$setElementOrder/volumes":[{"name":"data"}],'
    '"containers":[{"$setElementOrder/env":[{"name":"A"},{"name":"B"}],"$setElementOrder/ports":[{"containerPort":80}],'
    '"env":[{"name":"B","value":"2"}],"image":"nginx:1.16.1","name":"nginx","ports":[{"$patch":"delete",'
    '"containerPort":443}]},{"$patch":"delete","name":"sidecar"}],"volumes":[{"$retainKeys":["configMap","name"],'
    '"configMap":{"name":"cfg"},"emptyDir":null,"name":"data"}]}}}}')

# d1 -> d3 while the live object has a container another client injected: container "first" added at the
# top, env A changed, the mount made read-only.
KUBECTL_APPLY_KEEPS_INJECTED = (
    '{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"..."}},"spec":{"template":'
    '{"spec":{"$setElementOrder/containers":[{"name":"first"},{"name":"nginx"},{"name":"sidecar"}],"containers":'
    '[{"image":"alpine","name":"first"},{"$setElementOrder/env":[{"name":"A"}],"$setElementOrder/volumeMounts":'
    '[{"mountPath":"/data"}],"env":[{"name":"A","value":"2"}],"name":"nginx","volumeMounts":[{"mountPath":"/data",'
    '"readOnly":true}]}]}}}}')

KUBECTL_SET_IMAGE = ('{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],'
                     '"containers":[{"image":"nginx:1.17","name":"nginx"}]}}}}')

# A Service's ports: http's targetPort changed, https removed, metrics added first; the live object
# has the NodePorts the server allocated.
KUBECTL_APPLY_SERVICE = (
    '{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"..."}},"spec":'
    '{"$setElementOrder/ports":[{"port":9090},{"port":80}],"ports":[{"name":"metrics","port":9090,'
    '"targetPort":9090},{"port":80,"targetPort":8081},{"$patch":"delete","port":443}]}}')

LIVE_SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "annotations": {LAST: "..."}},
    "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080},
                       {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443, "nodePort": 30443}]},
}


def injected() -> dict:
    live = copy.deepcopy(LIVE_DEPLOYMENT)
    # What the API server made of `kubectl patch -p '{"spec":{"template":{"spec":{"containers":
    # [{"name":"injected","image":"envoy"}]}}}}'`: a patch-only item goes first.
    return apply_patch(SMP, live, b'{"spec":{"template":{"spec":{"containers":[{"name":"injected","image":"envoy"}]}}}}',
                       "Deployment")


CAPTURED = [
    ("apply-edited-deployment", "Deployment", LIVE_DEPLOYMENT, KUBECTL_APPLY_EDIT, {
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {LAST: "..."}},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}}, "strategy": {"type": "Recreate"},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "containers": [{"name": "nginx", "image": "nginx:1.16.1", "ports": [{"containerPort": 80}],
                                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "configMap": {"name": "cfg"}}]}}}}),
    ("apply-keeps-injected-container", "Deployment", injected(), KUBECTL_APPLY_KEEPS_INJECTED, {
        "containers": [{"image": "alpine", "name": "first"}, {"name": "injected", "image": "envoy"},
                       {"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}, {"containerPort": 443}],
                        "env": [{"name": "A", "value": "2"}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}]},
                       {"name": "sidecar", "image": "busybox"}],
        "volumes": [{"name": "data", "emptyDir": {}}]}),
    ("set-image", "Deployment", LIVE_DEPLOYMENT, KUBECTL_SET_IMAGE, {
        "containers": [{**LIVE_DEPLOYMENT["spec"]["template"]["spec"]["containers"][0], "image": "nginx:1.17"},
                       {"name": "sidecar", "image": "busybox"}],
        "volumes": [{"name": "data", "emptyDir": {}}]}),
    ("apply-service-ports", "Service", LIVE_SERVICE, KUBECTL_APPLY_SERVICE, {
        "type": "NodePort", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
        "ports": [{"name": "metrics", "port": 9090, "targetPort": 9090},
                  {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8081, "nodePort": 30080}]}),
]


@pytest.mark.parametrize(("name", "kind", "live", "body", "want"), CAPTURED, ids=[c[0] for c in CAPTURED])
def test_patches_kubectl_sends(name: str, kind: str, live: dict, body: str, want: dict) -> None:
    out = apply_patch(SMP, live, body.encode(), kind)
    if "metadata" in want:
        assert {k: v for k, v in out.items() if k not in ("apiVersion", "kind")} == want
    elif kind == "Service":
        assert out["spec"] == want
    else:
        assert out["spec"]["template"]["spec"] == want


def test_injected_container_went_first() -> None:
    assert [c["name"] for c in tpl(injected())["containers"]] == ["injected", "nginx", "sidecar"]


def test_kubectl_label_removal_merge_patch() -> None:
    out = apply_patch(MERGE, LIVE_DEPLOYMENT, b'{"metadata":{"labels":{"tier":null}}}', "Deployment")
    assert out["metadata"]["labels"] == {"app": "web"}


def test_apply_does_not_modify_its_inputs() -> None:
    live = server_side_apply(None, applied_deployment(), "kubectl", False, "Deployment", NOW)
    live_before, applied = copy.deepcopy(live), applied_deployment(image="nginx:2", env=False)
    applied_before = copy.deepcopy(applied)
    out = server_side_apply(live, applied, "kubectl", False, "Deployment", NOW)
    out["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    assert live == live_before and applied == applied_before
