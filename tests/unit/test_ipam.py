"""Pod and node IPAM: lowest free address, reuse after release, exhaustion, reserved addresses."""

from __future__ import annotations

import ipaddress
import random

import pytest

from netk8s.errors import NetK8sError
from netk8s.model.ipam import allocate_node_cidr, allocate_pod_ip, gateway_ip, pod_ip_candidates

POD_CASES = [
    ("lowest free in an empty /24", "10.244.1.0/24", set(), "10.244.1.2"),
    ("skips used addresses", "10.244.1.0/24", {"10.244.1.2", "10.244.1.3"}, "10.244.1.4"),
    ("reuses a released hole first", "10.244.1.0/24", {"10.244.1.3", "10.244.1.4"}, "10.244.1.2"),
    ("ignores addresses of other nodes", "10.244.1.0/24", {"10.244.2.2"}, "10.244.1.2"),
    ("another node's /24", "10.244.7.0/24", set(), "10.244.7.2"),
    ("last address before broadcast", "10.244.1.0/24",
     {f"10.244.1.{i}" for i in range(2, 254)}, "10.244.1.254"),
]


@pytest.mark.parametrize("cidr,used,want", [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_allocate_pod_ip(cidr: str, used: set[str], want: str) -> None:
    assert allocate_pod_ip(cidr, used) == want


def test_pod_ip_never_network_gateway_or_broadcast() -> None:
    candidates = pod_ip_candidates("10.244.3.0/24")
    assert len(candidates) == 253
    assert {"10.244.3.0", "10.244.3.1", "10.244.3.255"}.isdisjoint(candidates)
    assert candidates[0] == "10.244.3.2" and candidates[-1] == "10.244.3.254"
    assert gateway_ip("10.244.3.0/24") == "10.244.3.1"


def test_pod_cidr_exhausted_names_node_and_cidr() -> None:
    used = set(pod_ip_candidates("10.244.1.0/24"))
    with pytest.raises(NetK8sError) as info:
        allocate_pod_ip("10.244.1.0/24", used, node="node1")
    assert info.value.message == "node node1: pod CIDR 10.244.1.0/24 is exhausted"
    assert info.value.hint


def test_reuse_after_release() -> None:
    used: set[str] = set()
    ips: list[str] = []
    for _ in range(5):
        ip = allocate_pod_ip("10.244.1.0/24", used)
        used.add(ip)
        ips.append(ip)
    assert ips == [f"10.244.1.{i}" for i in range(2, 7)]
    used.discard("10.244.1.4")
    assert allocate_pod_ip("10.244.1.0/24", used) == "10.244.1.4"


def test_many_cycles_never_duplicate() -> None:
    rng = random.Random(7)
    used: set[str] = set()
    net = ipaddress.ip_network("10.244.1.0/24")
    candidates = pod_ip_candidates("10.244.1.0/24")
    for _ in range(3000):
        if used and (len(used) > 240 or rng.random() < 0.45):
            used.discard(rng.choice(sorted(used)))
            continue
        ip = allocate_pod_ip("10.244.1.0/24", used)
        assert ip not in used
        assert ipaddress.ip_address(ip) in net
        assert ip == next(c for c in candidates if c not in used)  # the lowest free one
        used.add(ip)


NODE_CASES = [
    ("first node gets 10.244.1.0/24, never .0", set(), "10.244.1.0/24"),
    ("next free", {"10.244.1.0/24"}, "10.244.2.0/24"),
    ("fills a gap", {"10.244.1.0/24", "10.244.3.0/24"}, "10.244.2.0/24"),
    ("overlapping preset range is taken", {"10.244.0.0/23"}, "10.244.2.0/24"),
    ("foreign CIDRs do not matter", {"192.168.0.0/16"}, "10.244.1.0/24"),
]


@pytest.mark.parametrize("used,want", [c[1:] for c in NODE_CASES], ids=[c[0] for c in NODE_CASES])
def test_allocate_node_cidr(used: set[str], want: str) -> None:
    assert allocate_node_cidr(used) == want


def test_node_cidrs_exhausted() -> None:
    used = {f"10.244.{i}.0/24" for i in range(1, 256)}
    with pytest.raises(NetK8sError, match="no free /24"):
        allocate_node_cidr(used)
