"""The lab's add-ons: the cluster DNS (kube-dns Deployment + Service) and the lab's own upstream DNS server.

A real cluster's installer (kubeadm) deploys CoreDNS as Deployment `coredns` with Service `kube-dns`
(10.96.0.10, ports 53/UDP `dns`, 53/TCP `dns-tcp`, label `k8s-app: kube-dns`) and `dnsPolicy: Default`,
so the DNS pods forward what is not `cluster.local` to the node's resolvers. netk8s does the same with
its dnslib server (image `netk8s.io/kube-dns`, see netk8s.model.images). The nodes' resolver
configuration points at a small authoritative server the lab runs in the external client's namespace
(zone `lab.example`), so forwarding works, and is tested, without the internet.
"""

from __future__ import annotations

from netk8s import config
from netk8s.model import images, naming

DNS_NAME = "kube-dns"
DNS_NAMESPACE = "kube-system"
DNS_REPLICAS = 2
DNS_HEALTH_PORT = 8080  # CoreDNS health plugin
DNS_READY_PORT = 8181  # CoreDNS ready plugin
UPSTREAM_ZONE = "lab.example"


def node_resolv_conf() -> str:
    """The nodes' /etc/resolv.conf in the lab: the lab's upstream server on the external client."""
    return f"nameserver {naming.EXTERNAL_IP}\n"


def upstream_argv(python: str) -> list[str]:
    """The lab's upstream DNS server, run in the external client's namespace on port 53."""
    return [python, "-m", "netk8s.dns.upstream", "--bind", str(naming.EXTERNAL_IP), "--port", "53",
            "--zone", UPSTREAM_ZONE]


def kube_dns_objects(store_url: str, replicas: int = DNS_REPLICAS) -> list[dict]:
    """The kube-dns Deployment (reading the store at `store_url`) and its Service at 10.96.0.10."""
    labels = {"k8s-app": DNS_NAME}
    container = {
        "name": "kube-dns",
        "image": images.DNS_IMAGE,
        # One worker process per pod: the lab scales DNS by replicas, and a one-machine lab shares its
        # cores with every node (`python -m netk8s.dns` alone defaults to one worker per CPU).
        "args": ["--store", store_url, "--domain", config.CLUSTER_DOMAIN, "--workers", "1",
                 "--health-port", str(DNS_HEALTH_PORT), "--ready-port", str(DNS_READY_PORT)],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": DNS_READY_PORT}, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"path": "/health", "port": DNS_HEALTH_PORT},
                          "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 5},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DNS_NAME, "namespace": DNS_NAMESPACE, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"dnsPolicy": "Default", "terminationGracePeriodSeconds": 2,
                         "containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": DNS_NAME, "namespace": DNS_NAMESPACE,
                     "labels": {**labels, "kubernetes.io/name": "CoreDNS"}},
        "spec": {
            "selector": dict(labels),
            "clusterIP": str(config.DNS_SERVICE_IP),
            "ports": [
                {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "targetPort": 53, "protocol": "TCP"},
            ],
        },
    }
    return [deployment, service]


INGRESS_NAME = "ingress-nginx-controller"
INGRESS_NAMESPACE = "ingress-nginx"
INGRESS_CLASS = "nginx"
INGRESS_CONTROLLER_CLASS = "k8s.io/ingress-nginx"
INGRESS_HEALTH_PORT = 10254
INGRESS_LABELS = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/instance": "ingress-nginx",
                  "app.kubernetes.io/component": "controller"}


def ingress_objects(store_url: str, replicas: int = 1) -> list[dict]:
    """ingress-nginx as its cloud deploy manifest installs it (deploy/static/provider/cloud/deploy.yaml): the
    namespace, the default IngressClass `nginx`, the controller Deployment and its LoadBalancer Service
    (`externalTrafficPolicy: Local`, so the client's address reaches nginx for X-Forwarded-For)."""
    labels = dict(INGRESS_LABELS)
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": INGRESS_NAMESPACE, "labels": {"app.kubernetes.io/name": "ingress-nginx"}}}
    ingress_class = {
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": INGRESS_CLASS, "labels": dict(labels),
                     "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": INGRESS_CONTROLLER_CLASS},
    }
    probe = {"httpGet": {"path": "/healthz", "port": INGRESS_HEALTH_PORT, "scheme": "HTTP"},
             "periodSeconds": 1, "timeoutSeconds": 1}
    container = {
        "name": "controller",
        "image": images.INGRESS_IMAGE,
        "args": ["/nginx-ingress-controller", f"--publish-service=$(POD_NAMESPACE)/{INGRESS_NAME}",
                 f"--election-id={INGRESS_NAME}-leader", f"--controller-class={INGRESS_CONTROLLER_CLASS}",
                 f"--ingress-class={INGRESS_CLASS}", f"--store={store_url}"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                  {"name": "https", "containerPort": 443, "protocol": "TCP"}],
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 5},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": INGRESS_NAME, "namespace": INGRESS_NAMESPACE, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)},
                         "spec": {"terminationGracePeriodSeconds": 10, "containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": INGRESS_NAME, "namespace": INGRESS_NAMESPACE, "labels": dict(labels)},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": dict(labels),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"},
                      {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP",
                       "appProtocol": "https"}],
        },
    }
    return [namespace, ingress_class, deployment, service]
