"""Switching a running lab's proxy mode (`netk8s lab set-proxy-mode`): the old mode's rules are gone from every
node, Services keep answering, a bad mode changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.root import manifests
from tests.root.labkit import Lab, running, unique_name
from tests.root.svckit import HTTP_COUNT, http_counts, py_in_pod, py_outside

pytestmark = pytest.mark.root

APP = manifests.docs(
    manifests.deployment("web", 2, [manifests.container("a", image="agnhost", args=manifests.NETEXEC)]),
    manifests.service("web", ports=[{"port": 80, "targetPort": 8080}], type="NodePort"),
    manifests.client_pod())


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with running(Lab(unique_name("m"), tmp_path, nodes=2, proxy_mode="iptables"), APP,
                 ready=[("app=web", 2)], pods=["client"]) as lab:
        yield lab


def answers(lab: Lab) -> None:
    """The Service answers through its ClusterIP from a pod and through its nodePort from outside, on
    every node (polled: the restarted agents program their rules right after registering)."""
    svc = lab.get_json("svc", "web")
    vip, np = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    lab.wait_for("ClusterIP answers", lambda: http_counts(
        py_in_pod(lab, "client", HTTP_COUNT, f"http://{vip}/hostname", "4"))["failed"] == 0, timeout=30)
    for i in range(1, lab.nodes + 1):
        lab.wait_for(f"nodePort answers on node{i}", lambda i=i: http_counts(  # type: ignore[misc]
            py_outside(lab, HTTP_COUNT, f"http://192.168.56.1{i}:{np}/hostname", "2"))["failed"] == 0, timeout=30)


def iptables_kube_chains(lab: Lab, node: str) -> list[str]:
    out = lab.node_exec(node, "iptables-legacy-save").stdout
    return [line for line in out.splitlines() if "KUBE-" in line]


def has_nft_table(lab: Lab, node: str) -> bool:
    return "table ip kube-proxy" in lab.node_exec(node, "nft", "list", "tables").stdout


def test_switch_iptables_nftables_and_back(lab: Lab) -> None:
    nodes = [f"node{i}" for i in range(1, lab.nodes + 1)]
    answers(lab)
    assert all(iptables_kube_chains(lab, n) for n in nodes)

    # a bad mode is refused before anything changes
    status = lab.cli("lab", "status").stdout
    bad = lab.cli("lab", "set-proxy-mode", "bogus", check=False)
    assert bad.returncode == 1 and "--proxy-mode" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert lab.cli("lab", "status").stdout == status  # same mode, same agent PIDs, all running

    out = lab.cli("lab", "set-proxy-mode", "nftables", timeout=180).stdout
    assert "nftables" in out
    assert "proxy nftables" in lab.cli("lab", "status").stdout
    answers(lab)
    for n in nodes:
        assert iptables_kube_chains(lab, n) == [], n
        assert has_nft_table(lab, n), n

    lab.cli("lab", "set-proxy-mode", "iptables", timeout=180)
    assert "proxy iptables" in lab.cli("lab", "status").stdout
    answers(lab)
    for n in nodes:
        assert not has_nft_table(lab, n), n
        assert iptables_kube_chains(lab, n), n
