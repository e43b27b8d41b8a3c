"""`trace` and `flows`: follow one real request hop by hop; list connections through Services (parse, call, print)."""

from __future__ import annotations

import json
import time

import click

from netk8s.cli.main import cli, lab_of, need_root, open_lab_store
from netk8s.errors import ValidationError


def _cluster(ctx: click.Context):  # type: ignore[no-untyped-def]
    from netk8s.lab.manager import load_lab
    from netk8s.trace.live import Cluster

    info = load_lab(lab_of(ctx))
    store = open_lab_store(ctx)
    try:
        lists = [store.list(kind)[0] for kind in ("Pod", "Service", "EndpointSlice", "Node")]
    finally:
        store.close()
    return Cluster(info.name, info.proxy_mode, info.node_names(), *lists, vm_nodes=info.vm_nodes(), store_url=info.store)


@cli.command("trace")
@click.argument("source", metavar="FROM")
@click.argument("target", metavar="TO")
@click.option("-n", "--namespace", default="default", help="Namespace of FROM (and of TO when a pod).")
@click.option("--port", type=int, default=None, help="Destination port (default: the Service's first port).")
@click.option("--proto", type=click.Choice(["tcp", "udp"]), default="tcp")
@click.option("-o", "--output", type=click.Choice(["text", "json", "svg"]), default="text")
@click.option("--dry-run", is_flag=True, help="Trace over the node's live rules without sending anything.")
@click.pass_context
def trace(ctx: click.Context, source: str, target: str, namespace: str, port: int | None, proto: str, output: str,
          dry_run: bool) -> None:
    """Send one real request FROM (pod/NAME or external) TO (a Service name, IP[:PORT], pod/NAME or
    NODE_IP:NODEPORT) and show each hop and the rule that decided it."""
    from netk8s.trace import live
    from netk8s.trace.model import render_svg, render_text

    need_root()
    if port is not None and not 0 < port < 65536:
        raise ValidationError(f"--port: must be 1-65535, got {port}")
    if source != "external" and "/" in source and source.split("/", 1)[0] not in ("pod", "pods", "po"):
        raise ValidationError(f"FROM: must be pod/NAME or external, got {source!r}")
    result = live.trace(_cluster(ctx), source, target, namespace=namespace, port=port, proto=proto, dry_run=dry_run)
    if output == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif output == "svg":
        click.echo(render_svg(result), nl=False)
    else:
        click.echo(render_text(result), nl=False)
    if result.verdict not in ("delivered", "dry-run"):
        ctx.exit(3)


@cli.command("flows")
@click.option("--follow", "-f", is_flag=True, help="Keep listing (every second) until interrupted.")
@click.option("--node", default=None)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def flows(ctx: click.Context, follow: bool, node: str | None, output: str) -> None:
    """Connections through Services from conntrack: client pod, Service, endpoint pod, node, state, bytes."""
    from dataclasses import asdict

    from netk8s.trace import live
    from netk8s.trace.model import render_flows

    need_root()
    while True:
        c = _cluster(ctx)
        if node is not None and node not in c.nodes:
            raise ValidationError(f"--node: {node!r} is not a node of lab {c.lab!r} ({', '.join(c.nodes)})")
        found = live.flows(c, [node] if node else c.nodes)
        if output == "json":
            click.echo(json.dumps([asdict(f) for f in found], indent=2))
        else:
            click.echo(render_flows(found), nl=False)
        if not follow:
            return
        time.sleep(1.0)
