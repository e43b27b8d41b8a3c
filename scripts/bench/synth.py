"""Pure: synthetic Services and EndpointSlices (the objects the store would hold) for the rule benchmarks."""

from __future__ import annotations

import ipaddress

SERVICE_BASE = int(ipaddress.ip_address("10.96.16.0"))  # clear of 10.96.0.1 / 10.96.0.10
POD_BASE = int(ipaddress.ip_address("10.244.0.0"))
NODES = ("node1", "node2", "node3", "node4")
NODE_PORT_EVERY = 10  # one Service in ten is a NodePort, as in a typical cluster
NODE_PORT_BASE = 30000


def cluster_ip(i: int) -> str:
    return str(ipaddress.ip_address(SERVICE_BASE + i))


def endpoint_ip(i: int, j: int, endpoints: int) -> str:
    # pods spread over 10.244.1.0-10.244.255.255, skipping .0 of each /24 like the node IPAM does
    n = i * endpoints + j
    return str(ipaddress.ip_address(POD_BASE + 256 + (n // 254) * 256 + n % 254 + 1))


def is_node_port(i: int) -> bool:
    return i % NODE_PORT_EVERY == NODE_PORT_EVERY - 1


def service(i: int) -> dict:
    node_port = is_node_port(i)
    port: dict = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}
    if node_port:
        port["nodePort"] = NODE_PORT_BASE + i // NODE_PORT_EVERY
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"svc-{i}", "namespace": "bench"},
        "spec": {"type": "NodePort" if node_port else "ClusterIP", "clusterIP": cluster_ip(i),
                 "selector": {"app": f"svc-{i}"}, "ports": [port]},
    }


def endpoint_slice(i: int, endpoints: int, *, replace: dict[int, str] | None = None) -> dict:
    """The EndpointSlice of Service i; `replace` maps endpoint index -> another IP (a one-endpoint change)."""
    eps = []
    for j in range(endpoints):
        ip = (replace or {}).get(j) or endpoint_ip(i, j, endpoints)
        eps.append({"addresses": [ip], "nodeName": NODES[(i + j) % len(NODES)], "conditions": {"ready": True}})
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"svc-{i}-abcde", "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }


def objects(services: int, endpoints: int) -> tuple[list[dict], list[dict]]:
    """(Services, EndpointSlices) for `services` Services of `endpoints` ready endpoints each."""
    return ([service(i) for i in range(services)], [endpoint_slice(i, endpoints) for i in range(services)])


def service_port_shapes(services: int, endpoints: int) -> list[tuple[int, bool]]:
    """(endpoints, is NodePort) per service port, for report.kube_proxy_rule_count."""
    return [(endpoints, is_node_port(i)) for i in range(services)]


def changed_ip(k: int) -> str:
    """A fresh endpoint IP for the k-th one-endpoint change (10.245.x.y: never used by the base set)."""
    return str(ipaddress.ip_address(int(ipaddress.ip_address("10.245.0.1")) + k))
