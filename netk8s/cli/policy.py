"""`netk8s policy why POD_A POD_B PORT`: the NetworkPolicy verdict of one connection, from the pure model."""

from __future__ import annotations

import click

from netk8s.cli.main import cli, open_lab_store
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
