"""kubelet's Service environment variables (pkg/kubelet/envvars), exact names and values."""

from __future__ import annotations

import pytest

from netk8s.model.svcenv import env_var_name, service_env, service_vars


def svc(name: str, ip: str | None, ports: list[dict], ns: str = "default", type_: str = "ClusterIP") -> dict:
    spec: dict = {"type": type_, "ports": ports}
    if ip is not None:
        spec["clusterIP"] = ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}


KUBERNETES = svc("kubernetes", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}])
KUBERNETES_VARS = {
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_SERVICE_PORT_HTTPS": "443",
    "KUBERNETES_PORT": "tcp://10.96.0.1:443",
    "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
    "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
    "KUBERNETES_PORT_443_TCP_PORT": "443",
    "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
}


def test_single_unnamed_port() -> None:
    assert service_vars(svc("my-web", "10.96.3.4", [{"port": 80, "protocol": "TCP"}])) == {
        "MY_WEB_SERVICE_HOST": "10.96.3.4",
        "MY_WEB_SERVICE_PORT": "80",
        "MY_WEB_PORT": "tcp://10.96.3.4:80",
        "MY_WEB_PORT_80_TCP": "tcp://10.96.3.4:80",
        "MY_WEB_PORT_80_TCP_PROTO": "tcp",
        "MY_WEB_PORT_80_TCP_PORT": "80",
        "MY_WEB_PORT_80_TCP_ADDR": "10.96.3.4",
    }


def test_multi_port_named_and_udp() -> None:
    ports = [{"name": "dns-tcp", "port": 53, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"},
             {"name": "metrics", "port": 9153, "protocol": "TCP"}]
    assert service_vars(svc("kube-dns", "10.96.0.10", ports, "kube-system")) == {
        "KUBE_DNS_SERVICE_HOST": "10.96.0.10",
        "KUBE_DNS_SERVICE_PORT": "53",
        "KUBE_DNS_SERVICE_PORT_DNS_TCP": "53",
        "KUBE_DNS_SERVICE_PORT_DNS": "53",
        "KUBE_DNS_SERVICE_PORT_METRICS": "9153",
        "KUBE_DNS_PORT": "tcp://10.96.0.10:53",
        "KUBE_DNS_PORT_53_TCP": "tcp://10.96.0.10:53",
        "KUBE_DNS_PORT_53_TCP_PROTO": "tcp",
        "KUBE_DNS_PORT_53_TCP_PORT": "53",
        "KUBE_DNS_PORT_53_TCP_ADDR": "10.96.0.10",
        "KUBE_DNS_PORT_53_UDP": "udp://10.96.0.10:53",
        "KUBE_DNS_PORT_53_UDP_PROTO": "udp",
        "KUBE_DNS_PORT_53_UDP_PORT": "53",
        "KUBE_DNS_PORT_53_UDP_ADDR": "10.96.0.10",
        "KUBE_DNS_PORT_9153_TCP": "tcp://10.96.0.10:9153",
        "KUBE_DNS_PORT_9153_TCP_PROTO": "tcp",
        "KUBE_DNS_PORT_9153_TCP_PORT": "9153",
        "KUBE_DNS_PORT_9153_TCP_ADDR": "10.96.0.10",
    }


def test_first_port_udp_gives_udp_url() -> None:
    env = service_vars(svc("echo", "10.96.7.7", [{"port": 9000, "protocol": "UDP"}]))
    assert env["ECHO_PORT"] == "udp://10.96.7.7:9000"
    assert env["ECHO_PORT_9000_UDP_PROTO"] == "udp"


@pytest.mark.parametrize("case, service", [
    ("headless", svc("h", "None", [{"port": 80, "protocol": "TCP"}])),
    ("no clusterIP", svc("n", None, [{"port": 80, "protocol": "TCP"}])),
    ("ExternalName", svc("e", None, [], type_="ExternalName")),
])
def test_services_without_a_cluster_ip_give_nothing(case: str, service: dict) -> None:
    assert service_env([service], "default") == {}, case


def test_namespace_filter_and_master_service_everywhere() -> None:
    services = [KUBERNETES, svc("web", "10.96.3.4", [{"port": 80, "protocol": "TCP"}]),
                svc("db", "10.96.5.5", [{"port": 5432, "protocol": "TCP"}], ns="apps")]
    env = service_env(services, "apps")
    assert {k for k in env if k.startswith("WEB_")} == set()
    assert env["DB_SERVICE_HOST"] == "10.96.5.5"
    assert {k: v for k, v in env.items() if k.startswith("KUBERNETES_")} == KUBERNETES_VARS
    assert len(env) == len(KUBERNETES_VARS) + 7


def test_enable_service_links_false_keeps_only_the_master_service() -> None:
    services = [KUBERNETES, svc("web", "10.96.3.4", [{"port": 80, "protocol": "TCP"}])]
    assert service_env(services, "default", enable_service_links=False) == KUBERNETES_VARS


def test_own_namespace_kubernetes_service_wins_over_default() -> None:
    mine = svc("kubernetes", "10.96.9.9", [{"port": 80, "protocol": "TCP"}], ns="apps")
    for order in ([KUBERNETES, mine], [mine, KUBERNETES]):
        assert service_env(order, "apps")["KUBERNETES_SERVICE_HOST"] == "10.96.9.9"
    assert service_env([KUBERNETES, mine], "apps", enable_service_links=False)["KUBERNETES_SERVICE_HOST"] == (
        "10.96.0.1")


@pytest.mark.parametrize("name, want", [("web", "WEB"), ("my-web-2", "MY_WEB_2"), ("a.b", "A.B")])
def test_env_var_name(name: str, want: str) -> None:
    assert env_var_name(name) == want
