"""Issue 12 acceptance, a mixed lab: `lab up --nodes 2 --node-runtime netns,vm` (node1 a namespace of this
kernel, node2 a QEMU guest on its own), in iptables mode on both.

ONE lab for the file: pods on both nodes reach each other by pod IP across VXLAN with the client's pod IP
kept; one Service is served by both nodes' proxies (from a pod on each node, and as a NodePort from the
external client on each node). It ends the way a crashed lab does: `kill -9` of every lab process, then
`netk8s clean --name LAB`, which must leave no VM, tap, namespace or state.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from netk8s.dataplane import links, netns
from netk8s.lab import procs
from netk8s.model import naming
from tests.root import manifests
from tests.root.conftest import new_lab_name
from tests.root.labkit import Lab

pytestmark = [pytest.mark.root, pytest.mark.integration, pytest.mark.vmlab]  # make test-vm

SLOW = 300  # s: pods in a TCG guest start ~20x slower


def server(name: str, node: str) -> str:
    return manifests.dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
                           "spec": {"nodeName": node, "containers": [
                               manifests.container(args=manifests.NETEXEC, http_port=8080, probe=True)]}})


MANIFEST = manifests.docs(server("web-ns", "node1"), server("web-vm", "node2"),
                          manifests.service("web", ports=[{"port": 80, "targetPort": 8080}], type="NodePort"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(new_lab_name(), tmp_path_factory.mktemp("state"), nodes=2, node_runtime="netns,vm")
    try:
        lab.up(timeout=1500)
        lab.apply(MANIFEST)
        lab.ready_pods("app=web", 2, timeout=SLOW)
        yield lab
    finally:
        lab.down()


def pod_ip(lab: Lab, name: str) -> str:
    return str(next(p for p in lab.pods() if p["metadata"]["name"] == name)["status"]["podIP"])


def test_one_namespace_node_and_one_vm_node(lab: Lab) -> None:
    assert netns.netns_exists(naming.node_netns(lab.name, "node1"))
    assert not netns.netns_exists(naming.node_netns(lab.name, "node2"))
    assert naming.vm_tap(lab.name, "node2") in links.list_links(naming.switch_netns(lab.name))
    kernels = {n["metadata"]["name"]: n["status"]["nodeInfo"]["kernelVersion"] for n in lab.get_json("nodes")["items"]}
    assert kernels["node1"] == os.uname().release and kernels["node2"] != kernels["node1"]
    assert "VM nodes (QEMU guests): node2" in lab.cli("lab", "status").stdout


def test_pods_on_both_nodes_reach_each_other_by_pod_ip_over_vxlan_keeping_the_client_ip(lab: Lab) -> None:
    ns_ip, vm_ip = pod_ip(lab, "web-ns"), pod_ip(lab, "web-vm")
    assert ns_ip.startswith("10.244.1.") and vm_ip.startswith("10.244.2.")
    rx_before = lab.node_exec("node2", "cat", "/sys/class/net/flannel.1/statistics/rx_packets").stdout
    seen_by_vm = lab.exec("web-ns", "curl", "-s", "-m", "10", f"http://{vm_ip}:8080/clientip", timeout=SLOW).stdout
    assert seen_by_vm.rpartition(":")[0] == ns_ip  # no NAT between pods
    seen_by_ns = lab.exec("web-vm", "curl", "-s", "-m", "10", f"http://{ns_ip}:8080/clientip", timeout=SLOW).stdout
    assert seen_by_ns.rpartition(":")[0] == vm_ip
    rx_after = lab.node_exec("node2", "cat", "/sys/class/net/flannel.1/statistics/rx_packets").stdout
    assert int(rx_after) > int(rx_before)  # it came in over the guest's VXLAN device


def test_both_nodes_proxies_serve_one_service(lab: Lab) -> None:
    svc = lab.get_json("svc", "web")
    vip, np = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    loop = f"for i in $(seq 12); do curl -s -m 5 http://{vip}/hostname || echo FAIL; echo; done"

    def answers(pod: str) -> set[str]:
        return {a for a in lab.exec(pod, "sh", "-c", loop, timeout=SLOW).stdout.splitlines() if a}

    # from each node's pod, through that node's rules (node1: this kernel, node2: the guest's)
    assert lab.wait_value("both endpoints from node1", lambda: answers("web-ns"),
                          lambda a: a == {"web-ns", "web-vm"}, SLOW)
    assert lab.wait_value("both endpoints from node2", lambda: answers("web-vm"),
                          lambda a: a == {"web-ns", "web-vm"}, SLOW)
    for node_ip in ("192.168.56.11", "192.168.56.12"):
        out = lab.node_exec("external", "sh", "-c", f"for i in $(seq 12); do curl -s -m 5 http://{node_ip}:{np}/hostname "
                            "|| echo FAIL; echo; done", timeout=SLOW).stdout
        assert {a for a in out.splitlines() if a} == {"web-ns", "web-vm"}, (node_ip, out)
    # `netk8s rules` reads both nodes' rules (node2's in the guest) for the one Service
    rules = lab.cli("rules", "--service", "web", timeout=SLOW).stdout
    node1, _, node2 = rules.partition("== node2")
    assert node1.startswith("== node1") and vip in node1 and vip in node2, rules


def test_kill_9_of_every_lab_process_then_clean_leaves_nothing(lab: Lab) -> None:
    qemu_pid = int((lab.state_dir / lab.name / "pids" / "vm-node2.pid").read_text())
    pids = sorted(set(procs.tagged_pids(lab.name)) | {p for ns in netns.list_netns(naming.lab_netns_prefix(lab.name))
                                                       for p in netns.pids_in_netns(ns)})
    assert qemu_pid in pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    lab.cli("clean", "--name", lab.name)
    assert not procs.alive(qemu_pid), "QEMU still running"
    assert not procs.tagged_pids(lab.name)
    assert not netns.list_netns(naming.lab_netns_prefix(lab.name))  # the switch (and the tap in it) went too
    assert not (lab.state_dir / lab.name).exists()
