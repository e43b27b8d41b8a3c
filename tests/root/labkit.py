"""Helpers for privileged tests: drive a real lab through the real CLI, poll with deadlines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class Lab:
    """One lab, named uniquely, with its own state directory; every CLI call is a real subprocess."""

    def __init__(self, name: str, state_dir: Path, nodes: int = 3, overlay: str = "vxlan",
                 proxy_mode: str = "iptables", dns: bool = False, ingress: bool = False,
                 store: str = "sqlite", node_runtime: str = "netns") -> None:
        self.name, self.state_dir, self.nodes, self.overlay, self.proxy_mode = name, state_dir, nodes, overlay, proxy_mode
        self.store = store  # the API server's store: sqlite (the default) or etcd
        self.node_runtime = node_runtime  # `--node-runtime`: netns, vm, or one per node (netns,vm)
        # Cluster DNS costs two pods per lab: only the suites that resolve names ask for it.
        self.dns = dns
        self.ingress = ingress  # ingress-nginx costs a pod and an nginx: only the Ingress suites ask for it
        self.env = dict(os.environ, NETK8S_STATE_DIR=str(state_dir), NETK8S_LAB=name)
        self.env.pop("NETK8S_TAG", None)

    def cli(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "netk8s.cli.main", *args], env=self.env, cwd=REPO,
                           capture_output=True, text=True, input=input, timeout=timeout, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"netk8s {' '.join(args)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
                                 f"\n{self.logs_tail()}")
        return p

    def logs_tail(self, lines: int = 30) -> str:
        out = []
        root = self.state_dir / self.name
        for f in sorted([*(root / "logs").glob("*.log"), *(root / "vms").glob("*/serial.log")]):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(out)

    def up(self, timeout: float = 180) -> None:
        self.cli("lab", "up", "--nodes", str(self.nodes), "--overlay", self.overlay,
                 "--proxy-mode", self.proxy_mode, "--store", self.store, "--dns" if self.dns else "--no-dns",
                 "--ingress" if self.ingress else "--no-ingress", "--node-runtime", self.node_runtime,
                 timeout=timeout)

    def down(self) -> None:
        self.cli("lab", "down", check=False, timeout=180)

    def apply(self, text: str) -> str:
        return self.cli("apply", "-f", "-", input=text).stdout

    def get_json(self, *args: str) -> Any:
        return json.loads(self.cli("get", *args, "-o", "json").stdout)

    def pods(self, selector: str | None = None, namespace: str = "default") -> list[dict]:
        args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
        return self.get_json(*args)["items"]

    def exec(self, pod: str, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.cli("exec", pod, "--", *argv, check=check, timeout=timeout)

    def node_exec(self, where: str, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.cli("lab", "exec", where, *argv, check=check, timeout=timeout)

    def relabel(self, kind: str, namespace: str, name: str, key: str, value: str | None) -> None:
        """Set (or, with None, remove) one label through the lab's store, as `kubectl label` would."""
        from netk8s.store.base import mutate
        from netk8s.store.factory import open_store

        def change(obj: dict) -> dict:
            labels = obj["metadata"].setdefault("labels", {})
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
            return obj

        info = json.loads((self.state_dir / self.name / "lab.json").read_text())
        store = open_store(info["store"])
        try:
            mutate(store, kind, namespace, name, change)
        finally:
            store.close()

    # -- the lab's API server (how a test reaches it: the admin kubeconfig `lab up` writes, 127.0.0.1:PORT)

    @property
    def kubeconfig(self) -> Path:
        """The lab's admin kubeconfig (context netk8s-LAB; server https://127.0.0.1:PORT): KUBECONFIG for
        kubectl, helm or the kubernetes client library."""
        return self.state_dir / self.name / "kubeconfig"

    def info(self) -> dict:
        """lab.json: `store` is the API client URL (https://127.0.0.1:PORT?kubeconfig=...), `api_port` the port."""
        return json.loads((self.state_dir / self.name / "lab.json").read_text())

    @property
    def api_server(self) -> str:
        return f"https://127.0.0.1:{self.info()['api_port']}"

    def api_store(self, role: str = "admin") -> Any:
        """A Store client of the API server on 127.0.0.1, with the admin kubeconfig or one role's
        (controller, viewer, node-NAME); close() it."""
        from netk8s.store.apiclient import ApiClientStore
        from netk8s.store.kubeconfig import read

        path = self.kubeconfig if role == "admin" else self.state_dir / self.name / "kubeconfigs" / f"{role}.kubeconfig"
        return ApiClientStore(read(path), server=self.api_server, retry_for=30.0)

    def wait_for(self, what: str, fn: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{self.logs_tail()}")

    def wait_value(self, what: str, produce: Callable[[], Any], accept: Callable[[Any], bool],
                   timeout: float = 60) -> Any:
        """The first value of `produce()` that `accept` takes, polled until `timeout` s (a deadline)."""
        def check() -> Any:
            value = produce()
            return value if accept(value) else None
        return self.wait_for(what, check, timeout)

    def ready_pods(self, selector: str, count: int, timeout: float = 60) -> list[dict]:
        def check() -> list[dict] | None:
            pods = [p for p in self.pods(selector) if not p["metadata"].get("deletionTimestamp")]
            ready = [p for p in pods if is_ready(p)]
            return ready if len(ready) == count and len(pods) == count else None

        return self.wait_for(f"{count} ready pods {selector}", check, timeout)


@contextmanager
def running(lab: Lab, manifest: str = "", ready: Sequence[tuple[str, int]] = (),
            pods: Sequence[str] = ()) -> Iterator[Lab]:
    """Bring the lab up, apply `manifest`, wait for `ready` (selector, count) and the named pods to be
    Ready; always take the lab down afterwards, even when something failed on the way."""
    try:
        lab.up()
        if manifest:
            lab.apply(manifest)
        for selector, count in ready:
            lab.ready_pods(selector, count)
        for name in pods:
            lab.wait_for(f"{name} ready", lambda n=name: any(p["metadata"]["name"] == n and is_ready(p)
                                                             for p in lab.pods()))
        yield lab
    finally:
        lab.down()


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid() % 100000}{int(time.time() * 1000) % 1000}"
