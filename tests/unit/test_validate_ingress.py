"""Ingress, IngressClass and Secret: v1beta1 conversion (and its warning), Secret defaulting, validation cases."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from click.testing import CliRunner

from netk8s.cli.main import cli
from netk8s.cli.manifests import load_documents
from netk8s.errors import ValidationError
from netk8s.model.defaults import apply_defaults
from netk8s.model.manifest import parse_text
from netk8s.model.networking import convert_legacy_ingress, ingress_class_of
from netk8s.model.validate import validate, validate_batch
from tests.unit.test_cli_apply import lab_env  # noqa: F401  (fixture)

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
SEED = MANIFESTS / "valid" / "ingress-seed-v1beta1.yaml"


def ingress(**spec: object) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"}, "spec": spec}


def svc_backend(name: str = "web", number: int = 80) -> dict:
    return {"service": {"name": name, "port": {"number": number}}}


def test_seed_v1beta1_converts_to_v1_with_a_warning_naming_the_fields() -> None:
    warnings: list[str] = []
    [obj] = validate_batch(load_documents([str(SEED)]), warnings)
    assert obj["apiVersion"] == "networking.k8s.io/v1"
    path = obj["spec"]["rules"][0]["http"]["paths"][0]
    assert path == {"path": "/", "pathType": "ImplementationSpecific",
                    "backend": {"service": {"name": "my-service", "port": {"number": 80}}}}
    [warning] = warnings
    assert "networking.k8s.io/v1beta1 Ingress is deprecated" in warning
    assert ("spec.rules[0].http.paths[0].backend.serviceName/servicePort -> "
            "spec.rules[0].http.paths[0].backend.service.name/service.port.number") in warning
    assert warning.startswith("ingress/my-ingress: ")


@pytest.mark.parametrize("api_version", ["networking.k8s.io/v1beta1", "extensions/v1beta1"])
def test_legacy_default_backend_and_named_port(api_version: str) -> None:
    legacy = {"apiVersion": api_version, "kind": "Ingress", "metadata": {"name": "x"},
              "spec": {"backend": {"serviceName": "fallback", "servicePort": "http"},
                       "rules": [{"http": {"paths": [{"path": "/a", "pathType": "Exact",
                                                       "backend": {"serviceName": "a", "servicePort": "8080"}}]}}]}}
    out, warning = convert_legacy_ingress(legacy)
    assert out["spec"]["defaultBackend"] == {"service": {"name": "fallback", "port": {"name": "http"}}}
    assert "backend" not in out["spec"]
    assert out["spec"]["rules"][0]["http"]["paths"][0] == {
        "path": "/a", "pathType": "Exact", "backend": {"service": {"name": "a", "port": {"number": 8080}}}}
    assert "spec.backend -> spec.defaultBackend" in warning and "service.port.name" in warning
    assert legacy["spec"]["backend"]["serviceName"] == "fallback"  # input untouched
    validate(apply_defaults(out))


def test_v1beta1_refused_by_validate_alone() -> None:
    legacy = {"apiVersion": "networking.k8s.io/v1beta1", "kind": "Ingress", "metadata": {"name": "x"},
              "spec": {"defaultBackend": svc_backend()}}
    with pytest.raises(ValidationError, match=r'apiVersion "networking.k8s.io/v1beta1" does not serve kind Ingress'):
        validate(apply_defaults(legacy))


def test_cli_apply_prints_the_conversion_warning(lab_env: Path) -> None:  # noqa: F811
    result = CliRunner().invoke(cli, ["apply", "-f", str(SEED)])
    assert result.exit_code == 0, result.output
    assert "ingress.networking.k8s.io/my-ingress created" in result.stdout
    assert result.stderr.startswith("Warning: ingress/my-ingress: networking.k8s.io/v1beta1 Ingress is deprecated")
    got = CliRunner().invoke(cli, ["get", "ingress", "my-ingress", "-o", "json"])
    assert got.exit_code == 0, got.output
    assert '"apiVersion": "networking.k8s.io/v1"' in got.stdout


def test_secret_string_data_becomes_base64_data() -> None:
    [secret] = validate_batch(parse_text("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
                                         "data: {a: YQ==}\nstringData: {b: hello, a: A}\n", "s.yaml"))
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {"a": "A", "b": "hello"}


@pytest.mark.parametrize("host", ["www.example.com", "*.example.com", "a", "*.a.b"])
def test_valid_hosts(host: str) -> None:
    validate(apply_defaults(ingress(rules=[{"host": host, "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": svc_backend()}]}}])))


@pytest.mark.parametrize("host,problem", [
    ("*", "wildcard"), ("*.", "wildcard"), ("*.*.example.com", "wildcard"), ("a*.example.com", "wildcard"),
    ("WWW.example.com", "RFC 1123"), ("10.0.0.1", "not an IP address"), ("exa mple.com", "RFC 1123"),
])
def test_invalid_hosts(host: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=r"spec\.rules\[0\]\.host .*" + problem):
        validate(apply_defaults(ingress(rules=[{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": svc_backend()}]}}])))


@pytest.mark.parametrize("path_type,path,problem", [
    ("Prefix", "/a/../b", "must not contain '/../'"), ("Exact", "/a/.", "cannot end with '/.'"),
    ("Prefix", "/a%2Fb", "must not contain '%2F'"), ("ImplementationSpecific", "a", "must be an absolute path"),
    ("Exact", "", "must be an absolute path"),
])
def test_invalid_paths(path_type: str, path: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=r"paths\[0\]\.path " + problem):
        validate(apply_defaults(ingress(rules=[{"http": {"paths": [
            {"path": path, "pathType": path_type, "backend": svc_backend()}]}}])))


def test_implementation_specific_path_may_be_empty_and_resource_backend() -> None:
    validate(apply_defaults(ingress(rules=[{"http": {"paths": [
        {"pathType": "ImplementationSpecific",
         "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}}]}}])))


def test_resource_backend_needs_kind_and_name() -> None:
    with pytest.raises(ValidationError, match=r"spec\.defaultBackend\.resource\.name is required"):
        validate(apply_defaults(ingress(defaultBackend={"resource": {"kind": "Bucket"}})))


def test_ingress_class_parameters_scope() -> None:
    cls = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "c"},
           "spec": {"controller": "k8s.io/ingress-nginx",
                    "parameters": {"kind": "P", "name": "p", "scope": "Namespace"}}}
    with pytest.raises(ValidationError, match=r"spec\.parameters\.namespace is required when scope is Namespace"):
        validate(apply_defaults(cls))
    cls["spec"]["controller"] = "nginx"
    with pytest.raises(ValidationError, match=r"spec\.controller must be a domain-prefixed path"):
        validate(apply_defaults(cls))


def test_class_of_ingress() -> None:
    assert ingress_class_of(ingress(ingressClassName="nginx")) == "nginx"
    legacy = ingress()
    legacy["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "other"}
    assert ingress_class_of(legacy) == "other"
    assert ingress_class_of(ingress()) is None


def test_get_ingress_columns_and_describe() -> None:
    from netk8s.cli.describe import describe
    from netk8s.cli.printers import table_rows

    ing = apply_defaults(ingress(ingressClassName="nginx", tls=[{"hosts": ["a.example.com"], "secretName": "t"}],
                                 rules=[{"host": h, "http": {"paths": [
                                     {"path": "/", "pathType": "Prefix", "backend": svc_backend()}]}}
                                     for h in ("a.example.com", "b.example.com", "c.example.com", "d.example.com")]))
    ing["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.56.201"}]}}
    plain = apply_defaults(ingress(rules=[{"http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": svc_backend()}]}}]))
    plain["metadata"]["name"] = "plain"
    rows = table_rows("Ingress", [ing, plain], now=0.0)
    assert rows[0] == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert rows[1][:5] == ["web", "nginx", "a.example.com,b.example.com,c.example.com + 1 more...",
                           "192.168.56.201", "80, 443"]
    assert rows[2][:5] == ["plain", "<none>", "*", "", "80"]
    text = describe(ing, {}, 0.0)
    assert "Ingress Class:" in text and "t terminates a.example.com" in text and "web:80" in text
    secret = apply_defaults({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
                             "type": "kubernetes.io/tls", "stringData": {"tls.crt": "CERT", "tls.key": "KEY!!"}})
    assert table_rows("Secret", [secret], now=0.0)[1][:3] == ["t", "kubernetes.io/tls", "2"]
    shown = describe(secret, {}, 0.0)
    assert "tls.key:" in shown and "5 bytes" in shown
    cls = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "c"},
           "spec": {"controller": "k8s.io/ingress-nginx",
                    "parameters": {"apiGroup": "k8s.example.com", "kind": "P", "name": "p", "scope": "Cluster"}}}
    assert table_rows("IngressClass", [cls], now=0.0)[1][:3] == ["c", "k8s.io/ingress-nginx", "P.k8s.example.com/p"]
    text = describe(cls, {}, 0.0)
    assert "Controller:" in text and "k8s.io/ingress-nginx" in text and "Scope:" in text
    assert "KEY!!" not in shown


def test_default_ingress_class_admission_on_create(lab_env: Path, tmp_path: Path) -> None:  # noqa: F811
    classes = tmp_path / "classes.yaml"
    classes.write_text("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: nginx\n"
                       "  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\n"
                       "spec: {controller: k8s.io/ingress-nginx}\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["apply", "-f", str(classes)]).exit_code == 0
    assert runner.invoke(cli, ["apply", "-f", str(SEED)]).exit_code == 0
    got = runner.invoke(cli, ["get", "ingress"])
    assert got.stdout.splitlines()[1].split()[:3] == ["my-ingress", "nginx", "www.example.com"]
    # a second apply of the same manifest keeps the class the admission set
    assert "ingress.networking.k8s.io/my-ingress unchanged" in runner.invoke(cli, ["apply", "-f", str(SEED)]).stdout
    second = tmp_path / "second.yaml"
    second.write_text(classes.read_text().replace("name: nginx", "name: other"))
    assert runner.invoke(cli, ["apply", "-f", str(second)]).exit_code == 0
    legacy = tmp_path / "x.yaml"
    legacy.write_text(SEED.read_text().replace("my-ingress", "x"))
    refused = runner.invoke(cli, ["apply", "-f", str(legacy)])
    assert refused.exit_code == 1
    assert "ingress/x: 2 default IngressClasses were found, only 1 allowed (nginx, other)" in refused.stderr
