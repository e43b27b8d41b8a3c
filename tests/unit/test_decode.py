"""Request bodies: JSON and YAML decoding with fieldValidation Strict (errors) or warnings."""

from __future__ import annotations

import json

import pytest

from netk8s.apiserver.decode import decode_body
from netk8s.errors import ValidationError
from netk8s.model.fields import FieldProblems

DEPLOY_YAML = b"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replica: 3
  replicas: 2
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx
        resources: {limits: {cpu: 0.5, memory: 1.5Gi}}
"""

DEPLOY_JSON = (b'{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},'
               b' "spec": {"replica": 3, "replicas": 2, "replicas": 4, "selector": {"matchLabels": {"app": "web"}},'
               b' "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx",'
               b' "image": "nginx", "resources": {"limits": {"cpu": 0.5, "memory": "1.5Gi"}}}]}}}}')

WANT_STRICT = 'strict decoding error: unknown field "spec.replica", duplicate field "spec.replicas"'


@pytest.mark.parametrize(("body", "ctype"), [(DEPLOY_YAML, "application/yaml"),
                                             (DEPLOY_JSON, "application/json; charset=utf-8")], ids=["yaml", "json"])
def test_strict_refuses_unknown_and_duplicate_fields(body: bytes, ctype: str) -> None:
    with pytest.raises(FieldProblems) as info:
        decode_body(body, ctype, "Deployment", strict=True)
    assert info.value.message == WANT_STRICT
    assert [p for p, _ in info.value.problems] == ["spec.replica", "spec.replicas"]


@pytest.mark.parametrize(("body", "ctype"), [(DEPLOY_YAML, "application/yaml"), (DEPLOY_JSON, "application/json")],
                         ids=["yaml", "json"])
def test_warn_returns_warnings_and_the_object(body: bytes, ctype: str) -> None:
    obj, warnings = decode_body(body, ctype, "Deployment", strict=False)
    assert warnings == ['unknown field "spec.replica"', 'duplicate field "spec.replicas"']
    assert obj["spec"]["replicas"] == 4  # the last duplicate wins, as in Go
    assert type(obj) is dict and type(obj["spec"]) is dict  # plain data, ready to store
    limits = obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "500m", "memory": "1536Mi"}
    json.dumps(obj)


def test_kind_from_the_body_when_not_given() -> None:
    _, warnings = decode_body(DEPLOY_JSON, "application/json", None, strict=False)
    assert 'unknown field "spec.replica"' in warnings


def test_clean_body_has_no_warnings() -> None:
    body = b'{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","labels":{"a":"1"}},' \
           b'"spec":{"ports":[{"port":80,"targetPort":"http"}],"selector":{"app":"web"}}}'
    obj, warnings = decode_body(body, "application/json", "Service", strict=True)
    assert warnings == [] and obj["spec"]["ports"][0]["targetPort"] == "http"


def test_status_fields_and_free_maps_are_not_unknown() -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"x/y": "z"}},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeSelector": {"k": "v"}},
                       "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.2"}]}}).encode()
    assert decode_body(body, "application/json", "Pod", strict=True)[1] == []


def test_bad_quantity_is_an_error_even_without_strict() -> None:
    body = DEPLOY_JSON.replace(b'"cpu": 0.5', b'"cpu": "abc"')
    with pytest.raises(ValidationError) as info:
        decode_body(body, "application/json", "Deployment", strict=False)
    assert info.value.message.startswith(
        'spec.template.spec.containers[0].resources.limits.cpu: Invalid value: "abc": quantities must match')


@pytest.mark.parametrize(("body", "ctype", "words"), [
    (b"{nope", "application/json", "body: invalid JSON"),
    (b"a: [1", "application/yaml", "body: invalid YAML at line"),
    (b"[1, 2]", "application/json", "must be a JSON/YAML object"),
    (b"a: 1\n---\nb: 2\n", "application/yaml", "several YAML documents"),
    (b"\xff\xfe", "application/json", "not UTF-8"),
    (b"{}", "text/plain", "unsupported media type"),
], ids=["json-syntax", "yaml-syntax", "not-object", "two-docs", "not-utf8", "media-type"])
def test_undecodable_bodies(body: bytes, ctype: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        decode_body(body, ctype, "Pod", strict=False)
    assert words in info.value.message


def test_yaml_keeps_dates_as_strings_and_merge_keys_are_not_duplicates() -> None:
    body = b"""apiVersion: v1
kind: ConfigMap
metadata:
  <<: {name: base, labels: {a: "1"}}
  name: c
data:
  when: 2024-01-01
x: 1
"""
    obj, warnings = decode_body(body, "application/yaml", "ConfigMap", strict=False)
    assert obj["data"]["when"] == "2024-01-01"
    assert obj["metadata"] == {"name": "c", "labels": {"a": "1"}}
    assert warnings == ['unknown field "x"']
