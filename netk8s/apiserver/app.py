"""The aiohttp application: Kubernetes REST paths, verbs, watch streams, authn/authz, Status errors.

Paths are kube-apiserver's (`/api/v1/namespaces/NS/pods/NAME/status`, `/apis/apps/v1/deployments`,
`/apis/GROUP/VERSION/watch/...`), parsed from the kinds registry so every kind is served the same way.
Store calls block (SQLite), so reads run on a thread pool and writes on ONE thread: writes are
serialised, which keeps ClusterIP/NodePort allocation free of races inside the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from netk8s.apiserver import auth, discovery, openapi_proto, protobuf, registry
from netk8s.apiserver import resources as res
from netk8s.apiserver import status as st
from netk8s.apiserver.decode import decode_body, media_type
from netk8s.apiserver.media import JSON, TABLE_TYPE, accepts_json, wants_table
from netk8s.apiserver.openapi import openapi_v2, openapi_v3, openapi_v3_index
from netk8s.apiserver.patch import APPLY_PATCH, PATCH_TYPES, apply_patch, server_side_apply, track_update
from netk8s.apiserver.tables import format_label_selector, to_table
from netk8s.apiserver.watch import WatchHub, serve_watch
from netk8s.errors import BadRequest, Conflict, NetK8sError, NotFound, ValidationError
from netk8s.model.fields import check as fields_check
from netk8s.model.kinds import KindInfo
from netk8s.model.labels import Selector, parse_selector
from netk8s.store.base import Store, normalize_key, utc_timestamp

log = logging.getLogger("netk8s.apiserver")

T = TypeVar("T")
PATCH_RETRIES = 5
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
# Field selectors each kind supports besides metadata.name and metadata.namespace
# (pkg/registry/*/strategy.go GetAttrs / SelectableFields).
FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "ReplicaSet": ("status.replicas",),
    "Service": ("spec.clusterIP", "spec.type"),
    "Secret": ("type",),
}


@dataclass(frozen=True)
class Target:
    """What a request path names: a kind, a namespace (None: all / cluster scope), an object, a subresource."""

    info: KindInfo
    namespace: str | None
    name: str
    subresource: str
    watch: bool

    @property
    def resource(self) -> str:
        return f"{self.info.plural}/{self.subresource}" if self.subresource else self.info.plural


APP_KEY: web.AppKey[ApiServer] = web.AppKey("apiserver")
USER_KEY: web.RequestKey[auth.User] = web.RequestKey("netk8s.user", auth.User)
# (kind, name) the request is about, for the Status of an error
SUBJECT_KEY: web.RequestKey[tuple[str, str]] = web.RequestKey("netk8s.subject", tuple)


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def json_response(obj: object, status: int = 200, content_type: str = JSON,
                  warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=dumps(obj), status=status, headers={"Content-Type": content_type})
    for text in warnings or ():
        # RFC 7234 warn-text is a quoted-string: escape backslashes and quotes (apiserver's warning.go)
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        resp.headers.add("Warning", f'299 - "{quoted}"')
    return resp


def status_response(status: dict) -> web.Response:
    resp = json_response(status, int(status.get("code") or 500))
    retry = (status.get("details") or {}).get("retryAfterSeconds")
    if retry:
        resp.headers["Retry-After"] = str(retry)  # as kube-apiserver's responsewriters write it
    return resp


# ------------------------------------------------------------------------------------------ parsing


def parse_target(api_root: str, tail: str) -> Target | None:
    """The Target of `/api/<tail>` (api_root "api") or `/apis/<tail>`; None when no resource matches."""
    segs = [s for s in tail.split("/") if s]
    if api_root == "api":
        if not segs or segs[0] != "v1":
            return None
        gv, rest = "v1", segs[1:]
    else:
        if len(segs) < 2:
            return None
        gv, rest = f"{segs[0]}/{segs[1]}", segs[2:]
    watch = bool(rest) and rest[0] == "watch"
    if watch:
        rest = rest[1:]
    if not rest:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        inner = res.by_plural(gv, rest[2])
        if inner is not None and inner.namespaced:
            namespace, rest = rest[1], rest[2:]
    info = res.by_plural(gv, rest[0])
    if info is None or len(rest) > 3:
        return None
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if info.namespaced and name and namespace is None:
        return None
    return Target(info, namespace if info.namespaced else None, name, sub, watch)


def field_value(obj: dict, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def parse_field_selector(kind: str, text: str) -> list[tuple[str, str, str]]:
    """(field, op, value) terms of a fieldSelector (`a=b,c!=d`); BadRequest on an unsupported field."""
    terms = []
    allowed = ("metadata.name", "metadata.namespace", *FIELD_LABELS.get(kind, ()))
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                field, value = term.split(op, 1)
                break
        else:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")
        field = field.strip()
        if field not in allowed:
            raise BadRequest(f'field label not supported: {field}')
        terms.append((field, "!=" if op == "!=" else "=", value.strip()))
    return terms


def matches(obj: dict, labels: Selector | None, fields: list[tuple[str, str, str]]) -> bool:
    if labels is not None and not labels.matches((obj.get("metadata") or {}).get("labels") or {}):
        return False
    for field, op, value in fields:
        if (field_value(obj, field) == value) != (op == "="):
            return False
    return True


def encode_continue(rev: int, last_key: str) -> str:
    return base64.urlsafe_b64encode(dumps({"rv": rev, "start": last_key})).decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadRequest(f"continue key is not valid: {token!r}") from None


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name}: invalid integer {raw!r}") from None


def _bool_param(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise BadRequest(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def _object_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


# ------------------------------------------------------------------------------------------ server


class ApiServer:
    """One API server over one store: the handlers, the executors and the watch hub."""

    def __init__(self, store: Store, tokens: dict[str, auth.User] | None = None,
                 server_address: str = "127.0.0.1:6443", read_workers: int = 8) -> None:
        self.store = store
        self.tokens = dict(tokens or {})
        self.server_address = server_address
        self.reads = concurrent.futures.ThreadPoolExecutor(read_workers, thread_name_prefix="api-read")
        self.writes = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="api-write")
        self.hub = WatchHub(store)
        # how pods/exec and pods/log reach kubelets (netk8s.apiserver.streams.KubeletClient), if at all
        self.kubelet: Any = None

    async def read(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.reads, fn)

    async def write(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.writes, fn)

    def close(self) -> None:
        self.hub.stop()
        self.reads.shutdown(wait=True, cancel_futures=True)
        self.writes.shutdown(wait=True, cancel_futures=True)

    # -- authentication / authorization -----------------------------------------------------------

    def authenticate(self, request: web.Request) -> auth.User | None:
        header = request.headers.get("Authorization", "")
        if header:
            user = auth.user_from_bearer(header, self.tokens)
            if user is not None:
                return auth.with_authenticated(user)
        transport = request.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        user = auth.user_from_peercert(peercert)
        return auth.with_authenticated(user) if user is not None else None


def create_app(server: ApiServer) -> web.Application:
    """The aiohttp Application serving `server`'s store."""
    for module in res.HANDLER_MODULES:
        importlib.import_module(module)
    app = web.Application(middlewares=[_errors, _authenticate], client_max_size=16 * 1024 * 1024)
    app[APP_KEY] = server
    h = Handlers(server)
    app.router.add_get("/version", h.version)
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, h.health)
    app.router.add_get("/api", h.api)
    app.router.add_get("/apis", h.apis)
    app.router.add_get("/openapi/v2", h.openapi_v2)
    app.router.add_get("/openapi/v3", h.openapi_v3_index)
    app.router.add_get("/openapi/v3/{path:.+}", h.openapi_v3)
    app.router.add_route("*", "/api/{tail:.*}", h.core)
    app.router.add_route("*", "/apis/{tail:.*}", h.named)

    async def on_startup(app: web.Application) -> None:
        server.hub.start(asyncio.get_running_loop())

    async def on_cleanup(app: web.Application) -> None:
        server.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except web.HTTPException as exc:
        if exc.status == 404:
            return status_response(st.path_not_found())
        if exc.status == 405:
            return status_response(st.status(405, "MethodNotAllowed", "the server does not allow this method "
                                              "on the requested resource", {}))
        raise
    except NetK8sError as err:
        kind, name = request.get(SUBJECT_KEY, ("", ""))
        return status_response(st.from_error(err, kind, name))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as exc:  # a bug must still answer with a Status (kube-apiserver's panic recovery)
        log.exception("%s %s: internal error", request.method, request.path)
        return status_response(st.status(500, "InternalError", f"Internal error occurred: {exc!r}", {}))


@web.middleware
async def _authenticate(request: web.Request, handler: Callable) -> web.StreamResponse:
    server = request.app[APP_KEY]
    user = server.authenticate(request)
    if user is None:
        return status_response(st.unauthorized())
    request[USER_KEY] = user
    resp: web.StreamResponse = await handler(request)
    return resp


def _verb(method: str, target: Target, request: web.Request) -> str:
    if method in ("GET", "HEAD"):
        if target.watch or _bool_param(request, "watch"):
            return "watch"
        return "get" if target.name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if target.name else "deletecollection"
    raise web.HTTPMethodNotAllowed(method, [])


class Handlers:
    """Request handlers bound to one ApiServer."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.store = server.store

    # -- non-resource paths --------------------------------------------------------------------------

    def _nonresource(self, request: web.Request) -> None:
        user: auth.User = request[USER_KEY]
        if not auth.allowed(user, "get", ""):
            raise web.HTTPForbidden()

    async def version(self, request: web.Request) -> web.Response:
        return json_response(discovery.version_info())

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type="text/plain")

    async def api(self, request: web.Request) -> web.Response:
        media = discovery.wants_aggregated(request.headers.get("Accept", ""))
        if media:
            version = media.split(";v=", 1)[1].split(";", 1)[0]
            return json_response(discovery.aggregated(True, f"apidiscovery.k8s.io/{version}"), content_type=media)
        return json_response(discovery.api_versions(self.server.server_address))

    async def apis(self, request: web.Request) -> web.Response:
        media = discovery.wants_aggregated(request.headers.get("Accept", ""))
        if media:
            version = media.split(";v=", 1)[1].split(";", 1)[0]
            return json_response(discovery.aggregated(False, f"apidiscovery.k8s.io/{version}"), content_type=media)
        return json_response(discovery.api_group_list())

    async def openapi_v2(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if openapi_proto.MEDIA_TYPE in accept:
            return web.Response(body=openapi_proto.openapi_v2_protobuf(),
                                headers={"Content-Type": openapi_proto.RESPONSE_TYPE})
        if not accepts_json(accept):
            # neither the protobuf (above) nor the JSON form
            return status_response(st.status(406, "NotAcceptable", "only the following media types are "
                                             "accepted: application/json", {}))
        return json_response(openapi_v2())

    async def openapi_v3_index(self, request: web.Request) -> web.Response:
        return json_response(openapi_v3_index())

    async def openapi_v3(self, request: web.Request) -> web.Response:
        doc = openapi_v3(request.match_info["path"])
        if doc is None:
            return status_response(st.path_not_found())
        headers = {"Cache-Control": "public, immutable"} if request.query.get("hash") else {}
        resp = json_response(doc)
        resp.headers.update(headers)
        return resp

    # -- resource paths ------------------------------------------------------------------------------

    async def core(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if tail.strip("/") == "v1" and request.method == "GET":
            return json_response(discovery.api_resource_list("v1"))
        return await self._resource(request, parse_target("api", tail))

    async def named(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        segs = [s for s in tail.split("/") if s]
        if request.method == "GET" and len(segs) == 1:
            group = discovery.api_group(segs[0])
            return json_response(group) if group else status_response(st.path_not_found())
        if request.method == "GET" and len(segs) == 2:
            doc = discovery.api_resource_list(f"{segs[0]}/{segs[1]}")
            return json_response(doc) if doc else status_response(st.path_not_found())
        return await self._resource(request, parse_target("apis", tail))

    async def _resource(self, request: web.Request, target: Target | None) -> web.StreamResponse:
        if target is None:
            return status_response(st.path_not_found())
        request[SUBJECT_KEY] = (target.info.kind, target.name)
        sub = target.subresource
        extra = res.SUBRESOURCES.get((target.info.kind, sub)) if sub else None
        if sub and extra is None and not ((sub == "status" and res.has_status(target.info.kind))
                                          or (sub == "scale" and target.info.kind in res.SCALE_KINDS)):
            return status_response(st.path_not_found())
        verb = _verb(request.method, target, request)
        user: auth.User = request[USER_KEY]
        if not auth.allowed(user, verb, target.resource):
            group = st.group_of(target.info.api_version)
            return status_response(st.forbidden(user.name, verb, target.resource, group,
                                                target.namespace or "", target.name))
        if extra is not None:
            if verb not in extra.verbs:
                return status_response(st.method_not_allowed(verb, target.resource))
            resp: web.StreamResponse = await extra.handler(request, target)
            return resp
        if verb == "watch":
            selective = bool(request.query.get("labelSelector", "").strip()
                             or request.query.get("fieldSelector", "").strip())
            return await serve_watch(self.server, request, target, self._filters(request, target), selective)
        method = getattr(self, f"do_{verb}")
        out: web.StreamResponse = await method(request, target)
        return out

    # -- helpers -------------------------------------------------------------------------------------

    def _filters(self, request: web.Request, target: Target) -> Callable[[dict], bool]:
        text = request.query.get("labelSelector", "")
        labels = parse_selector(text) if text.strip() else None
        fields = parse_field_selector(target.info.kind, request.query.get("fieldSelector", ""))
        if target.name:
            fields.append(("metadata.name", "=", target.name))
        ns = target.namespace

        def keep(obj: dict) -> bool:
            if ns is not None and (obj.get("metadata") or {}).get("namespace") != normalize_key(
                    target.info.kind, ns, "")[1]:
                return False
            return matches(obj, labels, fields)

        return keep

    def _now(self) -> str:
        return utc_timestamp(time.time())

    def _manager(self, request: web.Request) -> str:
        manager = request.query.get("fieldManager", "")
        if manager:
            return manager
        agent = request.headers.get("User-Agent", "")
        return agent.split("/", 1)[0] or "unknown"

    async def _body(self, request: web.Request, target: Target) -> tuple[dict, list[str]]:
        mode = request.query.get("fieldValidation", "Warn") or "Warn"
        if mode not in FIELD_VALIDATION:
            raise BadRequest(f'fieldValidation: Unsupported value: "{mode}": supported values: '
                             + ", ".join(f'"{m}"' for m in FIELD_VALIDATION))
        body = await request.read()
        kind = target.info.kind if target.subresource != "scale" else "Scale"
        try:
            obj, warnings = decode_body(body, request.headers.get("Content-Type", JSON), kind,
                                        strict=mode == "Strict")
        except ValidationError as err:
            raise BadRequest(self._decode_message(target, err)) from None
        if target.subresource != "scale":
            self._check_identity(obj, target)
        return obj, (warnings if mode == "Warn" else [])

    @staticmethod
    def _decode_message(target: Target, err: ValidationError) -> str:
        """runtime.Serializer's wording: `Deployment in version "v1" cannot be handled as a Deployment: ...`."""
        info = target.info
        version = info.api_version.split("/")[-1]
        text = err.message.removeprefix("body: ")
        return f'{info.kind} in version "{version}" cannot be handled as a {info.kind}: {text}'

    @staticmethod
    def _check_identity(obj: dict, target: Target) -> None:
        info = target.info
        kind = obj.get("kind")
        if kind not in (None, "") and kind != info.kind:
            raise BadRequest(f"the kind of the object ({kind}) does not match the kind on the URL ({info.kind})")
        api = obj.get("apiVersion")
        if api not in (None, "") and api != info.api_version:
            raise BadRequest(f'the API version in the data ({api}) does not match the expected API version '
                             f'({info.api_version})')
        obj["kind"], obj["apiVersion"] = info.kind, info.api_version
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if info.namespaced:
            want = normalize_key(info.kind, target.namespace, "")[1]
            if meta.get("namespace") not in (None, "", want):
                raise BadRequest("the namespace of the provided object does not match the namespace sent on "
                                 "the request")
            meta["namespace"] = want
        else:
            meta.pop("namespace", None)
        if target.name and meta.get("name") not in (None, "") and meta["name"] != target.name:
            raise BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL "
                             f"({target.name})")
        if target.name:
            meta["name"] = target.name

    def _render(self, request: web.Request, target: Target, obj: dict, status: int = 200,
                warnings: list[str] | None = None) -> web.Response:
        if target.subresource == "scale":
            obj = to_scale(obj)
        elif wants_table(request.headers.get("Accept", "")):
            table = to_table(target.info.kind, [obj], time.time(), request.query.get("includeObject", "Metadata"),
                             obj["metadata"].get("resourceVersion", ""))
            return json_response(table, status, TABLE_TYPE, warnings)
        return json_response(obj, status, warnings=warnings)

    def _key(self, target: Target) -> tuple[str, str, str]:
        return normalize_key(target.info.kind, target.namespace or "", target.name)

    # -- verbs ---------------------------------------------------------------------------------------

    async def do_get(self, request: web.Request, target: Target) -> web.Response:
        obj = await self.server.read(lambda: self.store.get(*self._key(target)))
        return self._render(request, target, obj)

    async def do_list(self, request: web.Request, target: Target) -> web.Response:
        keep = self._filters(request, target)
        limit = _int_param(request, "limit") or 0
        token = request.query.get("continue", "")
        start_rev, start_key = decode_continue(token) if token else (0, "")
        kind = target.info.kind
        ns = normalize_key(kind, target.namespace, "")[1] if target.namespace is not None else None
        items, rev = await self.server.read(lambda: self.store.list(kind, ns))
        selected = [o for o in items if keep(o) and (not start_key or _object_key(o) > start_key)]
        meta: dict = {"resourceVersion": str(start_rev or rev)}
        if limit and len(selected) > limit:
            selected = selected[:limit]
            meta["continue"] = encode_continue(start_rev or rev, _object_key(selected[-1]))
            meta["remainingItemCount"] = sum(1 for o in items if keep(o) and _object_key(o) > _object_key(selected[-1]))
        if wants_table(request.headers.get("Accept", "")):
            table = to_table(kind, selected, time.time(), request.query.get("includeObject", "Metadata"),
                             meta["resourceVersion"], meta.get("continue", ""))
            return json_response(table, content_type=TABLE_TYPE)
        return json_response({"kind": f"{kind}List", "apiVersion": target.info.api_version,
                              "metadata": meta, "items": selected})

    async def do_create(self, request: web.Request, target: Target) -> web.Response:
        if target.name:
            raise web.HTTPMethodNotAllowed("POST", ["GET", "PUT", "PATCH", "DELETE"])
        obj, warnings = await self._body(request, target)
        dry = _dry_run(request)
        manager = self._manager(request)
        now = self._now()
        meta = obj["metadata"]
        request[SUBJECT_KEY] = (target.info.kind, meta.get("name") or meta.get("generateName") or "")

        def write() -> dict:
            admitted = track_update(None, registry.admit_create(self.store, obj), manager, target.info.kind, now)
            if dry:
                return registry.dry_run_created(admitted, now)
            return self.store.create(admitted)

        stored = await self.server.write(write)
        return self._render(request, target, stored, 201, warnings)

    async def do_update(self, request: web.Request, target: Target) -> web.Response:
        obj, warnings = await self._body(request, target)
        dry = _dry_run(request)
        manager = self._manager(request)
        now = self._now()

        def write() -> dict:
            cur = self.store.get(*self._key(target))
            if target.subresource == "scale":
                new = registry.admit_update(self.store, from_scale(cur, obj), cur)
            else:
                new = registry.admit_update(self.store, obj, cur, target.subresource)
            new = track_update(cur, new, manager, target.info.kind, now, target.subresource)
            return self._store_update(new, cur, dry)

        stored = await self.server.write(write)
        return self._render(request, target, stored, 200, warnings)

    def _store_update(self, new: dict, cur: dict, dry: bool) -> dict:
        if dry:
            return registry.dry_run_updated(new, cur)
        return self.store.update(new)

    async def do_patch(self, request: web.Request, target: Target) -> web.Response:
        media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media not in PATCH_TYPES:
            return status_response(st.status(415, "UnsupportedMediaType",
                                             f"the body of the request was in an unknown format - accepted "
                                             f"media types include: {', '.join(PATCH_TYPES)}", {}))
        body = await request.read()
        dry = _dry_run(request)
        now = self._now()
        kind = target.info.kind
        force = _bool_param(request, "force")
        manager = request.query.get("fieldManager", "")
        mode = request.query.get("fieldValidation", "Warn") or "Warn"
        if media == APPLY_PATCH and not manager:
            raise BadRequest("PATCH, application/apply-patch+yaml: fieldManager is required for apply patch")
        if force and media != APPLY_PATCH:
            raise BadRequest("force: Forbidden: may not be specified for non-apply patch")
        manager = manager or self._manager(request)
        warnings: list[str] = []
        applied: dict | None = None
        if media == APPLY_PATCH:
            try:
                applied, warnings = decode_body(body, "application/yaml", kind, strict=mode == "Strict")
            except ValidationError as err:
                raise BadRequest(self._decode_message(target, err)) from None
            self._check_identity(applied, target)
        elif media in ("application/merge-patch+json", "application/strategic-merge-patch+json") \
                and target.subresource != "scale" and mode != "Ignore":
            warnings = self._check_patch_fields(target, body, kind, strict=mode == "Strict")
        retry = b'"resourceVersion"' not in body and b"resourceVersion:" not in body

        def write() -> dict:
            for _ in range(PATCH_RETRIES):
                cur = self.store.try_get(*self._key(target))
                try:
                    return patch_once(cur)
                except Conflict as err:
                    if not retry or getattr(err, "causes", None):
                        raise
            return patch_once(self.store.try_get(*self._key(target)))

        def patch_once(cur: dict | None) -> dict:
            if applied is not None:
                if cur is None:
                    if target.subresource:
                        raise registry_not_found(target)
                    new = server_side_apply(None, applied, manager, force, kind, now)
                    admitted = registry.admit_create(self.store, new)
                    return registry.dry_run_created(admitted, now) if dry else self.store.create(admitted)
                base = to_scale(cur) if target.subresource == "scale" else cur
                patched = server_side_apply(base, applied, manager, force, kind, now)
            else:
                if cur is None:
                    raise registry_not_found(target)
                if target.subresource == "scale":
                    scale = to_scale(cur)
                    patch_kind = "Scale"
                    patched = apply_patch(media if media != "application/strategic-merge-patch+json"
                                          else "application/merge-patch+json", scale, body, patch_kind)
                else:
                    patched = track_update(cur, apply_patch(media, cur, body, kind), manager, kind, now,
                                           target.subresource)
            if target.subresource == "scale":
                new = track_update(cur, registry.admit_update(self.store, from_scale(cur, patched), cur),
                                   manager, kind, now, "scale")
            else:
                new = registry.admit_update(self.store, patched, cur, target.subresource)
            return self._store_update(new, cur, dry)

        stored = await self.server.write(write)
        return self._render(request, target, stored, 200, warnings if mode == "Warn" else [])

    def _check_patch_fields(self, target: Target, body: bytes, kind: str, strict: bool) -> list[str]:
        """Unknown fields and bad quantities in a merge / strategic merge patch, as kube-apiserver's strict
        decoding of the patched object reports them (`kubectl apply` of an existing object with a typo:
        `strict decoding error: unknown field "spec.ports[0].targetport"`). Patch directives ($patch,
        $setElementOrder/..., $retainKeys, $deleteFromPrimitiveList/...) are not fields."""
        try:
            doc, _ = decode_body(body, JSON, None, strict=False)
        except ValidationError:
            return []  # the patch step reports a body that does not parse
        try:
            _, words = fields_check(strip_patch_directives(doc), kind, strict)
        except ValidationError as err:
            raise BadRequest(self._decode_message(target, err)) from None
        return words

    async def _delete_options(self, request: web.Request) -> dict:
        body = await request.read()
        options: dict = {}
        if body.strip() and media_type(request.headers.get("Content-Type", "")) == protobuf.MEDIA_TYPE:
            # client-go's typed clients (helm's release storage) send DeleteOptions as protobuf
            try:
                options = protobuf.decode_protobuf(bytes(body))
            except ValidationError as err:
                raise BadRequest(f"DeleteOptions: {err.message}") from None
            options.pop("apiVersion", None)
            options.pop("kind", None)
        elif body.strip():
            try:
                options = json.loads(body)
            except ValueError:
                raise BadRequest("DeleteOptions: body is not valid JSON") from None
            if not isinstance(options, dict):
                raise BadRequest("DeleteOptions: body must be an object")
        grace = _int_param(request, "gracePeriodSeconds")
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        if request.query.get("propagationPolicy"):
            options["propagationPolicy"] = request.query["propagationPolicy"]
        if request.query.get("orphanDependents"):
            options["orphanDependents"] = _bool_param(request, "orphanDependents")
        if options.get("orphanDependents") is True and not options.get("propagationPolicy"):
            options["propagationPolicy"] = "Orphan"
        if "dryRun" in options:
            for v in options["dryRun"] or []:
                if v != "All":
                    raise BadRequest(f'dryRun: Unsupported value: "{v}": supported values: "All"')
        return options

    def _delete_one(self, kind: str, ns: str, name: str, options: dict, dry: bool) -> registry.Deleted:
        pre = options.get("preconditions") or {}
        grace = options.get("gracePeriodSeconds")
        return registry.delete(self.store, kind, ns, name, self._now(),
                               grace=int(grace) if grace is not None else None,
                               propagation=options.get("propagationPolicy"),
                               precondition_rv=pre.get("resourceVersion"), precondition_uid=pre.get("uid"),
                               dry_run=dry)

    async def do_delete(self, request: web.Request, target: Target) -> web.Response:
        if target.subresource:
            raise web.HTTPMethodNotAllowed("DELETE", ["GET", "PUT", "PATCH"])
        options = await self._delete_options(request)
        dry = _dry_run(request) or bool(options.get("dryRun"))
        kind, ns, name = self._key(target)
        done = await self.server.write(lambda: self._delete_one(kind, ns, name, options, dry))
        if done.gone and target.info.kind in res.RETURN_DELETED_OBJECT:
            return self._render(request, target, done.obj)
        if done.gone:
            info = target.info
            return json_response(st.success({"name": name, "group": st.group_of(info.api_version),
                                             "kind": info.plural, "uid": done.obj["metadata"].get("uid", "")}))
        return self._render(request, target, done.obj, 202 if not dry else 200)

    async def do_deletecollection(self, request: web.Request, target: Target) -> web.Response:
        options = await self._delete_options(request)
        dry = _dry_run(request) or bool(options.get("dryRun"))
        keep = self._filters(request, target)
        kind = target.info.kind
        ns = normalize_key(kind, target.namespace, "")[1] if target.namespace is not None else None

        def write() -> list[dict]:
            out = []
            for obj in self.store.list(kind, ns)[0]:
                if not keep(obj):
                    continue
                try:
                    out.append(self._delete_one(kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"],
                                                options, dry).obj)
                except NotFound:
                    continue
            return out

        deleted = await self.server.write(write)
        rev = await self.server.read(self.store.revision)
        return json_response({"kind": f"{kind}List", "apiVersion": target.info.api_version,
                              "metadata": {"resourceVersion": str(rev)}, "items": deleted})


def strip_patch_directives(value: Any) -> Any:
    """A merge patch without strategic-merge directives (keys starting with `$`)."""
    if isinstance(value, dict):
        return {k: strip_patch_directives(v) for k, v in value.items() if not str(k).startswith("$")}
    if isinstance(value, list):
        return [strip_patch_directives(v) for v in value]
    return value


def registry_not_found(target: Target) -> NotFound:
    info = target.info
    group = st.group_of(info.api_version)
    return NotFound(f'{info.plural + "." + group if group else info.plural} "{target.name}" not found')


# ------------------------------------------------------------------------------------------ scale


def to_scale(obj: dict) -> dict:
    """autoscaling/v1 Scale of a Deployment/ReplicaSet/StatefulSet (pkg/registry/apps/*/storage scale)."""
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": int(spec.get("replicas", 1))},
            "status": {"replicas": int(status.get("replicas") or 0),
                       "selector": format_label_selector(spec.get("selector"))}}


def from_scale(cur: dict, scale: dict) -> dict:
    """`cur` with spec.replicas from a Scale; a stale Scale resourceVersion is a Conflict."""
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValidationError(f"spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0",
                              field="spec.replicas",
                              problem=f"Invalid value: {replicas!r}: must be greater than or equal to 0")
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    if rv and str(rv) != cur["metadata"]["resourceVersion"]:
        raise registry.stale(cur)
    new = json.loads(json.dumps(cur))
    new.setdefault("spec", {})["replicas"] = replicas
    return new

