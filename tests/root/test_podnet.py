"""Real pod networking in a 2-node lab: pods reach each other without NAT over vxlan and host-gw.

Builds the lab with build_lab, cbr0 in each node, the overlay, two pods per node with podnet.add, then
sends real packets (ping, a TCP echo that reports the peer address) and watches the underlay switch
with tcpdump.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest

from netk8s.dataplane import links, netns, sysctl
from netk8s.errors import KernelError
from netk8s.lab import topology
from netk8s.model import naming
from netk8s.node import overlay, podnet
from tests.root.conftest import Procs

pytestmark = pytest.mark.root

ECHO_SERVER = """
import socket, sys
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(16)
print("READY", flush=True)
while True:
    conn, peer = srv.accept()
    with conn:
        data = conn.recv(1024)
        conn.sendall(("peer=%s data=%s\\n" % (peer[0], data.decode())).encode())
        print("served", peer[0], flush=True)
"""

ECHO_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    s.sendall(b"hello")
    print(s.makefile().readline().strip())
"""

PORT = 8080


@dataclass(frozen=True)
class Pod:
    node: topology.MemberPlan
    cfg: podnet.PodNetConfig


@dataclass
class Cluster:
    plan: topology.LabPlan
    mode: str
    infos: list[overlay.NodeInfo]
    pods: list[Pod]

    def pods_on(self, node: str) -> list[Pod]:
        return [p for p in self.pods if p.node.name == node]


def _gateway_cidr(member: topology.MemberPlan) -> str:
    assert member.pod_cidr is not None
    return f"{member.pod_cidr.rsplit('.', 1)[0]}.1/24"


def _pod_cfg(lab: str, member: topology.MemberPlan, host: int, mtu: int) -> podnet.PodNetConfig:
    uid = str(uuid.uuid4())
    prefix = _gateway_cidr(member).rsplit(".", 1)[0]
    return podnet.PodNetConfig(
        pod_netns=naming.pod_netns(lab, uid),
        pod_uid=uid,
        ip=f"{prefix}.{host}",
        prefix_len=24,
        gateway=f"{prefix}.1",
        mtu=mtu,
    )


def bring_up(lab: str, mode: str, pods_per_node: int = 2) -> Cluster:
    plan = topology.plan_lab(lab, 2)
    topology.build_lab(plan)
    mtu = overlay.overlay_mtu(mode)
    macs: dict[str, str | None] = {}
    for node in plan.nodes:
        podnet.ensure_node_bridge(node.netns, _gateway_cidr(node), mtu)
        macs[node.name] = overlay.ensure_overlay_device(node.netns, mode, node.ip, node.pod_cidr)
    infos = [overlay.NodeInfo(n.name, n.ip, n.pod_cidr, macs[n.name]) for n in plan.nodes]
    for node in plan.nodes:
        overlay.apply_overlay(node.netns, overlay.desired_overlay(node.name, infos, mode), None)
    pods = []
    for node in plan.nodes:
        for host in range(2, 2 + pods_per_node):
            cfg = _pod_cfg(lab, node, host, mtu)
            result = podnet.add(node.netns, cfg)
            assert result["ip"] == cfg.ip and result["host_veth"] == naming.host_veth(cfg.pod_uid)
            pods.append(Pod(node, cfg))
    return Cluster(plan, mode, infos, pods)


def ping(ns: str, ip: str) -> bool:
    return netns.run_in_netns(ns, ["ping", "-c1", "-W1", ip], check=False).returncode == 0


def ping_soon(ns: str, ip: str, tries: int = 3) -> bool:
    """The first packet may wait for ARP; allow a couple of attempts (each bounded by -W1)."""
    return any(ping(ns, ip) for _ in range(tries))


def echo(procs: Procs, server: Pod, client_ns: str) -> str:
    proc = procs.python(client_ns, ECHO_CLIENT, server.cfg.ip, str(PORT))
    return proc.wait_for(r"^peer=", timeout=10)


@pytest.mark.parametrize("mode", ["vxlan", "host-gw"])
def test_pods_reach_each_other_without_nat(lab_name: str, procs: Procs, mode: str) -> None:
    cluster = bring_up(lab_name, mode)
    a1, a2 = cluster.pods_on("node1")
    b1, b2 = cluster.pods_on("node2")
    node1 = cluster.plan.node("node1")

    for pod in cluster.pods:
        assert podnet.check(pod.node.netns, pod.cfg) == []
        assert links.get_hairpin(pod.node.netns, pod.cfg.host_veth)
    assert sysctl.get_sysctl(node1.netns, "net.ipv4.ip_forward") == "1"

    # ping: same node, across nodes (both directions), node -> its own pod
    assert ping_soon(a1.cfg.pod_netns, a2.cfg.ip)
    assert ping_soon(a1.cfg.pod_netns, b1.cfg.ip)
    assert ping_soon(b2.cfg.pod_netns, a2.cfg.ip)
    assert ping_soon(node1.netns, a1.cfg.ip)

    # TCP echo: the server sees the client pod's own IP (no NAT anywhere on the path)
    for server in (b1, a2):
        srv = procs.python(server.cfg.pod_netns, ECHO_SERVER, str(PORT))
        srv.wait_for("^READY$")
        assert echo(procs, server, a1.cfg.pod_netns) == f"peer={a1.cfg.ip} data=hello"
    assert echo(procs, b1, b2.cfg.pod_netns) == f"peer={b2.cfg.ip} data=hello"
    assert echo(procs, a2, node1.netns) == "peer=10.244.1.1 data=hello"

    # the underlay switch: VXLAN (UDP 8472) in vxlan mode; plain routed pod packets in host-gw mode
    sw = cluster.plan.switch_netns
    vx = procs.start(sw, ["tcpdump", "-n", "-l", "-i", "br0", "-c", "1", "-T", "vxlan", "udp port 8472"])
    plain = procs.start(sw, ["tcpdump", "-n", "-l", "-i", "br0", "-c", "1", "icmp and net 10.244.0.0/16"])
    vx.wait_for("listening on", stream="stderr")
    plain.wait_for("listening on", stream="stderr")
    assert ping_soon(a1.cfg.pod_netns, b2.cfg.ip)
    if mode == "vxlan":
        line = vx.wait_for(r"VXLAN", timeout=5)
        assert "vni 1" in line and f"{node1.ip}." in line and ".8472:" in line
        vx.wait_for(rf"IP {a1.cfg.ip} > {b2.cfg.ip}: ICMP echo request", timeout=5)  # the inner packet
        assert plain.wait(1) is None and plain.stdout == []  # the pod packet is only inside the tunnel
    else:
        line = plain.wait_for(rf"{a1.cfg.ip} > {b2.cfg.ip}: ICMP echo request", timeout=5)
        assert vx.wait(1) is None and vx.stdout == []  # nothing on 8472


def test_podnet_add_and_delete_are_idempotent(lab_name: str) -> None:
    cluster = bring_up(lab_name, "vxlan", pods_per_node=1)
    pod = cluster.pods_on("node1")[0]
    other = cluster.pods_on("node2")[0]
    node_ns = pod.node.netns

    again = podnet.add(node_ns, pod.cfg)
    assert again["mac"] == links.get_mac(pod.cfg.pod_netns, "eth0")
    assert podnet.check(node_ns, pod.cfg) == []
    assert links.list_addresses(pod.cfg.pod_netns, "eth0") == [pod.cfg.cidr]
    assert ping_soon(pod.cfg.pod_netns, other.cfg.ip)

    podnet.delete(node_ns, pod.cfg.pod_netns, pod.cfg.pod_uid)
    podnet.delete(node_ns, pod.cfg.pod_netns, pod.cfg.pod_uid)
    assert not netns.netns_exists(pod.cfg.pod_netns)
    assert not links.link_exists(node_ns, pod.cfg.host_veth)
    assert "missing" in podnet.check(node_ns, pod.cfg)[0]

    # delete after a half-finished add: the netns and a veth exist, nothing else was done
    half = _pod_cfg(lab_name, pod.node, 9, pod.cfg.mtu)
    netns.create_netns(half.pod_netns)
    links.ensure_veth(node_ns, half.host_veth, half.pod_netns, "eth0", half.mtu)
    assert podnet.check(node_ns, half)  # not healthy
    podnet.delete(node_ns, half.pod_netns, half.pod_uid)
    assert not netns.netns_exists(half.pod_netns)
    assert not links.link_exists(node_ns, half.host_veth)

    # ... and add over a half-finished add completes it
    netns.create_netns(half.pod_netns)
    podnet.add(node_ns, half)
    assert podnet.check(node_ns, half) == []
    assert ping_soon(half.pod_netns, other.cfg.ip)


def test_failed_add_rolls_back(lab_name: str) -> None:
    cluster = bring_up(lab_name, "host-gw", pods_per_node=0)
    node = cluster.plan.node("node1")
    cfg = _pod_cfg(lab_name, node, 5, 1500)
    broken = podnet.PodNetConfig(**{**cfg.__dict__, "bridge": "nobridge"})
    with pytest.raises(KernelError, match="nobridge"):
        podnet.add(node.netns, broken)
    assert not netns.netns_exists(cfg.pod_netns)
    assert not links.link_exists(node.netns, cfg.host_veth)


def test_check_detects_a_deleted_veth_and_add_repairs_it(lab_name: str) -> None:
    cluster = bring_up(lab_name, "host-gw", pods_per_node=1)
    pod = cluster.pods_on("node1")[0]
    other = cluster.pods_on("node2")[0]
    links.delete_link(pod.node.netns, pod.cfg.host_veth)  # takes the pod's eth0 with it
    problems = podnet.check(pod.node.netns, pod.cfg)
    assert any(pod.cfg.host_veth in p and "missing" in p for p in problems)
    assert any("eth0 is missing" in p for p in problems)
    assert not ping(other.cfg.pod_netns, pod.cfg.ip)
    podnet.add(pod.node.netns, pod.cfg)
    assert podnet.check(pod.node.netns, pod.cfg) == []
    assert ping_soon(other.cfg.pod_netns, pod.cfg.ip)


def test_the_bridge_keeps_its_mac_while_pods_come_and_go(lab_name: str) -> None:
    """docs/reliability.md cause 3: a bridge with no address of its own takes its lowest port MAC. A pod
    whose host veth MAC is lower joins, a client pod resolves its gateway to that MAC, the pod is deleted:
    the client's frames to its gateway (every Service request) go nowhere until its neighbour entry is
    probed and replaced, 15-50 s later. With cbr0's MAC pinned the gateway's MAC never changes."""
    cluster = bring_up(lab_name, "vxlan", pods_per_node=1)
    client = cluster.pods_on("node1")[0]
    node_ns = client.node.netns
    gateway = client.cfg.gateway
    bridge_mac = links.get_mac(node_ns, naming.BRIDGE)
    low = None
    for host in range(10, 200):  # random MACs: about one in two is below the bridge's; give up after 190
        cfg = _pod_cfg(lab_name, client.node, host, client.cfg.mtu)
        podnet.add(node_ns, cfg)
        if links.get_mac(node_ns, cfg.host_veth) < bridge_mac:
            low = cfg
            break
        podnet.delete(node_ns, cfg.pod_netns, cfg.pod_uid)
    assert low is not None, f"no host veth MAC below {bridge_mac} in 190 pods"
    # the client resolves its gateway now (as it does whenever its entry expires)
    netns.run_in_netns(client.cfg.pod_netns, ["ip", "neigh", "flush", "dev", "eth0"])
    assert ping_soon(client.cfg.pod_netns, gateway)
    podnet.delete(node_ns, low.pod_netns, low.pod_uid)
    # one ping, well inside the 15 s a REACHABLE entry with a vanished MAC would last
    res = netns.run_in_netns(client.cfg.pod_netns, ["ping", "-c1", "-W5", gateway], check=False)
    neigh = netns.run_in_netns(client.cfg.pod_netns, ["ip", "neigh", "show", gateway], check=False).stdout
    assert res.returncode == 0, f"the client lost its gateway: {neigh.strip()}; cbr0 is now {links.get_mac(node_ns, naming.BRIDGE)}"
    assert links.get_mac(node_ns, naming.BRIDGE) == bridge_mac


def neighbour(ns: str, ip: str) -> str:
    """`ip neigh` of `ip` on cbr0 in `ns`: "MAC STATE", or "" when there is no entry."""
    out = netns.run_in_netns(ns, ["ip", "neigh", "show", ip, "dev", naming.BRIDGE], check=False).stdout.split()
    return " ".join(out[out.index("lladdr") + 1:]) if "lladdr" in out else ""


def test_a_new_pod_on_a_reused_address_replaces_the_nodes_stale_neighbour_entry(lab_name: str) -> None:
    """docs/reliability.md cause 2: IPAM gives a new pod the address of one just deleted, with a new MAC.
    The node's neighbour entry still names the old MAC (REACHABLE for 15-45 s, then probed 5+3 s before it
    is replaced): the node's traffic to the new pod, forwarded Service traffic and probes, is lost until
    then. The pod's gratuitous ARP on add replaces it at once (polled with a deadline far below 15 s)."""
    # two pods: the other keeps cbr0's carrier up (with no port left the kernel flushes cbr0's entries)
    cluster = bring_up(lab_name, "vxlan", pods_per_node=2)
    old = cluster.pods_on("node1")[0]
    node_ns = old.node.netns
    old_mac = links.get_mac(old.cfg.pod_netns, "eth0")
    assert ping_soon(node_ns, old.cfg.ip)
    assert neighbour(node_ns, old.cfg.ip).startswith(old_mac)  # REACHABLE: just confirmed by the ping
    podnet.delete(node_ns, old.cfg.pod_netns, old.cfg.pod_uid)
    new = podnet.PodNetConfig(**{**old.cfg.__dict__, "pod_uid": str(uuid.uuid4()),
                                 "pod_netns": naming.pod_netns(lab_name, str(uuid.uuid4()))})
    new_mac = podnet.add(node_ns, new)["mac"]
    assert new_mac != old_mac
    deadline = time.monotonic() + 3
    while not neighbour(node_ns, new.ip).startswith(new_mac) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert neighbour(node_ns, new.ip).startswith(new_mac), (neighbour(node_ns, new.ip), old_mac, new_mac)
    assert ping(node_ns, new.ip)


@pytest.mark.parametrize("mode", ["vxlan", "host-gw"])
def test_overlay_follows_a_node_leaving_and_rejoining(lab_name: str, mode: str) -> None:
    cluster = bring_up(lab_name, mode, pods_per_node=1)
    node1, node2 = cluster.plan.nodes
    a = cluster.pods_on("node1")[0]
    b = cluster.pods_on("node2")[0]
    full = overlay.desired_overlay("node1", cluster.infos, mode)
    assert ping_soon(a.cfg.pod_netns, b.cfg.ip)

    # applying the same state again changes nothing
    routes_before = links.list_routes(node1.netns)
    overlay.apply_overlay(node1.netns, full, full)
    assert links.list_routes(node1.netns) == routes_before

    # node2 leaves; previous=None: stale entries are found in the kernel, not in `previous`
    alone = overlay.desired_overlay("node1", [cluster.infos[0]], mode)
    overlay.apply_overlay(node1.netns, alone, None)
    assert not any(r["dst"] == node2.pod_cidr for r in links.list_routes(node1.netns))
    assert links.fdb_list(node1.netns, "flannel.1") == []
    assert links.neigh_list(node1.netns, "flannel.1") == []
    assert not ping(a.cfg.pod_netns, b.cfg.ip)

    # and comes back
    overlay.apply_overlay(node1.netns, full, alone)
    dsts = {r["dst"]: r for r in links.list_routes(node1.netns)}
    assert node2.pod_cidr in dsts
    if mode == "vxlan":
        vtep = cluster.infos[1].vtep_mac
        assert dsts[node2.pod_cidr]["dev"] == "flannel.1" and dsts[node2.pod_cidr]["onlink"]
        assert links.fdb_list(node1.netns, "flannel.1") == [(vtep, node2.ip)]
        assert links.neigh_list(node1.netns, "flannel.1") == [("10.244.2.0", vtep)]
    else:
        assert dsts[node2.pod_cidr]["gateway"] == node2.ip and dsts[node2.pod_cidr]["dev"] == "eth0"
    assert ping_soon(a.cfg.pod_netns, b.cfg.ip)


def test_lab_is_idempotent_and_leaves_the_host_alone(lab_name: str) -> None:
    plan = topology.plan_lab(lab_name, 1)
    topology.build_lab(plan)
    topology.build_lab(plan)
    grown = topology.add_node(plan, 2)
    assert [n.name for n in grown.nodes] == ["node1", "node2"]
    assert set(topology.lab_netns(lab_name)) == {plan.switch_netns, *(m.netns for m in grown.members)}
    assert ping_soon(plan.external.netns, grown.node("node2").ip)
    assert links.list_addresses(grown.node("node2").netns, "eth0") == ["192.168.56.12/24"]
    # the switch ports live in the switch namespace only
    assert "sw-node2" in links.list_links(plan.switch_netns)
    assert "sw-node2" not in links.list_links(None)  # read-only look at the host namespace
