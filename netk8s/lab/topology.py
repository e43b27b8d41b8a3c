"""The one-machine lab's topology: an underlay switch namespace, the control plane, nodes, an external client.

Like mininet, the topology is plain data (`plan_lab`, pure) built before anything touches the kernel
(`build_lab`). Every namespace is named by naming.py with the lab's prefix, so `destroy_lab` needs no
saved state. Nothing is created in the host namespace: each member is a veth pair between the switch
namespace (port on bridge br0) and the member's namespace (eth0 with its underlay IP).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace

from netk8s import config
from netk8s.dataplane import links, netns, sysctl
from netk8s.errors import ValidationError
from netk8s.model import naming

EXTERNAL_NAME = "external"
CONTROL_PLANE_NAME = "control-plane"
# node i gets 192.168.56.(10+i); the external client is .100, so at most 89 nodes fit below it
MAX_NODES = int(naming.EXTERNAL_IP) - int(config.UNDERLAY_CIDR.network_address) - 11


@dataclass(frozen=True)
class MemberPlan:
    """One namespace plugged into the underlay switch: a node or the external client."""

    name: str
    netns: str
    ip: str
    switch_port: str
    uplink: str = naming.NODE_UPLINK
    index: int = 0
    pod_cidr: str | None = None
    runtime: str = "netns"  # a node: netns (this namespace, built here) or vm (a QEMU guest: netk8s.lab.vmnodes)

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{config.UNDERLAY_CIDR.prefixlen}"


@dataclass(frozen=True)
class LabPlan:
    """Everything `build_lab` creates, by name."""

    lab: str
    switch_netns: str
    bridge: str
    mtu: int
    nodes: tuple[MemberPlan, ...]
    external: MemberPlan
    control_plane: MemberPlan

    def node(self, name: str) -> MemberPlan:
        for member in self.nodes:
            if member.name == name:
                return member
        raise ValidationError(f"node: {name!r} is not in lab {self.lab}")

    @property
    def members(self) -> tuple[MemberPlan, ...]:
        return (self.control_plane, *self.nodes, self.external)


def plan_node(lab: str, index: int) -> MemberPlan:
    """Plan of lab node `index` (1-based)."""
    if not 1 <= index <= MAX_NODES:
        raise ValidationError(f"--nodes: node index {index} must be between 1 and {MAX_NODES}")
    name = naming.node_name(index)
    return MemberPlan(
        name=name,
        netns=naming.node_netns(lab, name),
        ip=str(naming.node_ip(index)),
        switch_port=naming.switch_port(lab, name),
        index=index,
        pod_cidr=str(naming.node_pod_cidr(index)),
    )


def plan_lab(lab: str, nodes: int, vm_nodes: Iterable[str] = ()) -> LabPlan:
    """The lab's topology as data; validates the lab name and node count; touches nothing. Nodes named
    in `vm_nodes` are QEMU guests: no namespace is built for them (their tap joins the switch instead)."""
    naming.check_lab_name(lab)
    if not 1 <= nodes <= MAX_NODES:
        raise ValidationError(f"--nodes: {nodes} must be between 1 and {MAX_NODES}")
    vms = set(vm_nodes)
    external = MemberPlan(
        name=EXTERNAL_NAME,
        netns=naming.external_netns(lab),
        ip=str(naming.EXTERNAL_IP),
        switch_port=naming.switch_port(lab, "ext"),
    )
    # The control plane (API server, controller) sits on the underlay at 192.168.56.10, where the
    # nodes reach it as they reach a control-plane VM (DESIGN.md address plan).
    control_plane = MemberPlan(
        name=CONTROL_PLANE_NAME,
        netns=naming.control_plane_netns(lab),
        ip=str(config.CONTROL_PLANE_IP),
        switch_port=naming.switch_port(lab, "cp"),
    )
    return LabPlan(
        lab=lab,
        switch_netns=naming.switch_netns(lab),
        bridge=naming.UNDERLAY_BRIDGE,
        mtu=config.UNDERLAY_MTU,
        nodes=tuple(replace(n, runtime="vm") if n.name in vms else n
                    for n in (plan_node(lab, i) for i in range(1, nodes + 1))),
        external=external,
        control_plane=control_plane,
    )


GATEWAY_IP = str(config.UNDERLAY_CIDR.network_address + 1)  # 192.168.56.1, in the switch namespace


def _build_switch(plan: LabPlan) -> None:
    netns.create_netns(plan.switch_netns)
    links.ensure_loopback_up(plan.switch_netns)
    links.ensure_bridge(plan.switch_netns, plan.bridge, plan.mtu)
    # The switch is also the underlay's gateway (like a LAN router with no uplink): nodes need a default
    # route, as real nodes have, so traffic to a Service VIP is routed into FORWARD where kube-proxy's
    # filter rules REJECT it when the Service has no endpoints (instead of "network unreachable").
    links.ensure_address(plan.switch_netns, plan.bridge, f"{GATEWAY_IP}/{config.UNDERLAY_CIDR.prefixlen}")


def _build_member(plan: LabPlan, member: MemberPlan, forward: bool) -> None:
    netns.create_netns(member.netns)
    links.ensure_loopback_up(member.netns)
    links.ensure_veth(
        plan.switch_netns, member.switch_port, member.netns, member.uplink, plan.mtu, master=plan.bridge
    )
    for stale in links.list_addresses(member.netns, member.uplink):
        if ipaddress.ip_interface(stale).ip != ipaddress.ip_address(member.ip):
            links.delete_address(member.netns, member.uplink, stale)
    links.ensure_address(member.netns, member.uplink, member.cidr)
    if forward:
        sysctl.set_sysctl(member.netns, "net.ipv4.ip_forward", 1)
        links.ensure_route(member.netns, "0.0.0.0/0", gateway=GATEWAY_IP, dev=member.uplink)


def build_lab(plan: LabPlan) -> None:
    """Create the switch, the control plane, every node and the external client. Idempotent."""
    _build_switch(plan)
    _build_member(plan, plan.control_plane, forward=False)
    for node in plan.nodes:
        if node.runtime == "netns":
            _build_member(plan, node, forward=True)
    _build_member(plan, plan.external, forward=False)


def add_node(plan: LabPlan, index: int) -> LabPlan:
    """Build node `index` into a running lab; returns the plan that includes it."""
    member = plan_node(plan.lab, index)
    _build_switch(plan)
    _build_member(plan, member, forward=True)
    nodes = {n.index: n for n in plan.nodes}
    nodes[index] = member
    return replace(plan, nodes=tuple(nodes[i] for i in sorted(nodes)))


def lab_netns(lab: str) -> list[str]:
    """Every namespace of the lab (switch, nodes, external, pods), found by name prefix."""
    return netns.list_netns(naming.lab_netns_prefix(lab))


def destroy_lab(lab: str) -> list[str]:
    """Delete every namespace whose name starts with the lab's prefix; returns their names.

    Pods go first, the switch last. Stopping processes that still run inside them is the caller's
    job (a namespace with processes lives on, unnamed, until they exit).
    """
    names = lab_netns(lab)
    switch = naming.switch_netns(lab)
    for name in sorted(names, key=lambda n: n == switch):
        netns.delete_netns(name)
    return names


def all_netk8s_netns() -> list[str]:
    """Every namespace netk8s made on this machine, in any lab."""
    return netns.list_netns(naming.NETNS_PREFIX)
