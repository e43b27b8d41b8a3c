"""`netk8s policy why POD_A POD_B PORT`: the NetworkPolicy verdict of one connection, from the pure model."""

from __future__ import annotations

import click

from netk8s.cli.main import cli, lab_of, open_lab_store
from netk8s.errors import NotFound, ValidationError
from netk8s.policy.model import build


@cli.group("policy")
def policy() -> None:
    """Explain NetworkPolicy decisions."""


def _pod_key(word: str, namespace: str) -> str:
    return word if "/" in word else f"{namespace}/{word}"


@policy.command("why")
@click.argument("src")
@click.argument("dst")
@click.argument("port")
@click.option("--proto", "proto", default="tcp", type=click.Choice(["tcp", "udp", "sctp"], case_sensitive=False))
@click.option("-n", "--namespace", default="default", help="Namespace of pods given without NS/.")
@click.pass_context
def why(ctx: click.Context, src: str, dst: str, port: str, proto: str, namespace: str) -> None:
    """May a new connection from pod SRC (or an IP) reach pod DST on PORT? Pods as NAME or NS/NAME."""
    try:
        number = int(port)
    except ValueError:
        raise ValidationError(f"PORT: must be a number between 1 and 65535, got {port!r}") from None
    if not 1 <= number <= 65535:
        raise ValidationError(f"PORT: must be a number between 1 and 65535, got {number}")
    store = open_lab_store(ctx)
    try:
        objs = {k: store.list(k)[0] for k in ("Pod", "NetworkPolicy", "Namespace", "Node")}
    finally:
        store.close()
    model = build(objs["Pod"], objs["NetworkPolicy"], objs["Namespace"], objs["Node"])

    def address(word: str, what: str) -> str:
        key = _pod_key(word, namespace)
        if key in model.pods:
            return model.pods[key].ip
        if any(c.isdigit() for c in word) and word.count(".") == 3:
            return word
        raise NotFound(f'{what}: pod "{key}" not found or has no IP yet')

    verdict = model.check(address(src, "SRC"), address(dst, "DST"), number, proto.upper())
    click.echo(str(verdict))


def _read_tables(ctx: click.Context) -> tuple[list[dict], str]:
    """Each node's `ip netk8s-policy` table as nft JSON (read in the node's namespace), or an error."""
    import json
    import os
    import sys

    from netk8s.dataplane.netns import run_in_netns
    from netk8s.lab.manager import load_lab
    from netk8s.model import naming
    from netk8s.policy.nftables import TABLE

    if os.geteuid() != 0:
        return [], "reading the nodes' kernels needs root"
    info = load_lab(lab_of(ctx))
    tables = []
    for node in info.node_names():
        p = run_in_netns(naming.node_netns(info.name, node),
                         [sys.executable, "-m", "netk8s.dataplane.nftables", "dump", "--json", "--table", TABLE],
                         timeout=60, check=False)
        if p.returncode != 0:
            return [], f"reading {node} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}"
        tables.append(json.loads(p.stdout)["json"])
    return tables, ""


def policy_related(ctx: click.Context, np: dict, pods: list[dict]) -> dict[str, list[dict]]:
    """What `describe networkpolicy` adds to kubectl's text: the pods it selects and its counters."""
    from dataclasses import asdict

    from netk8s.model.labels import selector_from_label_selector
    from netk8s.policy.counters import policy_counters

    selects = selector_from_label_selector((np.get("spec") or {}).get("podSelector") or {})
    selected = [p for p in pods if selects.matches((p.get("metadata") or {}).get("labels") or {})
                and not (p.get("metadata") or {}).get("deletionTimestamp")]
    tables, error = _read_tables(ctx)
    if error:
        return {"Pod": selected, "PolicyCounters": [{"error": error}]}
    key = f"{np['metadata'].get('namespace') or 'default'}/{np['metadata']['name']}"
    return {"Pod": selected, "PolicyCounters": [asdict(policy_counters(tables, key))]}
