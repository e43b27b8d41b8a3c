"""The `netk8s` command: kubectl habits over the lab's store, plus `lab` and `clean`."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import click

from netk8s import config
from netk8s.cli import ops
from netk8s.errors import LabError, NetK8sError, NotFound, UsageError, ValidationError
from netk8s.model.kinds import KindInfo, resolve_kind

CONTEXT = {"help_option_names": ["-h", "--help"]}


class Group(click.Group):
    """Maps NetK8sError to a one-line message and its exit code (1 user error, 2 usage)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NetK8sError as e:
            click.echo(f"error: {e.message}" if not e.message.startswith("error:") else e.message, err=True)
            if e.hint:
                click.echo(f"hint: {e.hint}", err=True)
            ctx.exit(e.exit_code)


def lab_of(ctx: click.Context) -> str:
    return ctx.find_root().params.get("lab") or config.lab_name()


def open_lab_store(ctx: click.Context):  # type: ignore[no-untyped-def]
    from netk8s.lab.manager import load_lab
    from netk8s.store.factory import open_store

    info = load_lab(lab_of(ctx))
    return open_store(info.store)


def need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("this command needs root (network namespaces)", hint="run it with sudo")


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise ValidationError(f"--timeout: invalid duration {text!r} (e.g. 60s, 2m)")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def kind_and_name(words: tuple[str, ...]) -> tuple[KindInfo, str | None]:
    if not words:
        raise UsageError("you must specify the type of resource to get")
    first = words[0]
    if "/" in first:
        k, n = first.split("/", 1)
        return resolve_kind(k), n
    return resolve_kind(first), (words[1] if len(words) > 1 else None)


@click.group(cls=Group, context_settings=CONTEXT)
@click.option("--lab", envvar="NETK8S_LAB", default=None, help="Lab to talk to (default: netk8s).")
@click.version_option(package_name="netk8s")
def cli(lab: str | None) -> None:
    """netk8s: Kubernetes Services and networking on the Linux kernel."""


# ----------------------------------------------------------------------------------------------- lab
@cli.group(cls=Group)
def lab() -> None:
    """Build, inspect and remove the one-machine lab."""


@lab.command("up")
@click.option("--name", default=None, help="Lab name (default: --lab, NETK8S_LAB or netk8s).")
@click.option("--nodes", default=3, show_default=True, type=int)
@click.option("--proxy-mode", default="iptables", show_default=True,
              help="iptables, nftables, userspace, or ipvs (ipvs needs every node to be a VM: its own kernel).")
@click.option("--overlay", default="vxlan", show_default=True, help="vxlan or host-gw.")
@click.option("--store", "store_kind", default="sqlite", show_default=True, help="sqlite or etcd.")
@click.option("--node-runtime", default="netns", show_default=True,
              help="netns (a network namespace of this kernel) or vm (a QEMU guest on its own kernel, KVM "
                   "where it works, else software emulation), for every node, or one per node, comma-separated "
                   "from node1: e.g. netns,vm. See docs/vm-nodes.md.")
@click.option("--timeout", default="90s", show_default=True,
              help="How long to wait for each stage (VM nodes get at least 10m to boot and be Ready).")
@click.option("--dns/--no-dns", default=True, show_default=True,
              help="Deploy the cluster DNS (kube-system/kube-dns behind 10.96.0.10).")
@click.option("--ingress/--no-ingress", default=True, show_default=True,
              help="Deploy ingress-nginx (ingress-nginx/ingress-nginx-controller, a LoadBalancer IP, class nginx).")
@click.pass_context
def lab_up(ctx: click.Context, name: str | None, nodes: int, proxy_mode: str, overlay: str, store_kind: str,
           node_runtime: str, timeout: str, dns: bool, ingress: bool) -> None:
    """Create the underlay, N nodes (namespaces or QEMU VMs) and the external client; start the agents."""
    from netk8s.lab.manager import lab_up as up

    need_root()
    name = name or lab_of(ctx)
    t0 = time.monotonic()
    up(name, nodes, proxy_mode, overlay, store_kind, progress=lambda s: click.echo(f"  {s}"),
       timeout=parse_duration(timeout), dns=dns, ingress=ingress, node_runtime=node_runtime)
    click.echo(f"ready in {time.monotonic() - t0:.1f}s. Try: netk8s --lab {name} get nodes -o wide")


@lab.command("down")
@click.option("--name", default=None)
@click.pass_context
def lab_down(ctx: click.Context, name: str | None) -> None:
    """Stop every process of the lab and remove everything it created."""
    from netk8s.lab.manager import lab_down as down

    need_root()
    name = name or lab_of(ctx)
    down(name)
    click.echo(f"lab {name!r} removed")


@lab.command("status")
@click.option("--name", default=None)
@click.pass_context
def lab_status(ctx: click.Context, name: str | None) -> None:
    """Show the lab's nodes, processes and namespaces."""
    from netk8s.lab import procs
    from netk8s.lab.manager import load_lab, read_pid

    name = name or lab_of(ctx)
    info = load_lab(name)
    click.echo(f"lab {info.name}: {info.nodes} nodes, overlay {info.overlay}, proxy {info.proxy_mode}, "
               f"store {info.backend or info.store}")
    if info.vm_nodes():
        click.echo(f"VM nodes (QEMU guests): {', '.join(info.vm_nodes())}")
    if info.api_port:
        click.echo(f"API server: https://127.0.0.1:{info.api_port} (host), https://192.168.56.10:6443 (underlay); "
                   f"kubeconfig {config.LabPaths(name).kubeconfig}")
    etcd = ["etcd"] if info.backend.startswith("etcd://") else []
    from netk8s.lab.manager import node_roles

    for role in etcd + ["apiserver", "controller"] + node_roles(info):
        pid = read_pid(name, role)
        state = "running" if pid and procs.alive(pid) else "NOT RUNNING"
        click.echo(f"  {role:<16} pid {pid}  {state}")


@lab.command("kubeconfig")
@click.option("--name", default=None, help="Lab name (default: --lab, NETK8S_LAB or netk8s).")
@click.option("--merge", is_flag=True, help="Merge into $KUBECONFIG (its first file) or ~/.kube/config "
              "and make context netk8s-LAB current, like `kind export kubeconfig`.")
@click.pass_context
def lab_kubeconfig(ctx: click.Context, name: str | None, merge: bool) -> None:
    """Print the lab's admin kubeconfig (context netk8s-LAB, server on 127.0.0.1), or merge it."""
    from netk8s.lab.manager import load_lab
    from netk8s.store import kubeconfig

    name = name or lab_of(ctx)
    load_lab(name)
    config_ = kubeconfig.load(config.LabPaths(name).kubeconfig)
    if not merge:
        click.echo(kubeconfig.dump(config_), nl=False)
        return
    target = kubeconfig.default_path()
    kubeconfig.merge_into(target, config_)
    click.echo(f'Set kubectl context to "{kubeconfig.context_name(name)}" in {target}')


@lab.command("restart")
@click.argument("role", type=click.Choice(["apiserver", "etcd"]))
@click.option("--name", default=None, help="Lab name (default: --lab, NETK8S_LAB or netk8s).")
@click.option("--timeout", default="60s", show_default=True)
@click.pass_context
def lab_restart(ctx: click.Context, role: str, name: str | None, timeout: str) -> None:
    """Restart a control-plane process with the same argv (its clients reconnect and resume watching)."""
    from netk8s.lab.manager import restart_apiserver, restart_etcd

    need_root()
    name = name or lab_of(ctx)
    restart = restart_etcd if role == "etcd" else restart_apiserver
    pid = restart(name, timeout=parse_duration(timeout))
    click.echo(f"{role} restarted (pid {pid})")


@lab.command("set-proxy-mode")
@click.argument("mode")
@click.option("--name", default=None, help="Lab name (default: --lab, NETK8S_LAB or netk8s).")
@click.option("--timeout", default="90s", show_default=True)
@click.pass_context
def lab_set_proxy_mode(ctx: click.Context, mode: str, name: str | None, timeout: str) -> None:
    """Switch a running lab's kube-proxy mode (iptables, nftables, userspace; ipvs when every node is a
    VM node); each agent restarts and removes the previous mode's rules, as kube-proxy --cleanup."""
    from netk8s.lab.manager import set_proxy_mode

    need_root()
    name = name or lab_of(ctx)
    set_proxy_mode(name, mode, timeout=parse_duration(timeout), progress=lambda s: click.echo(f"  {s}"))
    click.echo(f"lab {name!r} now runs proxy mode {mode}")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("where")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def lab_exec(ctx: click.Context, where: str, argv: tuple[str, ...]) -> None:
    """Run a command in a node (node1, node2, ...: its namespace, or inside a VM node's guest) or in the
    external client. In a VM node the command's stdin is what is piped in (no terminal)."""
    from netk8s.dataplane.netns import run_in_netns
    from netk8s.lab.manager import load_lab, node_shell_env
    from netk8s.model import naming

    need_root()
    info = load_lab(lab_of(ctx))
    if where not in ("external", *info.node_names()):
        raise ValidationError(f"NODE: {where!r} is not a node of lab {info.name!r} "
                              f"(nodes: {', '.join(info.node_names())}, or external)")
    if where != "external" and info.runtime(where) == "vm":
        from netk8s.lab import vmnodes

        stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
        r = vmnodes.run(info.name, where, argv, stdin=stdin)
        click.echo(r.stdout, nl=False)
        click.echo(r.stderr, nl=False, err=True)
        ctx.exit(124 if r.rc is None else r.rc)
    ns = naming.external_netns(info.name) if where == "external" else naming.node_netns(info.name, where)
    env = dict(os.environ)
    if where != "external":
        env.update(node_shell_env(info.name))
    ctx.exit(run_in_netns(ns, list(argv), timeout=None, check=False, capture=False, env=env).returncode)


@lab.command("logs")
@click.argument("node")
@click.pass_context
def lab_logs(ctx: click.Context, node: str) -> None:
    """A node's logs: a VM node's serial console and its agent's log (read in the guest); a namespace
    node's agent log."""
    from netk8s.lab.manager import load_lab

    need_root()
    info = load_lab(lab_of(ctx))
    if node not in info.node_names():
        raise ValidationError(f"NODE: {node!r} is not a node of lab {info.name!r} (nodes: {', '.join(info.node_names())})")
    if info.runtime(node) == "vm":
        from netk8s.lab import vmnodes

        click.echo(vmnodes.logs(info.name, node), nl=False)
        return
    path = config.LabPaths(info.name).logs / f"agent-{node}.log"
    try:
        click.echo(path.read_text(errors="replace"), nl=False)
    except FileNotFoundError:
        raise LabError(f"NODE: {node} has no agent log ({path})") from None


@cli.command("clean")
@click.option("--name", default=None, help="Only this lab's traces (default: every netk8s trace).")
def clean(name: str | None) -> None:
    """Remove every netk8s namespace, process and state directory, even with no state."""
    from netk8s.lab.manager import clean_all
    from netk8s.model.naming import check_lab_name

    need_root()
    removed = clean_all(check_lab_name(name) if name else None)
    click.echo(f"removed {len(removed)} namespaces")


# ----------------------------------------------------------------------------------------- objects
@cli.command("apply")
@click.option("-f", "--filename", "files", multiple=True, required=True, help="File, directory or -")
@click.pass_context
def apply(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Create or update objects from Kubernetes YAML, all or nothing."""
    from netk8s.cli.manifests import load_documents
    from netk8s.model.validate import validate_batch

    stdin_text = sys.stdin.read() if "-" in files else None
    warnings: list[str] = []
    objs = validate_batch(load_documents(list(files), stdin_text), warnings)
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)
    if not objs:
        raise ValidationError("error: no objects passed to apply")
    store = open_lab_store(ctx)
    try:
        for r in ops.apply_objects(store, objs):
            click.echo(f"{ops.kubectl_name(r.obj)} {r.action}")
    finally:
        store.close()


@cli.command("get")
@click.argument("words", nargs=-1)
@click.option("-n", "--namespace", default=None)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-l", "--selector", default=None)
@click.option("-o", "--output", default=None)
@click.option("--show-labels", is_flag=True, hidden=True)
@click.option("--show-kind", is_flag=True, hidden=True)
@click.pass_context
def get(ctx: click.Context, words: tuple[str, ...], namespace: str | None, all_namespaces: bool,
        selector: str | None, output: str | None, show_labels: bool, show_kind: bool = False) -> None:
    """List objects like kubectl get."""
    from netk8s.cli import printers
    from netk8s.model.labels import parse_selector

    if words and "," in words[0] and "/" not in words[0]:
        kinds = [w for w in words[0].split(",") if w]
        for i, k in enumerate(kinds):
            ctx.invoke(get, words=(k, *words[1:]), namespace=namespace, all_namespaces=all_namespaces,
                       selector=selector, output=output, show_labels=show_labels, show_kind=True)
            if i < len(kinds) - 1 and output in (None, "wide"):
                click.echo("")
        return
    info, name = kind_and_name(words)
    if output not in (None, "wide", "yaml", "json", "name"):
        raise UsageError(f"-o: unsupported output format {output!r} (wide, yaml, json, name)")
    sel = parse_selector(selector) if selector else None
    ns = "" if not info.namespaced else (None if all_namespaces else (namespace or "default"))
    store = open_lab_store(ctx)
    try:
        if name:
            obj = store.try_get(info.kind, ns or "", name)
            if obj is None:
                raise NotFound(f'Error from server (NotFound): {info.plural} "{name}" not found')
            objs = [obj]
        else:
            objs, _ = store.list(info.kind, ns)
            objs = ops.select(objs, sel)
    finally:
        store.close()
    if output == "json":
        click.echo(printers.render_json(objs[0] if name else objs))
    elif output == "yaml":
        text = printers.render_yaml(objs[0] if name else objs)
        click.echo(text, nl=not text.endswith("\n"))
    elif output == "name":
        if objs:
            click.echo(printers.render_name(objs))
    elif not objs:
        where = "" if not info.namespaced or all_namespaces else f" in {ns} namespace"
        click.echo(f"No resources found{where}.", err=True)
    else:
        table = printers.render_table(info.kind, objs, time.time(), wide=output == "wide",
                                      all_namespaces=bool(all_namespaces and info.namespaced),
                                      show_kind=show_kind)
        click.echo(table, nl=not table.endswith("\n"))


@cli.command("describe")
@click.argument("words", nargs=-1, required=True)
@click.option("-n", "--namespace", default="default")
@click.pass_context
def describe(ctx: click.Context, words: tuple[str, ...], namespace: str) -> None:
    """Show one object in detail, with related objects."""
    from netk8s.cli.describe import describe as render

    info, name = kind_and_name(words)
    if not name:
        raise UsageError("describe: give KIND NAME")
    ns = namespace if info.namespaced else ""
    store = open_lab_store(ctx)
    try:
        obj = store.try_get(info.kind, ns, name)
        if obj is None:
            raise NotFound(f'Error from server (NotFound): {info.plural} "{name}" not found')
        related: dict[str, list[dict]] = {}
        if info.kind == "Service":
            ep = store.try_get("Endpoints", ns, name)
            related["Endpoints"] = [ep] if ep else []
        if info.kind == "Node":
            pods, _ = store.list("Pod")
            related["Pod"] = [p for p in pods if (p.get("spec") or {}).get("nodeName") == name]
        if info.kind in ("Deployment",):
            related["ReplicaSet"], _ = store.list("ReplicaSet", ns)
        if info.kind in ("ReplicaSet", "StatefulSet"):
            related["Pod"], _ = store.list("Pod", ns)
        if info.kind == "NetworkPolicy":
            from netk8s.cli.policy import policy_related

            related.update(policy_related(ctx, obj, store.list("Pod", ns)[0]))
    finally:
        store.close()
    text = render(obj, related, time.time())
    click.echo(text, nl=not text.endswith("\n"))


@cli.command("delete")
@click.argument("words", nargs=-1)
@click.option("-f", "--filename", "files", multiple=True)
@click.option("-n", "--namespace", default="default")
@click.option("-l", "--selector", default=None)
@click.option("--grace-period", type=int, default=None)
@click.option("--wait/--no-wait", default=True)
@click.option("--timeout", default="120s")
@click.option("--ignore-not-found", is_flag=True)
@click.pass_context
def delete(ctx: click.Context, words: tuple[str, ...], files: tuple[str, ...], namespace: str,
           selector: str | None, grace_period: int | None, wait: bool, timeout: str, ignore_not_found: bool) -> None:
    """Delete objects by KIND NAME..., by -l selector, or by -f FILE."""
    from netk8s.cli.manifests import load_documents
    from netk8s.model.kinds import object_key
    from netk8s.model.labels import parse_selector

    targets: list[tuple[str, str, str]] = []
    store = open_lab_store(ctx)
    try:
        if files:
            stdin_text = sys.stdin.read() if "-" in files else None
            # like kubectl, delete -f needs only apiVersion/kind/metadata.name of each document
            for origin, obj in load_documents(list(files), stdin_text):
                if not isinstance(obj.get("kind"), str) or not (obj.get("metadata") or {}).get("name"):
                    raise ValidationError(f"{origin}: kind and metadata.name are required to delete")
                resolve_kind(obj["kind"])
                obj.setdefault("metadata", {}).setdefault("namespace", namespace)
                targets.append(object_key(obj))
        else:
            info, first = kind_and_name(words)
            ns = namespace if info.namespaced else ""
            names = [first] if first else []
            names += list(words[1:] if "/" not in words[0] and first else words[1:] if "/" in words[0] else [])
            names = list(dict.fromkeys(n for n in names if n))
            if selector:
                objs, _ = store.list(info.kind, ns)
                names += [o["metadata"]["name"] for o in ops.select(objs, parse_selector(selector))]
            if not names and not selector:
                raise UsageError("delete: give KIND NAME, -l SELECTOR or -f FILE")
            targets = [(info.kind, ns, n) for n in names]
        waiting = []
        for kind, ns, name in targets:
            try:
                obj = ops.delete_object(store, kind, ns, name, grace_period)
            except NotFound:
                if ignore_not_found:
                    continue
                raise NotFound(f'Error from server (NotFound): {resolve_kind(kind).plural} "{name}" not found') from None
            click.echo(f'{ops.kubectl_name(obj).split("/")[0]} "{name}" deleted')
            waiting.append((kind, ns, name, obj["metadata"]["uid"]))
        if wait and waiting:
            left = ops.wait_gone(store, waiting, parse_duration(timeout))
            if left:
                raise NetK8sError(f"timed out waiting for deletion of {', '.join(n for _, _, n, _ in left)}")
    finally:
        store.close()


@cli.command("scale")
@click.argument("words", nargs=-1, required=True)
@click.option("--replicas", type=int, required=True)
@click.option("-n", "--namespace", default="default")
@click.pass_context
def scale(ctx: click.Context, words: tuple[str, ...], replicas: int, namespace: str) -> None:
    """Set the replicas of a Deployment, ReplicaSet or StatefulSet."""
    from netk8s.store.base import mutate

    info, name = kind_and_name(words)
    if info.kind not in ("Deployment", "ReplicaSet", "StatefulSet"):
        raise ValidationError(f"scale: {info.plural} cannot be scaled")
    if not name:
        raise UsageError("scale: give a name")
    if replicas < 0:
        raise ValidationError(f"--replicas: must be >= 0, got {replicas}")
    store = open_lab_store(ctx)
    try:
        if store.try_get(info.kind, namespace, name) is None:
            raise NotFound(f'Error from server (NotFound): {info.plural} "{name}" not found')

        def upd(o: dict) -> dict:
            o.setdefault("spec", {})["replicas"] = replicas
            return o

        obj = mutate(store, info.kind, namespace, name, upd) or store.get(info.kind, namespace, name)
    finally:
        store.close()
    click.echo(f"{ops.kubectl_name(obj)} scaled")


def find_pod(store, namespace: str, name: str) -> dict:  # type: ignore[no-untyped-def]
    if "/" in name:
        kind, name = name.split("/", 1)
        if resolve_kind(kind).kind != "Pod":
            raise ValidationError(f"{kind}: only pods are supported here")
    pod = store.try_get("Pod", namespace, name)
    if pod is None:
        raise NotFound(f'Error from server (NotFound): pods "{name}" not found')
    return pod


def pod_runtime(lab: str, node: str):  # type: ignore[no-untyped-def]
    from netk8s.config import LabPaths
    from netk8s.node.runtime import PodRuntime

    return PodRuntime(LabPaths(lab).node_dir(node) / "pods", lab)


@cli.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-n", "--namespace", default="default")
@click.option("-c", "--container", default=None)
@click.option("-i", "--stdin", "interactive", is_flag=True)
@click.option("-t", "--tty", is_flag=True)
@click.argument("pod")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, namespace: str, container: str | None, interactive: bool, tty: bool, pod: str,
          argv: tuple[str, ...]) -> None:
    """Run a command inside a pod (its network, hostname, resolv.conf and hosts)."""
    from netk8s.model import naming

    need_root()
    store = open_lab_store(ctx)
    try:
        obj = find_pod(store, namespace, pod)
    finally:
        store.close()
    if (obj.get("status") or {}).get("phase") != "Running":
        raise NetK8sError(f"pod/{obj['metadata']['name']}: cannot exec into a pod that is not running "
                          f"(phase {(obj.get('status') or {}).get('phase', 'Pending')})")
    lab_name = lab_of(ctx)
    name = container or obj["spec"]["containers"][0]["name"]
    from netk8s.lab.manager import load_lab

    info = load_lab(lab_name)
    if obj["spec"]["nodeName"] in info.vm_nodes():
        # the pod is in a guest's kernel: the way kubectl goes, the API server and the node's kubelet API
        from netk8s.store.podexec import pod_exec

        stdin = sys.stdin.buffer.read() if interactive else None
        ctx.exit(pod_exec(info.store, namespace, obj["metadata"]["name"], name, argv, stdin))
    rt = pod_runtime(lab_name, obj["spec"]["nodeName"])
    uid = obj["metadata"]["uid"]
    # like `kubectl exec`: the command gets the container's environment and the caller's terminal
    result = rt.exec(uid, naming.pod_netns(lab_name, uid), list(argv), timeout=None,
                     env=rt.container_environ(uid, name), capture=False, inherit_stdin=interactive)
    ctx.exit(result.exit_code)


@cli.command("logs")
@click.option("-n", "--namespace", default="default")
@click.option("-c", "--container", default=None)
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", type=int, default=-1)
@click.argument("pod")
@click.pass_context
def logs(ctx: click.Context, namespace: str, container: str | None, follow: bool, tail: int, pod: str) -> None:
    """Print a container's output."""
    store = open_lab_store(ctx)
    try:
        obj = find_pod(store, namespace, pod)
    finally:
        store.close()
    names = [c["name"] for c in obj["spec"]["containers"]]
    if container is None:
        if len(names) > 1:
            raise ValidationError(f"-c: a container name must be specified for pod {obj['metadata']['name']}, "
                                  f"choose one of: [{' '.join(names)}]")
        container = names[0]
    elif container not in names:
        raise ValidationError(f"-c: container {container} is not valid for pod {obj['metadata']['name']}")
    node = (obj.get("spec") or {}).get("nodeName")
    if not node:
        raise NetK8sError(f"pod/{obj['metadata']['name']}: not scheduled yet, no logs")
    path = pod_runtime(lab_of(ctx), node).log_path(obj["metadata"]["uid"], container)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    lines = data.decode(errors="replace").splitlines(keepends=True)
    if tail >= 0:
        lines = lines[-tail:] if tail else []
    click.echo("".join(lines), nl=False)
    if follow:
        pos = len(data)
        while True:
            time.sleep(0.2)
            try:
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
            except FileNotFoundError:
                return
            if chunk:
                pos += len(chunk)
                click.echo(chunk.decode(errors="replace"), nl=False)


@cli.command("wait")
@click.argument("words", nargs=-1, required=True)
@click.option("--for", "for_", required=True, help="condition=Ready, delete, or jsonpath-free conditions")
@click.option("-n", "--namespace", default="default")
@click.option("-l", "--selector", default=None)
@click.option("--all", "all_", is_flag=True)
@click.option("--timeout", default="30s")
@click.pass_context
def wait(ctx: click.Context, words: tuple[str, ...], for_: str, namespace: str, selector: str | None, all_: bool,
         timeout: str) -> None:
    """Wait for a condition on objects (kubectl wait)."""
    from netk8s.model.labels import parse_selector

    info, name = kind_and_name(words)
    m = re.fullmatch(r"condition=([A-Za-z]+)(?:=(\w+))?", for_)
    if not (m or for_ == "delete"):
        raise ValidationError(f"--for: unsupported condition {for_!r} (use condition=NAME or delete)")
    cond, want = (m.group(1), m.group(2) or "True") if m else ("", "")
    sel = parse_selector(selector) if selector else None
    if not name and not sel and not all_:
        raise UsageError("wait: give a NAME, -l SELECTOR or --all")
    ns = namespace if info.namespaced else ""
    deadline = time.monotonic() + parse_duration(timeout)
    store = open_lab_store(ctx)
    try:
        while True:
            objs = ([o] if (o := store.try_get(info.kind, ns, name)) else []) if name else \
                ops.select(store.list(info.kind, ns)[0], sel)
            if for_ == "delete":
                if not objs:
                    click.echo(f"{info.kind.lower()}/{name or '(selected)'} condition met")
                    return
            else:
                done = [o for o in objs if any(c.get("type", "").lower() == cond.lower() and
                                               str(c.get("status")).lower() == want.lower()
                                               for c in (o.get("status") or {}).get("conditions") or [])]
                if objs and len(done) == len(objs):
                    for o in objs:
                        click.echo(f"{ops.kubectl_name(o)} condition met")
                    return
            if time.monotonic() > deadline:
                what = name or selector or "all"
                if not objs and for_ != "delete":
                    raise NetK8sError(f"error: no matching resources found ({info.plural} {what})")
                raise NetK8sError(f"error: timed out waiting for the condition on {info.plural} {what}")
            store.watch(store.revision(), [info.kind], timeout=0.3)
    finally:
        store.close()


def main() -> None:
    cli(prog_name="netk8s")


# Service commands live in their own module; importing it registers them on `cli`.
from netk8s.cli import machines as _machines  # noqa: F401
from netk8s.cli import policy as _policy  # noqa: F401
from netk8s.cli import services as _services  # noqa: F401
from netk8s.cli import trace as _trace  # noqa: F401

if __name__ == "__main__":
    # `python -m netk8s.cli.main`: run the importable module's `cli` (the one services registered on).
    from netk8s.cli.main import main as _main

    _main()
