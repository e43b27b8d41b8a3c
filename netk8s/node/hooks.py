"""Container lifecycle hooks (lifecycle.preStop: exec, httpGet, sleep), run the way kubelet runs them
(pkg/kubelet/lifecycle/handlers.go): inside the pod for exec, against the pod IP for httpGet, and
within what is left of the pod's termination grace period."""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable

from netk8s.errors import NetK8sError
from netk8s.node.runtime import PodRuntime
from netk8s.node.status import PodState

log = logging.getLogger("netk8s.node")


def _http_port(hook: dict, container: dict) -> object:
    port = hook.get("port")
    if isinstance(port, str):
        return next((p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port), 80)
    return port


def run_hook(runtime: PodRuntime, st: PodState, container: dict, hook: dict, timeout: float) -> None:
    """One hook handler; raises OSError / NetK8sError when it fails (kubelet logs and goes on)."""
    if "sleep" in hook:
        time.sleep(min(float(hook["sleep"].get("seconds", 0)), timeout))
    elif "exec" in hook:
        runtime.exec(st.uid, st.netns, [str(a) for a in hook["exec"].get("command") or []], timeout=timeout)
    elif "httpGet" in hook:
        h = hook["httpGet"]
        url = f"http://{h.get('host') or st.ip}:{_http_port(h, container)}{h.get('path', '/')}"
        urllib.request.urlopen(url, timeout=timeout).close()


def run_pre_stop_hooks(runtime: PodRuntime, pod: dict, st: PodState, deadline: float,
                       clock: Callable[[], float]) -> None:
    """lifecycle.preStop of every running container before SIGTERM; it counts against the grace period,
    as in kubelet. The usual zero-downtime recipe (preStop sleep) relies on it."""
    for c in pod["spec"]["containers"]:
        hook = ((c.get("lifecycle") or {}).get("preStop")) or {}
        left = deadline - clock()
        if not hook or left <= 0 or not runtime.alive(st.uid, c["name"]):
            continue
        try:
            run_hook(runtime, st, c, hook, left)
        except (OSError, NetK8sError) as e:
            log.info("preStop hook of %s/%s %s: %s", st.namespace, st.name, c["name"], e)
