"""The lab's add-ons are ordinary, valid objects (kube-dns at 10.96.0.10), and flannel's ip-masq rules."""

from __future__ import annotations

from netk8s.cli.ops import apply_objects
from netk8s.lab import addons
from netk8s.model.images import container_argv
from netk8s.model.validate import validate_batch
from netk8s.node import overlay
from netk8s.store.memory import MemoryStore

URL = "sqlite:///var/lib/netk8s/x/store.db"


def test_kube_dns_objects_are_valid_and_get_the_dns_service_ip() -> None:
    objs = validate_batch([("addons", o) for o in addons.kube_dns_objects(URL)])
    store = MemoryStore()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    apply_objects(store, objs)
    svc = store.get("Service", "kube-system", "kube-dns")
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert {(p["protocol"], p["port"]) for p in svc["spec"]["ports"]} == {("UDP", 53), ("TCP", 53)}
    dep = store.get("Deployment", "kube-system", "kube-dns")
    assert dep["spec"]["replicas"] == 2
    spec = dep["spec"]["template"]["spec"]
    assert spec["dnsPolicy"] == "Default"  # the DNS pods forward to the node's resolvers, as CoreDNS does
    argv = container_argv(spec["containers"][0], "/py")
    assert argv[:3] == ["/py", "-m", "netk8s.dns"] and argv[argv.index("--store") + 1] == URL


def test_nodes_resolve_through_the_labs_upstream() -> None:
    assert addons.node_resolv_conf() == "nameserver 192.168.56.100\n"
    assert addons.upstream_argv("/py")[:3] == ["/py", "-m", "netk8s.dns.upstream"]


def test_ip_masq_rules_keep_pod_to_pod_and_masquerade_the_rest() -> None:
    lines = [ln.strip() for ln in overlay.ip_masq_rules("10.244.0.0/16").splitlines()]
    # replaced whole on every apply: declare, delete, recreate (one transaction, idempotent)
    assert lines[:3] == ["table ip flannel {}", "delete table ip flannel", "table ip flannel {"]
    assert "type nat hook postrouting priority srcnat; policy accept;" in lines
    rules = [ln for ln in lines if ln.startswith("ip saddr")]
    assert rules == ["ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return",
                     "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random"]


def test_ingress_nginx_objects_are_valid_and_run_the_builtin_controller() -> None:
    from netk8s.model.images import is_ingress_nginx

    objs = validate_batch([("addons", o) for o in addons.ingress_objects(URL)])
    store = MemoryStore()
    apply_objects(store, objs)
    svc = store.get("Service", "ingress-nginx", "ingress-nginx-controller")
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["externalTrafficPolicy"] == "Local"
    ports = {p["port"]: p["nodePort"] for p in svc["spec"]["ports"]}
    assert set(ports) == {80, 443} and all(30000 <= n <= 32767 for n in ports.values())
    cls = store.get("IngressClass", "", "nginx")
    assert cls["spec"]["controller"] == "k8s.io/ingress-nginx"
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    container = store.get("Deployment", "ingress-nginx", "ingress-nginx-controller")["spec"]["template"]["spec"][
        "containers"][0]
    argv = container_argv(container, "/py", {"POD_NAMESPACE": "ingress-nginx"})
    assert argv[:3] == ["/py", "-m", "netk8s.ingress"]
    assert "--publish-service=ingress-nginx/ingress-nginx-controller" in argv and f"--store={URL}" in argv
    for image in ("registry.k8s.io/ingress-nginx/controller:v1.11.2@sha256:d5f8217feeac4887cb1ed21f27c2674e58be06bd8f5184cacea2a69abaf78dce",
                  "k8s.gcr.io/ingress-nginx/controller:v1.1.1",
                  "quay.io/kubernetes-ingress-controller/nginx-ingress-controller:0.30.0"):
        assert is_ingress_nginx(image), image
    assert not is_ingress_nginx("nginx:1.25") and not is_ingress_nginx("example.com/controller:1")
    entry = container_argv({"image": "registry.k8s.io/ingress-nginx/controller:v1.9.0",
                            "command": ["/usr/bin/dumb-init", "--"], "args": ["/nginx-ingress-controller", "--x=1"]},
                           "/py")
    assert entry == ["/py", "-m", "netk8s.ingress", "--x=1"]
