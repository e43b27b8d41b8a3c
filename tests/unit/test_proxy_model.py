"""Proxy state from Services and EndpointSlices, and kube-proxy's endpoint categorization."""

from __future__ import annotations

from dataclasses import replace

import pytest

from netk8s.proxy.model import (
    DEFAULT_AFFINITY_TIMEOUT,
    Endpoint,
    ServicePort,
    build_state,
    categorize,
    has_usable_endpoints,
)
from tests.unit.test_iptables_render import HTTP, HTTP_EP, ep, eps_slice, svc


def one(services: list[dict], slices: list[dict] | None = None, node: str = "node1"):
    return build_state(services, slices or [], node)


# ---------------------------------------------------------------------------------------------------------
# Which Services are proxied


@pytest.mark.parametrize("name, service", [
    ("external name", svc("x", "", HTTP, type="ExternalName", externalName="example.com")),
    ("headless None", svc("x", "None", HTTP)),
    ("headless empty", svc("x", "", HTTP)),
    ("headless label", {**svc("x", "10.96.0.5", HTTP),
                        "metadata": {"name": "x", "namespace": "default",
                                     "labels": {"service.kubernetes.io/headless": ""}}}),
    ("other proxy", {**svc("x", "10.96.0.5", HTTP),
                     "metadata": {"name": "x", "namespace": "default",
                                  "labels": {"service.kubernetes.io/service-proxy-name": "other"}}}),
])
def test_skipped_services(name: str, service: dict) -> None:
    assert one([service]).services == {}


def test_service_port_fields() -> None:
    s = svc("lb", "10.96.0.9", [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                                {"port": 53, "protocol": "UDP", "nodePort": 30053}],
            ns="shop", type="LoadBalancer", externalIPs=["192.168.56.150", "fd00::1"],
            externalTrafficPolicy="Local", internalTrafficPolicy="Local", healthCheckNodePort=32100,
            sessionAffinity="ClientIP",
            status={"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}, {"hostname": "lb.example"},
                                                 {"ip": "192.168.56.201", "ipMode": "Proxy"}]}})
    st = one([s])
    assert set(st.services) == {"shop/lb:http", "shop/lb"}
    http = st.services["shop/lb:http"]
    assert (http.cluster_ip, http.port, http.target_port, http.protocol, http.node_port) == (
        "10.96.0.9", 80, "web", "TCP", 30080)
    assert http.external_ips == ("192.168.56.150",)
    assert http.load_balancer_ips == ("192.168.56.200",)
    assert http.affinity_timeout == DEFAULT_AFFINITY_TIMEOUT
    assert http.external_policy_local and http.internal_policy_local
    assert http.health_check_node_port == 32100
    udp = st.services["shop/lb"]
    assert (udp.port_name, udp.protocol, udp.node_port, udp.target_port) == ("", "UDP", 30053, 53)


def test_affinity_timeout_and_policies_by_type() -> None:
    s = svc("a", "10.96.0.9", HTTP, sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}}, externalTrafficPolicy="Local",
            healthCheckNodePort=32000)
    sp = one([s]).services["default/a:http"]
    assert sp.affinity_timeout == 30
    # ClusterIP type: no external policy, no health check port, no node port.
    assert not sp.external_policy_local and sp.health_check_node_port is None and sp.node_port is None
    np = one([svc("b", "10.96.0.8", [{**HTTP[0], "nodePort": 30001}], type="NodePort",
                  externalTrafficPolicy="Local", healthCheckNodePort=32000)]).services["default/b:http"]
    assert np.external_policy_local and np.health_check_node_port is None  # only LoadBalancer needs one
    assert one([svc("c", "10.96.0.7", HTTP)]).services["default/c:http"].affinity_timeout is None


# ---------------------------------------------------------------------------------------------------------
# Endpoints from EndpointSlices


def test_endpoints_matched_by_port_name_and_protocol() -> None:
    services = [svc("dns", "10.96.0.10", [{"name": "dns", "port": 53, "protocol": "UDP"},
                                          {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])]
    slices = [eps_slice("dns", [ep("10.244.1.2", "node1")],
                        [{"name": "dns", "port": 5353, "protocol": "UDP"},
                         {"name": "dns-tcp", "port": 5354, "protocol": "TCP"},
                         {"name": "dns", "port": 9999, "protocol": "TCP"}])]
    st = one(services, slices)
    assert [e.addr for e in st.endpoints["default/dns:dns"]] == ["10.244.1.2:5353"]
    assert [e.addr for e in st.endpoints["default/dns:dns-tcp"]] == ["10.244.1.2:5354"]


def test_endpoints_only_from_own_slices_in_same_namespace() -> None:
    services = [svc("web", "10.96.0.20", HTTP)]
    slices = [eps_slice("web", [ep("10.244.1.2", "node1")], HTTP_EP),
              eps_slice("web", [ep("10.244.9.9", "node1")], HTTP_EP, ns="other"),
              eps_slice("api", [ep("10.244.8.8", "node1")], HTTP_EP)]
    assert [e.ip for e in one(services, slices).endpoints["default/web:http"]] == ["10.244.1.2"]


def test_endpoints_deduplicated_and_sorted_local_wins() -> None:
    services = [svc("web", "10.96.0.20", HTTP)]
    slices = [eps_slice("web", [ep("10.244.2.10", "node2"), ep("10.244.1.9", "nodeX")], HTTP_EP, name="a"),
              eps_slice("web", [ep("10.244.1.9", "node1"), ep("10.244.1.10", "node1")], HTTP_EP, name="b")]
    eps = one(services, slices).endpoints["default/web:http"]
    assert [e.addr for e in eps] == ["10.244.1.10:8080", "10.244.1.9:8080", "10.244.2.10:8080"]  # string order
    assert [e.local for e in eps] == [True, True, False]


@pytest.mark.parametrize("conds, want", [
    ({}, (True, True, False)),
    ({"ready": False}, (False, False, False)),
    ({"ready": False, "serving": True, "terminating": True}, (False, True, True)),
    ({"ready": True, "terminating": False}, (True, True, False)),
    ({"serving": False}, (True, False, False)),
])
def test_endpoint_condition_defaults(conds: dict, want: tuple[bool, bool, bool]) -> None:
    e = {"addresses": ["10.244.1.2"], "nodeName": "node2", "conditions": conds}
    (got,) = one([svc("web", "10.96.0.20", HTTP)],
                 [eps_slice("web", [e], HTTP_EP)]).endpoints["default/web:http"]
    assert (got.ready, got.serving, got.terminating) == want
    assert got.node == "node2" and not got.local


def test_service_without_slices_has_no_endpoints() -> None:
    st = one([svc("web", "10.96.0.20", HTTP)])
    assert st.endpoints["default/web:http"] == ()


# ---------------------------------------------------------------------------------------------------------
# categorize


def E(ip: str, local: bool = False, ready: bool = True, serving: bool | None = None,
      terminating: bool = False) -> Endpoint:
    return Endpoint(ip, 80, "node1" if local else "node2", ready, ready if serving is None else serving,
                    terminating, local)


BASE = ServicePort("ns", "s", "", "TCP", "10.96.0.1", 80, 80)
EXTERNAL = replace(BASE, node_port=30000)


def ips(eps: tuple[Endpoint, ...]) -> list[str]:
    return [e.ip for e in eps]


@pytest.mark.parametrize("name, sp, eps, cluster, local, reachable", [
    ("ready only", BASE,
     [E("10.0.0.1"), E("10.0.0.2", ready=False), E("10.0.0.3", ready=False, serving=True, terminating=True)],
     ["10.0.0.1"], [], ["10.0.0.1"]),
    ("terminating fallback", BASE,
     [E("10.0.0.2", ready=False), E("10.0.0.3", ready=False, serving=True, terminating=True)],
     ["10.0.0.3"], [], ["10.0.0.3"]),
    ("nothing usable", BASE, [E("10.0.0.2", ready=False, terminating=True)], [], [], []),
    ("external local", replace(EXTERNAL, external_policy_local=True),
     [E("10.0.0.1", local=True), E("10.0.0.2")], ["10.0.0.1", "10.0.0.2"], ["10.0.0.1"],
     ["10.0.0.1", "10.0.0.2"]),
    ("external local, local terminating only", replace(EXTERNAL, external_policy_local=True),
     [E("10.0.0.1", local=True, ready=False, serving=True, terminating=True), E("10.0.0.2")],
     ["10.0.0.2"], ["10.0.0.1"], ["10.0.0.1", "10.0.0.2"]),
    ("internal local, not external", replace(BASE, internal_policy_local=True),
     [E("10.0.0.1", local=True), E("10.0.0.2")], [], ["10.0.0.1"], ["10.0.0.1"]),
    ("internal local, no local endpoint", replace(BASE, internal_policy_local=True),
     [E("10.0.0.2")], [], [], []),
    ("internal local but external cluster", replace(EXTERNAL, internal_policy_local=True),
     [E("10.0.0.1", local=True), E("10.0.0.2")], ["10.0.0.1", "10.0.0.2"], ["10.0.0.1"],
     ["10.0.0.1", "10.0.0.2"]),
    ("external local flag without external destination", replace(BASE, external_policy_local=True),
     [E("10.0.0.1", local=True), E("10.0.0.2")], ["10.0.0.1", "10.0.0.2"], [], ["10.0.0.1", "10.0.0.2"]),
])
def test_categorize(name: str, sp: ServicePort, eps: list[Endpoint], cluster: list[str], local: list[str],
                    reachable: list[str]) -> None:
    c, lo, r = categorize(sp, eps)
    assert (ips(c), ips(lo), ips(r)) == (cluster, local, reachable)


def test_has_usable_endpoints() -> None:
    assert has_usable_endpoints([E("10.0.0.1")])
    assert has_usable_endpoints([E("10.0.0.1", ready=False, serving=True, terminating=True)])
    assert not has_usable_endpoints([E("10.0.0.1", ready=False), E("10.0.0.2", ready=False, terminating=True)])
    assert not has_usable_endpoints([])
