"""Delete stale UDP conntrack entries in the namespace this process runs in (the `conntrack` binary).

UDP has no connection teardown, so a flow DNATed to an endpoint that is gone keeps being sent there
until its conntrack entry times out; and a flow that hit a Service while it had no endpoints (and was
REJECTed) keeps its entry too. kube-proxy deletes both kinds after each sync (pkg/proxy/conntrack);
so do we. `conntrack -D` exits 1 with "0 flow entries have been deleted" when nothing matched: that
is success here (delete is idempotent).
"""

from __future__ import annotations

import re
import subprocess

from netk8s.errors import KernelError

CONNTRACK = "conntrack"
_DELETED_RE = re.compile(r"(\d+) flow entries have been deleted")


def _delete(filters: list[str]) -> int:
    """Run `conntrack -D -p udp FILTERS...`; return how many entries went away."""
    argv = [CONNTRACK, "-D", "-p", "udp", *filters]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise KernelError("conntrack: not installed", hint="apt-get install conntrack") from exc
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"{' '.join(argv)}: timed out") from exc
    except OSError as exc:
        raise KernelError(f"conntrack: cannot run: {exc.strerror or exc}") from exc
    m = _DELETED_RE.search(proc.stderr + proc.stdout)
    if m is not None and (proc.returncode == 0 or m.group(1) == "0"):
        return int(m.group(1))
    if proc.returncode == 0:
        return 0
    raise KernelError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")


def delete_udp_to_service(ip: str, port: int) -> int:
    """Entries of UDP flows sent to `ip:port` (a cluster IP, external IP or LoadBalancer IP)."""
    return _delete(["--orig-dst", ip, "--orig-port-dst", str(port)])


def delete_udp_endpoint(vip: str, port: int, ep_ip: str) -> int:
    """Entries of UDP flows sent to `vip:port` and DNATed to endpoint `ep_ip`."""
    return _delete(["--orig-dst", vip, "--orig-port-dst", str(port), "--dst-nat", ep_ip])


def delete_udp_nodeport(port: int, ep_ip: str) -> int:
    """Entries of UDP flows sent to NodePort `port` (any node address) and DNATed to `ep_ip`."""
    return _delete(["--orig-port-dst", str(port), "--dst-nat", ep_ip])


def delete_udp_to_port(port: int) -> int:
    """Entries of UDP flows sent to `port` on any address (a NodePort that had no endpoints)."""
    return _delete(["--orig-port-dst", str(port)])
