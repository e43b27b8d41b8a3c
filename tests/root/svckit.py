"""Traffic helpers for Service tests: small Python clients run inside pods or the external client."""

from __future__ import annotations

import json
import sys

from tests.root.labkit import Lab

# Runs inside a pod / the external namespace: N HTTP GETs (new connection each), prints JSON counts.
HTTP_COUNT = r"""
import json, sys, urllib.request, collections
url, n = sys.argv[1], int(sys.argv[2])
counts, errors = collections.Counter(), []
for i in range(n):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            counts[r.read().decode().strip()] += 1
    except Exception as e:
        errors.append(repr(e))
print(json.dumps({"counts": counts, "errors": errors[:5], "failed": len(errors)}))
"""

# Connection attempt: prints "refused", "timeout" or "ok" and the elapsed seconds.
TCP_PROBE = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
t = time.monotonic()
s = socket.socket(); s.settimeout(3)
try:
    s.connect((host, port)); print("ok", round(time.monotonic() - t, 3))
except ConnectionRefusedError:
    print("refused", round(time.monotonic() - t, 3))
except (socket.timeout, OSError) as e:
    print("timeout" if isinstance(e, socket.timeout) else type(e).__name__, round(time.monotonic() - t, 3))
"""

UDP_ASK = r"""
import socket, sys
host, port, msg, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
out = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
    try:
        s.sendto(msg.encode(), (host, port)); out.append(s.recvfrom(2048)[0].decode().strip())
    except OSError as e:
        out.append("ERR " + type(e).__name__)
    finally:
        s.close()
print("\n".join(out))
"""


def py_in_pod(lab: Lab, pod: str, script: str, *args: str, timeout: float = 120) -> str:
    return lab.exec(pod, sys.executable, "-c", script, *args, timeout=timeout).stdout


def py_outside(lab: Lab, script: str, *args: str, timeout: float = 120) -> str:
    return lab.node_exec("external", sys.executable, "-c", script, *args, timeout=timeout).stdout


def http_counts(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])
