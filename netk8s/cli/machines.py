"""`lab units`, `lab pki`, `lab join`: run a lab on several machines (the Vagrant lab, docs/vagrant.md).

Parse, call netk8s.lab.machines, print. The provisioning (vagrant/provision.sh) calls exactly these.
"""

from __future__ import annotations

from pathlib import Path

import click

from netk8s.cli.main import lab, parse_duration

_lab_options = [
    click.option("--name", default="vagrant", show_default=True, help="The lab's name (its state directory, context)."),
    click.option("--nodes", default=2, show_default=True, type=int, help="Workers node1..nodeN at 192.168.56.11.."),
    click.option("--proxy-mode", default="iptables", show_default=True),
    click.option("--overlay", default="vxlan", show_default=True),
]


def lab_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed(_lab_options):
        fn = option(fn)
    return fn


@lab.command("units")
@click.option("--role", required=True, type=click.Choice(["control-plane", "agent"]),
              help="control-plane: etcd, API server, controller; agent: the node agent of --node.")
@click.option("--node", default=None, help="The worker's node name (node1, node2, ...), for --role agent.")
@lab_options
@click.option("--out", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the unit files (default /etc/systemd/system).")
@click.option("--print", "print_only", is_flag=True, help="Print the units instead of writing them.")
def lab_units(role: str, node: str | None, name: str, nodes: int, proxy_mode: str, overlay: str,
              out: Path | None, print_only: bool) -> None:
    """Write the systemd units of one machine: the lab's own argv for each role, Restart=on-failure."""
    from netk8s.lab import machines

    info = machines.machine_lab(name, nodes, proxy_mode, overlay)
    units = machines.machine_units(role, info, node)
    if print_only:
        for unit, text in units.items():
            click.echo(f"# {unit}\n{text}")
        return
    for path in machines.write_units(units, out or machines.UNIT_DIR):
        click.echo(path)


@lab.command("pki")
@lab_options
@click.option("--export", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the host's kubeconfig and each worker's credentials go (the synced folder).")
def lab_pki(name: str, nodes: int, proxy_mode: str, overlay: str, export: Path) -> None:
    """On the control plane: make the lab's CA, certificates, kubeconfigs and kubelet token, and export them."""
    from netk8s.cli.main import need_root
    from netk8s.lab import machines

    need_root()
    info = machines.machine_lab(name, nodes, proxy_mode, overlay)
    for path in machines.make_control_plane(info, export):
        click.echo(path)


@lab.command("join")
@click.option("--node", required=True, help="This worker's node name (node1, node2, ...).")
@lab_options
@click.option("--from", "source", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The directory `lab pki --export` wrote (the synced folder).")
@click.option("--timeout", default="15m", show_default=True, help="How long to wait for the control plane.")
def lab_join(node: str, name: str, nodes: int, proxy_mode: str, overlay: str, source: Path, timeout: str) -> None:
    """On a worker: install this node's credentials from the control plane's export."""
    from netk8s.cli.main import need_root
    from netk8s.lab import machines

    need_root()
    info = machines.machine_lab(name, nodes, proxy_mode, overlay)
    for path in machines.join_worker(info, node, source, parse_duration(timeout)):
        click.echo(path)


@lab.command("addons")
@lab_options
@click.option("--dns/--no-dns", default=True, show_default=True, help="Cluster DNS (kube-system/kube-dns).")
@click.option("--ingress/--no-ingress", default=True, show_default=True, help="ingress-nginx.")
@click.option("--timeout", default="5m", show_default=True, help="How long to wait for the API server.")
def lab_addons(name: str, nodes: int, proxy_mode: str, overlay: str, dns: bool, ingress: bool, timeout: str) -> None:
    """On the control plane: apply the add-ons `lab up` deploys, once the API server answers."""
    from netk8s.lab import machines

    info = machines.machine_lab(name, nodes, proxy_mode, overlay)
    for addon in machines.apply_addons(info, parse_duration(timeout), dns, ingress):
        click.echo(f"applied {addon}")
