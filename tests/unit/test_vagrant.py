"""The Vagrant lab (vagrant/, docs/vagrant.md): the Vagrantfile validates and follows the address plan,
its provisioning passes shellcheck, the systemd units pass `systemd-analyze verify`, and the units run
exactly the argv the one-machine lab runs for the same role and node. No VM boots.

The tool tests are marked `integration` (they start vagrant, ruby, shellcheck, systemd-analyze); the
argv and credential tests are pure. scripts/install-deps.sh installs every tool used here.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from netk8s import config
from netk8s.cli.main import cli
from netk8s.config import LabPaths
from netk8s.errors import LabError
from netk8s.lab import access, machines, manager
from netk8s.lab.pki import certificate_subject
from netk8s.model import naming

REPO = Path(__file__).resolve().parents[2]
VAGRANT_DIR = REPO / "vagrant"
PLAN_RB = Path(__file__).with_name("vagrantfile_plan.rb")
LAB = "vagrant"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def exec_start(unit_text: str) -> list[str]:
    """The argv of a unit's ExecStart line, unquoted as systemd does for the words we write
    (systemd.service(5), "Command lines": double quotes, backslash escapes, %% and $$)."""
    lines = [line for line in unit_text.splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, unit_text
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(lines[0][len("ExecStart="):])]


def unit_keys(unit_text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit_text.splitlines() if line.startswith(f"{key}=")]


def after_dashdash(argv: list[str]) -> list[str]:
    """The command the launcher (netk8s.dataplane.launch) execs: what follows its `--`."""
    return argv[argv.index("--") + 1:]


def spawned_argv(monkeypatch: pytest.MonkeyPatch, start, *args) -> list[str]:  # type: ignore[no-untyped-def]
    """The argv the lab's start_* function hands to procs.spawn (captured; nothing is started)."""
    seen: list[list[str]] = []
    monkeypatch.setattr(manager.procs, "spawn", lambda argv, *a, **kw: seen.append(argv) or 4242)
    monkeypatch.setattr(manager, "_write_pid", lambda *a: None)
    start(*args)
    assert len(seen) == 1
    return seen[0]


# ------------------------------------------------------------- the same argv as the lab (pure tests)
@pytest.mark.parametrize("proxy_mode,overlay", [("iptables", "vxlan"), ("ipvs", "host-gw")])
@pytest.mark.parametrize("index", [1, 3])
def test_agent_unit_runs_the_argv_the_lab_runs_on_that_node(state_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           index: int, proxy_mode: str, overlay: str) -> None:
    info = machines.machine_lab(LAB, 3, proxy_mode, overlay)
    node = naming.node_name(index)
    unit = machines.machine_units("agent", info, node)["netk8s-agent.service"]
    argv = exec_start(unit)
    assert argv == manager.agent_argv(info, index)
    # the lab runs the same command inside the node's namespace, through the launcher
    lab_argv = spawned_argv(monkeypatch, manager.start_agent, info, index)
    assert lab_argv[lab_argv.index("--netns") + 1] == naming.node_netns(LAB, node)
    assert after_dashdash(lab_argv) == argv
    assert argv[argv.index("--node-ip") + 1] == str(naming.node_ip(index)) == f"192.168.56.{10 + index}"
    assert argv[argv.index("--proxy-mode") + 1] == proxy_mode and argv[argv.index("--overlay") + 1] == overlay
    assert f"PATH={manager.node_shell_env(LAB)['PATH']}" in unit_keys(unit, "Environment")


def test_controller_unit_runs_the_argv_the_lab_runs(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = machines.machine_lab(LAB, 2)
    units = machines.machine_units("control-plane", info)
    argv = exec_start(units["netk8s-controller.service"])
    assert argv == manager.controller_argv(info)
    assert after_dashdash(spawned_argv(monkeypatch, manager.start_controller, info)) == argv


def test_apiserver_unit_differs_from_the_lab_only_where_the_underlay_address_lives(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's API server listens on 192.168.56.10:6443 inside the control-plane namespace and dials the
    kubelets from there; the control-plane machine has that address itself. Every other word is the same."""
    info = machines.machine_lab(LAB, 2)
    argv = exec_start(machines.machine_units("control-plane", info)["netk8s-apiserver.service"])
    assert argv == access.apiserver_argv(sys.executable, LAB, info.backend, config.API_PORT,
                                         control_plane_netns=False)
    lab_argv = spawned_argv(monkeypatch, manager.start_apiserver, info)
    underlay = f"{config.CONTROL_PLANE_IP}:{config.API_PORT}"

    def without(words: list[str], pairs: list[tuple[str, str]]) -> list[str]:
        out, i = [], 0
        while i < len(words):
            if (words[i], words[i + 1] if i + 1 < len(words) else None) in pairs:
                i += 2
                continue
            out.append(words[i])
            i += 1
        return out

    cp_ns = naming.control_plane_netns(LAB)
    assert without(lab_argv, [("--listen-netns", f"{cp_ns}={underlay}"), ("--kubelet-netns", cp_ns)]) \
        == without(argv, [("--listen", underlay)])
    assert argv[argv.index("--store") + 1] == f"etcd://{config.CONTROL_PLANE_IP}:2379"


def test_etcd_unit_runs_etcd_argv_on_the_control_plane_address(state_dir: Path) -> None:
    from netk8s.lab.etcd import etcd_argv

    info = machines.machine_lab(LAB, 1)
    argv = exec_start(machines.machine_units("control-plane", info)["netk8s-etcd.service"])
    assert argv == etcd_argv(LabPaths(LAB).root / "etcd", "192.168.56.10", binary=machines.ETCD_BINARY)


def test_units_restart_on_failure_and_order_after_their_servers(state_dir: Path) -> None:
    info = machines.machine_lab(LAB, 2)
    units = {**machines.machine_units("control-plane", info), **machines.machine_units("agent", info, "node2")}
    assert sorted(units) == sorted(machines.unit_name(r) for r in machines.ROLES)
    for name, text in units.items():
        assert unit_keys(text, "Restart") == ["on-failure"], name
        assert f"{naming.PROCESS_TAG_ENV}={LAB}" in unit_keys(text, "Environment"), name
    assert "netk8s-etcd.service" in unit_keys(units["netk8s-apiserver.service"], "After")[0].split()
    assert unit_keys(units["netk8s-controller.service"], "After") == ["netk8s-apiserver.service"]
    # pods outlive an agent restart, as containers outlive a kubelet restart
    assert unit_keys(units["netk8s-agent.service"], "KillMode") == ["process"]


@pytest.mark.parametrize(("word", "quoted"), [
    ("https://h:1?kubeconfig=%2Fx", "https://h:1?kubeconfig=%%2Fx"),
    ("a b", '"a b"'), ('say "hi"', '"say \\"hi\\""'), ("$HOME", "$$HOME"), (";", '";"'), ("", '""'),
    ("back\\slash", '"back\\\\slash"'),
], ids=["percent", "blank", "quotes", "dollar", "semicolon", "empty", "backslash"])
def test_exec_words_are_quoted_so_systemd_reads_them_back(word: str, quoted: str) -> None:
    assert machines.systemd_quote(word) == quoted
    assert exec_start(f"ExecStart=/bin/echo {quoted}") == ["/bin/echo", word]


def test_environment_assignments_keep_dollars_and_double_percents() -> None:
    """systemd expands specifiers in Environment= but not $VARIABLES (systemd.exec(5), Environment=)."""
    assert machines.systemd_quote("A=$x%y", exec_word=False) == "A=$x%%y"
    assert machines.systemd_quote("A=b c", exec_word=False) == '"A=b c"'


# ------------------------------------------------------------------ bad input (pure)
@pytest.mark.parametrize(("args", "field"), [
    (["--role", "agent"], "--node"),
    (["--role", "agent", "--node", "node3"], "--node"),
    (["--role", "control-plane", "--nodes", "0"], "--nodes"),
    (["--role", "control-plane", "--proxy-mode", "bogus"], "--proxy-mode"),
    (["--role", "control-plane", "--overlay", "gre"], "--overlay"),
    (["--role", "control-plane", "--name", "Bad_Name"], "--name"),
], ids=["agent-without-node", "unknown-node", "nodes-0", "proxy-mode", "overlay", "name"])
def test_lab_units_refuses_bad_input_naming_the_field_and_writes_nothing(tmp_path: Path, args: list[str],
                                                                         field: str) -> None:
    out = tmp_path / "units"
    result = CliRunner().invoke(cli, ["lab", "units", *args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("error: ") and field in first
    assert not out.exists()


def test_lab_units_writes_the_units_it_prints(state_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "units"
    result = CliRunner().invoke(cli, ["lab", "units", "--role", "control-plane", "--nodes", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    info = machines.machine_lab(LAB, 3)
    want = machines.machine_units("control-plane", info)
    assert result.output.split() == [str(out / name) for name in want]
    assert {p.name: p.read_text() for p in out.iterdir()} == want
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())


# ------------------------------------------------------- credentials over the synced folder (pure)
def test_control_plane_exports_and_a_worker_installs_what_its_agent_argv_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path / "cp-state"))
    info = machines.machine_lab(LAB, 2)
    export = tmp_path / "share" / ".cluster"
    exported = machines.make_control_plane(info, export)
    assert exported[0] == export / "kubeconfig"
    host = yaml.safe_load((export / "kubeconfig").read_text())
    assert host["clusters"][0]["cluster"]["server"] == "https://192.168.56.10:6443"
    assert host["current-context"] == f"netk8s-{LAB}"
    assert (export / "kubeconfig").stat().st_mode & 0o777 == 0o600
    assert json.loads(LabPaths(LAB).lab_file.read_text())["backend"] == info.backend
    token = LabPaths(LAB).kubelet_token.read_text()
    machines.make_control_plane(info, export)  # provisioning again keeps the token the workers hold
    assert LabPaths(LAB).kubelet_token.read_text() == token

    # the worker is another machine: another state root, the share as its synced folder shows it
    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path / "node2-state"))
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.0.2.3\n")
    written = machines.join_worker(info, "node2", export, timeout=0, resolv=resolv)
    argv = manager.agent_argv(info, 2)
    store_kubeconfig = Path(argv[argv.index("--store") + 1].split("kubeconfig=")[1].replace("%2F", "/"))
    for path in (store_kubeconfig, Path(argv[argv.index("--kubelet-token-file") + 1]),
                 Path(argv[argv.index("--node-resolv") + 1])):
        assert path in written and path.exists()
    assert store_kubeconfig.stat().st_mode & 0o777 == 0o600
    assert LabPaths(LAB).kubelet_token.read_text() == token
    assert LabPaths(LAB).node_resolv.read_text() == "nameserver 10.0.2.3\n"
    node_cfg = yaml.safe_load(store_kubeconfig.read_text())
    assert node_cfg["clusters"][0]["cluster"]["server"] == access.CONTROL_PLANE_SERVER
    cert = tmp_path / "node2.crt"
    import base64

    cert.write_bytes(base64.b64decode(node_cfg["users"][0]["user"]["client-certificate-data"]))
    assert certificate_subject(cert) == ("system:node:node2", ("system:nodes",))
    # the agent's PATH starts with the legacy iptables links
    assert (LabPaths(LAB).root / "bin" / "iptables").is_symlink()


def test_worker_join_without_the_control_plane_export_fails_naming_from(state_dir: Path, tmp_path: Path) -> None:
    info = machines.machine_lab(LAB, 2)
    with pytest.raises(LabError) as exc:
        machines.join_worker(info, "node1", tmp_path / "empty", timeout=0)
    assert "--from" in exc.value.message and "node1" in exc.value.message
    assert not state_dir.exists()


def test_control_plane_applies_the_labs_addons_without_waiting_for_workers(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lab addons` applies what `lab up` deploys, with the same objects (read by the pods with the
    kubeconfigs the workers installed), and returns before any pod runs: no worker has joined yet."""
    from netk8s.store.memory import MemoryStore

    store = MemoryStore()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    store.close = lambda: None  # type: ignore[method-assign]  # shared by every open_store below
    waited: list[str] = []
    monkeypatch.setattr(manager, "open_store", lambda url: waited.append(url) or store)
    monkeypatch.setattr(manager, "wait_api_ready", lambda info, timeout: waited.append("api"))
    info = machines.machine_lab(LAB, 2)
    assert machines.apply_addons(info, timeout=5) == ["kube-system/kube-dns", "ingress-nginx/ingress-nginx-controller"]
    assert waited[0] == "api" and set(waited[1:]) == {info.store}
    dns = store.get("Deployment", "kube-system", "kube-dns")["spec"]["template"]["spec"]["containers"][0]
    assert access.role_url(LAB, "viewer") in dns.get("args", []) + dns.get("command", [])
    assert store.get("Service", "ingress-nginx", "ingress-nginx-controller")["spec"]["type"] == "LoadBalancer"
    assert store.list("Pod")[0] == []


# ------------------------------------------------------------------ the tools (integration)
def _vagrant_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """vagrant with its home and the project's .vagrant directory in tmp_path (nothing written to the repo)."""
    return {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d"), "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),
            "VAGRANT_CHECKPOINT_DISABLE": "1", **extra}


@pytest.mark.integration
@pytest.mark.parametrize(("provider", "flags"), [("libvirt", []), ("virtualbox", ["--ignore-provider"])])
def test_vagrant_validate_passes(tmp_path: Path, provider: str, flags: list[str]) -> None:
    """libvirt: the whole file with the vagrant-libvirt plugin; VirtualBox's own checks need VBoxManage,
    so that provider's block is ignored and the rest is validated."""
    r = subprocess.run(["vagrant", "validate", *flags], cwd=VAGRANT_DIR, capture_output=True, text=True, timeout=300,
                       env=_vagrant_env(tmp_path, VAGRANT_DEFAULT_PROVIDER=provider), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Vagrantfile validated successfully" in r.stdout
    assert not (VAGRANT_DIR / ".vagrant").exists()


def _plan(tmp_path: Path, **env: str) -> dict:
    r = subprocess.run(["ruby", str(PLAN_RB), str(VAGRANT_DIR / "Vagrantfile")], capture_output=True, text=True,
                       timeout=120, env={**os.environ, **env}, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.integration
@pytest.mark.parametrize("nodes", [2, 3])
def test_vagrantfile_follows_the_address_plan_and_provisions_with_lab_units(tmp_path: Path, state_dir: Path,
                                                                            nodes: int) -> None:
    plan = _plan(tmp_path, NETK8S_NODES=str(nodes))
    assert plan["box"] == "debian/bookworm64"
    assert set(plan["providers"]) == {"virtualbox", "libvirt"}
    assert plan["synced_folders"] == [{"host": "..", "guest": "/vagrant", "type": "rsync"}]
    by_name = {m["name"]: m for m in plan["machines"]}
    assert list(by_name) == ["cp", *(naming.node_name(i) for i in range(1, nodes + 1))]
    assert by_name["cp"]["ip"] == str(config.CONTROL_PLANE_IP) and by_name["cp"]["primary"]
    assert by_name["cp"]["triggers"] == [["up", "provision"]]
    for i in range(1, nodes + 1):
        assert by_name[naming.node_name(i)]["ip"] == str(naming.node_ip(i))
        assert by_name[naming.node_name(i)]["hostname"] == naming.node_name(i)
    # every machine runs provision.sh, whose arguments `netk8s lab units` accepts for that machine
    for m in plan["machines"]:
        assert m["provision_path"] == "provision.sh"
        kind, *args = m["provision_args"]
        if "--bundle" in args:
            cut = args.index("--bundle")
            args = args[:cut] + args[cut + 2:]
        result = CliRunner().invoke(cli, ["lab", "units", "--role", kind, *args, "--print"])
        assert result.exit_code == 0, (m["name"], result.output)
        assert f"--nodes {nodes}" in " ".join(args)
        if kind == "agent":
            assert exec_start(result.output) == manager.agent_argv(machines.machine_lab(LAB, nodes),
                                                                   int(m["name"][len("node"):]))


@pytest.mark.integration
def test_vagrantfile_refuses_a_bad_node_count(tmp_path: Path) -> None:
    r = subprocess.run(["ruby", str(PLAN_RB), str(VAGRANT_DIR / "Vagrantfile")], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "NETK8S_NODES": "0"}, check=False)
    assert r.returncode != 0 and "NETK8S_NODES: must be between 1 and 50, got 0" in r.stderr


@pytest.mark.integration
def test_host_unpacks_the_cluster_bundle_private_and_inside_its_directory(tmp_path: Path) -> None:
    src = tmp_path / "export"
    (src / "nodes" / "node1").mkdir(parents=True)
    (src / "kubeconfig").write_text("admin\n")
    (src / "nodes" / "node1" / ".ready").write_text("1\n")
    bundle = tmp_path / "bundle.tar"
    with tarfile.open(bundle, "w") as tar:
        tar.add(src, arcname=".")
        evil = tarfile.TarInfo("../escaped")
        evil.size = 3
        import io

        tar.addfile(evil, io.BytesIO(b"bad"))
    dest = tmp_path / "host" / ".cluster"
    dest.mkdir(parents=True)
    r = subprocess.run(["ruby", str(PLAN_RB), str(VAGRANT_DIR / "Vagrantfile"), str(bundle), str(dest)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert (dest / "kubeconfig").read_text() == "admin\n"
    assert (dest / "nodes" / "node1" / ".ready").exists()
    assert (dest / "kubeconfig").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "host" / "escaped").exists()


@pytest.mark.integration
def test_provisioning_scripts_pass_shellcheck() -> None:
    r = subprocess.run(["shellcheck", str(VAGRANT_DIR / "provision.sh"), str(REPO / "scripts" / "install-deps.sh")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.integration
def test_units_pass_systemd_analyze_verify(state_dir: Path, tmp_path: Path) -> None:
    """Offline: the unit files in a directory of their own, no running systemd needed; verify checks
    the syntax, the ordering dependencies and that every ExecStart binary exists."""
    out = tmp_path / "units"
    for args in (["--role", "control-plane"], *(["--role", "agent", "--node", f"node{i}"] for i in (1, 2))):
        result = CliRunner().invoke(cli, ["lab", "units", *args, "--out", str(out / args[-1])])
        assert result.exit_code == 0, result.output
    for d in sorted(out.iterdir()):
        files = sorted(p.name for p in d.glob("*.service"))
        assert files
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", *files], cwd=d, capture_output=True, text=True,
                           timeout=120, check=False)
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (d.name, r.stdout, r.stderr)


def test_on_a_vagrant_vm_host_gw_routes_and_lb_announcements_use_eth1(monkeypatch: pytest.MonkeyPatch) -> None:
    from netk8s.dataplane import links
    from netk8s.node import overlay
    from netk8s.proxy.announce import Announcer

    peers = [overlay.NodeInfo("node1", "192.168.56.11", "10.244.1.0/24", None),
             overlay.NodeInfo("node2", "192.168.56.12", "10.244.2.0/24", None)]
    state = overlay.desired_overlay("node1", peers, "host-gw", uplink="eth1")
    assert [(r.dst, r.gateway, r.dev) for r in state.routes] == [("10.244.2.0/24", "192.168.56.12", "eth1")]
    monkeypatch.setattr(links, "link_with_address", lambda netns, ip: "eth1" if ip == "192.168.56.11" else None)
    assert Announcer("node1", uplink="", node_ips=("192.168.56.11",)).link() == "eth1"
    assert Announcer("node1", uplink="", node_ips=("192.0.2.1",)).link() == naming.NODE_UPLINK
    assert Announcer("node1").link() == naming.NODE_UPLINK  # an explicit uplink is kept


@pytest.mark.integration
def test_the_agent_finds_its_underlay_interface_by_its_address() -> None:
    """On a Vagrant VM eth0 is the provider's NAT and the underlay is eth1: the agent binds flannel.1 and
    its host-gw routes to the interface holding --node-ip, not to a fixed name (read-only here: `lo`)."""
    from netk8s.dataplane import links

    assert links.link_with_address(None, "127.0.0.1") == "lo"
    assert links.link_with_address(None, "192.0.2.254") is None
