"""pods/log, pods/exec and pods/portforward: the API server proxies them to the pod's node's kubelet API.

As kube-apiserver does (pkg/registry/core/pod/rest/log.go, subresources.go): it reads the Pod, picks the
container (the only one, or `container=`), finds the node's address (status.addresses InternalIP) and
kubelet port (status.daemonEndpoints.kubeletEndpoint.Port) and forwards to kubelet's
`/containerLogs/NS/POD/C` and `/exec/NS/POD/C` (netk8s.node.kubelet_api). exec is a WebSocket in the
remote-command channel protocols: the server offers the kubelet the protocols the client offered, in the
client's order, answers the client with the one the kubelet chose, and relays messages both ways
unchanged, so stdin, tty resize and the error channel's exit code pass through as the kubelet sends
them. Node addresses live on the lab's underlay: the outgoing connection is opened inside the network
namespace given by --kubelet-netns. The kubelet is shown a bearer token (--kubelet-token-file), over
TLS when --kubelet-certificate-authority is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from netk8s.apiserver import auth
from netk8s.apiserver import resources as res
from netk8s.apiserver import status as st
from netk8s.apiserver.app import APP_KEY, USER_KEY, Target
from netk8s.dataplane.netns import open_socket
from netk8s.errors import BadRequest, NetK8sError, NotFound
from netk8s.model import remotecommand as rc

KUBELET_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10)


class KubeletUnavailable(NetK8sError):
    """The pod's node's kubelet API cannot be reached (kube-apiserver answers 500 / 502)."""


@dataclass(frozen=True)
class KubeletClient:
    """How this API server reaches node kubelets: the bearer token, the network namespace to dial from
    (None: this one) and the CA of the kubelets' serving certificates (None: plain HTTP)."""

    token: str
    netns: str | None = None
    ca_file: str | None = None

    def session(self) -> aiohttp.ClientSession:
        ctx: ssl.SSLContext | bool = False
        if self.ca_file:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        netns = self.netns

        def factory(addr: Any) -> socket.socket:
            family, type_, proto = addr[0], addr[1], addr[2]
            sock = open_socket(netns, family, type_, proto)
            sock.setblocking(False)
            return sock

        connector = aiohttp.TCPConnector(ssl=ctx, socket_factory=factory, force_close=True)
        return aiohttp.ClientSession(connector=connector, timeout=KUBELET_TIMEOUT,
                                     headers={"Authorization": f"Bearer {self.token}"})

    @property
    def scheme(self) -> str:
        return "https" if self.ca_file else "http"


def _kubelet(request: web.Request) -> KubeletClient:
    client = getattr(request.app[APP_KEY], "kubelet", None)
    if client is None:
        raise KubeletUnavailable("this API server has no kubelet credentials (--kubelet-token-file): "
                                 "pods/exec and pods/log are unavailable")
    return client


async def _pod_and_node(request: web.Request, target: Target) -> tuple[dict, dict]:
    server = request.app[APP_KEY]
    ns = target.namespace or ""
    pod = await server.read(lambda: server.store.try_get("Pod", ns, target.name))
    if pod is None:
        raise NotFound(f'pods "{target.name}" not found')
    node_name = (pod.get("spec") or {}).get("nodeName") or ""
    if not node_name:
        raise BadRequest(f"pod {target.name} does not have a host assigned")
    node = await server.read(lambda: server.store.try_get("Node", "", node_name))
    if node is None:
        raise NotFound(f'nodes "{node_name}" not found')
    return pod, node


def node_endpoint(node: dict) -> tuple[str, int]:
    """The kubelet's address: the Node's InternalIP (else its first address) and daemonEndpoints port."""
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    ip = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    ip = ip or next((a.get("address") for a in addresses if a.get("address")), None)
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    name = (node.get("metadata") or {}).get("name", "")
    if not ip or not port:
        raise KubeletUnavailable(f"node {name} publishes no kubelet endpoint (status.addresses, "
                                 "status.daemonEndpoints.kubeletEndpoint.Port)")
    return str(ip), int(port)


def pick_container(pod: dict, asked: str) -> str:
    """The container a request is about (kube-apiserver's podutil container defaulting)."""
    name = pod["metadata"]["name"]
    names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    if asked:
        if asked not in names:
            raise BadRequest(f"container {asked} is not valid for pod {name}")
        return asked
    if len(names) == 1:
        return names[0]
    default = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if default in names:
        return str(default)
    raise BadRequest(f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")


def _url(client: KubeletClient, node: dict, path: str) -> str:
    ip, port = node_endpoint(node)
    host = f"[{ip}]" if ":" in ip else ip
    return f"{client.scheme}://{host}:{port}{path}"


async def _kubelet_error(resp: aiohttp.ClientResponse) -> NetK8sError:
    """The kubelet's refusal, as the error the client sees (its Status message when it sent one)."""
    try:
        body = await resp.json(content_type=None)
        message = str(body.get("message") or body)
    except (ValueError, aiohttp.ContentTypeError):
        message = (await resp.text()).strip()
    if resp.status == 404:
        return NotFound(message)
    if resp.status in (400, 422):
        return BadRequest(message)
    return KubeletUnavailable(f"kubelet: {resp.status}: {message}")


# ------------------------------------------------------------------------------------------ pods/log

LOG_PARAMS = ("follow", "tailLines", "limitBytes", "timestamps", "sinceSeconds", "previous")


async def pod_log(request: web.Request, target: Target) -> web.StreamResponse:
    pod, node = await _pod_and_node(request, target)
    container = pick_container(pod, request.query.get("container", ""))
    client = _kubelet(request)
    params = {k: request.query[k] for k in LOG_PARAMS if k in request.query}
    url = _url(client, node, f"/containerLogs/{target.namespace}/{target.name}/{container}")
    async with client.session() as session:
        try:
            upstream = await session.get(url, params=params)
        except (aiohttp.ClientError, OSError) as exc:
            raise KubeletUnavailable(f"cannot reach the kubelet of node {node['metadata']['name']}: {exc}") from exc
        async with upstream:
            if upstream.status != 200:
                raise await _kubelet_error(upstream)
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp


# ------------------------------------------------------------------------------------------ pods/exec

EXEC_FLAGS = ("stdin", "stdout", "stderr", "tty")


async def pod_exec(request: web.Request, target: Target) -> web.StreamResponse:
    user: auth.User = request[USER_KEY]
    # A WebSocket exec is a GET, but it runs a command: kube-apiserver authorizes it as `create`
    # (KEP-4006, AuthorizePodWebsocketUpgradeCreatePermission).
    if not auth.allowed(user, "create", target.resource):
        return web.json_response(st.forbidden(user.name, "create", target.resource, "", target.namespace or "",
                                              target.name), status=403)
    pod, node = await _pod_and_node(request, target)
    container = pick_container(pod, request.query.get("container", ""))
    phase = (pod.get("status") or {}).get("phase", "Pending")
    if phase in ("Succeeded", "Failed"):
        raise BadRequest(f"cannot exec into a container in a completed pod; current phase is {phase}")
    command = request.query.getall("command", [])
    if not command:
        raise BadRequest("you must specify at least 1 command")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    probe = web.WebSocketResponse(protocols=rc.EXEC_PROTOCOLS)
    if not probe.can_prepare(request).ok or not any(p in rc.EXEC_PROTOCOLS for p in offered):
        raise BadRequest("Upgrade request required: pods/exec is served as a WebSocket in one of the "
                         f"protocols {', '.join(rc.EXEC_PROTOCOLS)}")
    params: list[tuple[str, str]] = [("command", c) for c in command]
    params += [(f, request.query[f]) for f in EXEC_FLAGS if f in request.query]
    return await _proxy_websocket(request, node, f"/exec/{target.namespace}/{target.name}/{container}", params,
                                  offered)


async def pod_portforward(request: web.Request, target: Target) -> web.StreamResponse:
    """pods/portforward as a WebSocket (`v4.channel.k8s.io`, the client libraries' protocol), relayed to
    the kubelet. kubectl 1.31+ tunnels SPDY inside the WebSocket (`SPDY/3.1+portforward.k8s.io`) or
    speaks SPDY itself: neither is served, so `kubectl port-forward` is refused with a BadRequest Status
    naming the protocol (portforward_refusal)."""
    user: auth.User = request[USER_KEY]
    if not auth.allowed(user, "create", target.resource):
        return web.json_response(st.forbidden(user.name, "create", target.resource, "", target.namespace or "",
                                              target.name), status=403)
    _, node = await _pod_and_node(request, target)
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    probe = web.WebSocketResponse(protocols=rc.PORTFORWARD_PROTOCOLS)
    if not probe.can_prepare(request).ok or not any(p in rc.PORTFORWARD_PROTOCOLS for p in offered):
        raise BadRequest(portforward_refusal(request.headers.get("Upgrade", ""), offered))
    params = [("ports", p) for p in request.query.getall("ports", [])]
    if not params:
        raise BadRequest("ports: at least one port is required")
    return await _proxy_websocket(request, node, f"/portForward/{target.namespace}/{target.name}", params,
                                  [p for p in offered if p in rc.PORTFORWARD_PROTOCOLS])


def portforward_refusal(upgrade: str, offered: list[str]) -> str:
    """Why a pods/portforward request is refused, naming the protocol the client asked for. kubectl
    1.31+ first offers a WebSocket carrying SPDY (KEP-4006 tunnelling, subprotocol
    SPDY/3.1+portforward.k8s.io), then on a failed upgrade retries as plain SPDY/3.1 (`Upgrade: SPDY/3.1`,
    client-go's fallback dialer): both need a SPDY/3.1 framer, which this server does not have."""
    served = f"it is served as a WebSocket in {' or '.join(rc.PORTFORWARD_PROTOCOLS)}"
    tunnelled = [p for p in offered if p.upper().startswith("SPDY/")]
    if tunnelled:
        return (f"pods/portforward: the WebSocket protocol {tunnelled[0]} (SPDY tunnelled in a WebSocket) is not "
                f"supported; {served}")
    if upgrade.upper().startswith("SPDY/"):
        return f"pods/portforward: the protocol {upgrade} is not supported; {served}"
    if offered:
        return f"pods/portforward: none of the WebSocket protocols {', '.join(offered)} is supported; {served}"
    return f"Upgrade request required: pods/portforward is a stream; {served}"


async def _proxy_websocket(request: web.Request, node: dict, path: str, params: list[tuple[str, str]],
                           offered: list[str]) -> web.StreamResponse:
    """Open the kubelet's WebSocket with the client's protocols, answer the client with the one the
    kubelet chose, and relay messages both ways until either side ends."""
    client = _kubelet(request)
    url = _url(client, node, path)
    async with client.session() as session:
        try:
            upstream = await session.ws_connect(url, params=params, protocols=offered, max_msg_size=0,
                                                autoping=True, heartbeat=None)
        except aiohttp.WSServerHandshakeError as exc:
            raise (NotFound if exc.status == 404 else BadRequest)(f"kubelet refused the stream: {exc.message}") \
                from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise KubeletUnavailable(f"cannot reach the kubelet of node {node['metadata']['name']}: {exc}") from exc
        chosen = upstream.protocol or ""
        ws = web.WebSocketResponse(protocols=(chosen,) if chosen else (), max_msg_size=0, heartbeat=None)
        try:
            await ws.prepare(request)
            await _relay(ws, upstream)
        finally:
            await upstream.close()
            await ws.close()
        return ws


async def _relay(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse[bool]) -> None:
    """Copy messages both ways until the kubelet ends the stream (or the client goes away)."""

    async def upward() -> None:
        async for msg in client:
            if msg.type == WSMsgType.BINARY:
                await kubelet.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await kubelet.send_str(msg.data)

    async def downward() -> None:
        async for msg in kubelet:
            if msg.type == WSMsgType.BINARY:
                await client.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await client.send_str(msg.data)

    up = asyncio.ensure_future(upward())
    down = asyncio.ensure_future(downward())
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if not down.done():
            # the client left: tell the kubelet, which ends the command, then drain what it still sends
            await kubelet.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(down), 10)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)


res.register(res.Subresource("Pod", "log", ("get",), ("", "v1", "Pod"), pod_log))
res.register(res.Subresource("Pod", "exec", ("create", "get"), ("", "v1", "PodExecOptions"), pod_exec))
res.register(res.Subresource("Pod", "portforward", ("create", "get"), ("", "v1", "PodPortForwardOptions"),
                             pod_portforward))
