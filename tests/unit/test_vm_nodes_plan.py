"""VM nodes in a lab, pure parts: `--node-runtime` parsing, the per-node plan, who may run IPVS, the
guest agent's argv and environment, the files a guest gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from netk8s.cli.main import cli
from netk8s.dataplane import ipvs as dp_ipvs
from netk8s.errors import LabError
from netk8s.lab import machines, manager, topology, vmnodes


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.parametrize(("text", "nodes", "want"), [
    ("netns", 3, ["netns"] * 3),
    ("vm", 2, ["vm", "vm"]),
    ("netns,vm", 2, ["netns", "vm"]),
    (" vm , netns , vm ", 3, ["vm", "netns", "vm"]),
], ids=["one-netns", "one-vm", "per-node", "blanks"])
def test_node_runtime_is_one_value_or_one_per_node(text: str, nodes: int, want: list[str]) -> None:
    assert manager.parse_node_runtimes(text, nodes) == want


@pytest.mark.parametrize(("text", "nodes", "words"), [
    ("kvm", 2, "'kvm' is not one of netns, vm"),
    ("netns,vm", 3, "one value or one per node (3 nodes), got 2"),
    ("vm,vm,vm", 2, "got 3"),
    ("vm,", 2, "'' is not one of"),
], ids=["unknown", "too-few", "too-many", "empty-item"])
def test_bad_node_runtime_is_one_line_naming_the_flag(text: str, nodes: int, words: str) -> None:
    with pytest.raises(LabError) as err:
        manager.parse_node_runtimes(text, nodes)
    assert err.value.message.startswith("--node-runtime: ") and words in err.value.message
    assert "\n" not in err.value.message


def test_cli_refuses_a_bad_node_runtime_before_anything_is_built(state_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("netk8s.cli.main.need_root", lambda: None)
    result = CliRunner().invoke(cli, ["lab", "up", "--name", "vmpt", "--nodes", "3", "--node-runtime", "netns,vm"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("error: --node-runtime: give one value or one per node")
    assert not state_dir.exists()


def test_lab_up_help_names_the_node_runtime_flag() -> None:
    out = CliRunner().invoke(cli, ["lab", "up", "--help"]).output
    assert "--node-runtime" in out and "netns,vm" in out


def test_ipvs_needs_every_node_that_runs_it_to_be_a_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dp_ipvs, "PROC_IP_VS", tmp_path / "no-ip_vs")
    manager.check_proxy_mode_supported("ipvs", ["vm", "vm"])
    manager.check_proxy_mode_supported("iptables", ["netns", "vm"])
    with pytest.raises(LabError) as err:
        manager.check_proxy_mode_supported("ipvs", ["vm", "netns", "vm"])
    assert "namespace nodes (node2)" in err.value.message and "IP_VS" in err.value.message
    assert "--node-runtime vm" in (err.value.hint or "")


def test_a_mixed_lab_in_ipvs_mode_is_refused_before_anything_is_built(state_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dp_ipvs, "PROC_IP_VS", tmp_path / "no-ip_vs")
    with pytest.raises(LabError) as err:
        manager.lab_up("vmpt", nodes=2, proxy_mode="ipvs", node_runtime="netns,vm")
    assert "node1" in err.value.message
    assert not state_dir.exists()


def test_the_plan_builds_no_namespace_for_a_vm_node() -> None:
    plan = topology.plan_lab("vmpt", 3, vm_nodes=["node2"])
    assert [n.runtime for n in plan.nodes] == ["netns", "vm", "netns"]
    assert plan.node("node2").ip == "192.168.56.12"


def test_lab_info_runtimes_and_the_host_process_of_each_node() -> None:
    info = manager.LabInfo("vmpt", 2, "vxlan", "iptables", "", 0.0, node_runtimes=["netns", "vm"])
    assert info.vm_nodes() == ["node2"] and info.runtime("node1") == "netns"
    assert manager.node_roles(info) == ["agent-node1", "vm-node2"]  # a guest PID never goes in pids/
    old = manager.LabInfo("vmpt", 2, "vxlan", "iptables", "", 0.0)  # lab.json from before VM nodes
    assert old.vm_nodes() == [] and manager.node_roles(old) == ["agent-node1", "agent-node2"]


def test_a_vm_node_sits_on_the_address_plan_and_is_controlled_from_the_control_plane(state_dir: Path) -> None:
    vm = vmnodes.vm_node("vmpt", "node2")
    assert vm.ip_cidr == "192.168.56.12/24" and vm.gateway == topology.GATEWAY_IP
    assert vm.switch_netns == "nk8s-vmpt-sw" and vm.bridge == "br0"
    assert vm.control_netns == "nk8s-vmpt-cp" and len(vm.tap) <= 15
    assert vm.workdir == state_dir / "vmpt" / "vms" / "node2"


def test_the_guest_agent_is_the_labs_and_the_vagrant_workers_argv(state_dir: Path) -> None:
    """The same argv in a namespace node, a VM node and a Vagrant worker's unit; the guest gets the files
    that argv names (what a worker installs), so it joins the API server at 192.168.56.10:6443."""
    info = manager.LabInfo("vmpt", 2, "vxlan", "ipvs", "", 0.0, node_runtimes=["vm", "vm"])
    argv = manager.agent_argv(info, 2)
    assert machines.role_argv("agent", info, "node2") == argv
    files = [str(p) for p in vmnodes.node_files("vmpt", "node2")]
    store_arg = argv[argv.index("--store") + 1]
    assert store_arg.startswith("https://192.168.56.10:6443?")
    assert any(f in store_arg.replace("%2F", "/") for f in files)  # the node's kubeconfig
    assert argv[argv.index("--kubelet-token-file") + 1] in files
    assert argv[argv.index("--node-resolv") + 1] in files
    assert vmnodes.agent_log("vmpt", "node2").endswith("logs/agent-node2.log")


def test_pod_exec_through_the_api_server_speaks_kubectls_url_and_exit_codes() -> None:
    """`netk8s exec` into a VM node's pod: the exec subresource URL (a `command` per word) and the exit
    code from the error channel's Status (netk8s.model.remotecommand.exit_status is what the kubelet sends)."""
    from urllib.parse import parse_qs, urlsplit

    from netk8s.model import remotecommand
    from netk8s.store.podexec import exec_url, exit_code

    url = urlsplit(exec_url("https://127.0.0.1:6443", "default", "web-1", "c", ["sh", "-c", "echo a b"], stdin=False))
    assert url.path == "/api/v1/namespaces/default/pods/web-1/exec"
    q = parse_qs(url.query)
    assert q["command"] == ["sh", "-c", "echo a b"] and q["container"] == ["c"] and "stdin" not in q
    assert exit_code(remotecommand.exit_status("v5.channel.k8s.io", 0, ["true"])) == 0
    assert exit_code(remotecommand.exit_status("v5.channel.k8s.io", 7, ["curl"])) == 7
    assert exit_code(remotecommand.failure_status("no such container")) == 1
