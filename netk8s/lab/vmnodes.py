"""A lab's VM nodes (`lab up --node-runtime vm`): boot each as a QEMU guest on the underlay, start the
same node agent inside it, stop it and its agent, read its logs, run commands in it.

A VM node is netk8s.lab.vm.VmNode placed by the lab's address plan: its tap in the switch namespace on
`br0` (where a namespace node has its veth), eth0 = 192.168.56.(10+i)/24 with the switch as gateway,
its control server reached from the control-plane namespace. The agent is `manager.agent_argv`
unchanged, with the environment `machines.role_env` gives a Vagrant worker's unit. It reaches the API
server at 192.168.56.10:6443 with the node's kubeconfig: before the agent starts, the files a worker
gets from the control plane (machines.join_worker's set: the node's, the viewer's and the controller's
kubeconfigs, the kubelet token, the node resolver configuration, the legacy iptables links) are written
into the guest at the paths the argv names, through the control server. They land in the guest's
writable overlay or tmpfs, never in the host's tree (which the guest mounts read-only); sending them
instead of reading the host's files over 9p also covers a state directory under /tmp, which is a
fresh tmpfs in the guest.

Host-side state per VM node, in `<state>/<lab>/vms/NODE/`: qemu.pid, the control token (0600),
serial.log (the guest console), qemu.log, and agent.pid (the agent's PID in the GUEST; it must never be
signalled on the host, so it is not in the lab's pids/ directory, which holds QEMU's as `vm-NODE`).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netk8s.config import LabPaths
from netk8s.dataplane import qemu
from netk8s.errors import LabError, NetK8sError
from netk8s.lab import topology
from netk8s.lab.vm import VmNode, stop_from_workdir
from netk8s.model import naming
from netk8s.model.vmspec import GuestResult

if TYPE_CHECKING:
    from netk8s.lab.manager import LabInfo

READY_TIMEOUT = 600.0  # s: boot + the agent's first sync under TCG on a loaded 2-core machine
AGENT_STOP_GRACE = 60.0  # s: the agent's SIGTERM handling is slow under TCG too


def workdir(lab: str, node: str) -> Path:
    return LabPaths(lab).root / "vms" / node


def check_installed() -> None:
    """QEMU and the extracted guest kernel are here (KernelError with the install hint otherwise)."""
    qemu.qemu_binary()
    qemu.find_kernel()


def kvm() -> bool:
    return qemu.kvm_usable()


def vm_node(lab: str, node: str) -> VmNode:
    """The VmNode of lab node `node` by the address plan; its token from the work directory when the
    VM was booted already (by this or another process)."""
    index = int(node.removeprefix("node"))
    plan = topology.plan_node(lab, index)
    vm = VmNode(name=node, switch_netns=naming.switch_netns(lab), bridge=naming.UNDERLAY_BRIDGE,
                tap=naming.vm_tap(lab, node), ip_cidr=plan.cidr, workdir=workdir(lab, node), tag=lab,
                control_netns=naming.control_plane_netns(lab), gateway=topology.GATEWAY_IP)
    try:
        vm.token = (vm.workdir / "token").read_text().strip()
    except FileNotFoundError:
        pass
    return vm


def boot(info: LabInfo, node: str) -> VmNode:
    """Start QEMU for `node` (returns without waiting for the guest); QEMU's PID is recorded as `vm-NODE`."""
    from netk8s.lab.manager import _write_pid

    vm = vm_node(info.name, node)
    vm.workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(vm.workdir / "token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(vm.token + "\n")
    vm.boot()
    assert vm.pid is not None
    _write_pid(info.name, f"vm-{node}", vm.pid)
    return vm


def node_files(lab: str, node: str) -> list[Path]:
    """The files the agent of `node` and its pods read from the lab's state directory (what a Vagrant
    worker installs in machines.join_worker)."""
    from netk8s.lab.machines import WORKER_KUBECONFIG_ROLES

    paths = LabPaths(lab)
    return [*(paths.role_kubeconfig(r) for r in (f"node-{node}", *WORKER_KUBECONFIG_ROLES)), paths.kubelet_token,
            paths.node_resolv]


def install_files(vm: VmNode, lab: str) -> None:
    """Write the node's files into the guest at the same paths (0600), its log directory, and the links
    of the legacy iptables bin directory the agent's PATH starts with."""
    paths = LabPaths(lab)
    for path in node_files(lab, vm.name):
        vm.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && umask 077 && cat > "$1"', "sh", str(path)],
               stdin=path.read_text(), check=True, timeout=60)
    links = [f"ln -sfn {shlex.quote(os.readlink(p))} {shlex.quote(str(p))}"
             for p in sorted((paths.root / "bin").iterdir()) if p.is_symlink()]
    script = f"mkdir -p {shlex.quote(str(paths.logs))} {shlex.quote(str(paths.root / 'bin'))}"
    vm.run(["sh", "-c", " && ".join([script, *links])], check=True, timeout=60)


def agent_log(lab: str, node: str) -> str:
    """Where the agent of a VM node logs, inside the guest (the host's path of a namespace node's log)."""
    return str(LabPaths(lab).logs / f"agent-{node}.log")


def start_agent(info: LabInfo, node: str, vm: VmNode | None = None) -> int:
    """Start the node agent (manager.agent_argv) inside the guest; `vm`: the VmNode this process booted,
    waited for first. Returns the agent's PID in the guest (kept in the work directory)."""
    from netk8s.lab import machines
    from netk8s.lab.manager import agent_argv

    if vm is not None:
        vm.wait_ready()
    else:
        vm = vm_node(info.name, node)
    install_files(vm, info.name)
    argv = agent_argv(info, info.node_names().index(node) + 1)
    pid = vm.start(argv, agent_log(info.name, node), env=machines.role_env("agent", info.name))
    (vm.workdir / "agent.pid").write_text(f"{pid}\n")
    return pid


def agent_pid(lab: str, node: str) -> int | None:
    try:
        return int((workdir(lab, node) / "agent.pid").read_text())
    except (OSError, ValueError):
        return None


def agent_running(lab: str, node: str) -> bool:
    pid = agent_pid(lab, node)
    if pid is None:
        return False
    try:
        return vm_node(lab, node).run(["kill", "-0", str(pid)], timeout=30).ok
    except NetK8sError:
        return False


def stop_agent(info: LabInfo, node: str, grace: float = AGENT_STOP_GRACE) -> None:
    """SIGTERM the guest's agent by its guest PID, SIGKILL after `grace` s; its pods keep running."""
    pid = agent_pid(info.name, node)
    if pid is None:
        return
    vm = vm_node(info.name, node)
    vm.run(["kill", "-TERM", str(pid)], timeout=30)
    deadline = time.monotonic() + grace
    while vm.run(["kill", "-0", str(pid)], timeout=30).ok:
        if time.monotonic() > deadline:
            vm.run(["kill", "-KILL", str(pid)], timeout=30)
            break
        time.sleep(0.5)
    (vm.workdir / "agent.pid").unlink(missing_ok=True)


def run(lab: str, node: str, argv: Sequence[str], stdin: str = "", timeout: float = 600.0,
        env: Mapping[str, str] | None = None) -> GuestResult:
    """Run a command in the VM node (`netk8s lab exec NODE`), with the agent's PATH."""
    from netk8s.lab.manager import node_shell_env

    return vm_node(lab, node).run(list(argv), stdin=stdin, timeout=timeout, env={**node_shell_env(lab), **(env or {})})


def logs(lab: str, node: str) -> str:
    """`netk8s lab logs NODE` of a VM node: its serial console, then the agent's log read in the guest."""
    vm = vm_node(lab, node)
    try:
        console = vm.serial_log.read_text(errors="replace")
    except FileNotFoundError:
        raise LabError(f"NODE: VM node {node} has no console log in {vm.workdir}") from None
    out = [f"==> serial console ({vm.serial_log}) <==", console.rstrip("\n")]
    try:
        r = vm.run(["cat", agent_log(lab, node)], timeout=60)
        agent = r.stdout if r.ok else f"(not readable: {r.stderr.strip()})"
    except NetK8sError as exc:
        agent = f"(the guest does not answer: {exc.message})"
    out += [f"==> agent log (in the guest, {agent_log(lab, node)}) <==", agent.rstrip("\n")]
    return "\n".join(out) + "\n"


def stop_all(lab: str) -> None:
    """Stop every VM of the lab by the PID in its work directory (only while it carries the lab's tag)
    and delete its tap. Idempotent; fine with no state."""
    root = LabPaths(lab).root / "vms"
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        stop_from_workdir(d, naming.switch_netns(lab), naming.vm_tap(lab, d.name), lab)
