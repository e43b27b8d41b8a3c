"""desired_overlay: flannel's vxlan and host-gw schemes, nodes joining and leaving (pure, no kernel)."""

from __future__ import annotations

import pytest

from netk8s.errors import ValidationError
from netk8s.node.overlay import (
    FdbEntry,
    NeighEntry,
    NodeInfo,
    OverlayState,
    RouteEntry,
    desired_overlay,
    overlay_mtu,
)

N1 = NodeInfo("node1", "192.168.56.11", "10.244.1.0/24", "aa:aa:aa:aa:aa:01")
N2 = NodeInfo("node2", "192.168.56.12", "10.244.2.0/24", "aa:aa:aa:aa:aa:02")
N3 = NodeInfo("node3", "192.168.56.13", "10.244.3.0/24", "AA:AA:AA:AA:AA:03")


def test_vxlan_is_flannels_scheme_for_every_other_node() -> None:
    state = desired_overlay("node1", [N1, N2, N3], "vxlan")
    assert state == OverlayState(
        "vxlan",
        routes=(
            RouteEntry("10.244.2.0/24", "10.244.2.0", "flannel.1", onlink=True),
            RouteEntry("10.244.3.0/24", "10.244.3.0", "flannel.1", onlink=True),
        ),
        neighbours=(
            NeighEntry("10.244.2.0", "aa:aa:aa:aa:aa:02"),
            NeighEntry("10.244.3.0", "aa:aa:aa:aa:aa:03"),  # MAC normalised to lower case
        ),
        fdb=(
            FdbEntry("aa:aa:aa:aa:aa:02", "192.168.56.12"),
            FdbEntry("aa:aa:aa:aa:aa:03", "192.168.56.13"),
        ),
    )


def test_host_gw_routes_via_node_ip_on_the_uplink_and_needs_no_vtep() -> None:
    nodes = [N1, NodeInfo("node2", "192.168.56.12", "10.244.2.0/24", None)]
    state = desired_overlay("node1", nodes, "host-gw")
    assert state.routes == (RouteEntry("10.244.2.0/24", "192.168.56.12", "eth0"),)
    assert state.neighbours == () and state.fdb == ()


@pytest.mark.parametrize(
    ("name", "nodes", "mode", "want_dsts"),
    [
        ("alone", [N1], "vxlan", []),
        ("self excluded by name", [N2, N1], "host-gw", ["10.244.2.0/24"]),
        ("no pod cidr yet", [N1, NodeInfo("node2", "192.168.56.12", None, "aa:aa:aa:aa:aa:02")], "vxlan", []),
        ("no vtep mac yet", [N1, NodeInfo("node2", "192.168.56.12", "10.244.2.0/24", None)], "vxlan", []),
        ("host cidr normalised", [N1, NodeInfo("node2", "192.168.56.12", "10.244.2.7/24")], "host-gw",
         ["10.244.2.0/24"]),
    ],
)
def test_which_nodes_get_entries(name: str, nodes: list[NodeInfo], mode: str, want_dsts: list[str]) -> None:
    assert [r.dst for r in desired_overlay("node1", nodes, mode).routes] == want_dsts, name


def test_node_join_adds_entries_and_leave_removes_them() -> None:
    before = desired_overlay("node1", [N1, N2], "vxlan")
    joined = desired_overlay("node1", [N1, N2, N3], "vxlan")
    left = desired_overlay("node1", [N1, N3], "vxlan")
    assert set(joined.routes) - set(before.routes) == {
        RouteEntry("10.244.3.0/24", "10.244.3.0", "flannel.1", True)
    }
    assert set(joined.fdb) - set(before.fdb) == {FdbEntry("aa:aa:aa:aa:aa:03", "192.168.56.13")}
    assert [r.dst for r in left.routes] == ["10.244.3.0/24"]
    assert all(n.ip != "10.244.2.0" for n in left.neighbours)
    assert all(f.dst != "192.168.56.12" for f in left.fdb)


def test_order_of_nodes_does_not_matter() -> None:
    for mode in ("vxlan", "host-gw"):
        assert desired_overlay("node2", [N1, N2, N3], mode) == desired_overlay("node2", [N3, N2, N1], mode)


def test_unknown_mode_and_bad_node_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="--overlay"):
        desired_overlay("node1", [N1, N2], "udp")
    with pytest.raises(ValidationError, match="node2"):
        desired_overlay("node1", [N1, NodeInfo("node2", "not-an-ip", "10.244.2.0/24", None)], "host-gw")


def test_overlay_mtu() -> None:
    assert overlay_mtu("vxlan") == 1450
    assert overlay_mtu("host-gw") == 1500
