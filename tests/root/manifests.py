"""The manifests the privileged suites and the lab benchmarks apply, built from a few shapes.

Most labs want the same things: an agnhost (or nginx) Deployment behind a Service, with or without a
readiness probe and a preStop pause, and a busybox client pod to run requests from. One builder each, so a
change to how the suites' backends drain (docs/reliability.md) is made once. Each returns one YAML document;
`docs()` joins them into the multi-document text `netk8s apply -f -` reads.
"""

from __future__ import annotations

from typing import Any

import yaml

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"
NETEXEC = ["netexec", "--http-port=8080"]


def docs(*documents: str) -> str:
    return "---\n".join(documents)


def dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=None, width=1000)


def container(name: str = "agnhost", *, image: str = AGNHOST, args: list[str] | None = None,
              http_port: int | None = None, udp_port: int | None = None, probe: bool = False,
              pre_stop_s: int | None = None) -> dict[str, Any]:
    """A server container: named ports `http` (TCP) and `udp`, an HTTP readiness probe on /healthz at port
    `http` every second (`probe`, needs `http_port`), and a preStop sleep so a terminating pod serves on while the proxies drop it."""
    c: dict[str, Any] = {"name": name, "image": image}
    if args is not None:
        c["args"] = list(args)
    ports = []
    if http_port is not None:
        ports.append({"name": "http", "containerPort": http_port})
    if udp_port is not None:
        ports.append({"name": "udp", "containerPort": udp_port, "protocol": "UDP"})
    if ports:
        c["ports"] = ports
    if probe:
        if http_port is None:
            raise ValueError("a readiness probe needs http_port")
        c["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"},
                               "periodSeconds": 1}
    if pre_stop_s is not None:
        c["lifecycle"] = {"preStop": {"sleep": {"seconds": pre_stop_s}}}
    return c


def deployment(name: str, replicas: int, containers: list[dict[str, Any]], *, grace_s: int | None = None) -> str:
    """Pods labelled app=`name`."""
    labels = {"app": name}
    spec: dict[str, Any] = {}
    if grace_s is not None:
        spec["terminationGracePeriodSeconds"] = grace_s
    spec["containers"] = containers
    return dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                 "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                          "template": {"metadata": {"labels": labels}, "spec": spec}}})


def netexec_backend(name: str = "backend", replicas: int = 1, *, grace_s: int, pre_stop_s: int | None,
                    udp: bool = False) -> str:
    """agnhost netexec on 8080 (and UDP 8081), ready once /healthz answers, draining for `pre_stop_s`."""
    args = NETEXEC + (["--udp-port=8081"] if udp else [])
    return deployment(name, replicas, [container(args=args, http_port=8080, udp_port=8081 if udp else None,
                                                 probe=True, pre_stop_s=pre_stop_s)], grace_s=grace_s)


def service(name: str, app: str | None = None, ports: list[dict[str, Any]] | None = None, *,
            type: str | None = None, affinity_timeout_s: int | None = None) -> str:
    """A Service selecting app=`app` (default `name`); `ports` default one port 80 -> named port http."""
    spec: dict[str, Any] = {}
    if type:
        spec["type"] = type
    spec["selector"] = {"app": app or name}
    if affinity_timeout_s is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity_timeout_s}}
    spec["ports"] = ports if ports is not None else [{"name": "http", "port": 80, "targetPort": "http"}]
    return dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})


def client_pod(name: str = "client", *, node: str | None = None, image: str = "busybox") -> str:
    """The pod requests start from: a shell that sleeps (`netk8s exec` runs the client in it)."""
    spec: dict[str, Any] = {"nodeName": node} if node else {}
    spec["containers"] = [{"name": "c", "image": image, "command": ["sleep", "infinity"]}]
    return dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
