"""meta.k8s.io/v1 Tables: kubectl's column definitions per kind, typed cells, includeObject, CLI parity."""

from __future__ import annotations

import pytest

from netk8s.apiserver.tables import columns, parse_time, to_table
from netk8s.cli.printers import table_rows
from netk8s.model.kinds import KINDS

NOW = parse_time("2024-05-01T12:00:00Z")
assert NOW is not None
CREATED = "2024-05-01T11:55:00Z"

# kube-apiserver printers.go: the column names per kind, priority 1 marked with "*".
EXPECTED_COLUMNS = {
    "Pod": ["Name", "Ready", "Status", "Restarts", "Age", "*IP", "*Node", "*Nominated Node", "*Readiness Gates"],
    "Service": ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "*Selector"],
    "Deployment": ["Name", "Ready", "Up-to-date", "Available", "Age", "*Containers", "*Images", "*Selector"],
    "ReplicaSet": ["Name", "Desired", "Current", "Ready", "Age", "*Containers", "*Images", "*Selector"],
    "StatefulSet": ["Name", "Ready", "Age", "*Containers", "*Images"],
    "Node": ["Name", "Status", "Roles", "Age", "Version", "*Internal-IP", "*External-IP", "*OS-Image",
             "*Kernel-Version", "*Container-Runtime"],
    "Namespace": ["Name", "Status", "Age"],
    "Endpoints": ["Name", "Endpoints", "Age"],
    "EndpointSlice": ["Name", "AddressType", "Ports", "Endpoints", "Age"],
    "ConfigMap": ["Name", "Data", "Age"],
    "Secret": ["Name", "Type", "Data", "Age"],
    "Ingress": ["Name", "Class", "Hosts", "Address", "Ports", "Age"],
    "IngressClass": ["Name", "Controller", "Parameters", "Age"],
    "NetworkPolicy": ["Name", "Pod-Selector", "Age"],
}


def test_every_served_kind_has_kubectls_columns() -> None:
    assert set(EXPECTED_COLUMNS) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(EXPECTED_COLUMNS))
def test_column_definitions(kind: str) -> None:
    table = to_table(kind, [], NOW)
    got = [("*" if c["priority"] == 1 else "") + c["name"] for c in table["columnDefinitions"]]
    assert got == EXPECTED_COLUMNS[kind]
    first = table["columnDefinitions"][0]
    assert first["format"] == "name" and first["type"] == "string"
    assert all(c["description"] for c in table["columnDefinitions"]), "descriptions come from the schemas"
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1" and table["rows"] == []


def pod(phase: str = "Running") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": CREATED, "uid": "u1",
                         "resourceVersion": "12", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": phase, "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0,
                                              "state": {"running": {"startedAt": CREATED}}}]}}


def test_pod_row_cells() -> None:
    table = to_table("Pod", [pod()], NOW)
    (row,) = table["rows"]
    assert row["cells"] == ["web-1", "1/1", "Running", "0", "5m", "10.244.1.5", "node-1", "<none>", "<none>"]
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": pod()["metadata"]}
    assert "conditions" not in row


def test_completed_pod_row_has_completed_condition() -> None:
    (row,) = to_table("Pod", [pod("Succeeded")], NOW)["rows"]
    assert row["conditions"][0]["type"] == "Completed" and row["conditions"][0]["status"] == "True"


def test_integer_columns_are_numbers() -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "creationTimestamp": CREATED},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2"}]}}},
           "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    (row,) = to_table("Deployment", [dep], NOW)["rows"]
    assert row["cells"] == ["web", "2/3", 3, 2, "5m", "nginx", "nginx:1.14.2", "app=web"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s", "creationTimestamp": CREATED},
          "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    (row,) = to_table("ConfigMap", [cm], NOW)["rows"]
    assert row["cells"] == ["s", 3, "5m"]


def test_service_row_is_wide_on_the_server() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "creationTimestamp": CREATED},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.30", "selector": {"app": "web"},
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}, {"ip": "192.168.56.201"}]}}}
    (row,) = to_table("Service", [svc], NOW)["rows"]
    # kube-apiserver generates with Wide=true: the LoadBalancer IPs are not cut to 16 characters.
    assert row["cells"] == ["lb", "LoadBalancer", "10.96.0.30", "192.168.56.200,192.168.56.201", "80:30080/TCP",
                            "5m", "app=web"]


@pytest.mark.parametrize("include", ["None", "Object"])
def test_include_object(include: str) -> None:
    (row,) = to_table("Pod", [pod()], NOW, include_object=include)["rows"]
    if include == "None":
        assert "object" not in row
    else:
        assert row["object"] == pod()


def test_bad_include_object_and_list_metadata() -> None:
    with pytest.raises(ValueError, match="includeObject"):
        to_table("Pod", [], NOW, include_object="Everything")
    table = to_table("Pod", [], NOW, resource_version="42", continue_token="abc")
    assert table["metadata"] == {"resourceVersion": "42", "continue": "abc"}


@pytest.mark.parametrize("kind", sorted(EXPECTED_COLUMNS))
def test_cli_header_is_the_upper_cased_columns(kind: str) -> None:
    wide = table_rows(kind, [], NOW, wide=True)[0]
    narrow = table_rows(kind, [], NOW, wide=False)[0]
    assert wide == [c.upper().lstrip("*") for c in EXPECTED_COLUMNS[kind]]
    assert narrow == ["NAME"] + [c.header for c in columns(kind, wide=False)]


def test_cli_and_table_cells_agree() -> None:
    (row,) = to_table("Pod", [pod()], NOW)["rows"]
    cli = table_rows("Pod", [pod()], NOW, wide=True)[1]
    assert cli == [str(c) for c in row["cells"]]
