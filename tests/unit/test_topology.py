"""plan_lab: the lab topology as pure data (names from naming.py, the address plan)."""

from __future__ import annotations

import pytest

from netk8s.errors import ValidationError
from netk8s.lab.topology import MAX_NODES, plan_lab, plan_node
from netk8s.model import naming


def test_two_node_plan() -> None:
    plan = plan_lab("demo", 2)
    assert plan.switch_netns == "nk8s-demo-sw"
    assert plan.bridge == "br0" and plan.mtu == 1500
    assert [(n.name, n.netns, n.ip, n.pod_cidr, n.index) for n in plan.nodes] == [
        ("node1", "nk8s-demo-node1", "192.168.56.11", "10.244.1.0/24", 1),
        ("node2", "nk8s-demo-node2", "192.168.56.12", "10.244.2.0/24", 2),
    ]
    assert [n.cidr for n in plan.nodes] == ["192.168.56.11/24", "192.168.56.12/24"]
    assert all(n.uplink == "eth0" for n in plan.members)
    assert plan.external.netns == "nk8s-demo-ext"
    assert plan.external.cidr == "192.168.56.100/24"
    assert plan.external.pod_cidr is None
    assert plan.node("node2").ip == "192.168.56.12"


def test_every_name_is_under_the_lab_prefix_and_fits_ifnamsiz() -> None:
    plan = plan_lab("abcdefghij", MAX_NODES)
    prefix = naming.lab_netns_prefix("abcdefghij")
    names = [plan.switch_netns, *(m.netns for m in plan.members)]
    assert all(n.startswith(prefix) for n in names)
    assert len(set(names)) == len(names)
    ports = [m.switch_port for m in plan.members]
    assert len(set(ports)) == len(ports)
    assert all(len(p) <= naming.IFNAMSIZ for p in ports)
    ips = [m.ip for m in plan.members]
    assert len(set(ips)) == len(ips)
    assert plan.nodes[-1].ip == "192.168.56.99"


def test_two_labs_differ_only_in_names() -> None:
    a, b = plan_lab("laba", 2), plan_lab("labb", 2)
    assert [n.ip for n in a.nodes] == [n.ip for n in b.nodes]
    assert {m.netns for m in a.members}.isdisjoint({m.netns for m in b.members})


@pytest.mark.parametrize(
    ("lab", "nodes", "field"),
    [
        ("Bad", 1, "--name"),
        ("x-y", 1, "--name"),
        ("ok", 0, "--nodes"),
        ("ok", MAX_NODES + 1, "--nodes"),
    ],
)
def test_invalid_plans(lab: str, nodes: int, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        plan_lab(lab, nodes)


def test_plan_node_and_unknown_node() -> None:
    assert plan_node("demo", 3).netns == "nk8s-demo-node3"
    with pytest.raises(ValidationError, match="node9"):
        plan_lab("demo", 2).node("node9")
