"""Tests for netk8s.cli.describe: kubectl-describe layout and values for every kind."""

from __future__ import annotations

import copy
import re

import pytest

from netk8s.cli.describe import describe, describe_probe, format_rfc1123z, pod_qos_class
from netk8s.cli.printers import parse_time

NOW = parse_time("2024-05-01T12:00:00Z")
assert NOW is not None
FIVE_MIN_AGO = "2024-05-01T11:55:00Z"


def fields(text: str) -> dict[str, str]:
    """Top-level `Key:  value` lines (no indentation) as a dict; first occurrence wins."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        m = re.match(r"^([A-Za-z][A-Za-z -]*):\s+(.*)$", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2).rstrip()
    return out


def value_column(text: str, keys: list[str]) -> set[int]:
    """Columns where the values of the given top-level keys start."""
    cols = set()
    for line in text.split("\n"):
        for key in keys:
            if line.startswith(key + ":"):
                rest = line[len(key) + 1:]
                cols.add(len(key) + 1 + len(rest) - len(rest.lstrip()))
    return cols


# ------------------------------------------------------------------------------------------ pods


def make_pod(**status: object) -> dict:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-7d4b9-abcde", "namespace": "default", "uid": "p1",
                        "creationTimestamp": FIVE_MIN_AGO,
                        "labels": {"app": "web", "pod-template-hash": "7d4b9"},
                        "annotations": {"note": "hello",
                                        "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9",
                                             "uid": "rs1", "controller": True}]},
           "spec": {"nodeName": "node1", "containers": [{
               "name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
               "livenessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 20},
               "readinessProbe": {"httpGet": {"path": "/healthz", "port": 80}},
               "env": [{"name": "MODE", "value": "fast"},
                       {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]},
           "status": {"phase": "Running", "hostIP": "192.168.56.11", "podIP": "10.244.1.5",
                      "podIPs": [{"ip": "10.244.1.5"}], "startTime": "2024-05-01T11:55:01Z",
                      "conditions": [{"type": "Initialized", "status": "True"},
                                     {"type": "Ready", "status": "True"},
                                     {"type": "ContainersReady", "status": "True"},
                                     {"type": "PodScheduled", "status": "True"}],
                      "containerStatuses": [{"name": "nginx", "ready": True, "restartCount": 1,
                                             "containerID": "netk8s://4242",
                                             "state": {"running": {"startedAt": "2024-05-01T11:55:02Z"}}}]}}
    pod["status"].update(status)
    return pod


def test_pod_header_fields() -> None:
    text = describe(make_pod(), {}, NOW)
    f = fields(text)
    assert f["Name"] == "web-7d4b9-abcde"
    assert f["Namespace"] == "default"
    assert f["Priority"] == "0"
    assert f["Node"] == "node1/192.168.56.11"
    assert f["Start Time"] == "Wed, 01 May 2024 11:55:01 +0000"
    assert f["Labels"] == "app=web"
    assert f["Annotations"] == "note: hello"  # last-applied-configuration is skipped, as kubectl does
    assert f["Status"] == "Running"
    assert f["IP"] == "10.244.1.5"
    assert f["Controlled By"] == "ReplicaSet/web-7d4b9"
    assert f["QoS Class"] == "BestEffort"
    assert f["Events"] == "<none>"
    assert "IPs:\n  IP:" in text


def test_pod_labels_continue_aligned_under_values() -> None:
    text = describe(make_pod(), {}, NOW)
    lines = text.split("\n")
    i = next(n for n, line in enumerate(lines) if line.startswith("Labels:"))
    assert lines[i + 1].strip() == "pod-template-hash=7d4b9"
    assert lines[i + 1].index("pod") == lines[i].index("app=web")
    # Name..Status are one tabwriter block: their values start in one column (longest key + 2).
    assert value_column(text, ["Name", "Namespace", "Priority", "Node", "Start Time", "Labels",
                               "Annotations", "Status", "IP"]) == {len("Annotations:") + 2}


def test_pod_container_section() -> None:
    text = describe(make_pod(), {}, NOW)
    block = text[text.index("Containers:"):text.index("Conditions:")]
    assert "\n  nginx:\n" in block
    assert re.search(r"\n    Container ID:\s+netk8s://4242\n", block)
    assert re.search(r"\n    Image:\s+nginx:1\.25\n", block)
    assert re.search(r"\n    Port:\s+80/TCP\n", block)
    assert re.search(r"\n    Host Port:\s+0/TCP\n", block)
    assert re.search(r"\n    State:\s+Running\n      Started:\s+Wed, 01 May 2024 11:55:02 \+0000\n", block)
    assert re.search(r"\n    Ready:\s+True\n", block)
    assert re.search(r"\n    Restart Count:\s+1\n", block)
    assert re.search(r"\n    Liveness:\s+tcp-socket :80 delay=5s timeout=1s period=20s #success=1 #failure=3\n",
                     block)
    assert re.search(r"\n    Readiness:\s+http-get http://:80/healthz delay=0s timeout=1s period=10s "
                     r"#success=1 #failure=3\n", block)
    assert re.search(r"\n    Environment:\n      MODE:\s+fast\n      MY_POD:\s+web-7d4b9-abcde "
                     r"\(v1:metadata.name\)\n", block)
    assert re.search(r"\n    Mounts:\s+<none>\n", block)


def test_pod_conditions_table() -> None:
    text = describe(make_pod(), {}, NOW)
    assert "Conditions:\n  Type              Status\n  Initialized       True \n  Ready             True \n" \
           "  ContainersReady   True \n  PodScheduled      True \n" in text


def test_pod_image_unsupported_is_visible() -> None:
    pod = make_pod(phase="Pending", conditions=[{"type": "Ready", "status": "False"}],
                   containerStatuses=[{"name": "nginx", "ready": False, "restartCount": 0,
                                       "state": {"waiting": {"reason": "ImageUnsupported",
                                                             "message": "image redis has no built-in behaviour"}}}])
    text = describe(pod, {}, NOW)
    assert fields(text)["Status"] == "Pending"
    assert re.search(r"\n    State:\s+Waiting\n      Reason:\s+ImageUnsupported\n"
                     r"      Message:\s+image redis has no built-in behaviour\n", text)
    assert re.search(r"\n    Ready:\s+False\n", text)


def test_pod_terminating_and_terminated_state() -> None:
    pod = make_pod(containerStatuses=[{"name": "nginx", "ready": False, "restartCount": 2,
                                       "state": {"terminated": {"exitCode": 137, "reason": "Error", "signal": 9,
                                                                "startedAt": "2024-05-01T11:55:02Z",
                                                                "finishedAt": "2024-05-01T11:59:00Z"}}}])
    pod["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:30Z"
    pod["metadata"]["deletionGracePeriodSeconds"] = 30
    text = describe(pod, {}, NOW)
    f = fields(text)
    assert f["Status"] == "Terminating (lasts 30s)"
    assert f["Termination Grace Period"] == "30s"
    assert re.search(r"\n    State:\s+Terminated\n      Reason:\s+Error\n      Exit Code:\s+137\n"
                     r"      Signal:\s+9\n      Started:\s+Wed, 01 May 2024 11:55:02 \+0000\n"
                     r"      Finished:\s+Wed, 01 May 2024 11:59:00 \+0000\n", text)


def test_pod_unscheduled_without_ips_and_with_command() -> None:
    pod = make_pod(phase="Pending", podIP=None, podIPs=None, hostIP=None, startTime=None, containerStatuses=None,
                   conditions=None)
    pod["spec"].pop("nodeName")
    pod["spec"]["containers"][0].update(command=["sh", "-c"], args=["echo hi\nsleep 5"], ports=None, env=None)
    pod["metadata"]["labels"] = {}
    text = describe(pod, {}, NOW)
    f = fields(text)
    assert f["Node"] == "<none>"
    assert f["IPs"] == "<none>"
    assert f["Labels"] == "<none>"
    assert "Start Time" not in f and "Conditions" not in text
    assert "\n    Command:\n      sh\n      -c\n    Args:\n      echo hi\n      sleep 5\n" in text
    assert re.search(r"\n    Port:\s+<none>\n    Host Port:\s+<none>\n", text)
    assert re.search(r"\n    Environment:\s+<none>\n", text)
    assert "Container ID" not in text  # no status for the container yet


PROBE_CASES = [
    ("http defaults", {"httpGet": {"port": 8080}},
     "http-get http://:8080/ delay=0s timeout=1s period=10s #success=1 #failure=3"),
    ("https named port host", {"httpGet": {"scheme": "HTTPS", "host": "10.0.0.1", "port": "web", "path": "x"},
                               "timeoutSeconds": 3, "failureThreshold": 5},
     "http-get https://10.0.0.1:web/x delay=0s timeout=3s period=10s #success=1 #failure=5"),
    ("exec", {"exec": {"command": ["cat", "/tmp/healthy"]}, "successThreshold": 1},
     "exec [cat /tmp/healthy] delay=0s timeout=1s period=10s #success=1 #failure=3"),
    ("tcp", {"tcpSocket": {"port": 6379}}, "tcp-socket :6379 delay=0s timeout=1s period=10s #success=1 #failure=3"),
    ("grpc", {"grpc": {"port": 9000}}, "grpc <pod>:9000  delay=0s timeout=1s period=10s #success=1 #failure=3"),
]


@pytest.mark.parametrize(("name", "probe", "want"), PROBE_CASES, ids=[c[0] for c in PROBE_CASES])
def test_describe_probe(name: str, probe: dict, want: str) -> None:
    assert describe_probe(probe) == want


def test_qos_classes() -> None:
    pod = make_pod()
    assert pod_qos_class(pod) == "BestEffort"
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    assert pod_qos_class(pod) == "Burstable"
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "0.5", "memory": "128Mi"}}
    assert pod_qos_class(pod) == "Guaranteed"
    pod["spec"]["containers"][0]["resources"]["requests"] = {"cpu": "500m", "memory": "64Mi"}
    assert pod_qos_class(pod) == "Burstable"


def test_rfc1123z() -> None:
    assert format_rfc1123z("2024-02-29T23:05:09.5+01:00") == "Thu, 29 Feb 2024 22:05:09 +0000"
    assert format_rfc1123z(None) == "Mon, 01 Jan 0001 00:00:00 +0000"


def test_events_table_when_given() -> None:
    pod = make_pod()
    event = {"kind": "Event", "type": "Warning", "reason": "Unhealthy", "count": 3,
             "involvedObject": {"kind": "Pod", "name": "web-7d4b9-abcde"},
             "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:00Z",
             "source": {"component": "kubelet"}, "message": "Readiness probe failed \n"}
    other = dict(event, involvedObject={"kind": "Pod", "name": "someone-else"})
    text = describe(pod, {"Event": [event, other]}, NOW)
    assert text.endswith("Events:\n  Type     Reason     Age                From     Message\n"
                         "  ----     ------     ----               ----     -------\n"
                         "  Warning  Unhealthy  60s (x3 over 10m)  kubelet  Readiness probe failed")


# -------------------------------------------------------------------------------------- services


def make_svc(svc_type: str = "ClusterIP", **spec: object) -> dict:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
           "spec": {"type": svc_type, "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http-web", "protocol": "TCP"},
                              {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}}
    svc["spec"].update(spec)
    return svc


ENDPOINTS = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
             "subsets": [{"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.3"}],
                          "notReadyAddresses": [{"ip": "10.244.2.9"}],
                          "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]}]}


def test_service_clusterip() -> None:
    text = describe(make_svc(), {"Endpoints": [ENDPOINTS]}, NOW)
    f = fields(text)
    assert f["Name"] == "web"
    assert f["Labels"] == "app=web"
    assert f["Annotations"] == "<none>"
    assert f["Selector"] == "app=web"
    assert f["Type"] == "ClusterIP"
    assert f["IP Family Policy"] == "SingleStack"
    assert f["IP Families"] == "IPv4"
    assert f["IP"] == "10.96.0.20"
    assert f["IPs"] == "10.96.0.20"
    assert f["Session Affinity"] == "None"
    assert f["Internal Traffic Policy"] == "Cluster"
    assert "External Traffic Policy" not in f and "NodePort" not in f
    # Per port: name and port/proto in their own columns, endpoints of that port only.
    assert re.search(r"\nPort:\s+http\s{2}80/TCP\nTargetPort:\s+http-web/TCP\n"
                     r"Endpoints:\s+10\.244\.1\.2:8080,10\.244\.2\.3:8080\n", text)
    assert re.search(r"\nPort:\s+metrics\s{2}9090/TCP\nTargetPort:\s+9090/TCP\n"
                     r"Endpoints:\s+10\.244\.1\.2:9090,10\.244\.2\.3:9090\n", text)
    assert len(value_column(text, ["Name", "Type", "Port", "TargetPort", "Endpoints", "Events"])) == 1


def test_service_nodeport_and_loadbalancer() -> None:
    svc = make_svc("LoadBalancer", ports=[{"port": 80, "targetPort": 80, "nodePort": 30080}],
                   healthCheckNodePort=31999, externalTrafficPolicy="Local")
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}]}}
    text = describe(svc, {}, NOW)
    f = fields(text)
    assert f["LoadBalancer Ingress"] == "192.168.56.200"
    assert f["External Traffic Policy"] == "Local"
    assert f["HealthCheck NodePort"] == "31999"
    assert f["Endpoints"] == "<none>"
    assert re.search(r"\nPort:\s+<unset>\s{2}80/TCP\nTargetPort:\s+80/TCP\nNodePort:\s+<unset>\s{2}30080/TCP\n", text)
    pending = describe(make_svc("NodePort", ports=[{"port": 80, "nodePort": 30080}]), {}, NOW)
    assert "LoadBalancer Ingress" not in pending
    assert fields(pending)["External Traffic Policy"] == "Cluster"
    assert fields(pending)["TargetPort"] == "80/TCP"  # targetPort defaults to port


def test_service_externalname_and_headless() -> None:
    ext = make_svc("ExternalName", clusterIP=None, clusterIPs=None, selector=None, ports=None,
                   externalName="db.example.com")
    f = fields(describe(ext, {}, NOW))
    assert f["External Name"] == "db.example.com"
    assert f["IP Families"] == "<none>"
    assert f["IPs"] == "<none>"
    assert f["Selector"] == "<none>"
    assert "IP Family Policy" not in f and "Internal Traffic Policy" not in f
    headless = make_svc(clusterIP="None", clusterIPs=["None"])
    assert fields(describe(headless, {}, NOW))["IP"] == "None"


def test_service_endpoints_from_slices_and_truncation() -> None:
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
           "endpoints": [{"addresses": [f"10.244.1.{i}"], "conditions": {"ready": i != 2}} for i in range(1, 7)]}
    text = describe(make_svc(), {"EndpointSlice": [eps]}, NOW)
    assert "Endpoints:                10.244.1.1:8080,10.244.1.3:8080,10.244.1.4:8080 + 2 more...\n" in text


# ------------------------------------------------------------------------------------ workloads

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}}


def make_deploy() -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d1",
                         "creationTimestamp": "2024-05-01T11:00:00Z", "labels": {"app": "web"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": copy.deepcopy(TEMPLATE)},
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                       "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}}


def make_rs(name: str, image: str, replicas: int, created: str) -> dict:
    template = copy.deepcopy(TEMPLATE)
    template["metadata"]["labels"]["pod-template-hash"] = name.rsplit("-", 1)[1]
    template["spec"]["containers"][0]["image"] = image
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": created,
                         "labels": dict(template["metadata"]["labels"]),
                         "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d1", "controller": True}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(template["metadata"]["labels"])},
                     "template": template},
            "status": {"replicas": replicas, "readyReplicas": replicas}}


def test_deployment() -> None:
    new = make_rs("web-7d4b9", "nginx:1.25", 3, "2024-05-01T11:30:00Z")
    old = make_rs("web-5f6c7", "nginx:1.24", 1, "2024-05-01T11:00:00Z")
    gone = make_rs("web-1a2b3", "nginx:1.23", 0, "2024-05-01T10:00:00Z")
    text = describe(make_deploy(), {"ReplicaSet": [old, new, gone]}, NOW)
    f = fields(text)
    assert f["CreationTimestamp"] == "Wed, 01 May 2024 11:00:00 +0000"
    assert f["Selector"] == "app=web"
    assert f["Replicas"] == "3 desired | 3 updated | 3 total | 3 available | 0 unavailable"
    assert f["StrategyType"] == "RollingUpdate"
    assert f["RollingUpdateStrategy"] == "25% max unavailable, 25% max surge"
    assert f["NewReplicaSet"] == "web-7d4b9 (3/3 replicas created)"
    assert f["OldReplicaSets"] == "web-5f6c7 (1/1 replicas created)"
    assert "Pod Template:\n  Labels:  app=web\n  Containers:\n   nginx:\n" in text
    assert re.search(r"\n    Image:\s+nginx:1\.25\n", text)
    # The condition rows share a tabwriter block with OldReplicaSets/NewReplicaSet, as in kubectl.
    assert ("Conditions:\n  Type           Status  Reason\n  ----           ------  ------\n"
            "  Available      True    MinimumReplicasAvailable\nOldReplicaSets:  web-5f6c7") in text


def test_deployment_without_replicasets() -> None:
    d = make_deploy()
    d["spec"]["strategy"] = {"type": "Recreate"}
    f = fields(describe(d, {}, NOW))
    assert f["StrategyType"] == "Recreate"
    assert "RollingUpdateStrategy" not in f
    assert f["NewReplicaSet"] == "<none>"


def test_replicaset_pods_status() -> None:
    rs = make_rs("web-7d4b9", "nginx:1.25", 3, FIVE_MIN_AGO)
    owned = {"kind": "Pod", "metadata": {"name": "p", "namespace": "default",
                                         "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d4b9",
                                                              "uid": "uid-web-7d4b9", "controller": True}]},
             "status": {"phase": "Running"}}
    pending = copy.deepcopy(owned)
    pending["status"]["phase"] = "Pending"
    stranger = copy.deepcopy(owned)
    stranger["metadata"]["ownerReferences"][0]["uid"] = "other"
    f = fields(describe(rs, {"Pod": [owned, pending, stranger]}, NOW))
    assert f["Controlled By"] == "Deployment/web"
    assert f["Replicas"] == "3 current / 3 desired"
    assert f["Pods Status"] == "1 Running / 1 Waiting / 0 Succeeded / 0 Failed"
    assert f["Selector"] == "app=web,pod-template-hash=7d4b9"


def test_statefulset() -> None:
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "db", "namespace": "default", "uid": "s1", "creationTimestamp": FIVE_MIN_AGO},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": copy.deepcopy(TEMPLATE),
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}},
           "status": {"replicas": 2}}
    text = describe(sts, {}, NOW)
    f = fields(text)
    assert f["Replicas"] == "2 desired | 2 total"
    assert f["Update Strategy"] == "RollingUpdate"
    assert re.search(r"\n  Partition:\s+1\n", text)
    assert f["Pods Status"] == "0 Running / 0 Waiting / 0 Succeeded / 0 Failed"
    assert f["Volume Claims"] == "<none>"
    assert "Pod Template:" in text


# -------------------------------------------------------------------------------- node, namespace


def make_node() -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node1", "creationTimestamp": "2024-04-30T12:00:00Z",
                         "labels": {"kubernetes.io/hostname": "node1", "node-role.kubernetes.io/worker": ""}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status",
                                       "lastHeartbeatTime": "2024-05-01T11:59:00Z",
                                       "lastTransitionTime": "2024-04-30T12:00:00Z"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.56.11"},
                                     {"type": "Hostname", "address": "node1"}],
                       "allocatable": {"cpu": "2", "memory": "2Gi"},
                       "nodeInfo": {"kubeletVersion": "v1.30.0-netk8s"}}}


def test_node() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": FIVE_MIN_AGO},
           "spec": {"nodeName": "node1", "containers": [{"name": "a", "resources": {
               "requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}}]},
           "status": {"phase": "Running"}}
    done = copy.deepcopy(pod)
    done["metadata"]["name"] = "job-1"
    done["status"]["phase"] = "Succeeded"
    elsewhere = copy.deepcopy(pod)
    elsewhere["metadata"]["name"] = "web-2"
    elsewhere["spec"]["nodeName"] = "node2"
    text = describe(make_node(), {"Pod": [pod, done, elsewhere]}, NOW)
    f = fields(text)
    assert f["Roles"] == "worker"
    assert f["Labels"] == "kubernetes.io/hostname=node1"
    assert f["Taints"] == "<none>"
    assert f["Unschedulable"] == "false"
    assert f["PodCIDR"] == "10.244.1.0/24"
    assert f["PodCIDRs"] == "10.244.1.0/24"
    assert f["Non-terminated Pods"] == "(1 in total)"
    assert re.search(r"\n  InternalIP:\s+192\.168\.56\.11\n  Hostname:\s+node1\n", text)
    assert re.search(r"\n  Ready\s+True\s+Wed, 01 May 2024 11:59:00 \+0000\s+Tue, 30 Apr 2024 12:00:00 \+0000\s+"
                     r"KubeletReady\s+kubelet is posting ready status\n", text)
    assert re.search(r"\n  Kubelet Version:\s+v1\.30\.0-netk8s\n", text)
    assert re.search(r"\n  default\s+web-1\s+250m \(12%\)\s+1 \(50%\)\s+256Mi \(12%\)\s+512Mi \(25%\)\s+5m\n", text)
    assert "web-2" not in text and "job-1" not in text
    assert re.search(r"\n  cpu\s+250m \(12%\)\s+1 \(50%\)\n  memory\s+256Mi \(12%\)\s+512Mi \(25%\)\n", text)


def test_namespace() -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo", "labels": {}},
          "status": {"phase": "Active"}}
    assert describe(ns, {}, NOW) == ("Name:         demo\nLabels:       <none>\nAnnotations:  <none>\n"
                                     "Status:       Active\n\nNo resource quota.\n\nNo LimitRange resource.")


# ----------------------------------------------------------------------- endpoints and slices


def test_endpoints() -> None:
    text = describe(ENDPOINTS, {}, NOW)
    assert text == ("Name:         web\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n"
                    "Subsets:\n"
                    "  Addresses:          10.244.1.2,10.244.2.3\n"
                    "  NotReadyAddresses:  10.244.2.9\n"
                    "  Ports:\n"
                    "    Name     Port  Protocol\n"
                    "    ----     ----  --------\n"
                    "    http     8080  TCP\n"
                    "    metrics  9090  TCP\n"
                    "\n"
                    "Events:  <none>")


def test_endpointslice() -> None:
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
           "endpoints": [{"addresses": ["10.244.1.2"], "conditions": {"ready": True}, "nodeName": "node1",
                          "targetRef": {"kind": "Pod", "name": "web-1"}},
                         {"addresses": ["10.244.2.3"], "conditions": {"ready": False}}]}
    text = describe(eps, {}, NOW)
    f = fields(text)
    assert f["AddressType"] == "IPv4"
    assert f["Labels"] == "kubernetes.io/service-name=web"
    assert "Ports:\n  Name  Port  Protocol\n  ----  ----  --------\n  http  8080  TCP\n" in text
    assert re.search(r"\n  - Addresses:\s+10\.244\.1\.2\n    Conditions:\n      Ready:\s+true\n"
                     r"    Hostname:\s+<unset>\n    TargetRef:\s+Pod/web-1\n    NodeName:\s+node1\n"
                     r"    Zone:\s+<unset>\n", text)
    assert re.search(r"\n      Ready:\s+false\n", text)
    empty = describe({**eps, "ports": [], "endpoints": []}, {}, NOW)
    assert "\nPorts: <unset>\nEndpoints: <none>\n" in empty


def test_unknown_kind_gets_generic_description() -> None:
    obj = {"kind": "Widget", "metadata": {"name": "w", "namespace": "default", "labels": {"a": "b"}}}
    assert describe(obj, {}, NOW) == ("Name:         w\nNamespace:    default\nLabels:       a=b\n"
                                      "Annotations:  <none>\nEvents:       <none>")


def test_one_describer_per_kind_in_the_registry() -> None:
    from netk8s.cli.describe import DESCRIBERS, describer
    from netk8s.model.kinds import KINDS

    assert set(DESCRIBERS) >= {"Pod", "Deployment", "ReplicaSet", "StatefulSet", "Node", "Namespace", "Service",
                               "Endpoints", "EndpointSlice"}
    assert set(DESCRIBERS) <= set(KINDS), "a describer registered for a kind netk8s does not serve"
    with pytest.raises(ValueError, match="registered twice"):
        describer("Pod")(DESCRIBERS["Pod"])
    # a kind without a describer gets the generic text: name, namespace, labels, annotations, events
    text = describe({"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}}, {}, 0.0)
    assert text.splitlines()[:2] == ["Name:         cm", "Namespace:    default"]
