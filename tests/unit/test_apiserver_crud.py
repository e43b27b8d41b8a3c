"""API server: discovery shapes, get/list/create/update/delete with Kubernetes semantics, Status errors."""

from __future__ import annotations

import pytest

from tests.unit.apiserver_util import ADMIN, NOBODY, NODE, VIEWER, Api, deployment, pod, run_api, service

pytestmark = pytest.mark.integration

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
PODS = "/api/v1/namespaces/default/pods"


def test_discovery_documents() -> None:
    async def t(api: Api) -> None:
        code, body, _ = await api.call("GET", "/api")
        assert (code, body["kind"], body["versions"]) == (200, "APIVersions", ["v1"])
        code, body, _ = await api.call("GET", "/apis")
        groups = {g["name"]: g["preferredVersion"]["groupVersion"] for g in body["groups"]}
        assert groups["apps"] == "apps/v1" and groups["discovery.k8s.io"] == "discovery.k8s.io/v1"
        code, body, _ = await api.call("GET", "/api/v1")
        by_name = {r["name"]: r for r in body["resources"]}
        assert by_name["pods"]["shortNames"] == ["po"] and by_name["pods"]["namespaced"] is True
        assert by_name["pods"]["singularName"] == "pod" and "watch" in by_name["pods"]["verbs"]
        assert by_name["pods/status"]["verbs"] == ["get", "patch", "update"]
        assert by_name["nodes"]["namespaced"] is False
        assert "endpoints/status" not in by_name
        code, body, _ = await api.call("GET", "/apis/apps/v1")
        scale = {r["name"]: r for r in body["resources"]}["deployments/scale"]
        assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
        code, body, _ = await api.call("GET", "/apis/nothing/v1")
        assert (code, body["reason"]) == (404, "NotFound")
        code, body, _ = await api.call("GET", "/version")
        assert (body["major"], body["minor"]) == ("1", "34")
        code, body, _ = await api.call("GET", "/healthz")
        assert (code, body) == (200, "ok")

    run_api(t)


def test_aggregated_discovery_when_accept_asks() -> None:
    async def t(api: Api) -> None:
        _, body, headers = await api.call("GET", "/api", accept=AGGREGATED)
        assert headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
        assert body["kind"] == "APIGroupDiscoveryList" and body["apiVersion"] == "apidiscovery.k8s.io/v2"
        core = body["items"][0]
        assert core["metadata"]["name"] == ""
        pods = {r["resource"]: r for r in core["versions"][0]["resources"]}["pods"]
        assert pods["responseKind"] == {"group": "", "version": "v1", "kind": "Pod"}
        assert pods["scope"] == "Namespaced" and pods["categories"] == ["all"]
        assert {s["subresource"] for s in pods["subresources"]} >= {"status"}
        _code, body, _ = await api.call("GET", "/apis", accept=AGGREGATED)
        names = [g["metadata"]["name"] for g in body["items"]]
        assert "apps" in names and "" not in names
        deploy = {r["resource"]: r for g in body["items"] for v in g["versions"] for r in v["resources"]}["deployments"]
        assert {s["subresource"] for s in deploy["subresources"]} == {"status", "scale"}

    run_api(t)


def test_create_get_list_update_delete() -> None:
    async def t(api: Api) -> None:
        code, created, _ = await api.call("POST", PODS, pod("web", labels={"app": "web"}))
        assert code == 201 and created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
        assert created["spec"]["restartPolicy"] == "Always"  # defaulted by the server
        code, got, _ = await api.call("GET", f"{PODS}/web")
        assert code == 200 and got["metadata"]["uid"] == created["metadata"]["uid"]
        code, listed, _ = await api.call("GET", PODS)
        assert listed["kind"] == "PodList" and [o["metadata"]["name"] for o in listed["items"]] == ["web"]
        assert int(listed["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])
        got["metadata"]["labels"]["tier"] = "front"
        code, updated, _ = await api.call("PUT", f"{PODS}/web", got)
        assert code == 200 and updated["metadata"]["labels"]["tier"] == "front"
        # stale resourceVersion -> 409 Conflict
        code, body, _ = await api.call("PUT", f"{PODS}/web", got)
        assert (code, body["reason"]) == (409, "Conflict")
        assert "the object has been modified" in body["message"]
        code, body, _ = await api.call("DELETE", f"{PODS}/web")  # pods answer with the deleted object
        assert (code, body["kind"], body["metadata"]["name"]) == (200, "Pod", "web")
        code, body, _ = await api.call("GET", f"{PODS}/web")
        assert (code, body["reason"], body["message"]) == (404, "NotFound", 'pods "web" not found')

    run_api(t)


def test_generate_name_and_already_exists() -> None:
    async def t(api: Api) -> None:
        obj = pod("")
        obj["metadata"] = {"generateName": "job-"}
        code, created, _ = await api.call("POST", PODS, obj)
        assert code == 201 and created["metadata"]["name"].startswith("job-")
        assert len(created["metadata"]["name"]) == len("job-") + 5
        await api.call("POST", PODS, pod("x"))
        code, body, _ = await api.call("POST", PODS, pod("x"))
        assert (code, body["reason"], body["message"]) == (409, "AlreadyExists", 'pods "x" already exists')

    run_api(t)


def test_invalid_object_is_a_422_status_naming_the_field() -> None:
    async def t(api: Api) -> None:
        code, body, _ = await api.call("POST", "/api/v1/namespaces/default/services", service("s", port=0))
        assert (code, body["reason"]) == (422, "Invalid")
        assert body["message"].startswith('Service "s" is invalid: spec.ports[0].port: ')
        assert body["details"]["kind"] == "Service" and body["details"]["name"] == "s"
        assert body["details"]["causes"][0]["field"] == "spec.ports[0].port"
        code, listed, _ = await api.call("GET", "/api/v1/namespaces/default/services")
        assert listed["items"] == []  # nothing stored

    run_api(t)


def test_missing_namespace_and_mismatched_body() -> None:
    async def t(api: Api) -> None:
        code, body, _ = await api.call("POST", "/api/v1/namespaces/nope/pods", pod("p", ns="nope"))
        assert (code, body["message"]) == (404, 'namespaces "nope" not found')
        code, body, _ = await api.call("POST", PODS, pod("p", ns="other"))
        assert (code, body["reason"]) == (400, "BadRequest")
        assert "namespace of the provided object does not match" in body["message"]
        code, body, _ = await api.call("POST", PODS, service("s"))
        assert code == 400 and "does not match the kind on the URL" in body["message"]

    run_api(t)


def test_service_allocation_runs_in_the_server() -> None:
    async def t(api: Api) -> None:
        code, svc, _ = await api.call("POST", "/api/v1/namespaces/default/services", service("np", svc_type="NodePort"))
        assert code == 201 and svc["spec"]["clusterIP"].startswith("10.")
        assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
        # an update that drops the allocations keeps them (the server re-allocates from what it stored)
        ip = svc["spec"].pop("clusterIP")
        svc["spec"].pop("clusterIPs")
        code, again, _ = await api.call("PUT", "/api/v1/namespaces/default/services/np", svc)
        assert code == 200 and again["spec"]["clusterIP"] == ip
        # ExternalName releases the ClusterIP and node ports
        again["spec"] = {"type": "ExternalName", "externalName": "example.com"}
        code, ext, _ = await api.call("PUT", "/api/v1/namespaces/default/services/np", again)
        assert code == 200 and "clusterIP" not in ext["spec"] and "ports" not in ext["spec"]

    run_api(t)


def test_status_subresource_and_main_resource_split() -> None:
    async def t(api: Api) -> None:
        _, created, _ = await api.call("POST", PODS, pod("p"))
        created["status"] = {"phase": "Running"}
        _, updated, _ = await api.call("PUT", f"{PODS}/p", created)
        assert (updated.get("status") or {}).get("phase") != "Running"  # main resource ignores status
        updated["status"] = {"phase": "Running"}
        updated["metadata"]["labels"] = {"changed": "yes"}
        code, st, _ = await api.call("PUT", f"{PODS}/p/status", updated)
        assert code == 200 and st["status"]["phase"] == "Running"
        assert st["metadata"]["labels"] == {}  # status ignores metadata changes
        code, got, _ = await api.call("GET", f"{PODS}/p/status")
        assert got["status"]["phase"] == "Running"

    run_api(t)


def test_list_selectors_and_pagination() -> None:
    async def t(api: Api) -> None:
        for i in range(5):
            await api.call("POST", PODS, pod(f"p{i}", labels={"app": "a" if i % 2 else "b"}, node=f"n{i % 2}"))
        _, body, _ = await api.call("GET", PODS, params={"labelSelector": "app=a"})
        assert [o["metadata"]["name"] for o in body["items"]] == ["p1", "p3"]
        _, body, _ = await api.call("GET", "/api/v1/pods", params={"fieldSelector": "spec.nodeName=n0"})
        assert [o["metadata"]["name"] for o in body["items"]] == ["p0", "p2", "p4"]
        _, body, _ = await api.call("GET", PODS, params={"fieldSelector": "metadata.name!=p0,spec.nodeName=n0"})
        assert [o["metadata"]["name"] for o in body["items"]] == ["p2", "p4"]
        code, body, _ = await api.call("GET", PODS, params={"fieldSelector": "spec.bogus=x"})
        assert (code, body["reason"]) == (400, "BadRequest") and "field label not supported" in body["message"]
        names, token, rvs = [], "", set()
        while True:
            params = {"limit": "2", **({"continue": token} if token else {})}
            _, page, _ = await api.call("GET", PODS, params=params)
            names += [o["metadata"]["name"] for o in page["items"]]
            rvs.add(page["metadata"]["resourceVersion"])
            token = page["metadata"].get("continue", "")
            if not token:
                break
        assert names == ["p0", "p1", "p2", "p3", "p4"] and len(rvs) == 1

    run_api(t)


def test_delete_pod_on_a_node_is_graceful_and_namespace_terminates() -> None:
    async def t(api: Api) -> None:
        await api.call("POST", PODS, pod("p", node="n1"))
        code, body, _ = await api.call("DELETE", f"{PODS}/p")
        assert code == 202 and body["metadata"]["deletionTimestamp"]
        assert body["metadata"]["deletionGracePeriodSeconds"] == 30
        code, body, _ = await api.call("DELETE", f"{PODS}/p", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                               "gracePeriodSeconds": 0})
        assert (code, body["kind"]) == (200, "Pod")
        await api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": "team"}})
        code, body, _ = await api.call("DELETE", "/api/v1/namespaces/team")
        assert code == 202 and body["status"]["phase"] == "Terminating"
        code, body, _ = await api.call("POST", "/api/v1/namespaces/team/pods", pod("q", ns="team"))
        assert (code, body["reason"]) == (403, "Forbidden") and "being terminated" in body["message"]
        # deleted again once empty (what the namespace controller does), it is removed
        code, body, _ = await api.call("DELETE", "/api/v1/namespaces/team")
        assert (code, body["status"]) == (200, "Success")
        # a namespace with content stays Terminating on a second delete
        api.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "busy"}})
        await api.call("POST", "/api/v1/namespaces/busy/pods", pod("r", ns="busy"))
        await api.call("DELETE", "/api/v1/namespaces/busy")
        code, body, _ = await api.call("DELETE", "/api/v1/namespaces/busy")
        assert code == 202 and body["status"]["phase"] == "Terminating"

    run_api(t)


def test_cascading_delete_and_orphan() -> None:
    async def t(api: Api) -> None:
        _, dep, _ = await api.call("POST", "/apis/apps/v1/namespaces/default/deployments", deployment("web"))
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": dep["metadata"]["uid"],
                 "controller": True}
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "web-1", "namespace": "default", "ownerReferences": [owner]},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                       "template": deployment("web")["spec"]["template"]}}
        _, rs, _ = await api.call("POST", "/apis/apps/v1/namespaces/default/replicasets", rs)
        p = pod("web-1-abc", labels={"app": "web"})
        p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                                             "uid": rs["metadata"]["uid"], "controller": True}]
        await api.call("POST", PODS, p)
        code, body, _ = await api.call("DELETE", "/apis/apps/v1/namespaces/default/deployments/web",
                                       params={"propagationPolicy": "Background"})
        assert (code, body["kind"], body["status"], body["details"]["kind"]) == (200, "Status", "Success",
                                                                                 "deployments")
        _, rsl, _ = await api.call("GET", "/apis/apps/v1/namespaces/default/replicasets")
        _, pods, _ = await api.call("GET", PODS)
        assert rsl["items"] == [] and pods["items"] == []
        # Orphan: the dependents stay, without the ownerReference
        _, dep, _ = await api.call("POST", "/apis/apps/v1/namespaces/default/deployments", deployment("api"))
        rs2 = {**rs, "metadata": {"name": "api-1", "namespace": "default", "ownerReferences": [
            {**owner, "name": "api", "uid": dep["metadata"]["uid"]}]}}
        await api.call("POST", "/apis/apps/v1/namespaces/default/replicasets", rs2)
        await api.call("DELETE", "/apis/apps/v1/namespaces/default/deployments/api",
                       {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"})
        _, left, _ = await api.call("GET", "/apis/apps/v1/namespaces/default/replicasets/api-1")
        assert "ownerReferences" not in left["metadata"]

    run_api(t)


def test_deletecollection_with_selector() -> None:
    async def t(api: Api) -> None:
        for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
            await api.call("POST", PODS, pod(name, labels={"app": app}))
        code, body, _ = await api.call("DELETE", PODS, params={"labelSelector": "app=x"})
        assert code == 200 and sorted(o["metadata"]["name"] for o in body["items"]) == ["a", "b"]
        _, left, _ = await api.call("GET", PODS)
        assert [o["metadata"]["name"] for o in left["items"]] == ["c"]

    run_api(t)


def test_dry_run_writes_nothing() -> None:
    async def t(api: Api) -> None:
        code, body, _ = await api.call("POST", PODS, pod("p"), params={"dryRun": "All"})
        assert code == 201 and body["metadata"]["uid"] and "resourceVersion" not in body["metadata"]
        assert api.store.try_get("Pod", "default", "p") is None
        await api.call("POST", PODS, pod("p"))
        _, cur, _ = await api.call("GET", f"{PODS}/p")
        cur["metadata"]["labels"] = {"x": "y"}
        code, body, _ = await api.call("PUT", f"{PODS}/p", cur, params={"dryRun": "All"})
        assert code == 200 and body["metadata"]["labels"] == {"x": "y"}
        assert api.store.get("Pod", "default", "p")["metadata"]["labels"] == {}
        code, body, _ = await api.call("DELETE", f"{PODS}/p", params={"dryRun": "All"})
        assert code == 200 and api.store.try_get("Pod", "default", "p") is not None
        code, body, _ = await api.call("POST", PODS, pod("q"), params={"dryRun": "Sometimes"})
        assert code == 400

    run_api(t)


def test_authentication_and_rbac_split() -> None:
    async def t(api: Api) -> None:
        code, body, _ = await api.call("GET", PODS, token="")
        assert (code, body["reason"]) == (401, "Unauthorized")
        code, body, _ = await api.call("GET", PODS, token="wrong")
        assert code == 401
        code, _, _ = await api.call("GET", PODS, token=VIEWER)
        assert code == 200
        code, body, _ = await api.call("POST", PODS, pod("v"), token=VIEWER)
        assert (code, body["reason"]) == (403, "Forbidden")
        assert body["message"] == ('pods is forbidden: User "viewer" cannot create resource "pods" in API group "" '
                                   'in the namespace "default"')
        code, _, _ = await api.call("POST", PODS, pod("n"), token=NODE)
        assert code == 201
        code, body, _ = await api.call("DELETE", "/api/v1/namespaces/default", token=NODE)
        assert code == 403 and body["message"] == (
            'namespaces "default" is forbidden: User "system:node:n1" cannot delete resource "namespaces" in '
            'API group "" at the cluster scope')
        code, _, _ = await api.call("POST", "/apis/apps/v1/namespaces/default/deployments", deployment("d"),
                                    token=NODE)
        assert code == 403
        code, _, _ = await api.call("GET", PODS, token=NOBODY)
        assert code == 403
        code, _, _ = await api.call("DELETE", "/api/v1/namespaces/default", token=ADMIN)
        assert code == 202

    run_api(t)


def test_unknown_paths_are_404_status() -> None:
    async def t(api: Api) -> None:
        for path in ("/api/v2/pods", "/api/v1/widgets", "/api/v1/pods/x", f"{PODS}/p/bogus", "/nothing"):
            code, body, _ = await api.call("GET", path)
            assert (code, body["kind"], body["reason"]) == (404, "Status", "NotFound"), path

    run_api(t)


def test_update_may_set_deletion_timestamp_once_but_not_clear_it() -> None:
    async def t(api: Api) -> None:
        _, p, _ = await api.call("POST", PODS, pod("p", node="n1"))
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        p["metadata"]["deletionGracePeriodSeconds"] = 5
        code, marked, _ = await api.call("PUT", f"{PODS}/p", p)  # the controller's graceful delete
        assert code == 200 and marked["metadata"]["deletionGracePeriodSeconds"] == 5
        del marked["metadata"]["deletionTimestamp"]
        code, kept, _ = await api.call("PUT", f"{PODS}/p", marked)
        assert code == 200 and kept["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:00Z"

    run_api(t)
