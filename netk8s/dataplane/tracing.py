"""Kernel side of `netk8s trace` / `netk8s flows`: probes, counters, nftrace sessions, conntrack, routes.

Two kinds of entry points:
* functions the tracer (netk8s.trace.live) calls from the root namespace, each running a command in a
  named namespace (`iptables-legacy-save -c`, `nft`, `nft monitor trace`, `conntrack -L`, `ip -j ...`);
* `python -m netk8s.dataplane.tracing probe|dns ...`, run INSIDE the client's namespace (a pod, through
  PodRuntime.exec so its resolv.conf is the pod's, or the external client): one TCP request / UDP
  datagram from a chosen source port, or one DNS lookup with the resolver's search-list expansion,
  printed as JSON.

An nftrace session adds a table of its own (`ip netk8s-trace`, never kube-proxy's) whose chains at
priority -350 (before conntrack and every kube-proxy chain) set `meta nftrace` on packets of the
probe's 5-tuple, and runs `nft monitor trace` in the node namespace (nftables' trace needs no nf_log,
unlike xtables TRACE, which in a non-init namespace needs the host sysctl net.netfilter.nf_log_all_netns:
see nft(8) "monitor" and nf_log's nf_log_all_netns in the kernel's Documentation/networking). Both the
table and the monitor process are removed when the session ends, whatever happened.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from netk8s.dataplane.iptables import SAVE
from netk8s.dataplane.netns import exec_argv, run_in_netns
from netk8s.errors import KernelError
from netk8s.model import naming

TRACE_TABLE = "netk8s-trace"
MARKER_PORT = 9  # discard: the readiness marker the monitor must see before the probe is sent


# ---------------------------------------------------------------------------------------------------------
# Commands in a namespace (called from the root namespace)


def iptables_save(netns: str) -> str:
    """nat + filter of the node, with [packets:bytes] counters."""
    out = []
    for table in ("nat", "filter"):
        out.append(run_in_netns(netns, [SAVE, "-c", "-t", table], timeout=30).stdout)
    return "".join(out)


def nft_list_json(netns: str, table: str = naming.KUBE_PROXY_TABLE) -> dict[str, Any]:
    p = run_in_netns(netns, ["nft", "-j", "list", "table", "ip", table], timeout=30, check=False)
    if p.returncode != 0:
        return {"nftables": []}
    return json.loads(p.stdout)


def nft_ruleset(netns: str) -> str:
    return run_in_netns(netns, ["nft", "list", "ruleset"], timeout=30).stdout


def conntrack_list(netns: str, filters: Sequence[str] = ()) -> str:
    """`conntrack -L -o extended` lines (empty when nothing matched)."""
    p = run_in_netns(netns, ["conntrack", "-L", "-o", "extended", *filters], timeout=30, check=False)
    return p.stdout


def enable_conntrack_acct(netns: str) -> None:
    """Byte/packet counters on conntrack entries of this namespace (a per-namespace sysctl of the node's
    own namespace, never the host's): `netk8s flows` shows them."""
    run_in_netns(netns, ["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1"], timeout=30, check=False)


def ip_json(netns: str, args: Sequence[str]) -> Any:
    p = run_in_netns(netns, ["ip", "-j", *args], timeout=30, check=False)
    if p.returncode != 0 or not p.stdout.strip():
        return []
    return json.loads(p.stdout)


def bridge_fdb(netns: str, dev: str) -> Any:
    p = run_in_netns(netns, ["bridge", "-j", "fdb", "show", "dev", dev], timeout=30, check=False)
    if p.returncode != 0 or not p.stdout.strip():
        return []
    return json.loads(p.stdout)


def link_counters(netns: str, dev: str) -> dict[str, int]:
    """rx/tx packet counters of one link (zeros when it does not exist)."""
    links = ip_json(netns, ["-s", "link", "show", "dev", dev])
    if not links:
        return {"rx": 0, "tx": 0}
    stats = links[0].get("stats64") or links[0].get("stats") or {}
    return {"rx": int(stats.get("rx", {}).get("packets", 0)), "tx": int(stats.get("tx", {}).get("packets", 0))}


# ---------------------------------------------------------------------------------------------------------
# nftrace session


@dataclass
class NftTraceSession:
    netns: str
    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.lines)


def _trace_table_text(match: str) -> str:
    rules = (f"{match} meta nftrace set 1\n"
             f"ip daddr 127.0.0.1 udp dport {MARKER_PORT} meta nftrace set 1\n")
    return (f"table ip {TRACE_TABLE} {{\n"
            f"  chain pre {{ type filter hook prerouting priority -350; policy accept;\n{rules}  }}\n"
            f"  chain out {{ type filter hook output priority -350; policy accept;\n{rules}  }}\n"
            "}\n")


def delete_trace_table(netns: str) -> None:
    run_in_netns(netns, ["nft", "delete", "table", "ip", TRACE_TABLE], timeout=30, check=False)


def _send_marker(netns: str) -> None:
    run_in_netns(netns, [sys.executable, "-m", "netk8s.dataplane.tracing", "marker"], timeout=30, check=False)


@contextmanager
def nft_trace_session(netns: str, match: str, timeout: float = 10.0) -> Iterator[NftTraceSession]:
    """Trace packets matching `match` (an nft expression, e.g. `ip saddr 10.244.1.3 tcp sport 40001`)
    in `netns` while the body runs; the session's lines are `nft monitor trace` output."""
    delete_trace_table(netns)
    run_in_netns(netns, ["nft", "-f", "-"], input=_trace_table_text(match), timeout=30)
    session = NftTraceSession(netns)
    proc: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen(exec_argv(netns, ["nft", "monitor", "trace"]), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        out = proc.stdout
        assert out is not None

        def read() -> None:
            for line in out:
                with session.lock:
                    session.lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        # The monitor subscribes some time after it starts: poll with a marker packet until it shows.
        deadline = time.monotonic() + timeout
        while not any(f"udp dport {MARKER_PORT} " in ln for ln in session.snapshot()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise KernelError(f"nft monitor trace in {netns} did not start")
            _send_marker(netns)
            time.sleep(0.05)
        yield session
        # let the monitor print the last events of the probe (the kernel delivers them asynchronously)
        _send_marker(netns)
        deadline = time.monotonic() + timeout
        while sum(f"udp dport {MARKER_PORT} " in ln for ln in session.snapshot()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        delete_trace_table(netns)


# ---------------------------------------------------------------------------------------------------------
# Inside the client's namespace


def probe(dst: str, port: int, proto: str, sport: int, path: str, timeout: float, hold: float = 0.0) -> dict[str, Any]:
    """One request from source port `sport`: TCP (an HTTP GET of `path`) or UDP (one datagram)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    result: dict[str, Any] = {"dst": dst, "port": port, "proto": proto, "sport": sport}
    try:
        s.bind(("0.0.0.0", sport))
        s.connect((dst, port))
        result["local"] = "{}:{}".format(*s.getsockname())
        if proto == "tcp":
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {dst}\r\nUser-Agent: netk8s-trace\r\n"
                      "Connection: close\r\n\r\n".encode())
            data = b""
            while len(data) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        else:
            s.send(f"netk8s-trace {path}".encode())
            data = s.recv(65536)
        text = data.decode(errors="replace")
        result.update(ok=True, bytes=len(data), status=text.splitlines()[0] if text else "",
                      body=text.split("\r\n\r\n", 1)[-1][:200])
        if hold:
            time.sleep(hold)
    except ConnectionRefusedError:
        result.update(ok=False, error="refused")
    except TimeoutError:
        result.update(ok=False, error="timeout")
    except OSError as exc:
        result.update(ok=False, error=exc.strerror or str(exc))
    finally:
        s.close()
    return result


def resolve(name: str, resolv_conf: str, sport: int, timeout: float = 2.0) -> dict[str, Any]:
    """Look `name` up as the pod's resolver would (search list, ndots) from source port `sport`."""
    from dnslib import QTYPE, RCODE, DNSRecord

    from netk8s.trace.model import expand_name, parse_resolv_conf

    conf = parse_resolv_conf(resolv_conf)
    tried: list[dict[str, Any]] = []
    out: dict[str, Any] = {"name": name, "server": conf.nameservers[0] if conf.nameservers else None,
                           "sport": sport, "tried": tried, "answer": None, "search": conf.search,
                           "ndots": conf.ndots}
    if not conf.nameservers:
        return out
    for candidate in expand_name(name, conf):
        q = DNSRecord.question(candidate, "A")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(timeout)
        try:
            s.bind(("0.0.0.0", sport))
            s.sendto(q.pack(), (conf.nameservers[0], 53))
            reply = DNSRecord.parse(s.recv(4096))
        except OSError as exc:
            tried.append({"name": candidate, "rcode": f"error: {exc.strerror or exc}"})
            continue
        finally:
            s.close()
        answers = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]
        tried.append({"name": candidate, "rcode": RCODE.get(reply.header.rcode), "answers": answers})
        if answers:
            out["answer"] = answers[0]
            out["fqdn"] = candidate
            break
    return out


def _marker() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"netk8s-trace-marker", ("127.0.0.1", MARKER_PORT))
    finally:
        s.close()


def main(args: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netk8s.dataplane.tracing")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("dst")
    p.add_argument("port", type=int)
    p.add_argument("--proto", default="tcp", choices=("tcp", "udp"))
    p.add_argument("--sport", type=int, required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--timeout", type=float, default=3.0)
    d = sub.add_parser("dns")
    d.add_argument("name")
    d.add_argument("--sport", type=int, required=True)
    d.add_argument("--resolv-conf", default="/etc/resolv.conf")
    sub.add_parser("marker")
    ns = ap.parse_args(args)
    if ns.cmd == "probe":
        print(json.dumps(probe(ns.dst, ns.port, ns.proto, ns.sport, ns.path, ns.timeout)))
    elif ns.cmd == "dns":
        with open(ns.resolv_conf) as f:
            text = f.read()
        print(json.dumps(resolve(ns.name, text, ns.sport)))
    else:
        _marker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
