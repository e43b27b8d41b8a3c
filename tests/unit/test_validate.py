"""Validation and defaulting: a table of invalid manifest files, the valid examples, and unit cases."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from netk8s.cli.manifests import load_documents
from netk8s.errors import ValidationError
from netk8s.model.defaults import apply_defaults
from netk8s.model.validate import validate, validate_batch

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
INVALID = sorted((MANIFESTS / "invalid").glob("*.yaml"))
VALID = sorted((MANIFESTS / "valid").glob("*.yaml"))


def _expectations(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return [ln[len("# expect: "):] for ln in lines if ln.startswith("# expect: ")]


def test_the_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 35


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_manifest_is_refused(path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        validate_batch(load_documents([str(path)]))
    message = info.value.message
    assert "\n" not in message and str(info.value) == message
    for expected in _expectations(path):
        assert expected in message, f"{path.name}: {expected!r} not in {message!r}"


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_manifest_passes(path: Path) -> None:
    docs = load_documents([str(path)])
    assert docs
    out = validate_batch(docs)
    assert len(out) == len(docs)
    for (_, raw), defaulted in zip(docs, out):
        assert defaulted["kind"] == raw["kind"]
        validate(defaulted)  # validating again is stable


def test_valid_directory_loads_as_one_batch() -> None:
    out = validate_batch(load_documents([str(MANIFESTS / "valid")]))
    kinds = {o["kind"] for o in out}
    assert kinds >= {"Deployment", "Service", "StatefulSet", "Endpoints", "EndpointSlice", "Pod",
                     "Namespace", "ReplicaSet"}


# ---------------------------------------------------------------------------------------------------------
# unit cases


def pod(**spec_extra: object) -> dict:
    spec = {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}]}
    spec.update(spec_extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec}


def service(**spec: object) -> dict:
    base: dict = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": base}


def deployment(selector: dict, labels: dict) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": selector, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
    }


def error_of(obj: dict) -> str:
    with pytest.raises(ValidationError) as info:
        validate(apply_defaults(obj))
    assert "\n" not in info.value.message
    return info.value.message


CASES = [
    ("pod ok", pod(), None),
    ("generateName ok", {**pod(), "metadata": {"generateName": "web-"}}, None),
    ("generateName bad", {**pod(), "metadata": {"generateName": "Web-"}},
     "pod/Web-: metadata.generateName must be a lowercase RFC 1123 subdomain"),
    ("namespace bad", {**pod(), "metadata": {"name": "x", "namespace": "Prod"}}, "metadata.namespace must be"),
    ("kind case", {**pod(), "kind": "pod"}, 'kind "pod" is not a kind netk8s serves'),
    ("apiVersion missing", {k: v for k, v in pod().items() if k != "apiVersion"},
     "pod/x: apiVersion is required (use v1 for Pod)"),
    ("hostPort", pod(containers=[{"name": "a", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": -1}]}]),
     "spec.containers[0].ports[0].hostPort must be between 1 and 65535, got -1"),
    ("containerPort string", pod(containers=[{"name": "a", "image": "nginx", "ports": [{"containerPort": "80"}]}]),
     'containerPort must be an integer between 1 and 65535, got "80"'),
    ("containerPort bool", pod(containers=[{"name": "a", "image": "nginx", "ports": [{"containerPort": True}]}]),
     "containerPort must be an integer between 1 and 65535, got true"),
    ("container name upper", pod(containers=[{"name": "App", "image": "nginx"}]),
     "spec.containers[0].name must be a lowercase RFC 1123 label"),
    ("probe named port ok", pod(containers=[{"name": "a", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}],
                                             "readinessProbe": {"tcpSocket": {"port": "http"}}}]), None),
    ("probe port range", pod(containers=[{"name": "a", "image": "nginx",
                                          "livenessProbe": {"tcpSocket": {"port": 0}}}]),
     "spec.containers[0].livenessProbe.tcpSocket.port must be between 1 and 65535, got 0"),
    ("probe period", pod(containers=[{"name": "a", "image": "nginx",
                                      "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 0}}]),
     "readinessProbe.periodSeconds must be greater than or equal to 1, got 0"),
    ("liveness success", pod(containers=[{"name": "a", "image": "nginx",
                                          "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}]),
     "livenessProbe.successThreshold must be 1"),
    ("exec empty", pod(containers=[{"name": "a", "image": "nginx", "readinessProbe": {"exec": {"command": []}}}]),
     "readinessProbe.exec.command is required"),
    ("dnsPolicy bogus", pod(dnsPolicy="Cluster"), 'spec.dnsPolicy must be one of ClusterFirst'),
    ("dnsPolicy None ok", pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"]}), None),
    ("too many nameservers", pod(dnsConfig={"nameservers": ["1.1.1.1", "1.0.0.1", "8.8.8.8", "9.9.9.9"]}),
     "spec.dnsConfig.nameservers must have at most 3 entries"),
    ("hostname", pod(hostname="Web_1"), "spec.hostname must be a lowercase RFC 1123 label"),
    ("subdomain", pod(subdomain="a.b"), "spec.subdomain must be a lowercase RFC 1123 label"),
    ("nodeName", pod(nodeName="Node_1"), "spec.nodeName must be a lowercase RFC 1123 subdomain"),
    ("grace", pod(terminationGracePeriodSeconds=-5), "spec.terminationGracePeriodSeconds must be greater"),
    ("env name", pod(containers=[{"name": "a", "image": "x", "env": [{"name": "1=A", "value": "b"}]}]),
     "spec.containers[0].env[0].name must be a valid environment variable name"),
    ("env value int", pod(containers=[{"name": "a", "image": "x", "env": [{"name": "A", "value": 1}]}]),
     "spec.containers[0].env[0].value must be a string, got 1"),
    ("init dup name", pod(initContainers=[{"name": "app", "image": "busybox"}]),
     'spec.containers[0].name duplicate container name "app"'),
    ("no spec", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}, "pod/x: spec is required"),
    ("annotation value", {**pod(), "metadata": {"name": "x", "annotations": {"a": 1}}},
     "metadata.annotations[a] annotation value must be a string"),
    ("selector matchExpressions NotIn ok",
     deployment({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
                {"app": "web"}), None),
    ("selector NotIn excludes template",
     deployment({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, {"app": "web"}),
     "spec.selector does not match spec.template.metadata.labels"),
    ("selector Exists with values",
     deployment({"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]}, {"app": "web"}),
     "spec.selector.matchExpressions[0].values may not be specified when operator is Exists"),
    ("selector empty", deployment({}, {"app": "web"}), "spec.selector must not be empty"),
    ("template labels missing", deployment({"matchLabels": {"app": "web"}}, {}),
     "spec.template.metadata.labels is required"),
    ("selector matchLabels subset ok", deployment({"matchLabels": {"app": "web"}}, {"app": "web", "v": "1"}), None),
    ("headless no ports ok", service(clusterIP="None", ports=[]), None),
    ("no ports", service(ports=[]), "service/web: spec.ports is required"),
    ("selectorless ok", service(selector=None), None),
    ("targetPort 0 range", service(ports=[{"port": 80, "targetPort": 70000}]),
     "spec.ports[0].targetPort must be between 1 and 65535, got 70000"),
    ("targetPort digits string", service(ports=[{"port": 80, "targetPort": "8080"}]),
     "must contain at least one letter"),
    ("named targetPort ok", service(ports=[{"port": 80, "targetPort": "http"}]), None),
    ("clusterIP garbage", service(clusterIP="abc"), 'spec.clusterIP must be a valid IPv4 address, got "abc"'),
    ("clusterIP in cidr ok", service(clusterIP="10.96.5.5"), None),
    ("ExternalName clusterIP", service(type="ExternalName", externalName="db.example.com", clusterIP="10.96.0.50"),
     "spec.clusterIP must be empty for an ExternalName Service"),
    ("externalName bad", service(type="ExternalName", externalName="db_example.com"),
     "spec.externalName must be a lowercase RFC 1123 subdomain"),
    ("externalName trailing dot ok", service(type="ExternalName", externalName="db.example.com."), None),
    ("affinity bogus", service(sessionAffinity="Sticky"), "spec.sessionAffinity must be one of None, ClientIP"),
    ("affinity config on None", service(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}}),
     "spec.sessionAffinityConfig must not be set when sessionAffinity is None"),
    ("etp bogus", service(type="NodePort", externalTrafficPolicy="Global"),
     "spec.externalTrafficPolicy must be one of Cluster, Local"),
    ("etp with externalIPs ok", service(externalIPs=["192.168.56.150"], externalTrafficPolicy="Local"), None),
    ("itp bogus", service(internalTrafficPolicy="Node"), "spec.internalTrafficPolicy must be one of Cluster, Local"),
    ("hc ok", service(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30500), None),
    ("lb source ranges on nodeport", service(type="NodePort", loadBalancerSourceRanges=["10.0.0.0/8"]),
     "spec.loadBalancerSourceRanges may only be used when spec.type is LoadBalancer"),
    ("dup nodePort", service(type="NodePort", ports=[{"name": "a", "port": 80, "nodePort": 30001},
                                                    {"name": "b", "port": 81, "nodePort": 30001}]),
     "spec.ports[1].nodePort duplicate nodePort 30001/TCP"),
    ("same port two protocols ok", service(ports=[{"name": "a", "port": 53, "protocol": "UDP"},
                                                  {"name": "b", "port": 53, "protocol": "TCP"}]), None),
    ("service port name upper", service(ports=[{"name": "HTTP", "port": 80}]),
     "spec.ports[0].name must be a lowercase RFC 1123 label"),
    ("service selector value", service(selector={"app": "a b"}), "spec.selector[app] label value \"a b\""),
]


@pytest.mark.parametrize("obj,expected", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_validate_cases(obj: dict, expected: str | None) -> None:
    if expected is None:
        validate(apply_defaults(obj))
    else:
        assert expected in error_of(obj)


def test_endpoints_special_ip_refused() -> None:
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
          "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80}]}]}
    assert "subsets[0].addresses[0].ip may not be a loopback address" in error_of(ep)
    ep["subsets"] = [{"ports": [{"port": 80}]}]
    assert "subsets[0] must specify addresses or notReadyAddresses" in error_of(ep)
    ep["subsets"] = [{"addresses": [{"ip": "10.244.1.2"}], "ports": [{"port": 80}, {"port": 81}]}]
    assert "subsets[0].ports[0].name is required when there is more than one port" in error_of(ep)


def test_endpointslice_fqdn_and_null_port() -> None:
    es = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "s"},
          "addressType": "FQDN", "endpoints": [{"addresses": ["db.example.com"]}], "ports": [{"port": None}]}
    validate(apply_defaults(es))
    es["endpoints"] = [{"addresses": []}]
    assert "endpoints[0].addresses must have at least one address" in error_of(es)


def test_validate_accepts_undefaulted_objects_too() -> None:
    validate(service())
    validate(pod())


def test_validate_hint_for_selector_mismatch() -> None:
    with pytest.raises(ValidationError) as info:
        validate(apply_defaults(deployment({"matchLabels": {"app": "web"}}, {"app": "api"})))
    assert info.value.message == "deployment/web: spec.selector does not match spec.template.metadata.labels"
    assert "app=web" in info.value.hint and "app=api" in info.value.hint


def test_validate_batch_same_name_different_kind_or_namespace_ok() -> None:
    objs = [("a#1", service()), ("a#2", {**service(), "metadata": {"name": "web", "namespace": "other"}}),
            ("a#3", deployment({"matchLabels": {"app": "web"}}, {"app": "web"}))]
    out = validate_batch(objs)
    assert [o["metadata"]["namespace"] for o in out] == ["default", "other", "default"]


def test_validate_batch_does_not_mutate_input() -> None:
    objs = [("a#1", service()), ("a#2", pod())]
    before = copy.deepcopy(objs)
    validate_batch(objs)
    assert objs == before


def test_validate_rejects_non_mapping() -> None:
    with pytest.raises(ValidationError):
        validate(["not", "a", "dict"])  # type: ignore[arg-type]


def test_odd_types_do_not_crash() -> None:
    weird = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": "nope"},
        {"apiVersion": "v1", "kind": "Pod", "metadata": "x"},
        {"apiVersion": "v1", "kind": ["Pod"], "metadata": {"name": "x"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": "80"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [80]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": []}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": ["a"]}, "spec": {}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}, "spec": {}},
    ]
    for obj in weird:
        with pytest.raises(ValidationError) as info:
            validate(apply_defaults(obj))
        assert "\n" not in info.value.message


# ---------------------------------------------------------------------------------------------------------
# defaults


def test_defaults_pod() -> None:
    raw = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "a", "image": "nginx", "imagePullPolicy": "Never",
                                    "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                                    "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 2},
                                    "livenessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 5}}]}}
    before = copy.deepcopy(raw)
    out = apply_defaults(raw)
    assert raw == before, "apply_defaults must not mutate its input"
    assert out["metadata"] == {"name": "p", "namespace": "default", "labels": {}}
    spec = out["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["enableServiceLinks"] is True
    ctr = spec["containers"][0]
    assert ctr["imagePullPolicy"] == "Never"
    assert [p["protocol"] for p in ctr["ports"]] == ["TCP", "UDP"]
    assert ctr["readinessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "periodSeconds": 2,
                                     "initialDelaySeconds": 0, "timeoutSeconds": 1, "successThreshold": 1,
                                     "failureThreshold": 3}
    assert ctr["livenessProbe"]["initialDelaySeconds"] == 5
    assert ctr["livenessProbe"]["periodSeconds"] == 10
    assert "imagePullPolicy" not in apply_defaults(pod())["spec"]["containers"][0]


def test_defaults_keep_explicit_falsy_values() -> None:
    out = apply_defaults(pod(enableServiceLinks=False, terminationGracePeriodSeconds=0))
    assert out["spec"]["enableServiceLinks"] is False
    assert out["spec"]["terminationGracePeriodSeconds"] == 0


def test_defaults_workloads() -> None:
    dep = apply_defaults(deployment({"matchLabels": {"app": "web"}}, {"app": "web"}))
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert dep["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    sts = deployment({"matchLabels": {"app": "web"}}, {"app": "web"})
    sts["kind"] = "StatefulSet"
    sts["spec"]["replicas"] = 0
    out = apply_defaults(sts)
    assert out["spec"]["replicas"] == 0
    assert out["spec"]["podManagementPolicy"] == "OrderedReady"
    rs = deployment({"matchLabels": {"app": "web"}}, {"app": "web"})
    rs["kind"] = "ReplicaSet"
    assert apply_defaults(rs)["spec"]["replicas"] == 1


def test_defaults_service() -> None:
    out = apply_defaults(service(ports=[{"port": 80}, {"name": "b", "port": 81, "targetPort": "http"}]))
    spec = out["spec"]
    assert out["metadata"]["namespace"] == "default"
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert "sessionAffinityConfig" not in spec
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80},
                             {"name": "b", "port": 81, "targetPort": "http", "protocol": "TCP"}]
    np = apply_defaults(service(type="NodePort", sessionAffinity="ClientIP"))["spec"]
    assert np["externalTrafficPolicy"] == "Cluster"
    assert np["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    lb = apply_defaults(service(type="LoadBalancer", externalTrafficPolicy="Local"))["spec"]
    assert lb["externalTrafficPolicy"] == "Local"
    ext = apply_defaults(service(type="ExternalName", externalName="a.example.com"))["spec"]
    assert "externalTrafficPolicy" not in ext


def test_defaults_namespace_scope_and_slices() -> None:
    ns = apply_defaults({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    assert ns["metadata"] == {"name": "a", "labels": {}}
    explicit = apply_defaults({**pod(), "metadata": {"name": "x", "namespace": "prod", "labels": {"a": "b"}}})
    assert explicit["metadata"] == {"name": "x", "namespace": "prod", "labels": {"a": "b"}}
    es = apply_defaults({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "s"},
                         "endpoints": [], "ports": [{"port": 80}]})
    assert es["addressType"] == "IPv4"
    assert es["ports"][0]["protocol"] == "TCP"
    ep = apply_defaults({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
                         "subsets": [{"addresses": [{"ip": "10.244.1.2"}], "ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"


def test_defaults_tolerate_garbage() -> None:
    for obj in ({"kind": "Pod", "spec": "x"}, {"kind": "Service", "spec": {"ports": [1, None]}},
                {"kind": ["x"], "metadata": "m"}, {}):
        apply_defaults(obj)
