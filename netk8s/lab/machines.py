"""Several machines (the Vagrant lab, vagrant/): each role's command as the one-machine lab builds it,
rendered into systemd units, and the credentials the control plane makes and the workers fetch.

Not a second code path: `role_argv` returns the argv of netk8s.lab.manager (controller_argv,
agent_argv), netk8s.lab.access (apiserver_argv) and netk8s.lab.etcd (etcd_argv), the functions the lab
uses to start the same roles; the lab wraps them in `netk8s.dataplane.launch --netns NS`, a machine runs
them as they are, since there the machine's own network namespace is the node (docs/vagrant.md).

Credentials go one way, over the synced folder (docs/vagrant.md, "Credentials"): the control plane
makes the lab's CA, every role's certificate and kubeconfig and the kubelet token in its state directory
(access.setup, as `lab up` does), then exports the host's admin kubeconfig and, per worker, the files that
worker needs; a worker waits for its directory and installs the files where its agent's argv names them.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from netk8s import config
from netk8s.config import LabPaths
from netk8s.errors import LabError
from netk8s.lab import access, etcd, manager
from netk8s.lab.manager import LabInfo
from netk8s.model import naming

ROLES = ("etcd", "apiserver", "controller", "agent")
# what each machine kind runs (`netk8s lab units --role`)
MACHINE_ROLES = {"control-plane": ("etcd", "apiserver", "controller"), "agent": ("agent",)}
ETCD_BINARY = "/usr/bin/etcd"  # Debian's etcd-server (scripts/install-deps.sh)
UNIT_DIR = Path("/etc/systemd/system")
READY_MARK = ".ready"  # written last into a worker's export directory: the files beside it are complete
# What a worker needs from the control plane: its own credential, the viewer's (the kube-dns pods it
# runs read the API with it) and the controller's (ingress-nginx pods write Ingress status), the token
# its kubelet API accepts. The same set the one-machine lab's nodes read from the lab's state directory.
WORKER_KUBECONFIG_ROLES = ("viewer", "controller")


def unit_name(role: str) -> str:
    return f"netk8s-{role}.service"


def machine_lab(name: str, nodes: int, proxy_mode: str = "iptables", overlay: str = "vxlan") -> LabInfo:
    """The lab a set of machines forms: etcd beside the API server on the control plane (port 6443 on
    both 127.0.0.1 and 192.168.56.10), nodes node1..nodeN at 192.168.56.11.. (the address plan)."""
    naming.check_lab_name(name)
    if not 1 <= nodes <= 50:
        raise LabError(f"--nodes: must be between 1 and 50, got {nodes}")
    if proxy_mode not in manager.PROXY_MODES:
        raise LabError(f"--proxy-mode: must be one of {', '.join(manager.PROXY_MODES)}, got {proxy_mode!r}")
    if overlay not in manager.OVERLAYS:
        raise LabError(f"--overlay: must be one of {', '.join(manager.OVERLAYS)}, got {overlay!r}")
    backend = f"etcd://{config.CONTROL_PLANE_IP}:{etcd.ETCD_CLIENT_PORT}"
    return LabInfo(name, nodes, overlay, proxy_mode, access.admin_url(name, config.API_PORT), 0.0,
                   api_port=config.API_PORT, backend=backend)


def node_index(info: LabInfo, node: str) -> int:
    """1-based index of `node` in the lab, or LabError naming --node."""
    names = info.node_names()
    if node not in names:
        raise LabError(f"--node: {node!r} is not a node of lab {info.name!r} (nodes: {', '.join(names)})")
    return names.index(node) + 1


def role_argv(role: str, info: LabInfo, node: str | None = None, python: str = sys.executable) -> list[str]:
    """The command of `role` on a machine of lab `info` (pure): the lab's own argv functions."""
    if role == "etcd":
        return etcd.etcd_argv(LabPaths(info.name).root / "etcd", str(config.CONTROL_PLANE_IP), binary=ETCD_BINARY)
    if role == "apiserver":
        return access.apiserver_argv(python, info.name, info.backend, info.api_port, control_plane_netns=False)
    if role == "controller":
        return manager.controller_argv(info, python)
    if role == "agent":
        if not node:
            raise LabError("--node: the agent role needs the node's name (node1, node2, ...)")
        return manager.agent_argv(info, node_index(info, node), python)
    raise LabError(f"--role: must be one of {', '.join(ROLES)}, got {role!r}")


def role_env(role: str, lab: str) -> dict[str, str]:
    """The environment of a role's process, as the lab spawns it: the lab's tag (so `netk8s clean` finds
    it), the state root, and for the agent the PATH with the legacy iptables tools first."""
    env = {naming.PROCESS_TAG_ENV: lab, "NETK8S_STATE_DIR": str(config.state_root())}
    if role == "agent":
        env.update(manager.node_shell_env(lab))
    return env


def systemd_quote(arg: str, exec_word: bool = True) -> str:
    """One ExecStart word (systemd.service(5), "Command lines"): `%` and `$` doubled so no specifier or
    variable is expanded; words with blanks, quotes or backslashes, or a lone `;`, in double quotes.
    An Environment= assignment (exec_word False) expands specifiers but not variables: only `%` doubles."""
    word = arg.replace("%", "%%")
    if exec_word:
        word = word.replace("$", "$$")
    if not word or word == ";" or any(c in word for c in " \t\n\"'\\"):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return word


def render_unit(role: str, lab: str, argv: Sequence[str], env: Mapping[str, str]) -> str:
    """A systemd service unit running `argv` with `env`, restarted on failure (pure)."""
    after = {"etcd": ["network-online.target"], "apiserver": ["network-online.target", unit_name("etcd")],
             "controller": [unit_name("apiserver")], "agent": ["network-online.target"]}[role]
    # Wants (not Requires): a restarting etcd or API server must not stop its clients, which reconnect.
    wants = [u for u in after if u != unit_name("apiserver")]
    unit = ["[Unit]", f"Description=netk8s {role} (lab {lab}; generated by netk8s lab units)",
            f"After={' '.join(after)}", *([f"Wants={' '.join(wants)}"] if wants else [])]
    service = ["[Service]", "Type=simple"]
    service += [f"Environment={systemd_quote(f'{k}={v}', exec_word=False)}" for k, v in sorted(env.items())]
    service += [f"ExecStart={' '.join(systemd_quote(a) for a in argv)}", "Restart=on-failure", "RestartSec=2s"]
    if role == "agent":
        # Pod processes are detached from the agent and survive its restart (a restarted agent adopts
        # them), as containers survive a kubelet restart; systemd's default KillMode=control-group
        # would kill them with it. containerd.service sets KillMode=process for the same reason.
        service.append("KillMode=process")
    if role == "etcd":
        service.append("LimitNOFILE=65536")  # as Debian's etcd.service
    return "\n".join([*unit, "", *service, "", "[Install]", "WantedBy=multi-user.target"]) + "\n"


def machine_units(kind: str, info: LabInfo, node: str | None = None,
                  python: str = sys.executable) -> dict[str, str]:
    """Unit file name -> text for a machine of `kind` (control-plane or agent) (pure)."""
    if kind not in MACHINE_ROLES:
        raise LabError(f"--role: must be one of {', '.join(MACHINE_ROLES)}, got {kind!r}")
    return {unit_name(role): render_unit(role, info.name, role_argv(role, info, node, python),
                                         role_env(role, info.name))
            for role in MACHINE_ROLES[kind]}


def write_units(units: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Write each unit (0644, replacing atomically); the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        path = out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)
        written.append(path)
    return written


def _copy_private(src: Path, dst: Path) -> None:
    """Copy a credential file, the copy 0600 from the start."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def worker_export_dir(export: Path, node: str) -> Path:
    return export / "nodes" / node


def make_control_plane(info: LabInfo, export: Path) -> list[Path]:
    """On the control plane: the lab's state directory (0700), PKI and kubeconfigs (access.setup), the
    kubelet token (kept when it exists, so workers provisioned earlier keep working), lab.json (so
    `netk8s --lab LAB get ...` works on this machine), then the exports: `EXPORT/kubeconfig` (admin,
    server https://192.168.56.10:6443, for the host) and `EXPORT/nodes/NODE/` per worker. The paths
    exported."""
    paths = LabPaths(info.name)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    access.setup(info.name, info.node_names(), info.api_port)
    if not paths.kubelet_token.exists():
        manager.write_kubelet_token(paths)
    paths.lab_file.write_text(json.dumps(asdict(info), indent=2))
    admin = export / "kubeconfig"
    access.write_role_kubeconfig(info.name, "admin", admin, access.CONTROL_PLANE_SERVER)
    exported = [admin]
    for node in info.node_names():
        out = worker_export_dir(export, node)
        (out / READY_MARK).unlink(missing_ok=True)
        for role in (f"node-{node}", *WORKER_KUBECONFIG_ROLES):
            _copy_private(paths.role_kubeconfig(role), out / paths.role_kubeconfig(role).name)
        _copy_private(paths.kubelet_token, out / paths.kubelet_token.name)
        (out / READY_MARK).write_text(f"{time.time():.0f}\n")
        exported.append(out)
    return exported


def join_worker(info: LabInfo, node: str, export: Path, timeout: float,
                resolv: Path = Path("/etc/resolv.conf")) -> list[Path]:
    """On a worker: wait (up to `timeout` s) until the control plane exported this node's directory,
    install its files where the agent's argv names them (0600), the node resolver configuration (this
    machine's resolv.conf) and the legacy iptables links the agent's PATH starts with. The paths written."""
    from netk8s.dataplane.iptables import bin_dir_for_legacy

    node_index(info, node)
    src = worker_export_dir(export, node)
    deadline = time.monotonic() + timeout
    while not (src / READY_MARK).exists():
        if time.monotonic() > deadline:
            raise LabError(f"--from: no credentials for {node} in {src} after {timeout:.0f}s",
                           hint="provision the control plane first: vagrant up cp")
        time.sleep(1.0)
    paths = LabPaths(info.name)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    written = []
    for role in (f"node-{node}", *WORKER_KUBECONFIG_ROLES):
        dst = paths.role_kubeconfig(role)
        _copy_private(src / dst.name, dst)
        written.append(dst)
    paths.role_kubeconfig("controller").parent.chmod(0o700)
    _copy_private(src / paths.kubelet_token.name, paths.kubelet_token)
    paths.node_resolv.write_text(resolv.read_text())
    bin_dir_for_legacy(paths.root / "bin")
    return [*written, paths.kubelet_token, paths.node_resolv]


def apply_addons(info: LabInfo, timeout: float, dns: bool = True, ingress: bool = True) -> list[str]:
    """On the control plane, once its API server answers: apply the add-ons `lab up` deploys (kube-dns,
    ingress-nginx) with the lab's own functions, without waiting for their pods, which start as the
    workers join. The add-ons applied."""
    manager.wait_api_ready(info, timeout)
    done = []
    if dns:
        manager.deploy_dns(info, timeout, wait=False)
        done.append("kube-system/kube-dns")
    if ingress:
        manager.deploy_ingress(info, timeout, wait=False)
        done.append("ingress-nginx/ingress-nginx-controller")
    return done
