"""The one-machine lab: build the namespaces, start the API server, the controller and one agent per
node, tear down.

The lab only creates namespaces and starts processes; the node agent inside each node namespace does
what it would do on a VM (docs/architecture.md, "The rule everything follows"). The API server is the
only process that opens the lab's store; every other role is its client (lab/access.py), reaching it at
the control-plane address 192.168.56.10:6443 on the underlay, and the host's kubectl and netk8s CLI on
127.0.0.1:PORT with the admin kubeconfig `lab up` writes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from netk8s.config import LabPaths
from netk8s.dataplane import netns as dp_netns
from netk8s.dataplane.iptables import bin_dir_for_legacy
from netk8s.dataplane.launch import launch_argv
from netk8s.errors import LabError, NetK8sError
from netk8s.lab import access, addons, procs, topology
from netk8s.lab import etcd as lab_etcd
from netk8s.model import naming
from netk8s.model.status import is_ready
from netk8s.store.base import Store
from netk8s.store.factory import open_store

if TYPE_CHECKING:
    from netk8s.lab.vm import VmNode

PROXY_MODES = ("iptables", "nftables", "ipvs", "userspace")
OVERLAYS = ("vxlan", "host-gw")
STORES = ("sqlite", "etcd")
NODE_RUNTIMES = ("netns", "vm")  # a network namespace of this kernel, or a QEMU guest (netk8s.lab.vmnodes)


@dataclass
class LabInfo:
    name: str
    nodes: int
    overlay: str
    proxy_mode: str
    store: str  # the URL clients open: the API server on 127.0.0.1 with the admin kubeconfig
    created: float
    api_port: int = 0  # the API server's port on 127.0.0.1 (192.168.56.10:6443 on the underlay)
    backend: str = ""  # the store only the API server opens (sqlite://.../store.db, etcd://127.0.0.1:2379?netns=..)
    node_runtimes: list[str] = field(default_factory=list)  # per node (NODE_RUNTIMES); empty: every node netns

    def node_names(self) -> list[str]:
        return [naming.node_name(i) for i in range(1, self.nodes + 1)]

    def runtime(self, node: str) -> str:
        """`netns` or `vm`: how node `node` runs (labs written before VM nodes have no list: netns)."""
        index = self.node_names().index(node)
        return self.node_runtimes[index] if index < len(self.node_runtimes) else "netns"

    def vm_nodes(self) -> list[str]:
        return [n for n in self.node_names() if self.runtime(n) == "vm"]


def parse_node_runtimes(text: str, nodes: int) -> list[str]:
    """`--node-runtime`: one value for every node, or a comma-separated value per node (node1 first),
    e.g. `netns,vm` = node1 a namespace, node2 a VM (pure; LabError naming the flag)."""
    values = [v.strip() for v in text.split(",")]
    bad = [v for v in values if v not in NODE_RUNTIMES]
    if bad:
        raise LabError(f"--node-runtime: {bad[0]!r} is not one of {', '.join(NODE_RUNTIMES)} (got {text!r})")
    if len(values) == 1:
        return values * nodes
    if len(values) != nodes:
        raise LabError(f"--node-runtime: give one value or one per node ({nodes} nodes), got {len(values)}: {text!r}")
    return values


def load_lab(name: str) -> LabInfo:
    path = LabPaths(name).lab_file
    try:
        data = json.loads(path.read_text())
        return LabInfo(**data)
    except FileNotFoundError:
        raise LabError(f"lab {name!r} is not up", hint="start it with: sudo netk8s lab up") from None
    except (ValueError, TypeError) as e:
        raise LabError(f"lab {name!r}: state file {path} is corrupt ({e})", hint="run: sudo netk8s clean") from None


def lab_up(name: str, nodes: int = 3, proxy_mode: str = "iptables", overlay: str = "vxlan",
           store_kind: str = "sqlite", progress: Callable[[str], None] = lambda s: None,
           timeout: float = 60.0, dns: bool = True, ingress: bool = True, node_runtime: str = "netns") -> LabInfo:
    naming.check_lab_name(name)
    if not 1 <= nodes <= 50:
        raise LabError(f"--nodes: must be between 1 and 50, got {nodes}")
    if proxy_mode not in PROXY_MODES:
        raise LabError(f"--proxy-mode: must be one of {', '.join(PROXY_MODES)}, got {proxy_mode!r}")
    runtimes = parse_node_runtimes(node_runtime, nodes)
    check_proxy_mode_supported(proxy_mode, runtimes)
    if overlay not in OVERLAYS:
        raise LabError(f"--overlay: must be one of {', '.join(OVERLAYS)}, got {overlay!r}")
    if store_kind not in STORES:
        raise LabError(f"--store: must be one of {', '.join(STORES)}, got {store_kind!r}")
    if store_kind == "etcd":
        lab_etcd.check_installed()
    if timeout <= 0:
        raise LabError(f"--timeout: must be more than 0s, got {timeout:g}s")
    if "vm" in runtimes:
        from netk8s.lab import vmnodes

        vmnodes.check_installed()
    paths = LabPaths(name)
    if paths.lab_file.exists() or any(n.startswith(naming.lab_netns_prefix(name)) for n in dp_netns.list_netns()):
        raise LabError(f"lab {name!r} is already up (or left traces)",
                       hint=f"run 'sudo netk8s lab down --name {name}' or 'sudo netk8s clean' first")
    if paths.root.exists():
        shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True)
    # The store holds Secrets: only root may read the lab's state (kube-apiserver's etcd data is 0700).
    paths.root.chmod(0o700)
    port = access.free_loopback_port()
    backend = lab_etcd.backend_url(name) if store_kind == "etcd" else f"sqlite://{paths.store}"
    info = LabInfo(name, nodes, overlay, proxy_mode, access.admin_url(name, port), time.time(),
                   api_port=port, backend=backend, node_runtimes=runtimes)
    vms: dict[str, VmNode] = {}
    try:
        plan = topology.plan_lab(name, nodes, vm_nodes=info.vm_nodes())
        progress(f"building underlay, control plane and {nodes - len(info.vm_nodes())} node namespaces")
        topology.build_lab(plan)
        if info.vm_nodes():
            from netk8s.lab import vmnodes

            # QEMU boots while the control plane starts: a TCG guest takes a minute or more
            for node in info.vm_nodes():
                progress(f"booting VM node {node} ({'KVM' if vmnodes.kvm() else 'TCG, software emulation'})")
                vms[node] = vmnodes.boot(info, node)
        if store_kind == "etcd":
            progress("starting etcd (127.0.0.1:2379 inside the control-plane namespace)")
            start_etcd(info, timeout)
        else:
            store = open_store(info.backend)
            store.close()
            paths.store.chmod(0o600)
        progress("making the lab's CA, certificates and kubeconfigs")
        access.setup(name, info.node_names(), port)
        write_kubelet_token(paths)
        # node shells and agents use the legacy xtables tools as plain `iptables` (README: iptables backend)
        bin_dir_for_legacy(paths.root / "bin")
        paths.lab_file.write_text(json.dumps(asdict(info), indent=2))
        paths.node_resolv.write_text(addons.node_resolv_conf())
        progress(f"starting the API server (192.168.56.10:6443 on the underlay, 127.0.0.1:{port} here)")
        start_apiserver(info)
        wait_api_ready(info, timeout)
        progress("starting the lab's upstream DNS server on the external client")
        start_upstream_dns(info)
        progress("starting controller")
        start_controller(info)
        for i in range(1, nodes + 1):
            node = naming.node_name(i)
            if node in vms:
                progress(f"starting agent in VM node {node} (waiting for the guest to boot)")
                vmnodes.start_agent(info, node, vms[node])
            else:
                progress(f"starting agent on {node}")
                start_agent(info, i)
        progress("waiting for nodes to be Ready")
        wait_nodes_ready(info, node_timeout(info, timeout))
        if dns:
            progress("deploying cluster DNS (kube-system/kube-dns, 10.96.0.10)")
            deploy_dns(info, node_timeout(info, timeout))
        if ingress:
            progress("deploying ingress-nginx (ingress-nginx/ingress-nginx-controller, IngressClass nginx)")
            deploy_ingress(info, node_timeout(info, timeout))
    except BaseException:
        lab_down(name)
        raise
    vm_count = len(info.vm_nodes())
    progress(f"lab {name!r} is up: {nodes} nodes{f' ({vm_count} VM)' if vm_count else ''}, overlay {overlay}, "
             f"proxy {proxy_mode}")
    return info


def node_timeout(info: LabInfo, timeout: float) -> float:
    """How long to wait for nodes: a VM node's agent starts ~20x slower (TCG), so at least VM_READY_TIMEOUT."""
    if not info.vm_nodes():
        return timeout
    from netk8s.lab import vmnodes

    return max(timeout, vmnodes.READY_TIMEOUT)


def write_kubelet_token(paths: LabPaths) -> None:
    """The secret the API server shows the agents' kubelet API (exec, logs), readable by root only."""
    fd = os.open(paths.kubelet_token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")


def start_apiserver(info: LabInfo) -> int:
    """The API server: over the lab's store, listening on 127.0.0.1:PORT here and on 192.168.56.10:6443
    inside the control-plane namespace (a socket opened there stays there: dataplane/netns.open_socket)."""
    paths = LabPaths(info.name)
    argv = access.apiserver_argv(sys.executable, info.name, info.backend, info.api_port)
    pid = procs.spawn(argv, info.name, paths.logs / "apiserver.log")
    _write_pid(info.name, "apiserver", pid)
    return pid


def wait_api_ready(info: LabInfo, timeout: float) -> None:
    """Until the API server answers an authenticated read on 127.0.0.1, or LabError."""
    from netk8s.store.apiclient import ApiClientStore

    deadline = time.monotonic() + timeout
    last = ""
    while True:
        check_alive(info.name, ["apiserver"])
        try:
            client = ApiClientStore.from_url(info.store, retry_for=0.0)
            try:
                client.revision()
                return
            finally:
                client.close()
        except NetK8sError as exc:
            last = exc.message
        if time.monotonic() > deadline:
            raise LabError(f"the API server did not answer within {timeout:.0f}s ({last})",
                           hint=f"see {LabPaths(info.name).logs / 'apiserver.log'}")
        time.sleep(0.1)


def restart_apiserver(name: str, timeout: float = 60.0) -> int:
    """Stop the lab's API server (by its PID, if it still runs) and start it again with the same argv;
    the clients reconnect and resume their watches. Returns the new PID."""
    info = load_lab(name)
    pid = read_pid(name, "apiserver")
    if pid is not None and procs.alive(pid):
        procs.stop_pids([pid], grace=5.0)
    new = start_apiserver(info)
    wait_api_ready(info, timeout)
    return new


def start_etcd(info: LabInfo, timeout: float = 60.0) -> int:
    """The lab's etcd, inside the control-plane namespace with its data under the lab's state directory
    (0700); waits until it answers. Returns its PID (recorded as the role `etcd`)."""
    paths = LabPaths(info.name)
    data = lab_etcd.data_dir(info.name)
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    data.chmod(0o700)
    argv = launch_argv(lab_etcd.lab_etcd_argv(info.name), netns=naming.control_plane_netns(info.name))
    pid = procs.spawn(argv, info.name, paths.logs / "etcd.log")
    _write_pid(info.name, "etcd", pid)
    store = open_store(info.backend)
    try:
        lab_etcd.wait_ready(store, timeout, alive=lambda: procs.alive(pid), log=paths.logs / "etcd.log")
    finally:
        store.close()
    return pid


def stop_etcd(name: str, grace: float = 10.0) -> None:
    """Stop the lab's etcd by its PID (SIGTERM, then SIGKILL after `grace`); its data stays."""
    pid = read_pid(name, "etcd")
    if pid is not None and procs.alive(pid):
        procs.stop_pids([pid], grace=grace)


def restart_etcd(name: str, timeout: float = 60.0) -> int:
    """Stop the lab's etcd and start it again with the same argv and data; the API server's store
    reconnects by itself. Returns the new PID."""
    info = load_lab(name)
    if not info.backend.startswith("etcd://"):
        raise LabError(f"lab {name!r} keeps its objects in {info.backend}, not in etcd",
                       hint="start a lab with: netk8s lab up --store etcd")
    stop_etcd(name)
    return start_etcd(info, timeout)


def start_controller(info: LabInfo) -> int:
    """The controller, beside the API server in the control-plane namespace, as its client."""
    paths = LabPaths(info.name)
    argv = launch_argv(controller_argv(info), netns=naming.control_plane_netns(info.name))
    pid = procs.spawn(argv, info.name, paths.logs / "controller.log")
    _write_pid(info.name, "controller", pid)
    return pid


def controller_argv(info: LabInfo, python: str = sys.executable) -> list[str]:
    """The controller's command (pure): the lab runs it in the control-plane namespace, a control-plane
    machine as a systemd unit (netk8s.lab.machines)."""
    return [python, "-m", "netk8s.controller", "--store", access.role_url(info.name, "controller")]


def agent_argv(info: LabInfo, index: int, python: str = sys.executable) -> list[str]:
    """Node `index`'s agent command (pure): the same argv in a node namespace, a VM node, a Vagrant worker."""
    paths = LabPaths(info.name)
    node = naming.node_name(index)
    return [python, "-m", "netk8s.node", "--lab", info.name, "--node", node,
            "--node-ip", str(naming.node_ip(index)), "--store", access.role_url(info.name, f"node-{node}"),
            "--state-dir", str(paths.node_dir(node)), "--overlay", info.overlay,
            "--pod-cidr", str(naming.node_pod_cidr(index)), "--proxy-mode", info.proxy_mode,
            "--node-resolv", str(paths.node_resolv), "--kubelet-token-file", str(paths.kubelet_token)]


def start_agent(info: LabInfo, index: int) -> int:
    paths = LabPaths(info.name)
    node = naming.node_name(index)
    argv = launch_argv(agent_argv(info, index), netns=naming.node_netns(info.name, node))
    pid = procs.spawn(argv, info.name, paths.logs / f"agent-{node}.log", extra_env=node_shell_env(info.name))
    _write_pid(info.name, f"agent-{node}", pid)
    return pid


def start_upstream_dns(info: LabInfo) -> int:
    """The lab's upstream DNS server (zone lab.example) in the external client's namespace."""
    paths = LabPaths(info.name)
    argv = launch_argv(addons.upstream_argv(sys.executable), netns=naming.external_netns(info.name))
    pid = procs.spawn(argv, info.name, paths.logs / "upstream-dns.log")
    _write_pid(info.name, "upstream-dns", pid)
    return pid


def deploy_dns(info: LabInfo, timeout: float, wait: bool = True) -> None:
    """Apply the kube-dns Deployment and Service, then (with `wait`) wait until both replicas are Ready
    and listed as endpoints (so pods resolve names as soon as `lab up` returns)."""
    from netk8s.cli.ops import pod_ready

    def state(store: Store) -> tuple[bool, str]:
        pods, _ = store.list("Pod", addons.DNS_NAMESPACE)
        ready = [p for p in pods if (p["metadata"].get("labels") or {}).get("k8s-app") == addons.DNS_NAME
                 and pod_ready(p)]
        eps = store.try_get("Endpoints", addons.DNS_NAMESPACE, addons.DNS_NAME) or {}
        addrs = [a for sub in eps.get("subsets") or [] for a in sub.get("addresses") or []]
        done = len(ready) >= addons.DNS_REPLICAS and len(addrs) >= addons.DNS_REPLICAS
        return done, f"{len(ready)} of {addons.DNS_REPLICAS} kube-dns pods Ready"

    # the controller creates kube-system when it starts; apply refuses objects in a missing namespace
    deploy_addon(info, timeout, "cluster DNS", addons.kube_dns_objects(access.role_url(info.name, "viewer")),
                 state if wait else _applied,
                 "see 'netk8s get pods -n kube-system' and 'netk8s logs -n kube-system POD'",
                 namespace=addons.DNS_NAMESPACE)


def deploy_ingress(info: LabInfo, timeout: float, wait: bool = True) -> None:
    """Apply ingress-nginx (namespace, IngressClass, Deployment, LoadBalancer Service), then (with `wait`)
    wait until a controller pod is Ready and the Service has its LoadBalancer IP."""
    from netk8s.cli.ops import pod_ready

    def state(store: Store) -> tuple[bool, str]:
        pods, _ = store.list("Pod", addons.INGRESS_NAMESPACE)
        ready = [p for p in pods if pod_ready(p)]
        svc = store.try_get("Service", addons.INGRESS_NAMESPACE, addons.INGRESS_NAME) or {}
        lb = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        return bool(ready and lb), (f"{len(ready)} controller pods Ready, "
                                    f"LoadBalancer IP {'assigned' if lb else 'pending'}")

    deploy_addon(info, timeout, "ingress-nginx", addons.ingress_objects(access.role_url(info.name, "controller")),
                 state if wait else _applied,
                 "see 'netk8s get pods -n ingress-nginx' and 'netk8s logs -n ingress-nginx POD'")


def _applied(store: Store) -> tuple[bool, str]:
    """An add-on's state when nothing is waited for: done once applied (a machine's workers join later)."""
    return True, "applied"


def deploy_addon(info: LabInfo, timeout: float, what: str, objects: list[dict],
                 state: Callable[[Store], tuple[bool, str]], hint: str, namespace: str | None = None) -> None:
    """Apply an add-on's objects (once `namespace` exists, when given), then poll `state` -> (done, how
    far) until done; LabError naming how far it got after `timeout` seconds."""
    from netk8s.cli.ops import apply_objects
    from netk8s.model.validate import validate_batch

    store = open_store(info.store)
    deadline = time.monotonic() + timeout
    try:
        while namespace is not None and store.try_get("Namespace", "", namespace) is None:
            if time.monotonic() > deadline:
                raise LabError(f"namespace {namespace} was not created", hint="see the controller log")
            time.sleep(0.1)
        apply_objects(store, validate_batch([(f"{what} add-on", o) for o in objects]))
        while True:
            done, how_far = state(store)
            if done:
                return
            if time.monotonic() > deadline:
                raise LabError(f"{what} not Ready after {timeout:.0f}s ({how_far})", hint=hint)
            time.sleep(0.1)
    finally:
        store.close()


def node_shell_env(lab: str) -> dict[str, str]:
    """PATH for processes in node namespaces: the legacy iptables tools first."""
    import os

    return {"PATH": f"{LabPaths(lab).root / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}


def _write_pid(lab: str, role: str, pid: int) -> None:
    d = LabPaths(lab).pids
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{role}.pid").write_text(str(pid))


def read_pid(lab: str, role: str) -> int | None:
    try:
        return int((LabPaths(lab).pids / f"{role}.pid").read_text())
    except (OSError, ValueError):
        return None


def check_alive(lab: str, roles: list[str]) -> None:
    """Raise LabError naming the first of these roles whose recorded process has exited."""
    for role in roles:
        pid = read_pid(lab, role)
        if pid is not None and not procs.alive(pid):
            raise LabError(f"{role} exited during start-up", hint=f"see {LabPaths(lab).logs / (role + '.log')}")


def wait_nodes_ready(info: LabInfo, timeout: float) -> None:
    store = open_store(info.store)
    want = set(info.node_names())
    deadline = time.monotonic() + timeout
    try:
        while True:
            nodes, _ = store.list("Node")
            ready = {
                n["metadata"]["name"] for n in nodes
                if is_ready(n)
                and (info.overlay != "vxlan"
                     or "flannel.alpha.coreos.com/backend-data" in (n["metadata"].get("annotations") or {}))
            }
            if want <= ready:
                return
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(want - ready))
                raise LabError(f"nodes not Ready after {timeout:.0f}s: {missing}",
                               hint=f"see the agent logs in {LabPaths(info.name).logs}")
            check_alive(info.name, ["etcd", "apiserver", "controller"] + node_roles(info))
            time.sleep(0.1)
    finally:
        store.close()


def node_roles(info: LabInfo) -> list[str]:
    """The pid-file role of each node's host process: the agent of a namespace node, QEMU of a VM node
    (the agent inside a guest has a guest PID, kept apart in the VM's work directory)."""
    return [f"vm-{n}" if info.runtime(n) == "vm" else f"agent-{n}" for n in info.node_names()]


def lab_processes(name: str) -> list[int]:
    """Every process of this lab: tagged ones and any inside its namespaces."""
    pids = set(procs.tagged_pids(name))
    for ns in dp_netns.list_netns(naming.lab_netns_prefix(name)):
        pids.update(dp_netns.pids_in_netns(ns))
    return sorted(pids)


def lab_down(name: str) -> None:
    """Stop every process of the lab (agents and controller first, then the API server, then etcd),
    remove its namespaces and state. VM nodes' QEMU processes are stopped by the PID in their work
    directory (only while it carries the lab's tag); their taps go with the switch namespace."""
    from netk8s.lab import vmnodes

    vmnodes.stop_all(name)
    roles = [p for p in (LabPaths(name).pids.glob("*.pid") if LabPaths(name).pids.exists() else [])]
    first = [pid for pid in (read_pid(name, r.stem) for r in roles if r.stem not in ("apiserver", "etcd"))
             if pid is not None and procs.alive(pid)]
    procs.stop_pids(first, grace=3.0)
    for role in ("apiserver", "etcd"):
        pid = read_pid(name, role)
        if pid is not None and procs.alive(pid):
            procs.stop_pids([pid], grace=3.0)
    procs.stop_pids(lab_processes(name), grace=1.0)
    topology.destroy_lab(name)
    root = LabPaths(name).root
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)


def known_labs() -> list[str]:
    from netk8s.config import state_root

    labs = set()
    root = state_root()
    if root.exists():
        labs.update(p.name for p in root.iterdir() if p.is_dir())
    return sorted(labs)


def clean_all(lab: str | None = None) -> list[str]:
    """Remove every netk8s trace (of one lab, or of all): tagged processes, processes in nk8s-
    namespaces, the namespaces, the state.

    Works with no state at all: namespaces are found by their `nk8s-` prefix, processes by their tag.
    """
    removed = []
    pids = set(procs.tagged_pids(lab))
    all_ns = dp_netns.list_netns(naming.lab_netns_prefix(lab) if lab else naming.NETNS_PREFIX)
    for ns in all_ns:
        pids.update(dp_netns.pids_in_netns(ns))
    procs.stop_pids(sorted(pids), grace=2.0)
    for ns in all_ns:
        try:
            dp_netns.delete_netns(ns)
            removed.append(ns)
        except NetK8sError:
            pass
    for name in [lab] if lab else known_labs():
        shutil.rmtree(LabPaths(name).root, ignore_errors=True)
    return removed


# Modes a node agent can switch to (ipvs only where the nodes' kernel has IP_VS).
SWITCHABLE_PROXY_MODES = ("iptables", "nftables", "ipvs", "userspace")


def check_proxy_mode_supported(mode: str, node_runtimes: Sequence[str] = ("netns",)) -> None:
    """Refuse IPVS mode when a node that would run it is a namespace node and the host's kernel (which
    namespace nodes share) lacks IP_VS or the dummy netdev, before anything is built: the probe is
    netk8s.dataplane.ipvs.missing_support. VM nodes run their own kernel (the guest agent checks it with
    the same probe when it starts)."""
    netns_nodes = [naming.node_name(i) for i, r in enumerate(node_runtimes, start=1) if r != "vm"]
    if mode != "ipvs" or not netns_nodes:
        return
    from netk8s.dataplane import ipvs

    missing = ipvs.missing_support()
    if missing:
        raise LabError(f"--proxy-mode ipvs: namespace nodes ({', '.join(netns_nodes)}) share this kernel, which has "
                       f"no {' and no '.join(missing)}", hint=ipvs.VM_HINT)


def set_proxy_mode(name: str, mode: str, timeout: float = 60.0,
                   progress: Callable[[str], None] = lambda s: None) -> LabInfo:
    """Switch a running lab's proxy mode: stop each agent (by its PID file; in a VM node, by its guest
    PID through the guest control server), record the mode in the lab file, start the agents again in
    the new mode and wait until every node re-registered Ready. Each agent removes the previous mode's
    rules when it starts (netk8s.proxy.modes, as kube-proxy --cleanup); pods keep running."""
    if mode not in SWITCHABLE_PROXY_MODES:
        raise LabError(f"--proxy-mode: must be one of {', '.join(SWITCHABLE_PROXY_MODES)}, got {mode!r}")
    info = load_lab(name)
    check_proxy_mode_supported(mode, [info.runtime(n) for n in info.node_names()])
    if info.proxy_mode == mode:
        progress(f"lab {name!r} already runs proxy mode {mode}")
        return info
    store = open_store(info.store)
    try:
        before = store.revision()
    finally:
        store.close()
    for node in info.node_names():
        if info.runtime(node) == "vm":
            from netk8s.lab import vmnodes

            progress(f"stopping agent in VM node {node}")
            vmnodes.stop_agent(info, node)
            continue
        pid = read_pid(name, f"agent-{node}")
        if pid is not None and procs.alive(pid):
            progress(f"stopping agent on {node}")
            procs.stop_pids([pid], grace=5.0)
    info.proxy_mode = mode
    LabPaths(name).lab_file.write_text(json.dumps(asdict(info), indent=2))
    for i in range(1, info.nodes + 1):
        node = naming.node_name(i)
        progress(f"starting agent on {node} in {mode} mode")
        if info.runtime(node) == "vm":
            vmnodes.start_agent(info, node)
        else:
            start_agent(info, i)
    progress("waiting for nodes to be Ready")
    _wait_reregistered(info, before, node_timeout(info, timeout))
    wait_nodes_ready(info, node_timeout(info, timeout))
    return info


def _wait_reregistered(info: LabInfo, revision: int, timeout: float) -> None:
    """Until every node's object was written after `revision` (the restarted agents registered)."""
    store = open_store(info.store)
    deadline = time.monotonic() + timeout
    try:
        while True:
            nodes, _ = store.list("Node")
            fresh = {n["metadata"]["name"] for n in nodes
                     if int(n["metadata"].get("resourceVersion") or 0) > revision}
            missing = sorted(set(info.node_names()) - fresh)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise LabError(f"agents did not restart after {timeout:.0f}s: {', '.join(missing)}",
                               hint=f"see the agent logs in {LabPaths(info.name).logs}")
            check_alive(info.name, [r for r in node_roles(info) if r.split("-", 1)[1] in missing])
            time.sleep(0.1)
    finally:
        store.close()
