"""Service allocation (clusterIP, nodePorts, healthCheckNodePort, type changes) and LoadBalancer IPs."""

from __future__ import annotations

import ipaddress

import pytest

from netk8s import config
from netk8s.controller.services import LOADBALANCER, assign_load_balancer_ips, pool_addresses
from netk8s.errors import ValidationError
from netk8s.model.svcalloc import allocate
from tests.unit.test_endpoints_controller import Cluster


def svc(name: str = "web", ns: str = "default", type_: str = "ClusterIP", ports: list[dict] | None = None,
        **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": type_, "ports": ports if ports is not None else [{"port": 80, "protocol": "TCP",
                                                                                "targetPort": 8080}], **spec}}


def with_ip(name: str, ip: str, ns: str = "default", **spec: object) -> dict:
    return svc(name, ns, clusterIP=ip, clusterIPs=[ip], **spec)


def node_ports(s: dict) -> list[int | None]:
    return [p.get("nodePort") for p in s["spec"]["ports"]]


# ---- ClusterIP -------------------------------------------------------------------------------------


def test_fresh_cluster_ip_is_in_the_upper_band_and_deterministic_with_a_seed() -> None:
    a = allocate(svc(), None, [], rng_seed=1)
    b = allocate(svc(), None, [], rng_seed=1)
    ip = ipaddress.ip_address(a["spec"]["clusterIP"])
    assert a["spec"]["clusterIP"] == b["spec"]["clusterIP"]
    assert ip in config.SERVICE_CIDR
    assert int(ip) - int(config.SERVICE_CIDR.network_address) > 256  # static lower band left for requests
    assert a["spec"]["clusterIPs"] == [a["spec"]["clusterIP"]]
    assert (a["spec"]["ipFamilies"], a["spec"]["ipFamilyPolicy"]) == (["IPv4"], "SingleStack")


def test_fresh_ips_skip_used_reserved_network_and_broadcast_until_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "SERVICE_CIDR", ipaddress.ip_network("10.96.0.0/28"))
    services: list[dict] = []
    for i in range(12):  # .1-.14 minus .1 (kubernetes) and .10 (kube-dns)
        services.append(allocate(svc(f"s{i}"), None, services, rng_seed=i))
    got = sorted(int(ipaddress.ip_address(s["spec"]["clusterIP"])) & 15 for s in services)
    assert got == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]
    with pytest.raises(ValidationError, match="range is full"):
        allocate(svc("late"), None, services)


@pytest.mark.parametrize("ns, name, want", [
    ("default", "kubernetes", "10.96.0.1"),
    ("kube-system", "kube-dns", "10.96.0.10"),
])
def test_well_known_services_get_their_address(ns: str, name: str, want: str) -> None:
    assert allocate(svc(name, ns), None, [], rng_seed=3)["spec"]["clusterIP"] == want


def test_requested_free_ip_is_honoured() -> None:
    out = allocate(svc(clusterIP="10.96.5.5"), None, [with_ip("other", "10.96.5.6")])
    assert (out["spec"]["clusterIP"], out["spec"]["clusterIPs"]) == ("10.96.5.5", ["10.96.5.5"])


@pytest.mark.parametrize("case, requested, others, message", [
    ("taken by another service", "10.96.0.10", [with_ip("kube-dns", "10.96.0.10", "kube-system")],
     'service/web: spec.clusterIP: Invalid value: "10.96.0.10": provided IP is already allocated'),
    ("reserved for kube-dns", "10.96.0.10", [],
     'service/web: spec.clusterIP: Invalid value: "10.96.0.10": provided IP is already allocated'),
    ("reserved for kubernetes", "10.96.0.1", [],
     'service/web: spec.clusterIP: Invalid value: "10.96.0.1": provided IP is already allocated'),
    ("outside the CIDR", "1.2.3.4", [],
     'service/web: spec.clusterIP: Invalid value: "1.2.3.4": provided IP is not in the valid range'),
    ("network address", "10.96.0.0", [],
     'service/web: spec.clusterIP: Invalid value: "10.96.0.0": provided IP is not in the valid range'),
    ("broadcast address", "10.111.255.255", [],
     'service/web: spec.clusterIP: Invalid value: "10.111.255.255": provided IP is not in the valid range'),
])
def test_requested_ip_refused(case: str, requested: str, others: list[dict], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        allocate(svc(clusterIP=requested), None, others)
    assert exc.value.message == message, case


def test_same_service_in_the_list_is_not_a_collision() -> None:
    stored = allocate(svc(clusterIP="10.96.5.5"), None, [])
    out = allocate(svc(clusterIP="10.96.5.5"), stored, [stored])
    assert out["spec"]["clusterIP"] == "10.96.5.5"


def test_update_keeps_cluster_ip_when_the_manifest_leaves_it_out() -> None:
    stored = allocate(svc(), None, [], rng_seed=7)
    out = allocate(svc(), stored, [stored], rng_seed=99)
    assert out["spec"]["clusterIP"] == stored["spec"]["clusterIP"]


@pytest.mark.parametrize("case, old, new", [
    ("address to another address", "10.96.5.5", "10.96.5.6"),
    ("address to headless", "10.96.5.5", "None"),
    ("headless to address", "None", "10.96.5.6"),
])
def test_cluster_ip_is_immutable(case: str, old: str, new: str) -> None:
    stored = allocate(svc(clusterIP=old), None, [])
    with pytest.raises(ValidationError) as exc:
        allocate(svc(clusterIP=new), stored, [stored])
    assert exc.value.message == f'service/web: spec.clusterIP: Invalid value: "{new}": field is immutable', case


def test_headless_gets_no_address() -> None:
    out = allocate(svc(clusterIP="None", selector={"app": "web"}), None, [])
    assert (out["spec"]["clusterIP"], out["spec"]["clusterIPs"], out["spec"]["ipFamilyPolicy"]) == (
        "None", ["None"], "SingleStack")
    selectorless = allocate(svc(clusterIP="None"), None, [])
    assert selectorless["spec"]["ipFamilyPolicy"] == "RequireDualStack"  # storage/alloc.go, as upstream
    again = allocate(svc(), out, [out])
    assert again["spec"]["clusterIP"] == "None"


def test_external_name_has_no_cluster_ip() -> None:
    out = allocate(svc(type_="ExternalName", externalName="example.com", ports=[]), None, [])
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(out["spec"])


# ---- nodePorts -------------------------------------------------------------------------------------


def test_node_port_service_gets_a_port_per_service_port() -> None:
    ports = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
    out = allocate(svc(type_="NodePort", ports=ports), None, [], rng_seed=2)
    got = node_ports(out)
    assert all(isinstance(n, int) and 30000 <= n <= 32767 for n in got)
    assert len(set(got)) == 2
    assert got == node_ports(allocate(svc(type_="NodePort", ports=ports), None, [], rng_seed=2))


def test_node_port_requested_is_honoured_and_conflicts_refused() -> None:
    mine = [{"port": 80, "protocol": "TCP", "nodePort": 30080}]
    out = allocate(svc(type_="NodePort", ports=mine), None, [])
    assert node_ports(out) == [30080]
    other = allocate(svc("other", type_="NodePort", ports=[{"port": 81, "protocol": "UDP", "nodePort": 30080}]),
                     None, [])
    with pytest.raises(ValidationError) as exc:
        allocate(svc(type_="NodePort", ports=mine), None, [other])
    assert exc.value.message == ("service/web: spec.ports[0].nodePort: Invalid value: 30080: "
                                 "provided port is already allocated")


def test_node_port_conflicting_with_a_health_check_port_is_refused() -> None:
    lb = allocate(svc("lb", type_="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=31000),
                  None, [])
    assert lb["spec"]["healthCheckNodePort"] == 31000
    with pytest.raises(ValidationError, match=r"spec.ports\[0\].nodePort: Invalid value: 31000: provided port is"):
        allocate(svc(type_="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 31000}]), None, [lb])


def test_node_port_out_of_range_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        allocate(svc(type_="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 40000}]), None, [])
    assert exc.value.message == ("service/web: spec.ports[0].nodePort: Invalid value: 40000: "
                                 "provided port is not in the valid range")


def test_same_node_port_for_tcp_and_udp_of_one_service_is_allowed() -> None:
    ports = [{"name": "a", "port": 53, "protocol": "TCP", "nodePort": 30053},
             {"name": "b", "port": 53, "protocol": "UDP", "nodePort": 30053}]
    assert node_ports(allocate(svc(type_="NodePort", ports=ports), None, [])) == [30053, 30053]


def test_new_node_ports_avoid_everyone_elses() -> None:
    lo, hi = config.NODEPORT_RANGE
    others = [svc(f"s{i}", type_="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": n}])
              for i, n in enumerate(range(lo, hi))]  # every port but the last one is taken
    assert node_ports(allocate(svc(type_="NodePort"), None, others, rng_seed=5)) == [hi]
    others.append(svc("last", type_="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": hi}]))
    with pytest.raises(ValidationError, match="range is full"):
        allocate(svc(type_="NodePort"), None, others)


def test_update_keeps_node_ports_by_port_and_protocol() -> None:
    ports = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
    stored = allocate(svc(type_="NodePort", ports=ports), None, [], rng_seed=1)
    reordered = [dict(ports[1]), dict(ports[0]), {"name": "extra", "port": 90, "protocol": "TCP"}]
    out = allocate(svc(type_="NodePort", ports=reordered), stored, [stored], rng_seed=2)
    assert node_ports(out)[:2] == [node_ports(stored)[1], node_ports(stored)[0]]
    assert node_ports(out)[2] not in node_ports(stored)


def test_load_balancer_without_node_port_allocation_gets_none() -> None:
    out = allocate(svc(type_="LoadBalancer", allocateLoadBalancerNodePorts=False), None, [])
    assert node_ports(out) == [None]


def test_health_check_node_port_allocated_and_kept() -> None:
    stored = allocate(svc(type_="LoadBalancer", externalTrafficPolicy="Local"), None, [], rng_seed=4)
    hc = stored["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc not in node_ports(stored)
    again = allocate(svc(type_="LoadBalancer", externalTrafficPolicy="Local"), stored, [stored], rng_seed=8)
    assert again["spec"]["healthCheckNodePort"] == hc
    cluster = allocate(svc(type_="LoadBalancer", externalTrafficPolicy="Cluster"), stored, [stored])
    assert "healthCheckNodePort" not in cluster["spec"]


# ---- type transitions ------------------------------------------------------------------------------


def test_type_changes_keep_or_release_like_kubernetes() -> None:
    """ExternalName -> ClusterIP -> NodePort -> LoadBalancer -> ClusterIP -> ExternalName, as `apply` does
    it (each manifest leaves the allocated fields out)."""
    ext = allocate(svc(type_="ExternalName", externalName="example.com"), None, [])
    assert "clusterIP" not in ext["spec"]

    cip = allocate(svc(), ext, [ext], rng_seed=1)  # ExternalName -> ClusterIP: a new address
    ip = cip["spec"]["clusterIP"]
    assert ipaddress.ip_address(ip) in config.SERVICE_CIDR and node_ports(cip) == [None]

    np_ = allocate(svc(type_="NodePort", externalTrafficPolicy="Cluster"), cip, [cip], rng_seed=2)
    assert np_["spec"]["clusterIP"] == ip  # kept
    port = node_ports(np_)[0]
    assert port is not None

    lb = allocate(svc(type_="LoadBalancer", externalTrafficPolicy="Cluster", allocateLoadBalancerNodePorts=True),
                  np_, [np_], rng_seed=3)
    assert (lb["spec"]["clusterIP"], node_ports(lb)) == (ip, [port])  # both kept

    back = allocate(svc(), lb, [lb])  # -> ClusterIP: nodePorts released, address kept
    assert (back["spec"]["clusterIP"], node_ports(back)) == (ip, [None])

    gone = allocate(svc(type_="ExternalName", externalName="example.com"), back, [back])
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(gone["spec"])

    from_np = allocate(svc(type_="ExternalName", externalName="example.com"), np_, [np_])
    assert node_ports(from_np) == [None] and "clusterIP" not in from_np["spec"]


def test_type_change_with_the_old_values_still_in_the_manifest_releases_them() -> None:
    """`get -o yaml`, edit the type, apply: unchanged allocations are dropped (dropTypeDependentFields)."""
    stored = allocate(svc(type_="NodePort", externalTrafficPolicy="Cluster"), None, [], rng_seed=1)
    edited = {**stored, "spec": {**stored["spec"], "type": "ClusterIP"}}
    out = allocate(edited, stored, [stored])
    assert node_ports(out) == [None] and "externalTrafficPolicy" not in out["spec"]
    ext = {**stored, "spec": {**stored["spec"], "type": "ExternalName", "externalName": "example.com"}}
    out = allocate(ext, stored, [stored])
    assert "clusterIP" not in out["spec"] and node_ports(out) == [None]


def test_new_node_port_on_cluster_ip_refused() -> None:
    with pytest.raises(ValidationError, match=r"spec.ports\[0\].nodePort: Invalid value: 30080: may not be used"):
        allocate(svc(ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}]), None, [])


def test_input_is_not_modified() -> None:
    s = svc(type_="NodePort")
    allocate(s, None, [])
    assert s == svc(type_="NodePort")


# ---- LoadBalancer IPs ------------------------------------------------------------------------------


def lb(name: str, ip: str | None = None, **spec: object) -> dict:
    s = svc(name, type_="LoadBalancer", clusterIP="10.96.1.1", **spec)
    if ip:
        s["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
    return s


def ingress(c: Cluster, name: str) -> list[dict]:
    s = c.get("Service", "default", name)
    assert s is not None
    return ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []


def test_lowest_free_pool_ip_then_requested_one() -> None:
    c = Cluster()
    c.add(lb("a"))
    c.add(lb("b"))
    c.add(lb("c", loadBalancerIP="192.168.56.240"))
    c.add(svc("plain"))
    c.converge(LOADBALANCER)
    assert ingress(c, "a") == [{"ip": "192.168.56.200", "ipMode": "VIP"}]
    assert ingress(c, "b") == [{"ip": "192.168.56.201", "ipMode": "VIP"}]
    assert ingress(c, "c") == [{"ip": "192.168.56.240", "ipMode": "VIP"}]
    assert ingress(c, "plain") == []


def test_requested_ip_taken_or_outside_pool_stays_pending() -> None:
    c = Cluster()
    c.add(lb("a", "192.168.56.200"))
    c.add(lb("b", loadBalancerIP="192.168.56.200"))
    c.add(lb("c", loadBalancerIP="10.0.0.1"))
    c.converge(LOADBALANCER)
    assert ingress(c, "a")[0]["ip"] == "192.168.56.200"
    assert ingress(c, "b") == [] and ingress(c, "c") == []


def test_type_change_away_releases_and_the_address_is_reused() -> None:
    c = Cluster()
    c.add(lb("a"))
    c.converge(LOADBALANCER)
    plain = c.get("Service", "default", "a")
    plain["spec"]["type"] = "ClusterIP"  # type: ignore[index]
    c.put(plain)  # type: ignore[arg-type]
    c.add(lb("b"))
    c.run(LOADBALANCER)
    assert c.get("Service", "default", "a")["status"] == {"loadBalancer": {}}  # type: ignore[index]
    assert ingress(c, "b")[0]["ip"] == "192.168.56.201"  # not handed out in the pass that releases it
    c.add(lb("c"))
    c.converge(LOADBALANCER)
    assert ingress(c, "c")[0]["ip"] == "192.168.56.200"


def test_pool_exhaustion_leaves_pending_until_an_address_frees() -> None:
    c = Cluster()
    pool = pool_addresses()
    assert (pool[0], pool[-1], len(pool)) == ("192.168.56.200", "192.168.56.250", 51)
    for i in range(len(pool)):
        c.add(lb(f"s{i:02d}"))
    c.add(lb("zz-late"))
    c.converge(LOADBALANCER)
    assert ingress(c, "zz-late") == []  # <pending>
    held = [ingress(c, f"s{i:02d}")[0]["ip"] for i in range(len(pool))]
    assert sorted(held, key=ipaddress.ip_address) == pool  # every address once
    c.remove("Service", "s07")
    c.converge(LOADBALANCER)
    assert ingress(c, "zz-late")[0]["ip"] == pool[7]


def test_duplicate_holders_oldest_keeps_it() -> None:
    services = [lb("old", "192.168.56.200"), lb("new", "192.168.56.200")]
    services[0]["metadata"]["creationTimestamp"] = "2023-01-01T00:00:00Z"
    services[1]["metadata"]["creationTimestamp"] = "2023-06-01T00:00:00Z"
    plan = assign_load_balancer_ips(services)
    assert plan == {("default", "old"): "192.168.56.200", ("default", "new"): "192.168.56.201"}
