"""OpenAPI v2/v3 documents: every served kind, its schema from the registry, kubectl's fieldValidation check."""

from __future__ import annotations

import json
import re

import pytest

from netk8s.apiserver.openapi import group_version_key, openapi_v2, openapi_v3, openapi_v3_index
from netk8s.model import schema as sch
from netk8s.model.kinds import KINDS

SERVED = sorted(KINDS)


def gv_of(kind: str) -> str:
    return group_version_key(KINDS[kind].api_version)


def test_index_lists_every_group_version_with_a_content_hash() -> None:
    index = openapi_v3_index()
    assert set(index["paths"]) == {"api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1",
                                   "apis/networking.k8s.io/v1"}
    for key, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        assert re.fullmatch(rf"/openapi/v3/{re.escape(key)}\?hash=[0-9A-F]{{128}}", url)
    assert openapi_v3_index() == index  # stable: clients cache documents by this hash


@pytest.mark.parametrize("kind", SERVED)
def test_every_kind_has_its_schema_and_gvk(kind: str) -> None:
    doc = openapi_v3(gv_of(kind))
    assert doc is not None and doc["openapi"].startswith("3.")
    name = sch.kind_definition(kind)
    schema = doc["components"]["schemas"][name]
    group, version = sch.split_api_version(KINDS[kind].api_version)
    assert {"group": group, "version": version, "kind": kind} in schema["x-kubernetes-group-version-kind"]
    assert schema["description"] and schema["type"] == "object"
    # every ref resolves inside the same document
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref


def patch_op(doc: dict, kind: str) -> dict:
    """What kubectl's QueryParamVerifierV3 does: the PATCH operation whose GVK is the kind's."""
    group, version = sch.split_api_version(KINDS[kind].api_version)
    want = {"group": group, "version": version, "kind": kind}
    for item in doc["paths"].values():
        op = item.get("patch")
        if op and op["x-kubernetes-group-version-kind"] == want:
            return op
    raise AssertionError(f"no PATCH operation for {kind}")


@pytest.mark.parametrize("kind", SERVED)
def test_patch_operations_advertise_field_validation(kind: str) -> None:
    op = patch_op(openapi_v3(gv_of(kind)) or {}, kind)
    names = {(p["name"], p["in"]) for p in op["parameters"]}
    assert {("fieldValidation", "query"), ("fieldManager", "query"), ("dryRun", "query"), ("force", "query")} <= names
    assert set(op["requestBody"]["content"]) == {"application/apply-patch+yaml", "application/json-patch+json",
                                                 "application/merge-patch+json",
                                                 "application/strategic-merge-patch+json"}


def test_paths_and_operation_ids_follow_kube_apiserver() -> None:
    doc = openapi_v3("apis/apps/v1")
    assert doc is not None
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert item["patch"]["operationId"] == "patchAppsV1NamespacedDeployment"
    assert item["get"]["operationId"] == "readAppsV1NamespacedDeployment"
    coll = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert coll["delete"]["operationId"] == "deleteAppsV1CollectionNamespacedDeployment"
    assert coll["get"]["x-kubernetes-action"] == "list"
    assert doc["paths"]["/apis/apps/v1/deployments"]["get"]["operationId"] == "listAppsV1DeploymentForAllNamespaces"
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale", "version": "v1"}
    core = openapi_v3("api/v1")
    assert core is not None
    assert "/api/v1/namespaces/{name}" in core["paths"] and "/api/v1/namespaces/{namespace}/pods/{name}/status" in core["paths"]
    assert core["paths"]["/api/v1/namespaces/{name}"]["get"]["operationId"] == "readCoreV1Namespace"


def test_explain_needs_descriptions_and_patch_extensions() -> None:
    doc = openapi_v3("api/v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name" and containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    spec = schemas["io.k8s.api.core.v1.Pod"]["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}] and spec["description"]
    assert schemas["io.k8s.api.core.v1.Pod"]["properties"]["kind"] == {
        "description": schemas["io.k8s.api.core.v1.Pod"]["properties"]["kind"]["description"], "type": "string"}
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert "oneOf" in schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert "io.k8s.api.core.v1.ConfigMap" in schemas


def test_v2_document() -> None:
    doc = openapi_v2()
    assert doc["swagger"] == "2.0"
    for kind in SERVED:
        assert sch.kind_definition(kind) in doc["definitions"]
    text = json.dumps(doc)
    assert "#/components/" not in text and "#/$defs/" not in text
    for ref in set(re.findall(r'"\$ref": "#/definitions/([^"]+)"', text)):
        assert ref in doc["definitions"], ref
    op = doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in op["consumes"]
    assert any(p["name"] == "fieldValidation" and p["type"] == "string" for p in op["parameters"])
    assert doc["definitions"]["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"


@pytest.mark.parametrize("key", ["api/v2", "apis/v1", "apis/batch/v1", "nonsense", ""])
def test_unknown_group_versions(key: str) -> None:
    assert openapi_v3(key) is None


def test_documents_are_copies() -> None:
    doc = openapi_v3("api/v1")
    assert doc is not None
    doc["paths"].clear()
    assert openapi_v3("api/v1")["paths"]  # type: ignore[index]
