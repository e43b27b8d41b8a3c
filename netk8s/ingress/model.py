"""What the ingress controller serves, as plain data: servers (hosts) with their locations, upstreams and TLS
certificates, built from Ingresses, IngressClasses, Services, EndpointSlices and Secrets. Pure: no I/O.

It follows ingress-nginx (internal/ingress/controller/controller.go, createServers/createUpstreams):
- Ingresses are taken oldest first (creationTimestamp, then namespace/name); when two claim the same
  host and path, the first wins, so several Ingresses for one host are merged.
- Upstreams are the ready endpoints' pod IPs and target ports from EndpointSlices, not the ClusterIP.
- A `Prefix` path `/foo` matches `/foo` and `/foo/...` element-wise (nginx `location = /foo` plus
  `location /foo/`); `Exact` is `location = /foo` and beats a Prefix of the same path;
  `ImplementationSpecific` is nginx's own prefix match (`location /foo`, which also matches `/foobar`).
- Rules without a host go to the catch-all server `_`; a host's `/` falls back to its Ingress's
  `defaultBackend`, and the catch-all's `/` to the oldest Ingress `defaultBackend`, else 404.
- A TLS host gets the Secret's certificate (chosen by SNI) and HTTP requests to it redirect (308).
- Wildcard hosts match exactly one label (the Ingress spec), so `*.example.com` is the regular
  expression `^[^.]+\\.example\\.com$` in nginx, where a plain `*.example.com` would match any depth.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from netk8s.model import networking

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
CATCH_ALL = "_"
STATUS_NO_ENDPOINTS = 503  # ingress-nginx answers 503 when a backend Service has no ready endpoints
STATUS_NOT_FOUND = 404
ROOT = "/"


@dataclass(frozen=True)
class ControllerConfig:
    """Who this controller is (ingress-nginx's --controller-class / --ingress-class flags)."""

    controller_class: str = "k8s.io/ingress-nginx"
    ingress_class: str = "nginx"
    watch_without_class: bool = False


@dataclass(frozen=True)
class Snapshot:
    """The objects the model is built from (as the informer caches them)."""

    ingresses: list[dict] = field(default_factory=list)
    classes: list[dict] = field(default_factory=list)
    services: list[dict] = field(default_factory=list)
    slices: list[dict] = field(default_factory=list)
    secrets: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Backend:
    """Where a location sends requests: an upstream, or a status nginx returns itself."""

    upstream: str | None
    status: int = 0
    source: str = ""  # `namespace/service:port`, for comments and messages


@dataclass(frozen=True)
class Location:
    modifier: str  # "=" (exact) or "" (prefix), nginx's location modifiers
    path: str
    backend: Backend
    path_type: str
    ingress: str  # namespace/name


@dataclass
class Server:
    name: str  # host, `*.domain` or `_`
    locations: dict[tuple[str, str], Location] = field(default_factory=dict)
    certificate: str | None = None  # file name of the PEM (cert + key) in the certificates directory
    redirect_https: bool = False
    default_backend: Backend | None = None

    @property
    def wildcard(self) -> bool:
        return self.name.startswith("*.")


@dataclass(frozen=True)
class Upstream:
    name: str
    servers: tuple[str, ...]  # ip:port


@dataclass
class Model:
    servers: list[Server]
    upstreams: list[Upstream]
    certificates: dict[str, bytes]  # file name -> PEM (certificate chain + private key)
    ingresses: list[dict]  # the Ingresses this controller serves
    problems: list[str]


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _key(obj: dict) -> tuple[str, str]:
    return _meta(obj).get("namespace", ""), _meta(obj)["name"]


def _age_order(obj: dict) -> tuple[str, str, str]:
    meta = _meta(obj)
    return meta.get("creationTimestamp") or "", meta.get("namespace", ""), meta["name"]


def our_class_names(classes: list[dict], cfg: ControllerConfig) -> set[str]:
    """The IngressClasses whose spec.controller is ours."""
    return {_meta(c)["name"] for c in classes if (c.get("spec") or {}).get("controller") == cfg.controller_class}


def is_ours(ingress: dict, classes: list[dict], cfg: ControllerConfig) -> bool:
    """ingress-nginx's class check: spec.ingressClassName naming one of our IngressClasses, the deprecated
    annotation equal to --ingress-class, or no class at all when the default IngressClass is ours (or
    --watch-ingress-without-class)."""
    mine = our_class_names(classes, cfg)
    spec_class = (ingress.get("spec") or {}).get("ingressClassName")
    if spec_class:
        return spec_class in mine
    annotation = (_meta(ingress).get("annotations") or {}).get(networking.CLASS_ANNOTATION)
    if annotation:
        return annotation == cfg.ingress_class
    defaults = networking.default_class_names(classes)
    return cfg.watch_without_class or (len(defaults) == 1 and defaults[0] in mine)


def upstream_name(namespace: str, service: str, port: object) -> str:
    """ingress-nginx's upstream name: `namespace-service-port`."""
    return f"{namespace}-{service}-{port}"


def _resolve_backend(namespace: str, backend: dict, services: dict[tuple[str, str], dict],
                     slices: dict[tuple[str, str], list[dict]], upstreams: dict[str, Upstream],
                     problems: list[str], where: str) -> Backend:
    svc_ref = backend.get("service")
    if not svc_ref:
        problems.append(f"{where}: resource backends are not supported; answering 503")
        return Backend(None, STATUS_NO_ENDPOINTS, "resource")
    name = svc_ref.get("name", "")
    port_ref = svc_ref.get("port") or {}
    wanted = port_ref.get("name") or port_ref.get("number")
    source = f"{namespace}/{name}:{wanted}"
    svc = services.get((namespace, name))
    if svc is None:
        problems.append(f"{where}: service {namespace}/{name} not found; answering 503")
        return Backend(None, STATUS_NO_ENDPOINTS, source)
    svc_port = next((p for p in (svc.get("spec") or {}).get("ports") or []
                     if (port_ref.get("name") and p.get("name") == port_ref["name"])
                     or (port_ref.get("number") and p.get("port") == port_ref["number"])), None)
    if svc_port is None:
        problems.append(f"{where}: service {namespace}/{name} has no port {wanted}; answering 503")
        return Backend(None, STATUS_NO_ENDPOINTS, source)
    if (svc_port.get("protocol") or "TCP") != "TCP":
        problems.append(f"{where}: service {namespace}/{name} port {wanted} is not TCP; answering 503")
        return Backend(None, STATUS_NO_ENDPOINTS, source)
    port_name = svc_port.get("name") or ""
    addresses: set[str] = set()
    for eps in slices.get((namespace, name), []):
        if eps.get("addressType", "IPv4") != "IPv4":
            continue
        target = next((p.get("port") for p in eps.get("ports") or []
                       if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == "TCP"), None)
        if target is None:
            continue
        for ep in eps.get("endpoints") or []:
            # EndpointSlice conditions: a nil `ready` means ready (discovery/v1 EndpointConditions).
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            addresses.update(f"{ip}:{target}" for ip in ep.get("addresses") or [])
    up_name = upstream_name(namespace, name, svc_port.get("port"))
    if not addresses:
        return Backend(None, STATUS_NO_ENDPOINTS, source)
    upstreams[up_name] = Upstream(up_name, tuple(sorted(addresses, key=_ip_port_order)))
    return Backend(up_name, 0, source)


def _ip_port_order(text: str) -> tuple[int, ...]:
    ip, _, port = text.rpartition(":")
    return (*(int(x) for x in ip.split(".")), int(port))


def locations_for(path_type: str, path: str) -> list[tuple[str, str, int]]:
    """The nginx locations (modifier, path, priority) of one Ingress path; lower priority wins a clash.

    Prefix matching is element-wise, with a trailing '/' ignored (`/foo/` is `/foo`)."""
    if path_type == "Exact":
        return [("=", path, 0)]
    if path_type == "Prefix":
        trimmed = path.rstrip("/") or ROOT
        if trimmed == ROOT:
            return [("", ROOT, 1)]
        return [("=", trimmed, 1), ("", trimmed + "/", 1)]
    return [("", path or ROOT, 2)]


def certificate_file(namespace: str, name: str, pem: bytes) -> str:
    """The PEM's file name: namespace-name plus a content hash, so a changed Secret is a new file and the
    running nginx keeps reading the old one until the reload that switches to the new one."""
    return f"{namespace}-{name}-{hashlib.sha256(pem).hexdigest()[:12]}.pem"


PairCheck = Callable[[bytes, bytes], str | None]


def build_model(snap: Snapshot, cfg: ControllerConfig, check_pair: PairCheck | None = None) -> Model:
    """The servers, upstreams and certificates for this controller's Ingresses.

    `check_pair(cert_pem, key_pem) -> problem or None` validates a Secret's certificate and key (see
    netk8s.ingress.certs.pair_problem); None accepts every pair."""
    problems: list[str] = []
    ingresses = sorted((i for i in snap.ingresses if is_ours(i, snap.classes, cfg)
                        and not _meta(i).get("deletionTimestamp")), key=_age_order)
    services = {_key(s): s for s in snap.services}
    slices: dict[tuple[str, str], list[dict]] = {}
    for eps in snap.slices:
        svc = (_meta(eps).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            slices.setdefault((_meta(eps).get("namespace", ""), svc), []).append(eps)
    secrets = {_key(s): s for s in snap.secrets}
    upstreams: dict[str, Upstream] = {}
    servers: dict[str, Server] = {CATCH_ALL: Server(CATCH_ALL)}
    claims: dict[tuple[str, tuple[str, str]], tuple[tuple[int, int, int], Location]] = {}
    certificates: dict[str, bytes] = {}

    for order, ing in enumerate(ingresses):
        ns, name = _key(ing)
        ref = f"{ns}/{name}"
        spec = ing.get("spec") or {}
        default = None
        if spec.get("defaultBackend"):
            default = _resolve_backend(ns, spec["defaultBackend"], services, slices, upstreams, problems,
                                       f"ingress {ref} defaultBackend")
            if servers[CATCH_ALL].default_backend is None:
                servers[CATCH_ALL].default_backend = default
        for i, rule in enumerate(spec.get("rules") or []):
            host = rule.get("host") or CATCH_ALL
            server = servers.setdefault(host, Server(host))
            if default is not None and server.default_backend is None and host != CATCH_ALL:
                server.default_backend = default
            for j, p in enumerate((rule.get("http") or {}).get("paths") or []):
                where = f"ingress {ref} rules[{i}].paths[{j}]"
                backend = _resolve_backend(ns, p.get("backend") or {}, services, slices, upstreams, problems, where)
                path_type = p.get("pathType") or "ImplementationSpecific"
                for modifier, path, priority in locations_for(path_type, p.get("path") or ""):
                    rank = (priority, order, j)
                    claim_key = (host, (modifier, path))
                    loc = Location(modifier, path, backend, path_type, ref)
                    held = claims.get(claim_key)
                    if held is not None and held[1].ingress != ref:
                        problems.append(f"{where}: {modifier or 'prefix'} {path} on {host} is also claimed by "
                                        f"ingress {held[1].ingress}; {'this one' if rank < held[0] else 'that one'} wins")
                    if held is None or rank < held[0]:
                        claims[claim_key] = (rank, loc)
        for k, tls in enumerate(spec.get("tls") or []):
            secret_name = tls.get("secretName")
            hosts = tls.get("hosts") or []
            if not secret_name or not hosts:
                continue
            secret = secrets.get((ns, secret_name))
            where = f"ingress {ref} tls[{k}]"
            cert = networking.secret_bytes(secret, networking.TLS_CERT_KEY) if secret else None
            key = networking.secret_bytes(secret, networking.TLS_PRIVATE_KEY_KEY) if secret else None
            if cert is None or key is None:
                problems.append(f"{where}: secret {ns}/{secret_name} not found or without tls.crt/tls.key; "
                                "using the default certificate")
                continue
            problem = check_pair(cert, key) if check_pair is not None else None
            if problem:
                problems.append(f"{where}: secret {ns}/{secret_name}: {problem}; using the default certificate")
                continue
            pem = cert.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n"
            fname = certificate_file(ns, secret_name, pem)
            certificates[fname] = pem
            for host in hosts:
                server = servers.setdefault(host, Server(host))
                if server.certificate is None:
                    server.certificate = fname
                    server.redirect_https = True

    for (host, loc_key), (_, loc) in claims.items():
        servers[host].locations[loc_key] = loc
    for server in servers.values():
        if ("", ROOT) not in server.locations:
            backend = server.default_backend or Backend(None, STATUS_NOT_FOUND, "default backend")
            server.locations[("", ROOT)] = Location("", ROOT, backend, "Prefix", "")
    ordered = [servers[CATCH_ALL]] + [servers[h] for h in sorted(h for h in servers if h != CATCH_ALL)]
    return Model(ordered, [upstreams[n] for n in sorted(upstreams)], certificates, ingresses, problems)


def wildcard_regex(host: str) -> str:
    """`*.example.com` as nginx's server_name regex matching exactly one more label."""
    return "~^[^.]+" + re.escape(host[1:]).replace("\\-", "-") + "$"


def sorted_locations(server: Server) -> list[Location]:
    """Locations as ingress-nginx writes them: longest path first, exact before prefix."""
    return sorted(server.locations.values(), key=lambda loc: (-len(loc.path), loc.path, loc.modifier != "="))


# ------------------------------------------------------------------------------------------- matching
# nginx's request routing, for tests and `netk8s` explanations: server by Host/SNI (exact name, then
# the first matching regular expression, else the default server); location: an exact `=` match, else
# the longest prefix (ngx_http_core_find_location; there are no regex locations here).


def select_server(model: Model, host: str) -> Server:
    host = host.lower().split(":", 1)[0]
    for server in model.servers:
        if server.name == host:
            return server
    for server in model.servers:
        if server.wildcard and re.fullmatch(wildcard_regex(server.name)[2:-1], host):
            return server
    return model.servers[0]


def match_location(server: Server, path: str) -> Location:
    exact = server.locations.get(("=", path))
    if exact is not None:
        return exact
    best = max((loc for (mod, p), loc in server.locations.items() if mod == "" and path.startswith(p)),
               key=lambda loc: len(loc.path))
    return best


def route(model: Model, host: str, path: str) -> Location:
    """Which location answers `GET path` with `Host: host`."""
    return match_location(select_server(model, host), path.split("?", 1)[0])
