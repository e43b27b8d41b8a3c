"""The guest control server: runs INSIDE a VM node and executes the host's commands (`netk8s lab exec`, tests).

`python -m netk8s.lab.vmguest --port 10240 --token-file /run/netk8s/token` listens on the guest's
underlay address. A client (netk8s.dataplane.qemu.GuestControl, from a namespace on the underlay) sends
one JSON line per connection (netk8s.model.vmspec.control_request) and gets one JSON line back:
{"rc", "stdout", "stderr"} once the command ended (rc null when it timed out and was killed), or
{"pid"} at once for a detached command. Requests without the VM's token are refused: the token is on
the guest's kernel command line, which only the host that started QEMU wrote.

Only the standard library is imported: under TCG a guest runs Python ~20x slower than the host, and
this server is what the host waits for to call the node ready. The server refuses to start outside a
netk8s guest (no `netk8s.guest=` on /proc/cmdline): on the host it would run commands in the root
namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading

GUEST_MARK = "netk8s.guest="  # netk8s.model.vmspec.GUEST_MARK (not imported: keep this import-light)
MAX_REQUEST = 16 << 20


def in_guest(cmdline: str) -> bool:
    return any(word.startswith(GUEST_MARK) for word in cmdline.split())


def run(req: dict) -> dict:
    argv = [str(a) for a in req["argv"]]
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    if req.get("detach"):
        log = open(req.get("log") or os.devnull, "ab")  # noqa: SIM115 - handed to the child
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True, close_fds=True)
        finally:
            log.close()
        threading.Thread(target=p.wait, daemon=True).start()  # reap it when it ends
        return {"pid": p.pid, "rc": 0}
    try:
        p = subprocess.run(argv, input=req.get("stdin") or "", capture_output=True, text=True, env=env,
                           timeout=float(req.get("timeout") or 120), check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"rc": None, "stdout": out, "stderr": f"timed out after {req.get('timeout')}s"}
    return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


def serve_one(conn: socket.socket, token: str) -> None:
    with conn:
        buf = b""
        while not buf.endswith(b"\n") and len(buf) < MAX_REQUEST:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        try:
            req = json.loads(buf)
            if req.get("token") != token:
                resp = {"error": "bad token"}
            elif not req.get("argv"):
                resp = {"error": "argv: empty command"}
            else:
                resp = run(req)
        except FileNotFoundError as exc:
            resp = {"rc": 127, "stdout": "", "stderr": f"{exc.filename}: command not found"}
        except (ValueError, KeyError, OSError) as exc:
            resp = {"error": f"{type(exc).__name__}: {exc}"}
        conn.sendall((json.dumps(resp) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="netk8s.lab.vmguest")
    ap.add_argument("--address", default="0.0.0.0")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    args = ap.parse_args(argv)
    try:
        with open("/proc/cmdline") as f:
            cmdline = f.read()
    except OSError:
        cmdline = ""
    if not in_guest(cmdline):
        print("netk8s.lab.vmguest: not a netk8s VM guest (no netk8s.guest= on /proc/cmdline); refusing",
              file=sys.stderr)
        return 1
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.address, args.port))
    srv.listen(64)
    print(f"netk8s-guest: control server on {args.address}:{args.port}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve_one, args=(conn, args.token), daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main())
