"""API server access: token-auth-file parsing, client-certificate users, the RBAC split, and the real
process over TLS (client certificate -> 200, none -> 401)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from netk8s.apiserver.auth import User, allowed, parse_token_file, user_from_bearer, user_from_peercert
from netk8s.errors import ValidationError
from tests.unit.apiserver_util import make_test_pki

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 20.0


def test_token_file_csv() -> None:
    tokens = parse_token_file('t1,alice,u1,"system:masters,team"\n\n# comment\nt2,bob,u2\n')
    assert tokens["t1"] == User("alice", "u1", ("system:masters", "team"))
    assert tokens["t2"] == User("bob", "u2", ())
    assert user_from_bearer("Bearer t2", tokens) == tokens["t2"]
    assert user_from_bearer("Bearer nope", tokens) is None
    assert user_from_bearer("Basic t2", tokens) is None
    with pytest.raises(ValidationError, match="tokens.csv:1"):
        parse_token_file("only-a-token\n", "tokens.csv")


def test_client_certificate_subject() -> None:
    peercert = {"subject": ((("organizationName", "system:nodes"),), (("commonName", "system:node:n1"),))}
    assert user_from_peercert(peercert) == User("system:node:n1", "", ("system:nodes",))
    assert user_from_peercert({}) is None
    assert user_from_peercert(None) is None


@pytest.mark.parametrize(("groups", "verb", "resource", "ok"), [
    (("system:masters",), "delete", "namespaces", True),
    (("system:nodes",), "list", "services", True),
    (("system:nodes",), "update", "pods/status", True),
    (("system:nodes",), "delete", "pods", True),
    (("system:nodes",), "create", "endpointslices", True),
    (("system:nodes",), "delete", "namespaces", False),
    (("system:nodes",), "create", "deployments", False),
    (("netk8s:viewers",), "watch", "pods", True),
    (("netk8s:viewers",), "patch", "pods", False),
    ((), "get", "", True),  # discovery for any authenticated user
    ((), "get", "pods", False),
])
def test_rbac_split(groups: tuple[str, ...], verb: str, resource: str, ok: bool) -> None:
    assert allowed(User("u", "", groups), verb, resource) is ok


def _request(url: str, ca: Path, cert: tuple[Path, Path] | None, method: str = "GET",
             token: str = "", body: dict | None = None) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _start_server(tmp_path: Path, db: Path, log_name: str) -> tuple[subprocess.Popen, str]:
    """`python -m netk8s.apiserver` on 127.0.0.1 (a free port) over the SQLite file `db`; (process, base URL)."""
    argv = [sys.executable, "-m", "netk8s.apiserver", "--store", f"sqlite://{db}", "--listen", "127.0.0.1:0",
            "--tls-cert", str(tmp_path / "srv.crt"), "--tls-key", str(tmp_path / "srv.key"),
            "--client-ca", str(tmp_path / "ca.crt"), "--token-file", str(tmp_path / "tokens.csv")]
    log = tmp_path / log_name
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + DEADLINE_S
    port = 0
    while not port and time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text().splitlines():
            if "serving https://127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1])
        time.sleep(0.05)
    if not port:
        proc.kill()
        proc.wait()
        raise AssertionError(log.read_text())
    return proc, f"https://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.integration
def test_server_process_over_tls(tmp_path: Path) -> None:
    make_test_pki(tmp_path)
    (tmp_path / "tokens.csv").write_text('viewer-token,viewer,v1,"netk8s:viewers"\n')
    proc, base = _start_server(tmp_path, tmp_path / "store.db", "apiserver.log")
    try:
        ca = tmp_path / "ca.crt"
        admin = (tmp_path / "adm.crt", tmp_path / "adm.key")
        node = (tmp_path / "node.crt", tmp_path / "node.key")
        code, body = _request(f"{base}/api/v1/namespaces", ca, None)
        assert (code, body["reason"]) == (401, "Unauthorized")
        code, body = _request(f"{base}/api/v1/namespaces", ca, admin)
        assert (code, body["kind"]) == (200, "NamespaceList")
        code, body = _request(f"{base}/api/v1/namespaces", ca, None, token="viewer-token")
        assert code == 200
        code, body = _request(f"{base}/api/v1/namespaces/default", ca, node, method="DELETE")
        assert (code, body["reason"]) == (403, "Forbidden")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0
    finally:
        _stop(proc)


@pytest.mark.integration
def test_restart_loses_nothing_and_a_watch_resumes(tmp_path: Path) -> None:
    make_test_pki(tmp_path)
    (tmp_path / "tokens.csv").write_text('admin-token,admin,a1,"system:masters"\n')
    db = tmp_path / "store.db"
    ca = tmp_path / "ca.crt"
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    proc, base = _start_server(tmp_path, db, "first.log")
    try:
        assert _request(f"{base}/api/v1/namespaces", ca, None, "POST", "admin-token", ns)[0] == 201
        code, created = _request(f"{base}/api/v1/namespaces/default/pods", ca, None, "POST", "admin-token", pod)
        assert code == 201
        proc.kill()  # no clean shutdown
        proc.wait()
        proc, base = _start_server(tmp_path, db, "second.log")
        code, got = _request(f"{base}/api/v1/namespaces/default/pods/p", ca, None, token="admin-token")
        assert (code, got["metadata"]["uid"]) == (200, created["metadata"]["uid"])
        second = {**pod, "metadata": {"name": "q"}}
        assert _request(f"{base}/api/v1/namespaces/default/pods", ca, None, "POST", "admin-token", second)[0] == 201
        # a watch from the revision seen before the restart replays what happened after it
        rv = created["metadata"]["resourceVersion"]
        url = f"{base}/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=1"
        ctx = ssl.create_default_context(cafile=str(ca))
        req = urllib.request.Request(url, headers={"Authorization": "Bearer admin-token"})
        with urllib.request.urlopen(req, context=ctx, timeout=DEADLINE_S) as resp:
            events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "q")]
    finally:
        _stop(proc)
