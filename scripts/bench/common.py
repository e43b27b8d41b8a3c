"""Shared plumbing of the benchmarks: own namespaces (`nk8sb-`), daemons stopped by PID, labs driven by the CLI.

Safety (common rules): every namespace made here starts with `nk8sb-` (or belongs to a lab named
`bench...`), every daemon is started here and stopped by its PID, and everything is removed in
`finally` blocks, also on Ctrl-C / SIGTERM (the driver turns SIGTERM into KeyboardInterrupt).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netk8s.dataplane import links
from netk8s.dataplane import netns as dp_netns
from netk8s.model.status import is_ready  # noqa: F401  (re-exported: the benchmarks import it from here)

REPO = Path(__file__).resolve().parents[2]
NS_PREFIX = "nk8sb-"
PY = sys.executable


class BenchError(Exception):
    """A benchmark could not run (a tool missing, a lab that did not come up)."""


def have(binary: str) -> bool:
    return shutil.which(binary) is not None or any(
        Path(d, binary).exists() for d in ("/usr/sbin", "/sbin", "/usr/lib/cni"))


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60, interval: float = 0.05) -> Any:
    """Poll `fn` until it returns something truthy; BenchError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# ----------------------------------------------------------------------------------------- namespaces
class Namespaces:
    """Namespaces this benchmark created; `close()` deletes them all (stopping their processes first)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.names: list[str] = []
        self.procs = Procs()

    def new(self, suffix: str, prefix: str = NS_PREFIX) -> str:
        name = f"{prefix}{self.tag}-{suffix}"
        if dp_netns.netns_exists(name):
            raise BenchError(f"netns {name} already exists (left over?): delete it with `ip netns del {name}`")
        dp_netns.create_netns(name)
        self.names.append(name)
        links.ensure_loopback_up(name)
        return name

    def close(self) -> None:
        self.procs.stop_all()
        for name in reversed(self.names):
            # processes we did not start cannot be inside our fresh namespaces; ours are stopped above
            try:
                dp_netns.delete_netns(name)
            except Exception as exc:  # noqa: BLE001 - keep cleaning the rest
                print(f"bench: could not delete netns {name}: {exc}", file=sys.stderr)
        self.names.clear()

    def __enter__(self) -> Namespaces:  # noqa: PYI034 - target py310 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def veth_pair(a: str, b: str, a_cidr: str, b_cidr: str, name_a: str = "v0", name_b: str = "v1",
              mtu: int = 1500) -> None:
    """A veth pair between two of our namespaces, addressed and up (the `ip link add ... netns` way)."""
    run(["ip", "-n", a, "link", "add", name_a, "mtu", str(mtu), "type", "veth", "peer", "name", name_b,
         "netns", b, "mtu", str(mtu)])
    run(["ip", "-n", a, "addr", "add", a_cidr, "dev", name_a])
    run(["ip", "-n", b, "addr", "add", b_cidr, "dev", name_b])
    run(["ip", "-n", a, "link", "set", name_a, "up"])
    run(["ip", "-n", b, "link", "set", name_b, "up"])


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def run(argv: list[str], timeout: float = 120, input: str | None = None,
        check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=env, check=False,
                       cwd=REPO)
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(argv[:8])} -> exit {p.returncode}: {(p.stderr or p.stdout).strip()[-500:]}")
    return p


# ----------------------------------------------------------------------------------------- processes
class Procs:
    """Processes started by a benchmark; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.items.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 3.0) -> None:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        if p in self.items:
            self.items.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.items)):
            self.stop(p)


def wait_port(ns: str, ip: str, port: int, timeout: float = 20) -> None:
    """Poll until a TCP connect to ip:port succeeds from inside `ns`."""
    script = ("import socket,sys\ns=socket.socket();s.settimeout(0.5)\n"
              "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('ok')\nexcept OSError:\n pass\n")
    wait_for(f"{ip}:{port} in {ns}",
             lambda: run(in_ns(ns, [PY, "-c", script, ip, str(port)]), check=False).stdout.strip() == "ok",
             timeout=timeout, interval=0.1)


# ----------------------------------------------------------------------------------------- nginx
NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {port} reuseport backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def nginx_config(directory: Path, port: int) -> Path:
    """Write nginx.conf (pid file, logs, temp paths all in `directory`); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port))
    return conf


def nginx_argv(conf: Path) -> list[str]:
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(conf.parent), "-e", str(conf.parent / "error.log"),
            "-c", str(conf)]


# ----------------------------------------------------------------------------------------- labs
class Lab:
    """A lab named by the benchmark, with its own state directory, driven through the real CLI."""

    def __init__(self, name: str, nodes: int = 3, overlay: str = "vxlan", proxy_mode: str = "iptables",
                 state_dir: Path | None = None, ingress: bool = False) -> None:
        self.name, self.nodes, self.overlay, self.proxy_mode = name, nodes, overlay, proxy_mode
        self.ingress = ingress  # ingress-nginx only where it is measured: it would add a pod to the others
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix=f"nk8sb-{name}-"))
        self.env = dict(os.environ, NETK8S_STATE_DIR=str(self.state_dir), NETK8S_LAB=name)
        self.env.pop("NETK8S_TAG", None)
        self.is_up = False

    @property
    def store_url(self) -> str:
        return f"sqlite://{self.state_dir / self.name / 'store.db'}"

    def cli(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([PY, "-m", "netk8s.cli.main", *args], env=self.env, cwd=REPO, capture_output=True,
                           text=True, input=input, timeout=timeout, check=False)
        if check and p.returncode != 0:
            raise BenchError(f"netk8s {' '.join(args)} -> {p.returncode}: {(p.stderr or p.stdout).strip()[-600:]}")
        return p

    def up(self) -> None:
        self.is_up = True  # even a failed `up` may leave traces for down() to sweep
        self.cli("lab", "up", "--name", self.name, "--nodes", str(self.nodes), "--overlay", self.overlay,
                 "--proxy-mode", self.proxy_mode, "--ingress" if self.ingress else "--no-ingress", timeout=240)

    def down(self) -> None:
        """Tear the lab down; finishes even when Ctrl-C / SIGTERM arrives meanwhile (a half-done
        `lab down` would leave namespaces behind)."""
        interrupted = None
        if self.is_up:
            for args in (("lab", "down", "--name", self.name), ("clean", "--name", self.name)):
                interrupted = _run_shielded([PY, "-m", "netk8s.cli.main", *args], self.env) or interrupted
            self.is_up = False
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if interrupted is not None:
            raise interrupted

    def apply(self, text: str) -> str:
        return self.cli("apply", "-f", "-", input=text).stdout

    def get_json(self, *args: str) -> Any:
        return json.loads(self.cli("get", *args, "-o", "json").stdout)

    def node_netns(self, node: str) -> str:
        from netk8s.model import naming

        return naming.node_netns(self.name, node)

    def external_netns(self) -> str:
        from netk8s.model import naming

        return naming.external_netns(self.name)

    def pod_netns(self, pod: dict) -> str:
        from netk8s.model import naming

        return naming.pod_netns(self.name, pod["metadata"]["uid"])

    def open_store(self) -> Any:
        from netk8s.store.factory import open_store

        return open_store(self.store_url)

    def logs_tail(self, lines: int = 15) -> str:
        out = []
        for f in sorted((self.state_dir / self.name / "logs").glob("*.log")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(out)


def _run_shielded(argv: list[str], env: dict[str, str], timeout: float = 240) -> KeyboardInterrupt | None:
    """Run a clean-up command to its end: in its own session (a terminal's Ctrl-C does not reach it);
    an interrupt of ours that arrives meanwhile is returned, for the caller to raise once all is clean."""
    p = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    interrupted: KeyboardInterrupt | None = None
    deadline = time.monotonic() + timeout
    while True:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
            return interrupted
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return interrupted
        except KeyboardInterrupt as exc:
            interrupted = exc
            print("bench: cleaning up the lab, please wait", file=sys.stderr)


def try_lab(lab: Lab) -> str | None:
    """Bring the lab up; None on success, else the one-line reason (e.g. a proxy mode not in this build)."""
    try:
        lab.up()
        return None
    except BenchError as exc:
        lab.down()
        return str(exc).splitlines()[-1][:300]


@contextmanager
def labs(*items: Lab) -> Iterator[tuple[Lab, ...]]:
    try:
        yield items
    finally:
        for lab in items:
            lab.down()
