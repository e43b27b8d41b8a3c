"""Issue 13 acceptance: Ingress through a real nginx on a real lab, from the external client (outside the
cluster), to the ingress-nginx controller's LoadBalancer IP.

Backends are agnhost: `serve-hostname` answers its pod's name on every path (so the pod name tells which
Service answered a path), `netexec` has /hostname and /header (X-Forwarded-For).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from netk8s.dataplane import netns
from netk8s.ingress import certs
from netk8s.ingress.nginx import OWNER_FILE, WORKDIR_PREFIX
from netk8s.lab.manager import lab_processes
from netk8s.model import naming
from tests.root.kubectlkit import KUBECTL
from tests.root.labkit import REPO, Lab, running, unique_name

pytestmark = pytest.mark.root

SEED = (REPO / "tests" / "manifests" / "valid" / "ingress-seed-v1beta1.yaml").read_text()


def hostname_app(name: str, replicas: int = 1) -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 2
              containers:
              - name: app
                image: registry.k8s.io/e2e-test-images/agnhost:2.39
                args: [serve-hostname]
                ports: [{{containerPort: 9376}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}}}
        spec:
          selector: {{app: {name}}}
          ports: [{{name: http, port: 80, targetPort: 9376}}]
        """)


MY_SERVICE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: my-service}
spec:
  replicas: 2
  selector: {matchLabels: {app: my-service}}
  template:
    metadata: {labels: {app: my-service}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.39
        args: [netexec, --http-port=8080]
---
apiVersion: v1
kind: Service
metadata: {name: my-service}
spec:
  selector: {app: my-service}
  ports: [{port: 80, targetPort: 8080}]
"""


def ingress(name: str, rules: list[dict], **spec: object) -> str:
    return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
                       "spec": {"rules": rules, **spec}})


def rule(host: str | None, *paths: tuple[str, str, str]) -> dict:
    out: dict = {"http": {"paths": [{"path": p, "pathType": t, "backend": {"service": {"name": s,
                                                                                      "port": {"number": 80}}}}
                                    for p, t, s in paths]}}
    if host:
        out["host"] = host
    return out


ROUTES = ingress("routes", [rule("paths.example.com", ("/api", "Prefix", "api"), ("/api/v2", "Prefix", "v2"),
                                 ("/exact", "Exact", "v2"))])
MANIFEST = "\n---\n".join([SEED, MY_SERVICE, hostname_app("api"), hostname_app("v2"), hostname_app("other"),
                           hostname_app("loop"), ROUTES])


def lab_workdirs(name: str) -> list[Path]:
    """The ingress controllers' working directories (nginx config, certificates) of this lab's pods."""
    pids = set(lab_processes(name))
    found = []
    for d in Path("/tmp").glob(WORKDIR_PREFIX + "*"):
        try:
            if int((d / OWNER_FILE).read_text()) in pids:
                found.append(d)
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    the_lab = Lab(unique_name("i"), tmp_path_factory.mktemp("state"), nodes=2, ingress=True)
    workdirs: list[Path] = []
    with running(the_lab, MANIFEST, ready=[("app=my-service", 2), ("app=api", 1), ("app=v2", 1),
                                           ("app=other", 1), ("app=loop", 1)]) as up:
        workdirs = lab_workdirs(up.name)
        assert workdirs, "no ingress controller working directory found"
        yield up
    # nothing leaks: namespaces, processes (nginx included) and the controller's files are gone
    assert not netns.list_netns(naming.lab_netns_prefix(the_lab.name))
    assert not lab_processes(the_lab.name)
    assert not [d for d in workdirs if d.exists()]
    assert not (the_lab.state_dir / the_lab.name).exists()


def lb_ip(lab: Lab) -> str:
    svc = lab.get_json("svc", "ingress-nginx-controller", "-n", "ingress-nginx")
    return svc["status"]["loadBalancer"]["ingress"][0]["ip"]


def curl(lab: Lab, *args: str) -> tuple[int, str]:
    """curl from the external client: (HTTP status, body)."""
    p = lab.node_exec("external", "curl", "-s", "-m", "10", "-o", "/dev/stdout", "-w", "\n%{http_code}", *args,
                      check=False)
    body, _, code = p.stdout.rpartition("\n")
    return int(code or 0), body


def via(lab: Lab, host: str, path: str = "/") -> tuple[int, str]:
    return curl(lab, "-H", f"Host: {host}", f"http://{lb_ip(lab)}{path}")


def served_by(lab: Lab, host: str, path: str) -> str:
    """The Service (its Deployment's name) whose pod answered, or the HTTP status when not 200."""
    status, body = via(lab, host, path)
    if status != 200:
        return str(status)
    return body.strip().rsplit("-", 2)[0]


def test_seed_manifest_routes_by_host_and_other_hosts_get_404(lab: Lab) -> None:
    lab.wait_for("the seed's rule served", lambda: via(lab, "www.example.com", "/hostname")[0] == 200)
    status, body = via(lab, "www.example.com", "/hostname")
    assert status == 200 and body.startswith("my-service-")
    status, body = via(lab, "nobody.example.com", "/hostname")
    assert status == 404 and "404 Not Found" in body
    # the same through the NodePort of the node running the controller (externalTrafficPolicy Local)
    svc = lab.get_json("svc", "ingress-nginx-controller", "-n", "ingress-nginx")
    node_port = next(p["nodePort"] for p in svc["spec"]["ports"] if p["port"] == 80)
    [controller] = lab.pods(namespace="ingress-nginx")
    node_ip = lab.get_json("node", controller["spec"]["nodeName"])["status"]["addresses"][0]["address"]
    status, body = curl(lab, "-H", "Host: www.example.com", f"http://{node_ip}:{node_port}/hostname")
    assert status == 200 and body.startswith("my-service-")
    # nginx passes the external client's address (the Service keeps it: externalTrafficPolicy Local)
    assert via(lab, "www.example.com", "/header?key=X-Forwarded-For") == (200, str(naming.EXTERNAL_IP))
    assert via(lab, "www.example.com", "/header?key=X-Real-IP") == (200, str(naming.EXTERNAL_IP))


def test_status_gets_the_lb_ip_and_get_shows_the_columns(lab: Lab) -> None:
    ip = lb_ip(lab)
    assert ip.startswith("192.168.56.2")
    lab.wait_for("ingress status", lambda: (lab.get_json("ingress", "my-ingress").get("status") or {})
                 .get("loadBalancer", {}).get("ingress") == [{"ip": ip}])
    out = lab.cli("get", "ingress").stdout.splitlines()
    assert out[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    row = next(line.split() for line in out if line.startswith("my-ingress "))
    assert row[1:5] == ["nginx", "www.example.com", ip, "80"]  # class set by the DefaultIngressClass admission
    assert lab.get_json("ingress", "my-ingress")["apiVersion"] == "networking.k8s.io/v1"
    # the real kubectl through the lab's API server prints its own columns for the same object
    home = lab.state_dir / "kubectl-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, KUBECONFIG=str(lab.kubeconfig), HOME=str(home))
    got = subprocess.run([str(KUBECTL), "get", "ingress", "-o", "wide"], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert got[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], got
    assert next(line.split() for line in got if line.startswith("my-ingress "))[1:5] == [
        "nginx", "www.example.com", ip, "80"], got
    described = subprocess.run([str(KUBECTL), "describe", "ingress", "my-ingress"], env=env, capture_output=True,
                               text=True, timeout=60, check=True).stdout
    assert re.search(r"Ingress Class:\s+nginx", described) and re.search(r"Address:\s+" + re.escape(ip), described)
    assert re.search(r"www\.example\.com\s*\n?\s*/\s+my-service:", described), described


# (path, the Service that answers) for ROUTES: element-wise Prefix, longest match, Exact over Prefix,
# trailing slashes, case sensitivity; "404" where no rule matches.
PATHS = [
    ("/api", "api"), ("/api/", "api"), ("/api/v1", "api"), ("/api/v1/users", "api"), ("/api/v2", "v2"),
    ("/api/v2/", "v2"), ("/api/v2/items/1", "v2"), ("/api/v20", "api"), ("/api/v2x", "api"),
    ("/apiv2", "404"), ("/api-docs", "404"), ("/API", "404"), ("/Api/v2", "404"), ("/exact", "v2"),
    ("/exact/", "404"), ("/exactly", "404"), ("/EXACT", "404"), ("/", "404"), ("/ap", "404"),
    ("/api/v2?x=1", "v2"), ("/api//v2", "v2"), ("/exact?q=1", "v2"),  # nginx merges slashes (merge_slashes)
]


def test_path_routing_table(lab: Lab) -> None:
    lab.wait_for("the routes Ingress served", lambda: served_by(lab, "paths.example.com", "/api") == "api")
    got = {p: served_by(lab, "paths.example.com", p) for p, _ in PATHS}
    assert got == dict(PATHS)


def test_wildcard_merge_class_and_default_backend(lab: Lab) -> None:
    lab.apply("\n---\n".join([
        ingress("wild", [rule("*.apps.example.com", ("/", "Prefix", "other"))]),
        ingress("merge-a", [rule("merge.example.com", ("/a", "Prefix", "api"))]),
        ingress("merge-b", [rule("merge.example.com", ("/b", "Prefix", "v2"))]),
        json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "other"},
                    "spec": {"controller": "example.com/other-controller"}}),
        ingress("ignored", [rule("ignored.example.com", ("/", "Prefix", "api"))], ingressClassName="other"),
    ]))
    lab.wait_for("wildcard host", lambda: served_by(lab, "x.apps.example.com", "/") == "other")
    assert served_by(lab, "a.b.apps.example.com", "/") == "404"  # one label only
    lab.wait_for("merged host", lambda: served_by(lab, "merge.example.com", "/b") == "v2")
    assert served_by(lab, "merge.example.com", "/a/x") == "api"
    assert served_by(lab, "ignored.example.com", "/") == "404"
    assert not (lab.get_json("ingress", "ignored").get("status") or {}).get("loadBalancer", {}).get("ingress")
    lab.apply(json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "fallback"},
                          "spec": {"defaultBackend": {"service": {"name": "other", "port": {"number": 80}}}}}))
    lab.wait_for("defaultBackend", lambda: served_by(lab, "nobody.example.com", "/x") == "other")
    assert served_by(lab, "paths.example.com", "/api") == "api"
    lab.cli("delete", "ingress", "fallback")
    lab.wait_for("404 again", lambda: served_by(lab, "nobody.example.com", "/x") == "404")


LOOP = """
import http.client, json, sys, time, os
ip, host, stop, out = sys.argv[1:5]
ok, failed, answers = 0, [], {}
while not os.path.exists(stop):
    try:
        c = http.client.HTTPConnection(ip, 80, timeout=30)
        c.request("GET", "/", headers={"Host": host})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        if r.status == 200:
            ok += 1
            answers[body] = answers.get(body, 0) + 1
        else:
            failed.append(f"{r.status} {body[:60]}")
    except OSError as e:
        failed.append(repr(e))
with open(out, "w") as fh:
    json.dump({"ok": ok, "failed": failed, "answers": answers}, fh)
"""


def test_scaling_and_rule_edits_under_a_request_loop_fail_no_request(lab: Lab, tmp_path: Path) -> None:
    lab.apply(ingress("loop", [rule("loop.example.com", ("/", "Prefix", "loop"))]))
    lab.wait_for("loop host", lambda: served_by(lab, "loop.example.com", "/") == "loop")
    script, stop, out = tmp_path / "loop.py", tmp_path / "stop", tmp_path / "out.json"
    script.write_text(LOOP)
    loop = subprocess.Popen([sys.executable, "-m", "netk8s.cli.main", "lab", "exec", "external", "--",
                             sys.executable, str(script), lb_ip(lab), "loop.example.com", str(stop), str(out)],
                            env=lab.env, cwd=REPO)
    try:
        lab.cli("scale", "deployment", "loop", "--replicas", "5")
        lab.ready_pods("app=loop", 5, timeout=90)
        for pod in lab.pods("app=loop")[:2]:  # pods replaced while the others serve
            lab.cli("delete", "pod", pod["metadata"]["name"])
        lab.ready_pods("app=loop", 5, timeout=90)
        lab.apply(ingress("loop", [rule("loop.example.com", ("/", "Prefix", "loop"), ("/new", "Prefix", "v2"))]))
        lab.wait_for("edited rule", lambda: served_by(lab, "loop.example.com", "/new") == "v2")
        lab.cli("scale", "deployment", "loop", "--replicas", "1")
        lab.ready_pods("app=loop", 1, timeout=90)
    finally:
        stop.write_text("stop")
        loop.wait(60)
    result = json.loads(out.read_text())
    assert result["failed"] == []
    assert result["ok"] > 20
    assert len(result["answers"]) >= 5  # the scaled-up pods all answered


def test_tls_with_sni_and_http_redirect(lab: Lab, tmp_path: Path) -> None:
    ca_cert, ca_key = certs.self_signed("netk8s test CA", [], ca=True)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    issuer = (x509.load_pem_x509_certificate(ca_cert), serialization.load_pem_private_key(ca_key, None))
    cert, key = certs.self_signed("www.example.com", ["www.example.com"], issuer=issuer)  # type: ignore[arg-type]
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "www-tls"}, "type": "kubernetes.io/tls",
              "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}
    lab.apply(json.dumps(secret) + "\n---\n" + ingress(
        "www-tls", [rule("www.example.com", ("/hostname", "Exact", "my-service"))],
        tls=[{"hosts": ["www.example.com"], "secretName": "www-tls"}]))
    ip = lb_ip(lab)

    def https() -> tuple[int, str]:
        return curl(lab, "--resolve", f"www.example.com:443:{ip}", "--cacert", str(ca_file),
                    "https://www.example.com/hostname")

    _, body = lab.wait_for("https with the Secret's certificate", lambda: (r := https())[0] == 200 and r)
    assert body.startswith("my-service-")
    redirect = lab.node_exec("external", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                             "-H", "Host: www.example.com", f"http://{ip}/hostname").stdout
    assert redirect == "308 https://www.example.com/hostname"
    # another host on 443 gets the default (fake) certificate, which the CA does not sign
    other = lab.node_exec("external", "curl", "-s", "-m", "10", "--resolve", f"paths.example.com:443:{ip}",
                          "--cacert", str(ca_file), "https://paths.example.com/api", check=False)
    assert other.returncode == 60  # CURLE_PEER_FAILED_VERIFICATION


def test_secret_is_not_readable_by_a_non_root_user(lab: Lab) -> None:
    encoded = lab.get_json("secret", "www-tls")["data"]["tls.key"]
    # a line of the PEM key's body (the controller's files), and the Secret's base64 value (the store)
    markers = [base64.b64decode(encoded).strip().splitlines()[1].decode(), encoded[:64]]
    roots = [str(lab.state_dir), *(str(d) for d in lab_workdirs(lab.name))]
    probe = textwrap.dedent("""\
        import os, sys
        markers, hits, denied = sys.argv[1].encode().split(b","), [], 0
        for root in sys.argv[2:]:
            for base, dirs, files in os.walk(root, onerror=lambda e: None):
                for f in files:
                    try:
                        with open(os.path.join(base, f), "rb") as fh:
                            data = fh.read()
                            if any(m in data for m in markers):
                                hits.append(os.path.join(base, f))
                    except OSError:
                        denied += 1
        print(hits)
        """)
    # the system interpreter: the venv's may live under /root, which nobody cannot enter
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c",
                        probe, ",".join(markers), *roots], capture_output=True, text=True, timeout=120, check=True,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert p.stdout.strip() == "[]"
    # ... while root finds the key where it is kept: the store and the controller's certificates
    found = subprocess.run([sys.executable, "-c", probe, ",".join(markers), *roots], capture_output=True, text=True,
                           timeout=120, check=True).stdout
    assert "store.db" in found and "/certs/" in found
