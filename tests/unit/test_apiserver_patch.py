"""API server: the four patch types, server-side apply conflicts, scale, Tables, fieldValidation, dry-run patch."""

from __future__ import annotations

import json

import pytest

from tests.unit.apiserver_util import Api, deployment, pod, run_api, service

pytestmark = pytest.mark.integration

PODS = "/api/v1/namespaces/default/pods"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def test_json_merge_and_strategic_merge_patches() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", PODS, pod("p", labels={"a": "1"}))
        code, body, _ = await api.call("PATCH", f"{PODS}/p", [{"op": "add", "path": "/metadata/labels/b", "value": "2"}],
                                       content_type="application/json-patch+json")
        assert code == 200 and body["metadata"]["labels"] == {"a": "1", "b": "2"}
        code, body, _ = await api.call("PATCH", f"{PODS}/p", {"metadata": {"labels": {"a": None}}},
                                       content_type="application/merge-patch+json")
        assert body["metadata"]["labels"] == {"b": "2"}
        # strategic merge: containers merge by name instead of being replaced
        patch = {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
        code, body, _ = await api.call("PATCH", f"{PODS}/p", patch,
                                       content_type="application/strategic-merge-patch+json")
        assert code == 200 and body["spec"]["containers"][0]["image"] == "nginx:2"
        assert body["spec"]["containers"][0]["name"] == "c"
        code, body, _ = await api.call("PATCH", f"{PODS}/p", {"x": 1}, content_type="text/plain")
        assert (code, body["reason"]) == (415, "UnsupportedMediaType")
        code, body, _ = await api.call("PATCH", f"{PODS}/missing", {"metadata": {}},
                                       content_type="application/merge-patch+json")
        assert code == 404

    run_api(t)


def test_patch_that_makes_the_object_invalid_is_refused() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", "/api/v1/namespaces/default/services", service("s"))
        code, body, _ = await api.call("PATCH", "/api/v1/namespaces/default/services/s",
                                       [{"op": "replace", "path": "/spec/ports/0/port", "value": 0}],
                                       content_type="application/json-patch+json")
        assert (code, body["reason"]) == (422, "Invalid")
        assert body["details"]["causes"][0]["field"] == "spec.ports[0].port"

    run_api(t)


def test_server_side_apply_creates_updates_and_reports_conflicts() -> None:
    async def t(api: Api) -> None:
        manifest = json.dumps(deployment("web", replicas=2)).encode()
        apply = "application/apply-patch+yaml"
        code, body, _ = await api.call("PATCH", f"{DEPLOYS}/web", manifest, content_type=apply,
                                       params={"fieldManager": "alice"})
        assert code == 200 and body["spec"]["replicas"] == 2
        assert any(m["manager"] == "alice" and m["operation"] == "Apply" for m in body["metadata"]["managedFields"])
        other = json.dumps(deployment("web", replicas=5)).encode()
        code, body, _ = await api.call("PATCH", f"{DEPLOYS}/web", other, content_type=apply,
                                       params={"fieldManager": "bob"})
        assert (code, body["reason"]) == (409, "Conflict")
        assert body["details"]["causes"][0]["field"] == ".spec.replicas"
        code, body, _ = await api.call("PATCH", f"{DEPLOYS}/web", other, content_type=apply,
                                       params={"fieldManager": "bob", "force": "true"})
        assert code == 200 and body["spec"]["replicas"] == 5
        code, body, _ = await api.call("PATCH", f"{DEPLOYS}/web", other, content_type=apply)
        assert code == 400  # fieldManager is required

    run_api(t)


def test_scale_subresource() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", DEPLOYS, deployment("web", replicas=2))
        code, scale, _ = await api.call("GET", f"{DEPLOYS}/web/scale")
        assert (code, scale["kind"], scale["apiVersion"], scale["spec"]["replicas"]) == (200, "Scale", "autoscaling/v1", 2)
        assert scale["status"]["selector"] == "app=web"
        scale["spec"]["replicas"] = 4
        code, scale, _ = await api.call("PUT", f"{DEPLOYS}/web/scale", scale)
        assert code == 200 and scale["spec"]["replicas"] == 4
        code, scale, _ = await api.call("PATCH", f"{DEPLOYS}/web/scale", {"spec": {"replicas": 6}},
                                        content_type="application/merge-patch+json")
        assert code == 200 and scale["spec"]["replicas"] == 6
        _, dep, _ = await api.call("GET", f"{DEPLOYS}/web")
        assert dep["spec"]["replicas"] == 6
        code, _, _ = await api.call("GET", "/api/v1/namespaces/default/pods/x/scale")
        assert code == 404  # pods have no scale subresource

    run_api(t)


def test_table_output_for_get_and_list() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", PODS, pod("p"))
        code, table, headers = await api.call("GET", PODS, accept=TABLE)
        assert code == 200 and headers["Content-Type"].startswith("application/json;as=Table")
        assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
        assert [c["name"] for c in table["columnDefinitions"]][:3] == ["Name", "Ready", "Status"]
        assert table["rows"][0]["cells"][0] == "p"
        assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
        code, table, _ = await api.call("GET", f"{PODS}/p", accept=TABLE, params={"includeObject": "Object"})
        assert table["rows"][0]["object"]["kind"] == "Pod"

    run_api(t)


def test_field_validation_strict_warn_ignore() -> None:
    async def t(api: Api) -> None:
        bad = pod("p")
        bad["spec"]["bogus"] = 1
        code, body, _ = await api.call("POST", PODS, bad, params={"fieldValidation": "Strict"})
        assert (code, body["reason"]) == (400, "BadRequest")
        assert 'unknown field "spec.bogus"' in body["message"]
        assert body["message"].startswith('Pod in version "v1" cannot be handled as a Pod: ')
        code, body, headers = await api.call("POST", PODS, bad, params={"fieldValidation": "Warn"})
        assert (code, headers["Warning"]) == (201, '299 - "unknown field \\"spec.bogus\\""')
        await api.call("DELETE", f"{PODS}/p")
        code, _, headers = await api.call("POST", PODS, bad, params={"fieldValidation": "Ignore"})
        assert code == 201 and "Warning" not in headers
        code, _, _ = await api.call("POST", PODS, pod("q"), params={"fieldValidation": "Loose"})
        assert code == 400

    run_api(t)


def test_dry_run_patch_and_apply_write_nothing() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", DEPLOYS, deployment("web", replicas=2))
        code, body, _ = await api.call("PATCH", f"{DEPLOYS}/web", {"spec": {"replicas": 9}},
                                       content_type="application/merge-patch+json", params={"dryRun": "All"})
        assert code == 200 and body["spec"]["replicas"] == 9 and body["metadata"]["generation"] == 2
        assert api.store.get("Deployment", "default", "web")["spec"]["replicas"] == 2
        code, body, _ = await api.call("PATCH", f"{DEPLOYS}/new", json.dumps(deployment("new")).encode(),
                                       content_type="application/apply-patch+yaml",
                                       params={"dryRun": "All", "fieldManager": "kubectl"})
        assert code == 200 and body["metadata"]["name"] == "new"
        assert api.store.try_get("Deployment", "default", "new") is None

    run_api(t)
