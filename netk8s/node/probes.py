"""Container probes the way kubelet runs them: one probe attempt (httpGet, tcpSocket, exec) and the
threshold bookkeeping that turns attempts into readiness / liveness / startup state.

No threads and no clock here: the agent decides when to call (ProbeTracker.due with its `now`) and
what to do with a flip (mark the pod ready, restart the container).
Semantics follow pkg/kubelet/prober (prober.go, worker.go) and pkg/probe/http.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from netk8s.errors import NetK8sError

# Defaults of the v1 Probe fields (k8s.io/api/core/v1 types.go).
DEFAULT_TIMEOUT = 1
DEFAULT_PERIOD = 10
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
USER_AGENT = "kube-probe/1.29"
MAX_BODY = 10 * 1024  # kubelet reads at most 10 KiB of a probe response

ExecFn = Callable[[Sequence[str], float], int]
ProbeKey = tuple[str, str, str]  # (pod uid, container name, kind: "readiness" | "liveness" | "startup")

READINESS = "readiness"
LIVENESS = "liveness"
STARTUP = "startup"


def _timeout(probe: Mapping) -> float:
    return float(probe.get("timeoutSeconds") or DEFAULT_TIMEOUT)


def resolve_port(port: object, container: Mapping) -> int:
    """A probe port: an int, or the name of one of the container's ports (IntOrString)."""
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"port {port!r} is not a named port of container {container.get('name', '?')!r}")
    raise ValueError(f"port {port!r} is not a number or a port name")


def _http_probe(action: Mapping, pod_ip: str, container: Mapping, timeout: float) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), container)
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    scheme = str(action.get("scheme") or "HTTP").upper()
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    for header in action.get("httpHeaders") or []:
        headers[str(header.get("name"))] = str(header.get("value", ""))
    conn: http.client.HTTPConnection
    if scheme == "HTTPS":
        # kubelet does not verify the certificate of a probe target (InsecureSkipVerify).
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    url = f"{scheme.lower()}://{host}:{port}{path}"
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(MAX_BODY).decode(errors="replace")
        status = resp.status
    except (OSError, http.client.HTTPException) as exc:
        return False, f'Get "{url}": {_describe(exc)}'
    finally:
        conn.close()
    if 200 <= status < 400:
        return True, f"HTTP probe succeeded with statuscode: {status}"
    detail = f", body: {body.strip()}" if body.strip() else ""
    return False, f"HTTP probe failed with statuscode: {status}{detail}"


def _tcp_probe(action: Mapping, pod_ip: str, container: Mapping, timeout: float) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), container)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return False, f"dial tcp {host}:{port}: {_describe(exc)}"
    return True, f"tcp {host}:{port} open"


def _exec_probe(action: Mapping, exec_fn: ExecFn, timeout: float) -> tuple[bool, str]:
    argv = [str(a) for a in action.get("command") or []]
    if not argv:
        return False, "exec probe has no command"
    try:
        code = exec_fn(argv, timeout)
    except TimeoutError:
        return False, f"command {argv!r} timed out after {timeout:g}s"
    except OSError as exc:
        return False, f"command {argv!r} failed: {_describe(exc)}"
    except NetK8sError as exc:  # the pod's sandbox is gone: nothing to exec into
        return False, f"command {argv!r} failed: {exc.message}"
    if code == 0:
        return True, f"command {argv!r} exited with 0"
    return False, f"command {argv!r} exited with {code}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def run_probe(probe: Mapping, pod_ip: str, container: Mapping, exec_fn: ExecFn) -> tuple[bool, str]:
    """One attempt of `probe` against a container: (success, message for events / describe)."""
    timeout = _timeout(probe)
    try:
        if "httpGet" in probe:
            return _http_probe(probe["httpGet"] or {}, pod_ip, container, timeout)
        if "tcpSocket" in probe:
            return _tcp_probe(probe["tcpSocket"] or {}, pod_ip, container, timeout)
        if "exec" in probe:
            return _exec_probe(probe["exec"] or {}, exec_fn, timeout)
    except ValueError as exc:
        return False, str(exc)
    if "grpc" in probe:
        return False, "grpc probes are not supported"
    return False, "probe has no handler (httpGet, tcpSocket or exec)"


def initial_state(kind: str) -> bool | None:
    """Result before any attempt: live until proven dead, unready until proven ready, startup unknown.
    `kind` is "readiness" or the container field name "readinessProbe" (likewise liveness, startup)."""
    return {LIVENESS: True, READINESS: False}.get(kind.removesuffix("Probe"))


@dataclass
class _ProbeState:
    started_at: float
    result: bool | None
    successes: int = 0
    failures: int = 0
    last_run: float | None = None


class ProbeTracker:
    """Consecutive successes/failures per (pod uid, container, kind) against a probe's thresholds.

    A different `started_at` for a key (the container was restarted) starts the key over, as kubelet's
    worker does for a new container ID.
    """

    def __init__(self) -> None:
        self._states: dict[ProbeKey, _ProbeState] = {}

    def _state(self, key: ProbeKey, started_at: float | None = None) -> _ProbeState:
        st = self._states.get(key)
        if st is None or (started_at is not None and st.started_at != started_at):
            st = _ProbeState(started_at=started_at or 0.0, result=initial_state(key[2]))
            self._states[key] = st
        return st

    def due(self, key: ProbeKey, probe: Mapping, started_at: float, now: float) -> bool:
        """True when the probe should run now: past initialDelaySeconds and a period since the last
        run. Returning True counts as the run's start."""
        st = self._state(key, started_at)
        if now < started_at + float(probe.get("initialDelaySeconds") or 0):
            return False
        period = float(probe.get("periodSeconds") or DEFAULT_PERIOD)
        if st.last_run is not None and now - st.last_run < period:
            return False
        st.last_run = now
        return True

    def record(self, key: ProbeKey, probe: Mapping, ok: bool) -> bool | None:
        """Count one result; return the new state when it flips (True: ready / live / started,
        False: unready / restart needed), else None."""
        st = self._state(key)
        if ok:
            st.successes += 1
            st.failures = 0
            threshold = int(probe.get("successThreshold") or DEFAULT_SUCCESS_THRESHOLD)
            reached = st.successes >= threshold
        else:
            st.failures += 1
            st.successes = 0
            threshold = int(probe.get("failureThreshold") or DEFAULT_FAILURE_THRESHOLD)
            reached = st.failures >= threshold
        if reached and st.result is not ok:
            st.result = ok
            return ok
        return None

    def state(self, key: ProbeKey) -> bool | None:
        """Current state of a key (the kind's initial state if it never ran)."""
        st = self._states.get(key)
        return st.result if st is not None else initial_state(key[2])

    def reset(self, key: ProbeKey | str, container: str | None = None) -> None:
        """Start a key over; `reset(uid, container)` starts every probe kind of that container over."""
        if isinstance(key, tuple):
            self._states.pop(key, None)
            return
        for k in [k for k in self._states if k[0] == key and k[1] == container]:
            del self._states[k]

    def forget_pod(self, uid: str) -> None:
        """Drop every key of a pod (it was deleted)."""
        for key in [k for k in self._states if k[0] == uid]:
            del self._states[key]
