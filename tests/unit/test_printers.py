"""Tests for netk8s.cli.printers: kubectl's AGE, table columns per kind, -o name/json/yaml."""

from __future__ import annotations

import json

import pytest
import yaml

from netk8s.cli.printers import (
    format_age,
    format_label_selector,
    parse_time,
    render_json,
    render_name,
    render_table,
    render_yaml,
    tabwrite,
)

NOW = parse_time("2024-05-01T12:00:00Z")
assert NOW is not None
FIVE_MIN_AGO = "2024-05-01T11:55:00Z"

S, M, H, D = 1, 60, 3600, 86400


# ------------------------------------------------------------------------------------------ AGE

# k8s.io/apimachinery/pkg/util/duration duration_test.go: TestHumanDuration and ...Boundaries.
HUMAN_DURATION_CASES = [
    (1 * S, "1s"), (70 * S, "70s"), (190 * S, "3m10s"), (70 * M, "70m"), (47 * H, "47h"), (49 * H, "2d1h"),
    ((8 * 24 + 2) * H, "8d"), (367 * 24 * H, "367d"), ((365 * 2 * 24 + 25) * H, "2y1d"),
    ((365 * 8 * 24 + 2) * H, "8y"),
    (-2 * S, "<invalid>"), (-2 * S + 1e-9, "0s"), (0, "0s"), (1 * S - 0.001, "0s"),
    (2 * M - 0.001, "119s"), (2 * M, "2m"), (2 * M + 1, "2m1s"), (10 * M - 0.001, "9m59s"), (10 * M, "10m"),
    (10 * M + 1, "10m"), (3 * H - 0.001, "179m"), (3 * H, "3h"), (3 * H + M, "3h1m"),
    (8 * H - 0.001, "7h59m"), (8 * H, "8h"), (8 * H + 59 * M, "8h"), (2 * D - 0.001, "47h"), (2 * D, "2d"),
    (2 * D + H, "2d1h"), (8 * D - 0.001, "7d23h"), (8 * D, "8d"), (8 * D + 23 * H, "8d"),
    (2 * 365 * D - 0.001, "729d"), (2 * 365 * D, "2y"), (2 * 365 * D + 23 * H + 59 * M, "2y"),
    (2 * 365 * D + D, "2y1d"), (3 * 365 * D, "3y"), (7 * 365 * D, "7y"), (8 * 365 * D - 0.001, "7y364d"),
    (8 * 365 * D, "8y"), (8 * 365 * D + 364 * D, "8y"), (9 * 365 * D, "9y"),
]


@pytest.mark.parametrize(("seconds", "want"), HUMAN_DURATION_CASES, ids=[c[1] + f"@{c[0]}" for c in
                                                                          HUMAN_DURATION_CASES])
def test_format_age_follows_kubectl_human_duration(seconds: float, want: str) -> None:
    # Created at the epoch, so `now` is the duration itself and keeps sub-millisecond precision.
    assert format_age("1970-01-01T00:00:00Z", float(seconds)) == want


def test_format_age_without_timestamp_is_unknown() -> None:
    assert format_age(None, NOW) == "<unknown>"
    assert format_age("not a time", NOW) == "<unknown>"


def test_parse_time_accepts_fractions_and_offsets() -> None:
    assert parse_time("2024-05-01T12:00:00.123456789Z") == pytest.approx(NOW + 0.123456789)
    assert parse_time("2024-05-01T14:00:00+02:00") == NOW


# ------------------------------------------------------------------------------------ tabwriter


def test_tabwrite_pads_cells_per_block_and_never_the_last_cell() -> None:
    text = "a\tbb\tc\nlonger\tx\ty\nno tabs here\nk:\tv\n"
    assert tabwrite(text, 0, 2) == "a       bb  c\nlonger  x   y\nno tabs here\nk:  v\n"


def test_tabwrite_applies_minimum_width() -> None:
    assert tabwrite("A\tB\nx\ty\n", 6, 3) == "A     B\nx     y\n"


# ----------------------------------------------------------------------------------------- pods


def make_pod(name: str = "web-abc", **status: object) -> dict:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "creationTimestamp": FIVE_MIN_AGO},
           "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "nginx"}]},
           "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                      "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0,
                                             "state": {"running": {"startedAt": FIVE_MIN_AGO}}}]}}
    pod["status"].update(status)
    return pod


def cells(kind: str, objs: list[dict], **kw: bool) -> list[list[str]]:
    """The rendered table split back into cells on runs of 3+ spaces (no test cell holds them)."""
    import re
    text = render_table(kind, objs, NOW, **kw)
    return [re.split(r" {3,}", line.rstrip()) for line in text.split("\n")]


def test_pod_table_golden() -> None:
    pods = [make_pod("web-abc"), make_pod("web-defghijk")]
    assert render_table("Pod", pods, NOW) == (
        "NAME           READY   STATUS    RESTARTS   AGE\n"
        "web-abc        1/1     Running   0          5m\n"
        "web-defghijk   1/1     Running   0          5m"
    )


def test_pod_status_terminating_wins_over_phase() -> None:
    pod = make_pod()
    pod["metadata"]["deletionTimestamp"] = "2024-05-01T11:59:50Z"
    assert cells("Pod", [pod])[1] == ["web-abc", "1/1", "Terminating", "0", "5m"]


def test_pod_status_terminal_phase_is_not_terminating() -> None:
    pod = make_pod(phase="Succeeded", containerStatuses=[
        {"name": "app", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}])
    pod["metadata"]["deletionTimestamp"] = "2024-05-01T11:59:50Z"
    assert cells("Pod", [pod])[1][1:3] == ["0/1", "Completed"]


def test_pod_status_shows_waiting_reason_like_image_unsupported() -> None:
    pod = make_pod(phase="Pending", containerStatuses=[
        {"name": "app", "ready": False, "restartCount": 0,
         "state": {"waiting": {"reason": "ImageUnsupported", "message": "no built-in behaviour"}}}])
    assert cells("Pod", [pod])[1] == ["web-abc", "0/1", "ImageUnsupported", "0", "5m"]


def test_pod_restarts_sum_and_last_restart_age() -> None:
    pod = make_pod()
    pod["spec"]["containers"].append({"name": "side", "image": "busybox"})
    pod["status"]["containerStatuses"] = [
        {"name": "app", "ready": True, "restartCount": 2, "state": {"running": {}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}},
        {"name": "side", "ready": False, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:30Z"}}},
    ]
    assert cells("Pod", [pod])[1] == ["web-abc", "1/2", "CrashLoopBackOff", "5 (30s ago)", "5m"]


def test_pod_status_reason_and_init_containers() -> None:
    evicted = make_pod(phase="Failed", reason="Evicted", containerStatuses=[])
    assert cells("Pod", [evicted])[1][1:3] == ["0/1", "Evicted"]
    init = make_pod(phase="Pending", containerStatuses=[])
    init["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}]
    init["status"]["initContainerStatuses"] = [{"name": "setup", "restartCount": 0,
                                                "state": {"running": {}}}]
    assert cells("Pod", [init])[1][2] == "Init:0/1"


def test_pod_completed_container_with_a_running_one_is_running() -> None:
    pod = make_pod(conditions=[{"type": "Ready", "status": "True"}])
    pod["spec"]["containers"].append({"name": "job", "image": "busybox"})
    pod["status"]["containerStatuses"].append(
        {"name": "job", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})
    assert cells("Pod", [pod])[1][1:3] == ["1/2", "Running"]


def test_pod_wide_columns() -> None:
    pending = make_pod("pending", phase="Pending", podIP=None, podIPs=[], containerStatuses=[])
    pending["spec"].pop("nodeName")
    rows = cells("Pod", [make_pod(), pending], wide=True)
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                       "READINESS GATES"]
    assert rows[1][5:] == ["10.244.1.5", "node1", "<none>", "<none>"]
    assert rows[2] == ["pending", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"]


def test_all_namespaces_and_show_kind() -> None:
    rows = cells("Pod", [make_pod()], all_namespaces=True, show_kind=True)
    assert rows[0][:2] == ["NAMESPACE", "NAME"]
    assert rows[1][:2] == ["default", "pod/web-abc"]


def test_empty_list_renders_nothing() -> None:
    assert render_table("Pod", [], NOW) == ""


# ------------------------------------------------------------------------------------- services


def make_svc(name: str, svc_type: str | None = "ClusterIP", **spec: object) -> dict:
    s = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "default", "creationTimestamp": FIVE_MIN_AGO},
         "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "selector": {"app": "web"},
                  "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}}
    if svc_type:
        s["spec"]["type"] = svc_type
    s["spec"].update(spec)
    return s


SERVICE_CASES = [
    ("clusterip", make_svc("a"), ["a", "ClusterIP", "10.96.0.20", "<none>", "80/TCP", "5m"]),
    ("type defaults to ClusterIP", make_svc("a", None), ["a", "ClusterIP", "10.96.0.20", "<none>", "80/TCP", "5m"]),
    ("headless", make_svc("h", clusterIP="None", clusterIPs=["None"]),
     ["h", "ClusterIP", "None", "<none>", "80/TCP", "5m"]),
    ("externalname", make_svc("x", "ExternalName", clusterIP=None, clusterIPs=None, selector=None, ports=None,
                              externalName="db.example.com"),
     ["x", "ExternalName", "<none>", "db.example.com", "<none>", "5m"]),
    ("nodeport", make_svc("n", "NodePort", ports=[
        {"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053}]),
     ["n", "NodePort", "10.96.0.20", "<none>", "80:30080/TCP,53:30053/UDP", "5m"]),
    ("lb pending", make_svc("lb", "LoadBalancer", ports=[{"port": 80, "nodePort": 31000}]),
     ["lb", "LoadBalancer", "10.96.0.20", "<pending>", "80:31000/TCP", "5m"]),
    ("externalIPs", make_svc("e", externalIPs=["192.168.56.150", "192.168.56.151"]),
     ["e", "ClusterIP", "10.96.0.20", "192.168.56.150,192.168.56.151", "80/TCP", "5m"]),
]


@pytest.mark.parametrize(("name", "svc", "want"), SERVICE_CASES, ids=[c[0] for c in SERVICE_CASES])
def test_service_rows(name: str, svc: dict, want: list[str]) -> None:
    rows = cells("Service", [svc])
    assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[1] == want


def test_service_load_balancer_ingress_and_external_ips() -> None:
    lb = make_svc("lb", "LoadBalancer", externalIPs=["10.0.0.9"])
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.56.201"}, {"ip": "192.168.56.200"}]}}
    # Narrow output cuts the joined ingress list at 16 characters, like kubectl.
    assert cells("Service", [lb])[1][3] == "192.168.56.20...,10.0.0.9"
    assert cells("Service", [lb], wide=True)[1][3] == "192.168.56.200,192.168.56.201,10.0.0.9"
    lb["spec"].pop("externalIPs")
    lb["status"]["loadBalancer"]["ingress"] = [{"ip": "192.168.56.200"}]
    assert cells("Service", [lb])[1][3] == "192.168.56.200"


def test_service_wide_selector() -> None:
    svc = make_svc("a", selector={"tier": "fe", "app": "web"})
    rows = cells("Service", [svc, make_svc("b", selector=None)], wide=True)
    assert rows[0][-1] == "SELECTOR"
    assert rows[1][-1] == "app=web,tier=fe"
    assert rows[2][-1] == "<none>"


# ------------------------------------------------------------------------ endpoints and slices


def make_endpoints(n: int) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": FIVE_MIN_AGO},
            "subsets": [{"addresses": [{"ip": f"10.244.{i}.2"} for i in range(1, n + 1)],
                         "notReadyAddresses": [{"ip": "10.244.9.9"}], "ports": [{"port": 80}]}] if n else []}


def test_endpoints_truncated_after_three() -> None:
    assert cells("Endpoints", [make_endpoints(5)])[1] == [
        "web", "10.244.1.2:80,10.244.2.2:80,10.244.3.2:80 + 2 more...", "5m"]
    assert cells("Endpoints", [make_endpoints(2)])[1] == ["web", "10.244.1.2:80,10.244.2.2:80", "5m"]
    assert cells("Endpoints", [make_endpoints(0)])[1] == ["web", "<none>", "5m"]


def test_endpoints_multiple_ports_count_each_pair() -> None:
    ep = make_endpoints(2)
    ep["subsets"][0]["ports"] = [{"name": "http", "port": 80}, {"name": "https", "port": 443}]
    assert cells("Endpoints", [ep])[1][1] == "10.244.1.2:80,10.244.2.2:80,10.244.1.2:443 + 1 more..."


def make_slice(n_endpoints: int, ports: list[dict]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-x1", "namespace": "default", "creationTimestamp": FIVE_MIN_AGO},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [f"10.244.1.{i}"]} for i in range(1, n_endpoints + 1)]}


def test_endpointslice_rows() -> None:
    rows = cells("EndpointSlice", [make_slice(5, [{"port": 80}, {"port": 443}]), make_slice(0, [])])
    assert rows[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert rows[1] == ["web-x1", "IPv4", "80,443", "10.244.1.1,10.244.1.2,10.244.1.3 + 2 more...", "5m"]
    assert rows[2] == ["web-x1", "IPv4", "<unset>", "<unset>", "5m"]


# ------------------------------------------------------------------------------------ workloads

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"},
                                    {"name": "side", "image": "busybox"}]}}


def test_deployment_rows() -> None:
    d = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "web", "namespace": "default", "creationTimestamp": FIVE_MIN_AGO},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    rows = cells("Deployment", [d], wide=True, show_kind=True)
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[1] == ["deployment.apps/web", "2/3", "3", "2", "5m", "nginx,side", "nginx:1.25,busybox",
                       "app=web"]
    d["status"] = {}
    assert cells("Deployment", [d])[1] == ["web", "0/3", "0", "0", "5m"]


def test_replicaset_and_statefulset_rows() -> None:
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "web-7d4b9", "namespace": "default", "creationTimestamp": FIVE_MIN_AGO},
          "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9"}},
                   "template": TEMPLATE},
          "status": {"replicas": 3, "readyReplicas": 1}}
    rows = cells("ReplicaSet", [rs], wide=True)
    assert rows[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[1] == ["web-7d4b9", "3", "3", "1", "5m", "nginx,side", "nginx:1.25,busybox",
                       "app=web,pod-template-hash=7d4b9"]
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "db", "namespace": "default", "creationTimestamp": FIVE_MIN_AGO},
           "spec": {"replicas": 2, "template": TEMPLATE}, "status": {"readyReplicas": 2}}
    rows = cells("StatefulSet", [sts], wide=True)
    assert rows == [["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"],
                    ["db", "2/2", "5m", "nginx,side", "nginx:1.25,busybox"]]


def test_label_selector_formatting() -> None:
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({}) == "<none>"
    sel = {"matchLabels": {"tier": "fe"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["prod", "dev"]},
        {"key": "zone", "operator": "DoesNotExist"}, {"key": "canary", "operator": "Exists"}]}
    assert format_label_selector(sel) == "canary,env in (dev,prod),tier=fe,!zone"


# ------------------------------------------------------------------------------ nodes, namespaces


def make_node(name: str, ready: str | None = "True", **labels: str) -> dict:
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "creationTimestamp": "2024-04-30T12:00:00Z", "labels": labels},
            "spec": {},
            "status": {"conditions": [], "nodeInfo": {"kubeletVersion": "v1.30.0", "osImage": "Ubuntu",
                                                      "kernelVersion": "6.1.0"},
                       "addresses": [{"type": "InternalIP", "address": "192.168.56.11"}]}}
    if ready is not None:
        node["status"]["conditions"] = [{"type": "MemoryPressure", "status": "False"},
                                        {"type": "Ready", "status": ready}]
    return node


def test_node_rows() -> None:
    cordoned = make_node("node2", "False")
    cordoned["spec"]["unschedulable"] = True
    nodes = [make_node("node1", **{"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "infra"}),
             cordoned, make_node("node3", None)]
    rows = cells("Node", nodes, all_namespaces=True)
    # Cluster-scoped: no NAMESPACE column even with -A.
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert rows[1] == ["node1", "Ready", "control-plane,infra", "24h", "v1.30.0"]
    assert rows[2] == ["node2", "NotReady,SchedulingDisabled", "<none>", "24h", "v1.30.0"]
    assert rows[3][1] == "Unknown"
    wide = cells("Node", nodes[:1], wide=True)
    assert wide[0][5:] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert wide[1][5:] == ["192.168.56.11", "<none>", "Ubuntu", "6.1.0", "<unknown>"]


def test_namespace_rows() -> None:
    ns = [{"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": "default", "creationTimestamp": "2024-04-29T12:00:00Z"},
           "status": {"phase": "Active"}},
          {"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": "gone", "creationTimestamp": FIVE_MIN_AGO}, "status": {"phase": "Terminating"}}]
    assert cells("Namespace", ns, show_kind=True) == [["NAME", "STATUS", "AGE"],
                                                      ["namespace/default", "Active", "2d"],
                                                      ["namespace/gone", "Terminating", "5m"]]


# ------------------------------------------------------------------------------ name, json, yaml


def test_render_name_uses_kind_and_group() -> None:
    objs = [make_pod(), make_svc("nginx"), {"kind": "Deployment", "metadata": {"name": "web"}},
            {"kind": "EndpointSlice", "metadata": {"name": "web-x1"}}, {"kind": "Endpoints", "metadata": {"name": "e"}}]
    assert render_name(objs) == ("pod/web-abc\nservice/nginx\ndeployment.apps/web\n"
                                 "endpointslice.discovery.k8s.io/web-x1\nendpoints/e")


def test_render_json_list_shape_and_format() -> None:
    pod = make_pod()
    text = render_json([pod])
    assert json.loads(text) == {"apiVersion": "v1", "items": [pod], "kind": "List",
                                "metadata": {"resourceVersion": ""}}
    assert text.startswith('{\n    "apiVersion": "v1",\n    "items": [\n        {\n            "apiVersion"')
    assert not text.endswith("\n")


def test_render_json_single_object_sorted_and_escaped_like_go() -> None:
    obj = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "annotations": {"a": "<x>&"}}}
    text = render_json(obj)
    assert text.index('"apiVersion"') < text.index('"kind"') < text.index('"metadata"')
    assert "\\u003cx\\u003e\\u0026" in text
    assert json.loads(text) == obj


def test_render_yaml_sorted_block_style() -> None:
    pod = make_pod()
    pod["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    text = render_yaml([pod])
    assert yaml.safe_load(text) == {"apiVersion": "v1", "items": [pod], "kind": "List",
                                    "metadata": {"resourceVersion": ""}}
    assert text.startswith("apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Pod\n")
    assert 'deployment.kubernetes.io/revision: "1"' in text
    assert text.endswith('kind: List\nmetadata:\n  resourceVersion: ""')
