"""`netk8s policy why POD_A POD_B PORT` (the verdict of one connection, from the pure model, and whether
the nodes' kernels agree) and `netk8s policy drops` (the packets policy dropped and logged)."""

from __future__ import annotations

import click

from netk8s.cli.main import cli, lab_of, open_lab_store
from netk8s.errors import NetK8sError, NotFound, UsageError, ValidationError
from netk8s.policy.model import LOG_DROPS_ANNOTATION, Model, Verdict, build


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
@click.option("--kernel/--no-kernel", default=True,
              help="Read the deciding rules' counters on the nodes (root; default) or explain from the model only.")
@click.option("--probe", is_flag=True,
              help="Send one real connection from SRC (a pod) and check the deciding rules' counters moved.")
@click.option("-o", "--output", default="text", type=click.Choice(["text", "json"]))
@click.pass_context
def why(ctx: click.Context, src: str, dst: str, port: str, proto: str, namespace: str, kernel: bool, probe: bool,
        output: str) -> None:
    """May a new connection from pod SRC (or an IP) reach pod DST on PORT? Pods as NAME or NS/NAME."""
    try:
        number = int(port)
    except ValueError:
        raise ValidationError(f"PORT: must be a number between 1 and 65535, got {port!r}") from None
    if not 1 <= number <= 65535:
        raise ValidationError(f"PORT: must be a number between 1 and 65535, got {number}")
    if probe and proto.lower() == "sctp":
        raise UsageError("--probe: sends TCP or UDP only, not SCTP")
    if probe and not kernel:
        raise UsageError("--probe: needs the kernel's counters (drop --no-kernel)")
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

    src_ip, dst_ip = address(src, "SRC"), address(dst, "DST")
    verdict = model.check(src_ip, dst_ip, number, proto.upper())
    src_pod = model.pod_by_ip(src_ip)
    if probe and src_pod is None:
        raise UsageError(f"--probe: SRC must be a pod to send from, got {src!r}")
    report: dict = {"allowed": verdict.allowed, "reasons": list(verdict.reasons)}
    if kernel:
        uid = next((p["metadata"].get("uid", "") for p in objs["Pod"] if src_pod is not None
                    and f"{p['metadata'].get('namespace') or 'default'}/{p['metadata']['name']}" == src_pod.key), "")
        report.update(_kernel_report(ctx, model, verdict, uid if probe else "", dst_ip, number, proto.lower()))
    if output == "json":
        import json

        click.echo(json.dumps(report, indent=2))
        return
    click.echo(str(verdict))
    if not kernel:
        return
    for line in report["kernel"]:
        click.echo(f"kernel: {line['text']}")
    if "probe" in report:
        got = report["probe"]
        click.echo(f"probe: {'answered' if got.get('ok') else 'no answer (' + str(got.get('error')) + ')'}")
    if report.get("agrees") is not None:
        click.echo(f"kernel {'agrees' if report['agrees'] else 'DISAGREES'}"
                   + (" (the probe moved every deciding counter)" if probe and report["agrees"] else ""))


def _kernel_report(ctx: click.Context, model: Model, verdict: Verdict, probe_from_uid: str, dst_ip: str, port: int,
                   proto: str) -> dict:
    """Each step's KernelCheck, reading the tables of the nodes the steps ran on (before/after a probe)."""
    import os

    from netk8s.dataplane.netns import run_in_netns_thread
    from netk8s.dataplane.tracing import nft_list_json, probe
    from netk8s.lab.manager import load_lab
    from netk8s.model import naming
    from netk8s.policy.counters import check_step
    from netk8s.policy.nftables import TABLE

    if not verdict.steps:
        return {"kernel": [{"text": "no chain sees it (loopback inside the pod)", "agrees": True}], "agrees": True}
    if os.geteuid() != 0:
        return {"kernel": [{"text": "not read: reading the nodes' kernels needs root (or use --no-kernel)",
                            "agrees": None}], "agrees": None}
    info = load_lab(lab_of(ctx))

    def tables() -> dict[str, dict]:
        out = {}
        for node in sorted({s.node for s in verdict.steps if s.node}):
            try:
                out[node] = nft_list_json(naming.node_netns(info.name, node), TABLE)
            except NetK8sError as exc:  # a node not in a namespace here (a VM), or not up
                unread[node] = str(exc)
        return out

    unread: dict[str, str] = {}
    before = tables()
    if unread:
        return {"kernel": [{"node": n, "text": f"cannot read {n}: {e}", "agrees": None} for n, e in unread.items()],
                "agrees": None}
    result: dict = {}
    after = None
    if probe_from_uid:
        result["probe"] = run_in_netns_thread(naming.pod_netns(info.name, probe_from_uid),
                                              lambda: probe(dst_ip, port, proto, 0, "/", 2.0))
        after = tables()
    checks = [check_step(s, before.get(s.node, {}), None if after is None else after.get(s.node, {}))
              for s in verdict.steps]
    result["kernel"] = [{"direction": c.step.direction, "pod": c.step.pod, "node": c.step.node, "chain": c.chain,
                         "outcome": c.step.outcome, "agrees": c.agrees, "text": c.text, "packets": c.packets,
                         "moved": c.moved} for c in checks]
    result["agrees"] = all(c.agrees for c in checks)
    return result


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


def _drop_files(lab: str, nodes: list[str]) -> list:  # list[Path]
    from netk8s.config import LabPaths
    from netk8s.policy.droplog import FILE_NAME

    paths = LabPaths(lab)
    return [paths.node_dir(n) / FILE_NAME for n in nodes]


def _read_from(path, offset: int) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """What was appended to `path` after `offset` (whole lines only), and the new offset."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < offset:  # the agent started a new file
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return "", 0
    end = data.rfind(b"\n") + 1
    return data[:end].decode(errors="replace"), offset + end


@policy.command("drops")
@click.option("--node", default=None, help="Only this node's drops (default: every node).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing drops as the nodes log them (Ctrl-C ends).")
@click.option("-n", "--namespace", default=None, help="Only drops from or to pods of this namespace.")
@click.option("--tail", default=50, type=int, help="How many of the latest drops to print first (-1: all).")
@click.option("-o", "--output", default="text", type=click.Choice(["text", "json"]))
@click.pass_context
def drops(ctx: click.Context, node: str | None, follow: bool, namespace: str | None, tail: int, output: str) -> None:
    """The packets NetworkPolicy dropped in pods of namespaces annotated netk8s.io/log-drops=true:
    the 5-tuple, the pods and the policies that isolate the pod whose chain dropped it."""
    import time

    from netk8s.lab.manager import load_lab
    from netk8s.policy.droplog import Drop, format_drop, parse_lines

    info = load_lab(lab_of(ctx))
    nodes = info.node_names()
    if node is not None and node not in nodes:
        raise ValidationError(f"--node: no node {node!r} in lab {info.name} (nodes: {', '.join(nodes)})")
    files = _drop_files(info.name, [node] if node else nodes)

    def keep(d: Drop) -> bool:
        return namespace is None or any(p.split("/", 1)[0] == namespace for p in (d.src_pod, d.dst_pod, d.pod) if p)

    def show(items: list[Drop]) -> None:
        for d in sorted(items, key=lambda d: d.time):
            click.echo(d.to_json() if output == "json" else format_drop(d))

    offsets = []
    first: list[Drop] = []
    for path in files:
        old, _ = _read_from(path.with_name(path.name + ".1"), 0)
        text, end = _read_from(path, 0)
        offsets.append(end)
        first += [d for d in parse_lines(old + text) if keep(d)]
    first.sort(key=lambda d: d.time)
    show(first if tail < 0 else first[len(first) - tail:] if tail else [])
    if not first and not follow:
        _hint_no_drops(ctx, namespace)
    while follow:
        try:
            time.sleep(0.3)  # tail -f: poll the files the agents append to
            new: list[Drop] = []
            for i, path in enumerate(files):
                text, offsets[i] = _read_from(path, offsets[i])
                new += [d for d in parse_lines(text) if keep(d)]
            show(new)
        except KeyboardInterrupt:
            return


def _hint_no_drops(ctx: click.Context, namespace: str | None) -> None:
    store = open_lab_store(ctx)
    try:
        logging = [ns["metadata"]["name"] for ns in store.list("Namespace")[0]
                   if str((ns["metadata"].get("annotations") or {}).get(LOG_DROPS_ANNOTATION, "")).lower() == "true"]
    finally:
        store.close()
    if not logging:
        click.echo(f"no drops logged: no namespace logs them (kubectl annotate namespace NS {LOG_DROPS_ANNOTATION}=true)",
                   err=True)
    else:
        click.echo(f"no drops logged (namespaces logging drops: {', '.join(sorted(logging))})", err=True)
