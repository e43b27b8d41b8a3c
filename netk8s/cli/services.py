"""`expose`, `create service ...` and `rules`: Service commands of the CLI (parse, call, print)."""

from __future__ import annotations

import json
import sys

import click

from netk8s.cli import ops
from netk8s.cli.main import cli, lab_of, need_root, open_lab_store
from netk8s.errors import NetK8sError, NotFound, ValidationError


def apply_new(ctx: click.Context, obj: dict, verb: str) -> None:
    from netk8s.model.validate import validate_batch

    objs = validate_batch([("<command line>", obj)])
    store = open_lab_store(ctx)
    try:
        if store.try_get("Service", objs[0]["metadata"]["namespace"], objs[0]["metadata"]["name"]):
            raise ValidationError(f'Error from server (AlreadyExists): services "{obj["metadata"]["name"]}" '
                                  "already exists")
        result = ops.apply_objects(store, objs)[0]
    finally:
        store.close()
    click.echo(f"service/{result.obj['metadata']['name']} {verb}")


def parse_port(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"{what}: must be a number, got {text!r}") from None
    return value


@cli.command("expose")
@click.argument("words", nargs=-1, required=True)
@click.option("--port", required=True)
@click.option("--target-port", default=None)
@click.option("--type", "type_", default="ClusterIP")
@click.option("--name", default=None)
@click.option("--protocol", default="TCP")
@click.option("-n", "--namespace", default="default")
@click.pass_context
def expose(ctx: click.Context, words: tuple[str, ...], port: str, target_port: str | None, type_: str,
           name: str | None, protocol: str, namespace: str) -> None:
    """Create a Service for a Deployment, ReplicaSet, StatefulSet, Pod or Service (kubectl expose)."""
    from netk8s.cli.main import kind_and_name

    info, target = kind_and_name(words)
    if not target:
        raise ValidationError("expose: give KIND NAME")
    store = open_lab_store(ctx)
    try:
        src = store.try_get(info.kind, namespace, target)
    finally:
        store.close()
    if src is None:
        raise NotFound(f'Error from server (NotFound): {info.plural} "{target}" not found')
    if info.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        sel = (src["spec"].get("selector") or {}).get("matchLabels") or {}
        if not sel:
            raise ValidationError(f"{info.kind.lower()}/{target}: selector has no matchLabels; expose cannot use it")
    elif info.kind == "Pod":
        sel = src["metadata"].get("labels") or {}
        if not sel:
            raise ValidationError(f"pod/{target}: has no labels; expose needs them for the selector")
    elif info.kind == "Service":
        sel = src["spec"].get("selector") or {}
    else:
        raise ValidationError(f"expose: cannot expose a {info.kind}")
    p = parse_port(port, "--port")
    tp: int | str = p if target_port is None else (int(target_port) if target_port.isdigit() else target_port)
    svc = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name or target, "namespace": namespace,
                     "labels": dict(src["metadata"].get("labels") or {})},
        "spec": {"type": type_, "selector": dict(sel),
                 "ports": [{"port": p, "protocol": protocol.upper(), "targetPort": tp}]},
    }
    apply_new(ctx, svc, "exposed")


@cli.group("create")
def create() -> None:
    """Create objects from the command line."""


@create.group("service")
def create_service() -> None:
    """Create a Service: clusterip, nodeport, loadbalancer, externalname."""


def service_from_flags(name: str, type_: str, tcp: tuple[str, ...], node_port: int | None, namespace: str,
                       cluster_ip: str | None = None) -> dict:
    ports = []
    for spec in tcp:
        port, _, target = spec.partition(":")
        p = parse_port(port, "--tcp")
        t = parse_port(target, "--tcp") if target else p
        entry: dict = {"name": f"{p}-{t}", "port": p, "protocol": "TCP", "targetPort": t}
        if node_port is not None and type_ == "NodePort":
            entry["nodePort"] = node_port
        ports.append(entry)
    spec: dict = {"type": type_, "selector": {"app": name}, "ports": ports}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}}, "spec": spec}


def _svc_command(type_: str):  # type: ignore[no-untyped-def]
    @click.argument("name")
    @click.option("--tcp", multiple=True, required=type_ != "ClusterIP" or False)
    @click.option("--node-port", type=int, default=None, hidden=type_ != "NodePort")
    @click.option("--clusterip", "cluster_ip", default=None, hidden=type_ != "ClusterIP")
    @click.option("-n", "--namespace", default="default")
    @click.pass_context
    def command(ctx: click.Context, name: str, tcp: tuple[str, ...], node_port: int | None, cluster_ip: str | None,
                namespace: str) -> None:
        if not tcp and cluster_ip != "None":
            raise ValidationError("--tcp: at least one port is required, e.g. --tcp=80:8080")
        apply_new(ctx, service_from_flags(name, type_, tcp, node_port, namespace, cluster_ip), "created")

    return command


create_service.command("clusterip", help="Create a ClusterIP Service.")(_svc_command("ClusterIP"))
create_service.command("nodeport", help="Create a NodePort Service.")(_svc_command("NodePort"))
create_service.command("loadbalancer", help="Create a LoadBalancer Service.")(_svc_command("LoadBalancer"))


@create_service.command("externalname")
@click.argument("name")
@click.option("--external-name", required=True)
@click.option("-n", "--namespace", default="default")
@click.pass_context
def create_externalname(ctx: click.Context, name: str, external_name: str, namespace: str) -> None:
    """Create an ExternalName Service (a DNS CNAME, no virtual IP)."""
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
           "spec": {"type": "ExternalName", "externalName": external_name}}
    apply_new(ctx, svc, "created")


@cli.command("rules")
@click.option("--node", default=None, help="One node (default: every node).")
@click.option("--service", default=None, help="NS/NAME (or NAME in default).")
@click.pass_context
def rules(ctx: click.Context, node: str | None, service: str | None) -> None:
    """The programmed proxy rules of each node, with packet counters (how traffic actually spread)."""
    from netk8s.dataplane.netns import run_in_netns
    from netk8s.lab.manager import load_lab
    from netk8s.model import naming
    from netk8s.proxy.model import build_state
    from netk8s.proxy.rules_view import format_rules

    need_root()
    info = load_lab(lab_of(ctx))
    nodes = info.node_names()
    if node is not None and node not in nodes:
        raise ValidationError(f"--node: {node!r} is not a node of lab {info.name!r} ({', '.join(nodes)})")
    if service and "/" not in service:
        service = f"default/{service}"
    store = open_lab_store(ctx)
    try:
        services, _ = store.list("Service")
        slices, _ = store.list("EndpointSlice")
    finally:
        store.close()
    if service and not any(f"{s['metadata']['namespace']}/{s['metadata']['name']}" == service for s in services):
        raise NotFound(f'Error from server (NotFound): services "{service}" not found')
    nft = info.proxy_mode == "nftables"
    dumper = "netk8s.dataplane.nftables" if nft else "netk8s.dataplane.iptables"
    for n in [node] if node else nodes:
        argv = [sys.executable, "-m", dumper, "dump", "--json"]
        if info.runtime(n) == "vm":  # the same dumper, run in the guest through its control server
            from netk8s.lab import vmnodes

            r = vmnodes.run(info.name, n, argv, timeout=300)
            rc, out, err = (1 if r.rc is None else r.rc), r.stdout, r.stderr
        else:
            p = run_in_netns(naming.node_netns(info.name, n), argv, timeout=60, check=False)
            rc, out, err = p.returncode, p.stdout, p.stderr
        if rc != 0:
            raise NetK8sError(f"rules: reading the rules of {n} failed: {err.strip().splitlines()[-1:]}")
        click.echo(f"== {n} ({info.proxy_mode} mode)")
        if nft:
            from netk8s.proxy.nft_rules_view import format_nft_rules

            text = format_nft_rules(json.loads(out), service, build_state(services, slices, n))
        else:
            text = format_rules(json.loads(out), service, build_state(services, slices, n))
        click.echo(text, nl=not text.endswith("\n"))


