"""The iptables proxier's change tracking and sync decisions, health checks, announcer choice, restore errors."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from netk8s.dataplane import iptables as dp_iptables
from netk8s.errors import KernelError
from netk8s.proxy import announce
from netk8s.proxy.announce import Announcer, announcer_for, lb_assignments
from netk8s.proxy.healthcheck import HealthCheckServer
from netk8s.proxy.model import Endpoint, NodeContext, ProxyState, ServicePort
from netk8s.proxy.proxier import ChangeTracker, IptablesProxier, health_checks, ready_nodes
from netk8s.proxy.trace import FakeRestore
from netk8s.store.base import Event

NODE = NodeContext("node1", ("192.168.56.11",))


# ----------------------------------------------------------------------------- fakes


def svc(name: str, port: int = 80, proto: str = "TCP", cluster_ip: str = "10.96.0.20", ns: str = "default",
        node_port: int | None = None, lb: str | None = None, local: bool = False, hc: int | None = None,
        label: str = "") -> dict:
    spec: dict = {"clusterIP": cluster_ip, "type": "ClusterIP",
                  "ports": [{"name": "p", "port": port, "protocol": proto, "targetPort": 8080}]}
    if node_port:
        spec["type"] = "NodePort"
        spec["ports"][0]["nodePort"] = node_port
    if lb:
        spec["type"] = "LoadBalancer"
    if local:
        spec["externalTrafficPolicy"] = "Local"
    if hc:
        spec["healthCheckNodePort"] = hc
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}
    if lb:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": lb}]}}
    if label:
        obj["metadata"]["labels"] = {"x": label}
    return obj


def eps(name: str, *ips: str, ns: str = "default", node: str = "node1", ready: bool = True) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-abc", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip.split("@")[0]], "nodeName": ip.split("@")[1] if "@" in ip else node,
                           "conditions": {"ready": ready}} for ip in ips]}


def stand_in_build_state(services: list[dict], slices: list[dict], node_name: str) -> ProxyState:
    """A small build_state: one port per Service, slices matched by the service-name label."""
    state = ProxyState()
    for s in services:
        spec, meta = s["spec"], s["metadata"]
        p = spec["ports"][0]
        lbs = tuple(i["ip"] for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])
        sp = ServicePort(meta["namespace"], meta["name"], p["name"], p["protocol"], spec["clusterIP"], p["port"],
                         p["targetPort"], p.get("nodePort"), (), lbs,
                         external_policy_local=spec.get("externalTrafficPolicy") == "Local",
                         health_check_node_port=spec.get("healthCheckNodePort"))
        state.services[sp.key] = sp
        found = []
        for sl in slices:
            if sl["metadata"]["namespace"] == sp.namespace and \
                    sl["metadata"]["labels"]["kubernetes.io/service-name"] == sp.name:
                for e in sl["endpoints"]:
                    ready = e["conditions"]["ready"]
                    found.append(Endpoint(e["addresses"][0], 8080, e["nodeName"], ready, ready, False,
                                          e["nodeName"] == node_name))
        state.endpoints[sp.key] = tuple(found)
    return state


@dataclass
class StandInRendered:
    text: str
    chains: dict[str, set[str]]
    rule_count: int


class StandInRenderer:
    """Records what it was asked to render; the text names the service ports it covers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, set[str]]] = []

    def _chains(self, state: ProxyState) -> dict[str, set[str]]:
        return {"nat": {"KUBE-SERVICES"} | {f"KUBE-SVC-{k.upper()}" for k in state.services}, "filter": set()}

    def render_full(self, state: ProxyState, node: NodeContext, *, existing: object = ()) -> StandInRendered:
        self.calls.append(("full", set(state.services)))
        return StandInRendered("full:" + ",".join(sorted(state.services)), self._chains(state), len(state.services))

    def render_partial(self, state: ProxyState, node: NodeContext, changed: set[str],
                       previous: StandInRendered) -> StandInRendered:
        assert previous is not None
        self.calls.append(("partial", set(changed)))
        return StandInRendered("partial:" + ",".join(sorted(changed)), self._chains(state), len(state.services))

    def chains_for_cleanup(self, existing: object = ()) -> str:
        return "cleanup"


class FakeInformer:
    def __init__(self) -> None:
        self.objs: dict[str, dict[str, dict]] = {"Service": {}, "EndpointSlice": {}, "Node": {}}
        self.revision = 0

    def put(self, obj: dict) -> Event:
        self.revision += 1
        key = f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        existed = key in self.objs[obj["kind"]]
        self.objs[obj["kind"]][key] = obj
        return Event(self.revision, "MODIFIED" if existed else "ADDED", obj)

    def delete(self, kind: str, ns: str, name: str) -> Event:
        self.revision += 1
        return Event(self.revision, "DELETED", self.objs[kind].pop(f"{ns}/{name}"))

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [self.objs[kind][k] for k in sorted(self.objs[kind])]


@dataclass
class FakeKernel:
    """restore_fn / check_fn / conntrack / health check / announcer stand-ins that record calls."""

    restores: list[str] = field(default_factory=list)
    fail_next: int = 0
    missing: set[str] = field(default_factory=set)
    checks: list[tuple[str, str]] = field(default_factory=list)
    conntrack: list[tuple] = field(default_factory=list)
    health: list[list] = field(default_factory=list)
    lb_maps: list[dict] = field(default_factory=list)

    def restore(self, text: str) -> None:
        self.restores.append(text)
        if self.fail_next:
            self.fail_next -= 1
            raise KernelError("iptables-legacy-restore failed at line 3: '-A KUBE-SVC-X -j KUBE-SEP-GONE'")

    def check(self, table: str, chain: str) -> bool:
        self.checks.append((table, chain))
        return chain not in self.missing

    # conntrack protocol
    def delete_udp_to_service(self, ip: str, port: int) -> int:
        self.conntrack.append(("service", ip, port))
        return 0

    def delete_udp_endpoint(self, vip: str, port: int, ep_ip: str) -> int:
        self.conntrack.append(("endpoint", vip, port, ep_ip))
        return 0

    def delete_udp_nodeport(self, port: int, ep_ip: str) -> int:
        self.conntrack.append(("nodeport", port, ep_ip))
        return 0

    def delete_udp_to_port(self, port: int) -> int:
        self.conntrack.append(("port", port))
        return 0

    # health check server / announcer
    def update(self, services: list) -> None:
        self.health.append(list(services))

    def close(self) -> None:
        pass

    def sync(self, lb_map: dict) -> set[str]:
        self.lb_maps.append(dict(lb_map))
        return set()


def make(kernel: FakeKernel, **kw: object) -> tuple[IptablesProxier, StandInRenderer]:
    renderer = StandInRenderer()
    p = IptablesProxier(NODE, restore_fn=kernel.restore, check_fn=kernel.check, conntrack=kernel,
                        renderer=renderer, build_state=stand_in_build_state, healthcheck=kernel,  # type: ignore[arg-type]
                        announcer=kernel, list_chains_fn=lambda table: set(), **kw)  # type: ignore[arg-type]
    return p, renderer


@pytest.fixture
def world() -> tuple[FakeInformer, FakeKernel]:
    inf = FakeInformer()
    inf.put(svc("web"))
    inf.put(eps("web", "10.244.1.5", "10.244.2.5"))
    inf.put(svc("db", port=5432, cluster_ip="10.96.0.30"))
    inf.put(eps("db", "10.244.1.7"))
    return inf, FakeKernel()


# ----------------------------------------------------------------------------- change tracker


def test_tracker_drops_noop_and_keeps_first_previous() -> None:
    t: ChangeTracker[int] = ChangeTracker()
    t.update("a", 1, 2)
    t.update("a", 2, 3)
    assert t.items == {"a": (1, 3)}
    t.update("a", 3, 1)  # back to what the last sync applied: a no-op
    assert t.items == {}
    t.update("b", None, None)
    assert len(t) == 0


# ----------------------------------------------------------------------------- sync decisions


def test_first_sync_is_full_with_one_restore(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, r = make(k)
    p.sync(inf, [], 0.0)
    assert k.restores == ["full:default/db:p,default/web:p"]
    assert r.calls == [("full", {"default/web:p", "default/db:p"})]
    assert p.last_sync_stats is not None and p.last_sync_stats.mode == "full" and p.last_sync_stats.ok
    assert p.synced_revision == inf.revision
    p.sync(inf, [], 0.2)  # nothing changed: no restore
    assert len(k.restores) == 1


def test_change_gives_partial_sync_of_changed_key_only(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, r = make(k)
    p.sync(inf, [], 0.0)
    ev = inf.put(eps("web", "10.244.1.5", "10.244.2.5", "10.244.3.5"))
    p.sync(inf, [ev], 0.2)
    assert k.restores[-1] == "partial:default/web:p"
    assert r.calls[-1] == ("partial", {"default/web:p"})
    assert p.last_sync_stats is not None and p.last_sync_stats.changed == 1
    assert p.synced_revision == ev.revision


def test_noop_event_does_not_sync(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, _ = make(k)
    p.sync(inf, [], 0.0)
    ev = inf.put(svc("web", label="cosmetic"))  # a label the proxy does not look at
    p.sync(inf, [ev], 0.2)
    node_ev = inf.put({"kind": "Node", "metadata": {"name": "node1"}})  # not a rule kind
    p.sync(inf, [node_ev], 0.4)
    assert len(k.restores) == 1


def test_change_and_revert_between_syncs_is_dropped(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, _ = make(k, min_sync_period=1.0)
    p.sync(inf, [], 0.0)
    p.sync(inf, [inf.put(eps("web", "10.244.1.5"))], 0.2)  # change, held back by min_sync_period
    p.sync(inf, [inf.put(eps("web", "10.244.1.5", "10.244.2.5"))], 0.4)  # back to the applied state
    assert p.pending() == set()
    p.sync(inf, [], 1.5)
    assert len(k.restores) == 1


def test_many_events_coalesce_into_one_sync(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, r = make(k, min_sync_period=1.0)
    p.sync(inf, [], 0.0)
    p.sync(inf, [inf.put(eps("web", "10.244.1.5"))], 0.3)
    p.sync(inf, [inf.put(eps("db", "10.244.1.7", "10.244.1.8"))], 0.6)
    p.sync(inf, [inf.put(svc("new", cluster_ip="10.96.0.40"))], 0.9)
    assert len(k.restores) == 1
    p.sync(inf, [], 1.0)
    assert len(k.restores) == 2
    assert r.calls[-1] == ("partial", {"default/web:p", "default/db:p", "default/new:p"})


def test_deleted_service_is_a_change(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, r = make(k)
    p.sync(inf, [], 0.0)
    p.sync(inf, [inf.delete("Service", "default", "db"), inf.delete("EndpointSlice", "default", "db-abc")], 0.2)
    assert r.calls[-1] == ("partial", {"default/db:p"})


def test_failed_restore_forces_full_sync_with_backoff(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, r = make(k)
    p.sync(inf, [], 0.0)
    k.fail_next = 2
    p.sync(inf, [inf.put(eps("web", "10.244.1.5"))], 0.2)
    assert r.calls[-1][0] == "partial"
    assert p.last_sync_stats is not None and not p.last_sync_stats.ok and p.need_full
    assert p.pending() == {"default/web:p"}  # the change is kept for the retry
    p.sync(inf, [], 0.4)  # the retry (after BACKOFF_START) is full and fails again
    assert r.calls[-1][0] == "full" and len(k.restores) == 3
    p.sync(inf, [], 0.5)  # second failure backs off 0.4 s: no attempt yet
    assert len(k.restores) == 3
    p.sync(inf, [], 0.9)
    assert r.calls[-1][0] == "full" and len(k.restores) == 4
    assert p.last_sync_stats is not None and p.last_sync_stats.ok and not p.need_full
    assert p.pending() == set()
    p.sync(inf, [inf.put(eps("web", "10.244.1.9"))], 1.1)  # back to partial syncs
    assert r.calls[-1][0] == "partial"


def test_periodic_full_sync(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, r = make(k, full_sync_period=10.0, canary_period=1000.0)
    p.sync(inf, [], 0.0)
    p.sync(inf, [inf.put(eps("web", "10.244.1.5"))], 5.0)
    assert r.calls[-1][0] == "partial"
    p.sync(inf, [], 9.9)
    assert len(k.restores) == 2
    p.sync(inf, [], 10.0)  # due even without changes
    assert r.calls[-1][0] == "full" and len(k.restores) == 3


def test_canary_detects_deleted_rules(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, r = make(k, canary_period=2.0)
    p.sync(inf, [], 0.0)
    p.sync(inf, [], 1.0)
    assert k.checks == []  # not due yet
    p.sync(inf, [], 2.0)
    assert ("nat", "KUBE-SERVICES") in k.checks
    assert any(c.startswith("KUBE-SVC-") for _, c in k.checks)
    assert len(k.restores) == 1
    k.missing = {"KUBE-SERVICES"}  # someone ran `iptables -t nat -F; -X`
    p.sync(inf, [], 4.0)
    assert r.calls[-1][0] == "full" and len(k.restores) == 2


def test_canary_rotates_service_chains(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, _ = make(k, canary_period=1.0)
    p.sync(inf, [], 0.0)
    for t in (1.0, 2.0):
        p.sync(inf, [], t)
    probed = {c for _, c in k.checks if c.startswith("KUBE-SVC-")}
    assert probed == {"KUBE-SVC-DEFAULT/WEB:P", "KUBE-SVC-DEFAULT/DB:P"}


def test_udp_conntrack_cleanup() -> None:
    inf, k = FakeInformer(), FakeKernel()
    inf.put(svc("dns", port=53, proto="UDP", cluster_ip="10.96.0.10", node_port=30053))
    p, _ = make(k)
    p.sync(inf, [], 0.0)
    assert k.conntrack == []  # no endpoints yet
    p.sync(inf, [inf.put(eps("dns", "10.244.1.5", "10.244.2.5"))], 0.2)
    # 0 -> 2 endpoints: flows REJECTed before must not stick
    assert k.conntrack == [("service", "10.96.0.10", 53), ("port", 30053)]
    k.conntrack.clear()
    p.sync(inf, [inf.put(eps("dns", "10.244.2.5", "10.244.3.5"))], 0.4)
    assert k.conntrack == [("endpoint", "10.96.0.10", 53, "10.244.1.5"), ("nodeport", 30053, "10.244.1.5")]
    k.conntrack.clear()
    p.sync(inf, [inf.put(eps("dns", "10.244.2.5", "10.244.3.5", ready=False))], 0.6)  # unready = removed
    assert ("endpoint", "10.96.0.10", 53, "10.244.2.5") in k.conntrack
    assert ("endpoint", "10.96.0.10", 53, "10.244.3.5") in k.conntrack


def test_tcp_changes_do_not_touch_conntrack(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, _ = make(k)
    p.sync(inf, [], 0.0)
    p.sync(inf, [inf.put(eps("web", "10.244.9.9"))], 0.2)
    assert k.conntrack == []


def test_health_checks_and_announcements_follow_syncs() -> None:
    inf, k = FakeInformer(), FakeKernel()
    inf.put({"kind": "Node", "metadata": {"name": "node1"},
             "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    inf.put({"kind": "Node", "metadata": {"name": "node2"},
             "status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    inf.put(svc("lb", cluster_ip="10.96.0.50", node_port=30080, lb="192.168.56.200", local=True, hc=31000))
    inf.put(eps("lb", "10.244.1.5", "10.244.1.6", "10.244.2.5@node2"))
    p, _ = make(k)
    p.sync(inf, [], 0.0)
    assert k.health[-1] == [("default/lb", 31000, 2)]
    assert k.lb_maps[-1] == {"192.168.56.200": "node1"}  # node2 is not Ready
    n = len(k.lb_maps)
    p.sync(inf, [], 0.2)
    assert len(k.lb_maps) == n  # unchanged map: the kernel is not touched again
    p.sync(inf, [inf.put(eps("lb", "10.244.2.5@node2"))], 0.4)  # no local endpoint left
    assert k.health[-1] == [("default/lb", 31000, 0)]
    assert k.lb_maps[-1] == {"192.168.56.200": None}


def test_cleanup_is_one_restore(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, r = make(k)
    p.sync(inf, [], 0.0)
    p.cleanup()
    assert k.restores[-1] == "cleanup"
    p.sync(inf, [], 0.2)
    assert r.calls[-1][0] == "full"


def test_ready_nodes_and_health_checks_helpers() -> None:
    nodes = [{"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
             {"metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
             {"metadata": {"name": "c"}, "status": {}}]
    assert ready_nodes(nodes) == ["a", "b"]
    sp = ServicePort("ns", "s", "", "TCP", "10.96.0.5", 80, 80, 30001, external_policy_local=True,
                     health_check_node_port=32000)
    st = ProxyState({sp.key: sp}, {sp.key: (Endpoint("10.244.1.2", 80, "n1", True, True, False, True),
                                            Endpoint("10.244.1.3", 80, "n1", False, False, False, True))})
    assert health_checks(st) == [("ns/s", 32000, 1)]


# ----------------------------------------------------------------------------- announcer


def _lb_sp(local: bool = False) -> ServicePort:
    return ServicePort("default", "lb", "", "TCP", "10.96.0.50", 80, 8080, 30080,
                       load_balancer_ips=("192.168.56.200",), external_policy_local=local)


def _ep(ip: str, node: str, ready: bool = True) -> Endpoint:
    return Endpoint(ip, 8080, node, ready, ready, False, False)


@pytest.mark.parametrize("ip", ["192.168.56.200", "192.168.56.201", "192.168.56.222"])
def test_announcer_cluster_policy_is_sha256_order(ip: str) -> None:
    nodes = ["node1", "node2", "node3"]
    want = min(nodes, key=lambda n: hashlib.sha256((n + ip).encode()).hexdigest())
    assert announcer_for(ip, _lb_sp(), [], nodes) == want
    assert announcer_for(ip, _lb_sp(), [], list(reversed(nodes))) == want  # order of input does not matter


def test_announcer_spreads_ips_over_nodes() -> None:
    nodes = ["node1", "node2", "node3"]
    owners = {announcer_for(f"192.168.56.{i}", _lb_sp(), [], nodes) for i in range(200, 251)}
    assert owners == set(nodes)


def test_announcer_local_policy_needs_a_ready_local_endpoint() -> None:
    nodes = ["node1", "node2", "node3"]
    endpoints = [_ep("10.244.2.5", "node2"), _ep("10.244.3.5", "node3", ready=False)]
    assert announcer_for("192.168.56.200", _lb_sp(local=True), endpoints, nodes) == "node2"
    assert announcer_for("192.168.56.200", _lb_sp(local=True), endpoints, ["node1", "node3"]) is None
    assert announcer_for("192.168.56.200", _lb_sp(), [], []) is None


def test_lb_assignments_cover_every_ip() -> None:
    sp = _lb_sp()
    assert lb_assignments([sp], {}, ["node1"]) == {"192.168.56.200": "node1"}


def test_announcer_sync_adds_and_removes_only_pool_host_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    from netk8s.dataplane import links

    addrs = {"192.168.56.11/24", "192.168.56.201/32", "192.168.56.90/32"}
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(links, "list_addresses", lambda netns, ifname: sorted(addrs))
    monkeypatch.setattr(links, "ensure_address", lambda netns, ifname, cidr: calls.append(("add", cidr)))
    monkeypatch.setattr(links, "delete_address", lambda netns, ifname, cidr: calls.append(("del", cidr)))
    monkeypatch.setattr(Announcer, "gratuitous_arp", lambda self, ip: calls.append(("garp", ip)))
    a = Announcer("node1")
    got = a.sync({"192.168.56.200": "node1", "192.168.56.202": "node2", "192.168.56.201": None})
    assert got == {"192.168.56.200"}
    assert calls == [("del", "192.168.56.201/32"), ("add", "192.168.56.200/32"), ("garp", "192.168.56.200")]


def test_in_lb_pool() -> None:
    assert announce.in_lb_pool("192.168.56.200") and announce.in_lb_pool("192.168.56.250")
    assert not announce.in_lb_pool("192.168.56.251") and not announce.in_lb_pool("nope")


# ----------------------------------------------------------------------------- health check server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        return resp.status, dict(resp.getheaders()), body
    finally:
        conn.close()


@pytest.mark.integration
def test_health_check_server_answers_like_kube_proxy() -> None:
    port = _free_port()
    hc = HealthCheckServer(["127.0.0.1"])
    try:
        hc.update([("default/web", port, 2)])
        status, headers, body = _get(port)
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body == {"service": {"namespace": "default", "name": "web"}, "localEndpoints": 2,
                        "serviceProxyHealthy": True}
        hc.update([("default/web", port, 0)])
        status, _, body = _get(port)
        assert status == 503 and body["localEndpoints"] == 0
        hc.update([])
        assert hc.ports() == []
        with pytest.raises(ConnectionRefusedError):
            _get(port)
    finally:
        hc.close()


@pytest.mark.integration
def test_health_check_port_in_use_is_reported_not_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        hc = HealthCheckServer(["127.0.0.1"])
        try:
            hc.update([("default/web", port, 1)])
            assert hc.ports() == [] and port in hc.errors
        finally:
            hc.close()


# ----------------------------------------------------------------------------- restore errors


def test_failing_line_and_context() -> None:
    assert dp_iptables.failing_line("Error occurred at line: 3\nTry `iptables-restore -h'") == 3
    assert dp_iptables.failing_line("iptables-restore: line 12 failed") == 12
    assert dp_iptables.failing_line("something else") is None
    text = "*nat\n:A - [0:0]\n-A A -j B\nCOMMIT\n"
    ctx = dp_iptables.line_context(text, 3)
    assert ctx.splitlines() == ["      1 | *nat", "      2 | :A - [0:0]", ">     3 | -A A -j B", "      4 | COMMIT"]


def test_restore_error_names_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def fake_run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        assert argv == ["iptables-legacy-restore", "--wait", "--noflush"]
        return subprocess.CompletedProcess(argv, 2, "", "iptables-restore v1.8.9 (legacy): Couldn't load target "
                                           "`KUBE-SEP-X':No such file or directory\n\nError occurred at line: 3\n")

    monkeypatch.setattr(dp_iptables.subprocess, "run", fake_run)
    with pytest.raises(KernelError) as err:
        dp_iptables.restore("*nat\n:A - [0:0]\n-A A -j KUBE-SEP-X\nCOMMIT\n")
    msg = str(err.value)
    assert "line 3" in msg and "-A A -j KUBE-SEP-X" in msg and "Couldn't load target" in msg
    assert ":A - [0:0]" in msg and "COMMIT" in msg  # the context lines


def test_parse_save_with_counters() -> None:
    text = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-X - [0:0]\n"
            '[3:180] -A KUBE-SVC-X -m comment --comment "a b" -j KUBE-SEP-Y\nCOMMIT\n*filter\n:INPUT ACCEPT\nCOMMIT\n')
    got = dp_iptables.parse_save(text)
    assert got == {"nat": {"PREROUTING": [], "KUBE-SVC-X": [
        {"rule": '-A KUBE-SVC-X -m comment --comment "a b" -j KUBE-SEP-Y', "packets": 3, "bytes": 180}]},
        "filter": {"INPUT": []}}


def test_bin_dir_for_legacy(tmp_path: object) -> None:
    import os
    import shutil
    from pathlib import Path

    if shutil.which("iptables-legacy", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        pytest.skip("iptables-legacy not installed")
    d = dp_iptables.bin_dir_for_legacy(Path(str(tmp_path)) / "bin")
    assert os.path.realpath(d / "iptables-save") == os.path.realpath(
        shutil.which("iptables-legacy-save", path=os.environ.get("PATH", "") + ":/usr/sbin") or "")
    dp_iptables.bin_dir_for_legacy(d)  # idempotent
    assert (d / "iptables").is_symlink()


# ----------------------------------------------------------------------------- with the real renderer


class RestoreEmulator:
    """`iptables-restore --noflush` over an in-memory kernel, rejecting what the kernel would: a jump to
    a chain that does not exist, -A/-F/-X of a missing chain, -X of a chain still referenced.
    Each table's block is applied all-or-nothing at COMMIT, as legacy restore does."""

    BUILTIN: ClassVar[dict[str, tuple[str, ...]]] = {
        "filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
    TARGETS: ClassVar[set[str]] = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK"}

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[str]]] = {t: {c: [] for c in cs} for t, cs in self.BUILTIN.items()}
        self.calls = 0

    def restore(self, text: str) -> None:
        import copy

        self.calls += 1
        self.last = text
        work: dict[str, list[str]] | None = None
        table = ""
        for n, line in enumerate(text.splitlines(), 1):
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                table, work = line[1:], copy.deepcopy(self.tables[line[1:]])
                continue
            assert work is not None
            words = line.split()
            if line == "COMMIT":
                self.tables[table] = work
            elif line.startswith(":"):
                work[words[0][1:]] = [] if words[0][1:] not in self.BUILTIN[table] else work[words[0][1:]]
            elif words[0] == "-A":
                if words[1] not in work:
                    raise KernelError(f"line {n}: no chain {words[1]}")
                target = self.target(line)
                if target and target not in self.TARGETS and target not in work:
                    raise KernelError(f"line {n}: Couldn't load target {target}")
                work[words[1]].append(line)
            elif words[0] == "-F":
                if words[1] not in work:
                    raise KernelError(f"line {n}: no chain {words[1]}")
                work[words[1]] = []
            elif words[0] == "-X":
                if words[1] not in work:
                    raise KernelError(f"line {n}: no chain {words[1]}")
                if any(self.target(r) == words[1] for c, rs in work.items() if c != words[1] for r in rs):
                    raise KernelError(f"line {n}: chain {words[1]} is still referenced")
                work.pop(words[1], None)

    @staticmethod
    def target(rule: str) -> str | None:
        words = rule.split()
        return words[words.index("-j") + 1] if "-j" in words else None

    def check(self, table: str, chain: str) -> bool:
        return chain in self.tables[table]


def test_real_renderer_partial_syncs_apply_cleanly() -> None:
    from netk8s.proxy import iptables as renderer
    from netk8s.proxy.model import build_state

    inf, k, emu = FakeInformer(), FakeKernel(), RestoreEmulator()
    inf.put(svc("web"))
    inf.put(eps("web", "10.244.1.5", "10.244.2.5"))
    inf.put(svc("db", port=5432, cluster_ip="10.96.0.30"))
    inf.put(eps("db", "10.244.1.7"))
    p = IptablesProxier(NODE, restore_fn=emu.restore, check_fn=emu.check, conntrack=k, renderer=renderer,
                        build_state=build_state, healthcheck=k, announcer=k,  # type: ignore[arg-type]
                        list_chains_fn=lambda t: set(emu.tables[t]))
    p.sync(inf, [], 0.0)
    assert p.last_sync_stats is not None and p.last_sync_stats.ok and p.last_sync_stats.mode == "full"
    nat = emu.tables["nat"]
    assert any("10.96.0.20" in r for r in nat["KUBE-SERVICES"])
    seps = {c for c in nat if c.startswith("KUBE-SEP-")}
    assert len(seps) == 3
    # scale web to one endpoint: a partial sync removes one KUBE-SEP chain and leaves db's alone
    db_chains = {c: list(nat[c]) for c in nat
                 if c.startswith(("KUBE-SVC-", "KUBE-SEP-")) and any("default/db" in r for r in nat[c])}
    p.sync(inf, [inf.put(eps("web", "10.244.1.5"))], 0.2)
    assert p.last_sync_stats is not None and p.last_sync_stats.ok and p.last_sync_stats.mode == "partial"
    nat = emu.tables["nat"]
    assert len({c for c in nat if c.startswith("KUBE-SEP-")}) == 2
    assert all(nat[c] == rules for c, rules in db_chains.items())
    assert db_chains and not any(f":{c} " in emu.last for c in db_chains)  # db's chains not rewritten
    assert p.rendered.text == ""  # applied: only its chain names are kept
    # delete every KUBE- chain behind the proxier's back: the canary notices, a full sync restores them
    emu.tables["nat"] = {c: [] for c in RestoreEmulator.BUILTIN["nat"]}
    p.sync(inf, [], 3.0)
    assert p.last_sync_stats.mode == "full" and p.last_sync_stats.ok
    assert any("10.96.0.30" in r for r in emu.tables["nat"]["KUBE-SERVICES"])
    assert emu.calls == 3


def test_announce_failure_retries_slowly(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    tries: list[float] = []

    class Broken:
        def sync(self, lb_map: dict) -> set[str]:
            tries.append(0)
            raise KernelError("link eth0 not found")

    p, _ = make(k)
    p.announcer = Broken()  # type: ignore[assignment]
    for i in range(10):
        p.sync(inf, [], i * 0.2)  # 0 .. 1.8 s
    assert len(tries) == 1
    p.sync(inf, [], 5.0)
    assert len(tries) == 2


def test_synced_revision_follows_informer_when_idle(world: tuple[FakeInformer, FakeKernel]) -> None:
    inf, k = world
    p, _ = make(k)
    p.sync(inf, [], 0.0)
    ev = inf.put({"kind": "Node", "metadata": {"name": "node9"}})
    p.sync(inf, [ev], 0.2)
    assert p.synced_revision == ev.revision


# ----------------------------------------------------------------------------- built-in chains' jumps


def _fake_kernel_proxier(fake: FakeRestore, inf: FakeInformer, **kw: object) -> IptablesProxier:
    from netk8s.proxy import iptables as renderer

    k = FakeKernel()
    return IptablesProxier(NODE, restore_fn=fake.apply, check_fn=lambda t, c: c in fake.chains(t),
                           conntrack=k, renderer=renderer, healthcheck=k, announcer=k,  # type: ignore[arg-type]
                           list_chains_fn=fake.chains, ensure_rules_fn=fake.ensure_rules,
                           save_fn=lambda table: fake.save(), **kw)  # type: ignore[arg-type]


def test_someone_elses_postrouting_rule_survives_full_syncs() -> None:
    """kube-proxy never flushes built-in chains: a neighbour's masquerade rule in nat POSTROUTING (and a
    user's INPUT rule) stays through full syncs, forced full syncs and the proxier's cleanup."""
    fake = FakeRestore()
    fake.apply("*nat\n-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n"
               "*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
    inf = FakeInformer()
    inf.put(svc("web"))
    inf.put(eps("web", "10.244.1.5", "10.244.2.5"))
    p = _fake_kernel_proxier(fake, inf, full_sync_period=1.0)
    for t in (0.0, 1.0, 2.0):  # the first sync and two periodic full syncs
        p.sync(inf, [], t)
        assert p.last_sync_stats is not None and p.last_sync_stats.ok and p.last_sync_stats.mode == "full"
    rs = fake.ruleset()
    assert [r.target for r in rs.rules("nat", "POSTROUTING")] == ["KUBE-POSTROUTING", "MASQUERADE"]
    assert [r.target for r in rs.rules("filter", "INPUT")] == [
        "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "ACCEPT"]
    assert [r.target for r in rs.rules("nat", "PREROUTING")] == ["KUBE-SERVICES"]  # not duplicated
    assert p.last_sync_stats.rules == fake.rule_count() - 2  # the two rules that are not ours
    p.cleanup()
    rs = fake.ruleset()
    assert [r.target for r in rs.rules("nat", "POSTROUTING")] == ["MASQUERADE"]
    assert [r.target for r in rs.rules("filter", "INPUT")] == ["ACCEPT"]
    assert not any(c.startswith("KUBE-") for t in ("nat", "filter") for c in fake.chains(t))


def test_deleted_jump_is_restored_by_the_next_full_sync_only() -> None:
    fake = FakeRestore()
    inf = FakeInformer()
    inf.put(svc("web"))
    inf.put(eps("web", "10.244.1.5"))
    p = _fake_kernel_proxier(fake, inf, full_sync_period=10.0, canary_period=1000.0)
    p.sync(inf, [], 0.0)
    fake.apply('*nat\n-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n'
               'COMMIT\n')
    p.sync(inf, [inf.put(eps("web", "10.244.1.6"))], 1.0)  # partial: kube-proxy ensures jumps on full syncs
    assert p.last_sync_stats is not None and p.last_sync_stats.mode == "partial"
    assert fake.ruleset().rules("nat", "PREROUTING") == []
    p.sync(inf, [], 10.0)
    assert p.last_sync_stats.mode == "full"
    assert [r.target for r in fake.ruleset().rules("nat", "PREROUTING")] == ["KUBE-SERVICES"]


def test_fake_restore_default_does_not_reach_the_kernel() -> None:
    """A proxier given a fake restore gets no kernel ensure/save by default (tests never touch the host)."""
    from netk8s.proxy import iptables as renderer

    p = IptablesProxier(NODE, restore_fn=lambda text: None, renderer=renderer)
    assert p.ensure_rules_fn is None and p.save_fn is None


# ----------------------------------------------------------------------------- incremental state


def _random_world(seed: int) -> list[tuple[str, dict | tuple[str, str, str]]]:
    """A sequence of puts and deletes of Services and EndpointSlices (several slices per Service,
    relabelled slices, multi-port Services, headless ones, endpoints moving between nodes)."""
    import random

    rnd = random.Random(seed)
    ops: list[tuple[str, dict | tuple[str, str, str]]] = []
    for _ in range(300):
        i = rnd.randrange(6)
        name = f"s{i}"
        what = rnd.random()
        if what < 0.3:
            ports = [{"name": "p", "port": 80, "protocol": "TCP", "targetPort": 8080}]
            if rnd.random() < 0.4:
                ports.append({"name": "q", "port": 53, "protocol": "UDP", "targetPort": 53})
            spec: dict = {"clusterIP": "None" if rnd.random() < 0.1 else f"10.96.0.{10 + i}", "ports": ports}
            if rnd.random() < 0.3:
                spec.update(type="NodePort", externalTrafficPolicy="Local")
                ports[0]["nodePort"] = 30000 + i
            ops.append(("put", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name,
                                                                                    "namespace": "default"},
                                "spec": spec}))
        elif what < 0.4:
            ops.append(("delete", ("Service", "default", name)))
        elif what < 0.9:
            owner = f"s{rnd.randrange(6)}" if rnd.random() < 0.2 else name
            ips = [f"10.244.{rnd.randrange(1, 4)}.{rnd.randrange(2, 6)}" for _ in range(rnd.randrange(0, 4))]
            sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                  "metadata": {"name": f"{name}-{rnd.randrange(2)}", "namespace": "default",
                               "labels": {"kubernetes.io/service-name": owner}},
                  "ports": [{"name": "p", "port": 8080, "protocol": "TCP"},
                            {"name": "q", "port": 53, "protocol": "UDP"}],
                  "endpoints": [{"addresses": [ip], "nodeName": f"node{ip.split('.')[2]}",
                                 "conditions": {"ready": rnd.random() < 0.8}} for ip in ips]}
            ops.append(("put", sl))
        else:
            ops.append(("delete", ("EndpointSlice", "default", f"{name}-{rnd.randrange(2)}")))
    return ops


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_state_equals_a_rebuild_after_every_event(seed: int) -> None:
    """Event by event (no list() walk), the proxier's state is the one build_state gives from scratch,
    and what it tracks as changed is exactly what differs from the state last applied."""
    from netk8s.proxy import iptables as renderer
    from netk8s.proxy.model import build_state

    inf, k = FakeInformer(), FakeKernel()
    p = IptablesProxier(NODE, restore_fn=k.restore, check_fn=k.check, conntrack=k, renderer=renderer,
                        healthcheck=k, announcer=k, list_chains_fn=lambda t: set(),  # type: ignore[arg-type]
                        canary_period=1e9, full_sync_period=1e9)
    p.sync(inf, [], 0.0)
    listed = 0
    original_list = inf.list

    def counting_list(kind: str, namespace: str | None = None) -> list[dict]:
        nonlocal listed
        listed += kind in ("Service", "EndpointSlice")
        return original_list(kind, namespace)

    inf.list = counting_list  # type: ignore[method-assign]
    t = 0.0
    for op, arg in _random_world(seed):
        t += 0.1
        if op == "put":
            assert isinstance(arg, dict)
            ev = inf.put(arg)
        else:
            assert isinstance(arg, tuple)
            if f"{arg[1]}/{arg[2]}" not in inf.objs[arg[0]]:
                continue
            ev = inf.delete(*arg)
        applied = p.applied
        p.sync(inf, [ev], t)
        want = build_state(original_list("Service"), original_list("EndpointSlice"), "node1")
        assert p.seen == want
        assert p.applied == want and p.pending() == set()
        changed = {key for key in set(want.services) | set(applied.services)
                   if want.services.get(key) != applied.services.get(key)
                   or sorted(want.endpoints.get(key, ()), key=lambda e: e.addr)
                   != sorted(applied.endpoints.get(key, ()), key=lambda e: e.addr)}
        if changed:
            assert p.last_sync_stats is not None and p.last_sync_stats.changed == len(changed)
    assert listed == 0


def test_event_without_its_object_falls_back_to_a_rebuild(world: tuple[FakeInformer, FakeKernel]) -> None:
    from types import SimpleNamespace

    inf, k = world
    p = IptablesProxier(NODE, restore_fn=k.restore, check_fn=k.check, conntrack=k,
                        renderer=StandInRenderer(), healthcheck=k, announcer=k,  # type: ignore[arg-type]
                        list_chains_fn=lambda t: set())
    p.sync(inf, [], 0.0)
    inf.put(eps("web", "10.244.9.9"))
    p.sync(inf, [SimpleNamespace(object={"kind": "EndpointSlice"})], 0.2)
    assert p.pending() == set() and k.restores[-1] == "partial:default/web:p"


# ----------------------------------------------------------------------------- dataplane ensure_rules (pure part)


def test_ensure_rules_text_adds_only_missing_jumps_at_the_top() -> None:
    from netk8s.proxy.iptables import BUILTIN_JUMPS

    saved_nat = """# Generated by iptables-save v1.8.9
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
[4:240] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE
COMMIT
"""
    text = dp_iptables.ensure_rules_text({"nat": saved_nat, "filter": ""}, BUILTIN_JUMPS)
    nat = text.split("*nat\n", 1)[1].split("COMMIT", 1)[0].splitlines()
    assert nat == ["-N KUBE-POSTROUTING",
                   '-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                   '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING']
    # filter: nothing there, every jump inserted bottom up so they end in BUILTIN_JUMPS order
    fake = FakeRestore()
    fake.apply(text.split("COMMIT\n", 1)[0] + "COMMIT\n")
    assert [r.target for r in fake.ruleset().rules("filter", "FORWARD")] == [
        "KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"]
    # once everything is there: nothing to do
    full = FakeRestore()
    full.ensure_rules(BUILTIN_JUMPS)
    assert dp_iptables.ensure_rules_text({"nat": full.save(), "filter": full.save()}, BUILTIN_JUMPS) == ""


def test_restore_feeds_the_whole_text_from_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    got: dict[str, str] = {}

    def fake_run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        stdin = kw["stdin"]
        got["text"] = stdin.read().decode()  # type: ignore[attr-defined]
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(dp_iptables.subprocess, "run", fake_run)
    text = "*nat\n" + "".join(f'-A KUBE-X -m comment --comment "ü {i}" -j ACCEPT\n' for i in range(40000)) + "COMMIT\n"
    assert len(text) > 1 << 20  # several 1 MB pieces
    dp_iptables.restore(text)
    assert got["text"] == text
