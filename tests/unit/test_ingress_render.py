"""Ingress model and nginx.conf renderer: golden files per scenario, route order (nginx's matching over the
model), class selection, merging, wildcard hosts, default backends, TLS, upstreams from EndpointSlices."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from netk8s.ingress import certs
from netk8s.ingress.model import ControllerConfig, Snapshot, build_model, route, select_server
from netk8s.ingress.render import RenderOptions, render

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "ingress"
CFG = ControllerConfig()
OPTS = RenderOptions(workdir="/run/ingress", certs_dir="/run/ingress/certs", default_certificate="default.pem")


def service(name: str, port: int = 80, target: int = 8080, port_name: str = "http", ns: str = "default") -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": port_name, "port": port, "targetPort": target, "protocol": "TCP"}]}}


def endpoints(svc: str, ips: list[str], target: int = 8080, port_name: str = "http", ready: bool = True,
              ns: str = "default") -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{svc}-abc", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": port_name, "port": target, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


def path(p: str, path_type: str, svc: str, port: int = 80) -> dict:
    return {"path": p, "pathType": path_type, "backend": {"service": {"name": svc, "port": {"number": port}}}}


def ingress(name: str, rules: list[dict], created: str = "2026-01-01T00:00:00Z", ns: str = "default",
            **spec: object) -> dict:
    return {"kind": "Ingress", "apiVersion": "networking.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"rules": rules, **spec}}


def nginx_class(name: str = "nginx", default: bool = True, controller: str = "k8s.io/ingress-nginx") -> dict:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"kind": "IngressClass", "metadata": {"name": name, "annotations": annotations},
            "spec": {"controller": controller}}


def tls_secret(name: str, cert: bytes = b"-----CERT-----", key: bytes = b"-----KEY-----") -> dict:
    return {"kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": name, "namespace": "default"},
            "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}


API_RULES = [{"host": "www.example.com", "http": {"paths": [
    path("/api", "Prefix", "api"), path("/api/v2", "Prefix", "v2"), path("/exact", "Exact", "v2"),
    path("/", "Prefix", "web"), path("/static", "ImplementationSpecific", "v2")]}}]
BASE = {"classes": [nginx_class()],
            "services": [service("web"), service("api"), service("v2")],
            "slices": [endpoints("web", ["10.244.1.5", "10.244.2.7"]), endpoints("api", ["10.244.3.9"]),
                    endpoints("v2", ["10.244.1.8", "10.244.2.2", "10.244.3.3"])]}

SCENARIOS: dict[str, Snapshot] = {
    "seed": Snapshot(ingresses=[ingress("my-ingress", [{"host": "www.example.com", "http": {"paths": [
        {"path": "/", "pathType": "ImplementationSpecific",
         "backend": {"service": {"name": "my-service", "port": {"number": 80}}}}]}}])],
        classes=[nginx_class()], services=[service("my-service", target=80)],
        slices=[endpoints("my-service", ["10.244.1.4", "10.244.2.4"], target=80)]),
    "paths": Snapshot(ingresses=[ingress("routes", API_RULES)], **BASE),
    "tls_wildcard_default": Snapshot(
        ingresses=[ingress("shop", [{"host": "*.shop.example.com", "http": {"paths": [path("/", "Prefix", "web")]}},
                                    {"http": {"paths": [path("/healthz", "Exact", "api")]}}],
                           tls=[{"hosts": ["www.example.com", "*.shop.example.com"], "secretName": "www-tls"}],
                           defaultBackend={"service": {"name": "v2", "port": {"number": 80}}}),
                   ingress("www", [{"host": "www.example.com", "http": {"paths": [path("/", "Prefix", "web")]}}],
                           created="2026-01-02T00:00:00Z")],
        secrets=[tls_secret("www-tls")], **BASE),
    "no_endpoints": Snapshot(ingresses=[ingress("down", [{"host": "down.example.com", "http": {"paths": [
        path("/", "Prefix", "web"), path("/gone", "Prefix", "missing"), path("/port", "Prefix", "web", 81)]}}])],
        classes=[nginx_class()], services=[service("web")], slices=[endpoints("web", ["10.244.1.5"], ready=False)]),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden(name: str) -> None:
    text = render(build_model(SCENARIOS[name], CFG), OPTS)
    golden = GOLDEN_DIR / f"{name}.conf"
    if os.environ.get("NETK8S_REGEN_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"missing golden file {golden}; run with NETK8S_REGEN_GOLDEN=1 and review it"
    assert text == golden.read_text(), f"render of {name} differs from {golden} (NETK8S_REGEN_GOLDEN=1 to update)"


# (request path, the Service that answers it) for API_RULES: element-wise Prefix, longest match wins,
# Exact beats Prefix, trailing slashes, case sensitivity, ImplementationSpecific is a plain string prefix.
PATH_TABLE = [
    ("/", "web"), ("/index.html", "web"), ("/api", "api"), ("/api/", "api"), ("/api/v1", "api"),
    ("/api/v1/users", "api"), ("/apiv2", "web"), ("/api-docs", "web"), ("/api/v2", "v2"), ("/api/v2/", "v2"),
    ("/api/v2/items", "v2"), ("/api/v20", "api"), ("/api/v2x/y", "api"), ("/API", "web"), ("/Api/v2", "web"),
    ("/exact", "v2"), ("/exact/", "web"), ("/exactly", "web"), ("/EXACT", "web"), ("/static", "v2"),
    ("/staticfiles", "v2"), ("/static/app.js", "v2"), ("/stat", "web"), ("/api/v2?x=1", "v2"),
]


@pytest.mark.parametrize("request_path,want", PATH_TABLE, ids=[p for p, _ in PATH_TABLE])
def test_route_order(request_path: str, want: str) -> None:
    model = build_model(SCENARIOS["paths"], CFG)
    loc = route(model, "www.example.com", request_path)
    assert loc.backend.source.startswith(f"default/{want}:"), (request_path, loc)


def test_exact_beats_prefix_of_the_same_path_whatever_the_order() -> None:
    older = ingress("a", [{"host": "h.example.com", "http": {"paths": [path("/x", "Prefix", "web")]}}])
    newer = ingress("b", [{"host": "h.example.com", "http": {"paths": [path("/x", "Exact", "api")]}}],
                    created="2026-02-01T00:00:00Z")
    model = build_model(Snapshot(ingresses=[newer, older], **BASE), CFG)
    assert route(model, "h.example.com", "/x").backend.source == "default/api:80"
    assert route(model, "h.example.com", "/x/y").backend.source == "default/web:80"


def test_two_ingresses_for_one_host_merge_and_the_oldest_wins_a_clash() -> None:
    first = ingress("first", [{"host": "m.example.com", "http": {"paths": [path("/a", "Prefix", "api"),
                                                                            path("/", "Prefix", "web")]}}])
    second = ingress("second", [{"host": "m.example.com", "http": {"paths": [path("/b", "Prefix", "v2"),
                                                                              path("/a", "Prefix", "v2")]}}],
                     created="2026-03-01T00:00:00Z")
    model = build_model(Snapshot(ingresses=[second, first], **BASE), CFG)
    assert route(model, "m.example.com", "/b/1").backend.source == "default/v2:80"
    assert route(model, "m.example.com", "/a").backend.source == "default/api:80"
    assert route(model, "m.example.com", "/zzz").backend.source == "default/web:80"
    assert any("also claimed" in p for p in model.problems)


def test_wildcard_matches_exactly_one_label() -> None:
    model = build_model(SCENARIOS["tls_wildcard_default"], CFG)
    assert select_server(model, "a.shop.example.com").name == "*.shop.example.com"
    assert select_server(model, "A.Shop.example.com:443").name == "*.shop.example.com"
    assert select_server(model, "a.b.shop.example.com").name == "_"
    assert select_server(model, "shop.example.com").name == "_"


def test_default_backends_and_hostless_rules() -> None:
    model = build_model(SCENARIOS["tls_wildcard_default"], CFG)
    # an unknown host: the catch-all server, whose / is the (oldest) Ingress defaultBackend
    assert route(model, "nope.example.org", "/").backend.source == "default/v2:80"
    # a host-less rule lives in the catch-all server
    assert route(model, "nope.example.org", "/healthz").backend.source == "default/api:80"
    # no defaultBackend anywhere: 404
    plain = build_model(SCENARIOS["seed"], CFG)
    loc = route(plain, "other.example.com", "/")
    assert loc.backend.upstream is None and loc.backend.status == 404


def test_tls_hosts_get_the_secret_and_a_redirect() -> None:
    model = build_model(SCENARIOS["tls_wildcard_default"], CFG)
    www = select_server(model, "www.example.com")
    assert www.certificate and www.certificate.startswith("default-www-tls-") and www.redirect_https
    assert model.certificates[www.certificate] == b"-----CERT-----\n-----KEY-----\n"
    assert select_server(model, "x.shop.example.com").certificate == www.certificate
    assert select_server(model, "none.example.org").certificate is None


def test_missing_or_bad_secret_falls_back_to_the_default_certificate() -> None:
    snap = SCENARIOS["tls_wildcard_default"]
    missing = build_model(Snapshot(ingresses=snap.ingresses, **BASE), CFG)
    assert select_server(missing, "www.example.com").certificate is None
    assert any("secret default/www-tls not found" in p for p in missing.problems)
    bad = build_model(snap, CFG, check_pair=certs.pair_problem)
    assert select_server(bad, "www.example.com").certificate is None
    assert any("tls.crt is not a PEM certificate" in p for p in bad.problems)


def test_real_pair_is_accepted_and_a_mismatch_refused() -> None:
    cert, key = certs.self_signed("www.example.com", ["www.example.com"])
    _, other_key = certs.self_signed("x", ["x"])
    assert certs.pair_problem(cert, key) is None
    assert certs.pair_problem(cert, other_key) == "tls.key does not match the certificate in tls.crt"


def test_upstreams_are_ready_pod_ips_with_target_ports() -> None:
    model = build_model(SCENARIOS["paths"], CFG)
    ups = {u.name: u.servers for u in model.upstreams}
    assert ups["default-web-80"] == ("10.244.1.5:8080", "10.244.2.7:8080")
    assert ups["default-v2-80"] == ("10.244.1.8:8080", "10.244.2.2:8080", "10.244.3.3:8080")
    down = build_model(SCENARIOS["no_endpoints"], CFG)
    assert down.upstreams == []
    assert route(down, "down.example.com", "/").backend.status == 503
    assert any("service default/missing not found" in p for p in down.problems)
    assert any("has no port 81" in p for p in down.problems)


@pytest.mark.parametrize("ing_class,annotation,classes,ours", [
    ("nginx", None, [nginx_class()], True),
    ("other", None, [nginx_class(), nginx_class("other", False, "example.com/other")], False),
    ("missing", None, [nginx_class()], False),
    (None, "nginx", [nginx_class(default=False)], True),
    (None, "traefik", [nginx_class()], False),
    (None, None, [nginx_class()], True),  # the default class is ours
    (None, None, [nginx_class(default=False)], False),
    (None, None, [nginx_class(default=False), nginx_class("other", True, "example.com/other")], False),
])
def test_ingress_class_selection(ing_class: str | None, annotation: str | None, classes: list[dict],
                                 ours: bool) -> None:
    ing = ingress("x", [{"host": "c.example.com", "http": {"paths": [path("/", "Prefix", "web")]}}])
    if ing_class:
        ing["spec"]["ingressClassName"] = ing_class
    if annotation:
        ing["metadata"]["annotations"] = {"kubernetes.io/ingress.class": annotation}
    model = build_model(Snapshot(ingresses=[ing], classes=classes, services=BASE["services"],
                                 slices=BASE["slices"]), CFG)
    assert (select_server(model, "c.example.com").name == "c.example.com") is ours
    assert bool(model.ingresses) is ours


@pytest.mark.integration
@pytest.mark.parametrize("name", SCENARIOS)
def test_rendered_config_passes_nginx_t(name: str, tmp_path: Path) -> None:
    """Every golden scenario is a configuration the real nginx accepts (`nginx -t`)."""
    cert, key = certs.fake_certificate()
    certs_dir = tmp_path / "certs"
    certs_dir.mkdir()
    (certs_dir / "default.pem").write_bytes(cert + key)
    model = build_model(SCENARIOS[name], CFG)
    for fname in model.certificates:
        (certs_dir / fname).write_bytes(cert + key)  # the scenario's dummy PEMs stand for a real pair
    opts = RenderOptions(workdir=str(tmp_path), certs_dir=str(certs_dir), default_certificate="default.pem")
    text = render(model, opts)
    if os.geteuid() != 0:  # only root may switch the workers' user; nginx -t checks that too
        text = text.replace(f"user {opts.user} {opts.group};\n", "")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    (tmp_path / "temp").mkdir()
    proc = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
