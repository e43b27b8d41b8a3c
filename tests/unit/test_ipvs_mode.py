"""IPVS mode: golden files of the desired state, the diff against a fake IPVS kernel that rejects what the kernel
rejects, packet traces (ClusterIP, NodePort, affinity, Local policies, hairpin), graceful removal, cleanup,
and the refusal on kernels without IP_VS."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from netk8s.dataplane import ipvs as dp_ipvs
from netk8s.errors import KernelError, LabError
from netk8s.model import naming
from netk8s.proxy import render_ipvs as rv
from netk8s.proxy.backend_ipvs import IpvsBackend
from netk8s.proxy.model import NodeContext
from netk8s.proxy.proxier import Proxier
from netk8s.proxy.testing.fake_ipvs import FakeIpvs, trace
from tests.unit.golden import GOLDEN_ROOT, check_golden
from tests.unit.test_iptables_render import HTTP, HTTP_EP, SCENARIOS, THREE, eps_slice, state_of, svc
from tests.unit.test_proxier import FakeInformer, FakeKernel

GOLDEN_DIR = GOLDEN_ROOT / "ipvs"
NODE = NodeContext(node_name="node1", node_ips=("192.168.56.11",))
POD = "10.244.1.9"
OUTSIDE = "192.168.56.100"


def first_sync(name: str, scheduler: str = "rr") -> tuple[FakeIpvs, rv.IpvsRendered]:
    """A FakeIpvs after the first sync of a scenario (through the real backend)."""
    k = FakeIpvs(NODE.node_ips)
    backend = IpvsBackend(k, scheduler)
    r = backend.render_full(state_of(name), NODE, set())
    backend.ensure_jumps()
    backend.apply(r)
    return k, r


# ---------------------------------------------------------------------------------------------------------
# Golden files: what a first sync sends (ipsets, ipvsadm --restore, iptables), generated with
# NETK8S_REGEN_GOLDEN=1 and reviewed.


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden(name: str) -> None:
    text = rv.diff(rv.render_desired(state_of(name), NODE), rv.IpvsKernelState()).text
    check_golden(GOLDEN_DIR / f"{name}.txt", text)


@pytest.mark.parametrize("name", SCENARIOS)
def test_first_sync_is_accepted_and_a_second_diff_is_empty(name: str) -> None:
    k, r = first_sync(name)
    again = rv.diff(r.desired, IpvsBackend(k).kernel_state(), previous_iptables=r.desired.iptables, full=False)
    assert (again.ipvsadm, again.ipset, again.iptables, again.add_addresses, again.del_addresses) == \
        ("", "", "", [], [])
    assert k.device_addresses() == r.desired.addresses


# ---------------------------------------------------------------------------------------------------------
# The layout


def test_clusterip_virtual_server_per_port_with_a_real_server_per_ready_endpoint() -> None:
    k, _ = first_sync("clusterip_3_endpoints")
    assert set(k.services) == {("TCP", "10.96.0.20", 80)}
    svc_ = k.services[("TCP", "10.96.0.20", 80)]
    assert svc_.scheduler == "rr" and svc_.persistence is None
    assert {f"{ip}:{port}": real.weight for (ip, port), real in svc_.reals.items()} == {
        "10.244.1.5:8080": 1, "10.244.2.5:8080": 1, "10.244.3.5:8080": 1}
    assert k.device == {"10.96.0.20"}
    assert "10.96.0.20,tcp:80" in k.sets[naming.IPSET_CLUSTER_IP][1]
    assert "10.244.2.5,tcp:8080,10.244.2.5" in k.sets[naming.IPSET_LOOP_BACK][1]
    reals = [trace(k, POD, "tcp", "10.96.0.20", 80).real for _ in range(6)]
    assert reals == ["10.244.1.5:8080", "10.244.2.5:8080", "10.244.3.5:8080"] * 2  # rr


def test_nodeport_and_external_and_lb_ips_get_virtual_servers() -> None:
    k, _ = first_sync("loadbalancer")
    assert set(k.services) == {("TCP", "10.96.0.24", 80), ("TCP", "192.168.56.200", 80),
                               ("TCP", "192.168.56.11", 30024)}
    assert k.device == {"10.96.0.24", "192.168.56.200"}  # never the node IP
    np = trace(k, OUTSIDE, "tcp", "192.168.56.11", 30024)
    assert np.verdict == "DNAT" and np.masquerade  # Cluster policy: masqueraded
    lb = trace(k, OUTSIDE, "tcp", "192.168.56.200", 80)
    assert lb.verdict == "DNAT" and lb.masquerade
    pod = trace(k, POD, "tcp", "10.96.0.24", 80)
    assert pod.verdict == "DNAT" and not pod.masquerade  # pod to ClusterIP keeps its source
    assert trace(k, OUTSIDE, "tcp", "10.96.0.24", 80).masquerade  # off-cluster source to a ClusterIP
    ext_k, _ = first_sync("external_ips")
    assert ("TCP", "192.168.56.151", 80) in ext_k.services and "192.168.56.151" in (ext_k.device or set())


def test_external_traffic_policy_local_uses_local_endpoints_and_keeps_the_source() -> None:
    k, _ = first_sync("nodeport_local")
    np = k.services[("TCP", "192.168.56.11", 30023)]
    assert set(np.reals) == {("10.244.1.7", 8080)}  # node1's endpoint only
    assert set(k.services[("TCP", "10.96.0.23", 80)].reals) == {("10.244.1.7", 8080), ("10.244.2.7", 8080)}
    t = trace(k, OUTSIDE, "tcp", "192.168.56.11", 30023)
    assert t.verdict == "DNAT" and t.real == "10.244.1.7:8080" and not t.masquerade
    none, _ = first_sync("nodeport_local_no_local_endpoints")
    assert trace(none, OUTSIDE, "tcp", "192.168.56.11", 30023).verdict == "NO-DESTINATION"
    lb, _ = first_sync("loadbalancer_local")
    assert "192.168.56.201,tcp:80" in lb.sets[naming.IPSET_LOAD_BALANCER_LOCAL][1]
    assert not lb.services[("TCP", "192.168.56.201", 80)].reals  # no local endpoint on node1


def test_internal_traffic_policy_local() -> None:
    k, _ = first_sync("internal_traffic_policy_local")
    assert set(k.services[("TCP", "10.96.0.28", 80)].reals) == {("10.244.1.5", 8080)}
    assert trace(k, POD, "tcp", "10.96.0.29", 80).verdict == "NO-DESTINATION"  # no endpoint on node1


def test_session_affinity_is_persistence_with_the_timeout() -> None:
    k, _ = first_sync("session_affinity")
    assert k.services[("TCP", "10.96.0.27", 80)].persistence == 60
    assert "persistent 60" in k.ipvsadm_list()
    first = trace(k, POD, "tcp", "10.96.0.27", 80, now=0.0).real
    assert {trace(k, POD, "tcp", "10.96.0.27", 80, now=t).real for t in (1.0, 30.0, 59.0)} == {first}
    assert trace(k, "10.244.2.9", "tcp", "10.96.0.27", 80, now=2.0).real != first  # another client, rr


def test_scheduler_flag_and_udp() -> None:
    k, _ = first_sync("multiport_udp", scheduler="lc")
    assert {svc_.scheduler for svc_ in k.services.values()} == {"lc"}
    assert ("UDP", "10.96.0.10", 53) in k.services
    with pytest.raises(ValueError, match="scheduler"):
        IpvsBackend(FakeIpvs(), "fastest")


def test_hairpin_is_masqueraded() -> None:
    k, _ = first_sync("clusterip_3_endpoints")
    t = trace(k, "10.244.1.5", "tcp", "10.96.0.20", 80)  # the endpoint reaches its own Service
    assert t.real == "10.244.1.5:8080" and t.masquerade


# ---------------------------------------------------------------------------------------------------------
# The syncer on the IPVS backend: changes, graceful removal, failures, cleanup


def ipvs_proxier(k: FakeIpvs) -> Proxier:
    fk = FakeKernel()
    return Proxier(NODE, IpvsBackend(k), conntrack=fk, healthcheck=fk, announcer=fk)  # type: ignore[arg-type]


def world() -> FakeInformer:
    inf = FakeInformer()
    inf.put(svc("web", "10.96.0.20", [{**HTTP[0], "nodePort": 30080}], type="NodePort"))
    inf.put(eps_slice("web", THREE, HTTP_EP))
    return inf


def test_removed_endpoint_drains_with_weight_zero_then_goes() -> None:
    k, inf = FakeIpvs(NODE.node_ips), world()
    p = ipvs_proxier(k)
    p.sync(inf, [], 0.0)
    k.connections("10.96.0.20", 80, "10.244.3.5:8080", 3)
    p.sync(inf, [inf.put(eps_slice("web", THREE[:2], HTTP_EP))], 1.0)
    vs = k.services[("TCP", "10.96.0.20", 80)]
    assert vs.reals[("10.244.3.5", 8080)].weight == 0  # kept for its connections, no new ones
    assert ("10.244.3.5", 8080) not in k.services[("TCP", "192.168.56.11", 30080)].reals  # idle: gone at once
    assert all(trace(k, POD, "tcp", "10.96.0.20", 80).real != "10.244.3.5:8080" for _ in range(4))
    p.sync(inf, [], 3.0)
    assert ("10.244.3.5", 8080) in vs.reals  # still busy
    k.connections("10.96.0.20", 80, "10.244.3.5:8080", 0)
    p.sync(inf, [], 5.0)  # housekeeping sees it drained
    assert ("10.244.3.5", 8080) not in vs.reals
    # an endpoint that comes back while draining gets its weight back
    k2, inf2 = FakeIpvs(NODE.node_ips), world()
    p2 = ipvs_proxier(k2)
    p2.sync(inf2, [], 0.0)
    k2.connections("10.96.0.20", 80, "10.244.3.5:8080", 1)
    p2.sync(inf2, [inf2.put(eps_slice("web", THREE[:2], HTTP_EP))], 1.0)
    p2.sync(inf2, [inf2.put(eps_slice("web", THREE, HTTP_EP))], 2.0)
    assert k2.services[("TCP", "10.96.0.20", 80)].reals[("10.244.3.5", 8080)].weight == 1


def test_deleted_service_removes_its_virtual_servers_addresses_and_set_entries() -> None:
    k, inf = FakeIpvs(NODE.node_ips), world()
    p = ipvs_proxier(k)
    p.sync(inf, [], 0.0)
    p.sync(inf, [inf.delete("Service", "default", "web")], 1.0)
    assert k.services == {} and k.device == set()
    assert all(not entries for _, entries in k.sets.values())
    assert p.last_sync_stats is not None and p.last_sync_stats.ok


def test_fake_rejects_what_the_kernel_rejects() -> None:
    k = FakeIpvs()
    k.ipvsadm_restore("-A -t 10.96.0.1:443 -s rr\n")
    for bad, why in (("-A -t 10.96.0.1:443 -s rr\n", "already exists"),
                     ("-a -t 10.96.0.2:80 -r 10.244.1.5:80 -m -w 1\n", "No such service"),
                     ("-A -t 10.96.0.3:80 -s fastest\n", "Scheduler not found"),
                     ("-d -t 10.96.0.1:443 -r 10.244.1.5:80\n", "No such destination"),
                     ("-a -t 10.96.0.1:443 -r 10.244.1.5:80 -m -w 70000\n", "Illegal weight")):
        with pytest.raises(KernelError, match=why):
            k.ipvsadm_restore(bad)
    k.ipset_restore("create KUBE-CLUSTER-IP hash:ip,port\nadd KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n")
    for bad, why in (("add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n", "already added"),
                     ("add KUBE-LOOP-BACK 10.244.1.5,tcp:80,10.244.1.5\n", "does not exist"),
                     ("add KUBE-CLUSTER-IP 10.96.0.1\n", "not a valid"),
                     ("create KUBE-CLUSTER-IP hash:ip,port\n", "already exists")):
        with pytest.raises(KernelError, match=why):
            k.ipset_restore(bad)
    with pytest.raises(KernelError, match="Cannot find device"):
        k.set_addresses(["10.96.0.1"], [])
    with pytest.raises(KernelError, match="doesn't exist"):
        k.restore("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -m set --match-set KUBE-NOPE dst,dst -j ACCEPT\n"
                  "COMMIT\n")


def test_failed_apply_backs_off_and_the_full_retry_converges() -> None:
    k, inf = FakeIpvs(NODE.node_ips), world()
    k.ipset_restore(f"create {naming.IPSET_NODE_PORT_TCP} hash:ip,port\n")  # a set of the wrong type
    p = ipvs_proxier(k)
    p.sync(inf, [], 0.0)
    assert p.last_sync_stats is not None and not p.last_sync_stats.ok and "not a valid" in p.last_sync_stats.error
    assert p.need_full and p.failures == 1
    del k.sets[naming.IPSET_NODE_PORT_TCP]  # repaired
    p.sync(inf, [], 0.1)  # within the backoff: no attempt
    assert p.failures == 1
    p.sync(inf, [], 0.3)
    assert p.last_sync_stats.ok and p.last_sync_stats.mode == "full"
    assert trace(k, OUTSIDE, "tcp", "192.168.56.11", 30080).verdict == "DNAT"


def test_canary_finds_the_device_gone_and_the_full_sync_restores_it() -> None:
    k, inf = FakeIpvs(NODE.node_ips), world()
    p = ipvs_proxier(k)
    p.sync(inf, [], 0.0)
    k.ipvsadm_restore("-A -t 10.96.0.99:80 -s rr\n")  # someone else's virtual server: the diff removes it
    k.delete_device()  # kube-ipvs0 deleted behind our back
    p.sync(inf, [], 2.5)
    assert p.last_sync_stats is not None and p.last_sync_stats.ok and p.last_sync_stats.mode == "full"
    assert ("TCP", "10.96.0.99", 80) not in k.services and k.device == {"10.96.0.20"}
    assert trace(k, POD, "tcp", "10.96.0.20", 80).verdict == "DNAT"


def test_cleanup_leaves_no_ipvs_service_device_ipset_or_kube_rule() -> None:
    k, inf = FakeIpvs(NODE.node_ips), world()
    k.iptables.apply("*nat\n-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n")  # a neighbour's rule
    p = ipvs_proxier(k)
    p.sync(inf, [], 0.0)
    assert k.services and k.sets and k.device is not None
    p.cleanup()  # the sets can only go once the rules using them are gone: the fake checks the order
    assert k.services == {} and k.sets == {} and k.device is None
    assert not any(c.startswith("KUBE-") for c in k.iptables.chains("nat"))
    assert [r.target for r in k.iptables.ruleset().rules("nat", "POSTROUTING")] == ["MASQUERADE"]
    p.cleanup()  # idempotent: nothing left to remove is not an error


# ---------------------------------------------------------------------------------------------------------
# Kernel support: probed, and refused before anything is built


def test_missing_support_probes_proc_and_sys(tmp_path: Path) -> None:
    assert len(dp_ipvs.missing_support(tmp_path / "ip_vs", tmp_path / "dummy")) == 2
    (tmp_path / "ip_vs").write_text("")
    (tmp_path / "dummy").mkdir()
    assert dp_ipvs.missing_support(tmp_path / "ip_vs", tmp_path / "dummy") == []


def test_leftovers_are_virtual_servers_not_the_listing_header() -> None:
    """The real `ipvsadm -Ln` of an empty table still prints a `->` header line (seen on the guest kernel)."""
    empty = FakeIpvs().ipvsadm_list()
    assert "->" in empty and not dp_ipvs.lists_virtual_servers(empty)
    k = FakeIpvs()
    k.ipvsadm_restore("-A -u 10.96.0.10:53 -s rr\n")  # a virtual server with no real server yet
    assert dp_ipvs.lists_virtual_servers(k.ipvsadm_list())


def test_lab_up_in_ipvs_mode_is_refused_on_a_kernel_without_ip_vs(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from netk8s.lab import manager

    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(dp_ipvs, "PROC_IP_VS", tmp_path / "no-ip_vs")
    with pytest.raises(LabError) as err:
        manager.lab_up("ipvst", nodes=1, proxy_mode="ipvs")
    assert "IP_VS" in err.value.message and "\n" not in err.value.message
    assert "--node-runtime vm" in err.value.hint
    assert list(tmp_path.iterdir()) == []  # nothing built
    manager.check_proxy_mode_supported("ipvs", ["vm", "vm"])  # VM nodes probe their own kernel


def test_agent_refuses_ipvs_before_cleaning_up_other_modes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from netk8s.node import __main__ as node_main
    from netk8s.proxy import modes

    ran: list[str] = []
    monkeypatch.setattr(dp_ipvs, "PROC_IP_VS", tmp_path / "no-ip_vs")
    monkeypatch.setattr(modes, "cleanup_other_modes", lambda mode: ran.append(mode))
    with pytest.raises(KernelError, match="IP_VS"):
        node_main.proxy_plugins("ipvs", SimpleNamespace(node="node1", node_ip="192.168.56.11"))  # type: ignore[arg-type]
    assert ran == []

