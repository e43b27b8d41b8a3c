"""pods/exec through the API server, as kubectl's WebSocket executor does it (v5.channel.k8s.io).

`netk8s exec` runs a command in a pod on this machine directly (netk8s.node.runtime.PodRuntime); a pod
on a node with its own kernel (a VM node) lives where this machine cannot enter it, so the command goes
the way kubectl's does: GET .../pods/POD/exec?command=..&stdout=1&stderr=1 upgraded to a WebSocket,
which the API server proxies to the node's kubelet API (netk8s.apiserver.streams). Messages are one
channel byte + data (netk8s.model.remotecommand); the error channel's Status carries the exit code.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import urllib.parse
from collections.abc import Sequence
from typing import BinaryIO

from netk8s.errors import NetK8sError
from netk8s.model import remotecommand as rc
from netk8s.store.apiclient import parse_url, ssl_context
from netk8s.store.kubeconfig import read

PROTOCOL = "v5.channel.k8s.io"


def exec_url(server: str, namespace: str, pod: str, container: str, argv: Sequence[str], stdin: bool) -> str:
    """The exec subresource's URL, one `command` parameter per word (pure)."""
    params = [("container", container), *(("command", a) for a in argv), ("stdout", "1"), ("stderr", "1")]
    if stdin:
        params.append(("stdin", "1"))
    return (f"{server}/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods/{urllib.parse.quote(pod)}/exec?"
            f"{urllib.parse.urlencode(params)}")


def exit_code(status: bytes) -> int:
    """The exit code an error-channel Status reports (pure): 0 for Success, ExitCode's cause, else 1."""
    try:
        st = json.loads(status or b"{}")
    except ValueError:
        return 1
    if st.get("status") == "Success" or not status:
        return 0
    for cause in (st.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return 1
    return 1


async def _exec(store_url: str, namespace: str, pod: str, container: str, argv: Sequence[str],
                stdin: bytes | None, out: BinaryIO, err: BinaryIO) -> int:
    import aiohttp

    server, path, context = parse_url(store_url)
    cfg = read(path, context)
    headers = {"Authorization": f"Bearer {cfg.token}"} if cfg.token else {}
    url = exec_url(server, namespace, pod, container, argv, stdin is not None)
    status = b""
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                url, protocols=(PROTOCOL,), ssl=ssl_context(cfg), headers=headers, max_msg_size=0) as ws:
            if stdin is not None:
                if stdin:
                    await ws.send_bytes(rc.encode(PROTOCOL, rc.STDIN, stdin))  # type: ignore[arg-type]
                await ws.send_bytes(bytes([rc.CLOSE, rc.STDIN]))
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                frame = rc.decode(PROTOCOL, msg.data)
                if frame is None:
                    continue
                channel, data = frame
                if channel in (rc.STDOUT, rc.STDERR):
                    stream = out if channel == rc.STDOUT else err
                    stream.write(data)
                    stream.flush()
                elif channel == rc.ERROR:
                    status += data
    except aiohttp.WSServerHandshakeError as exc:
        raise NetK8sError(f"exec in pod {namespace}/{pod}: the API server refused the stream ({exc.status} "
                          f"{exc.message})") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise NetK8sError(f"exec in pod {namespace}/{pod}: {exc}") from None
    return exit_code(status)


def pod_exec_output(store_url: str, namespace: str, pod: str, container: str,
                    argv: Sequence[str]) -> tuple[int, bytes, bytes]:
    """Run `argv` in the pod's container through the API server: (exit code, stdout, stderr)."""
    out, err = io.BytesIO(), io.BytesIO()
    code = asyncio.run(_exec(store_url, namespace, pod, container, argv, None, out, err))
    return code, out.getvalue(), err.getvalue()


def pod_exec(store_url: str, namespace: str, pod: str, container: str, argv: Sequence[str],
             stdin: bytes | None = None) -> int:
    """Run `argv` in the pod's container through the API server; its output to this process's
    stdout/stderr as it comes; returns the command's exit code."""
    return asyncio.run(_exec(store_url, namespace, pod, container, argv, stdin, sys.stdout.buffer,
                             sys.stderr.buffer))
