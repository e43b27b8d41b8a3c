"""Issue 4 acceptance: cluster DNS served by the kube-dns pods behind 10.96.0.10, from real pods of a lab.

Every query runs inside a pod with the host's own tools (dig, getent, curl): they read the pod's
/etc/resolv.conf (nameserver 10.96.0.10, search <ns>.svc.cluster.local svc.cluster.local cluster.local,
ndots:5), so these are the answers a pod of a real cluster would get.
"""

from __future__ import annotations

import ipaddress

import pytest

from tests.root.labkit import Lab, is_ready, running, unique_name

pytestmark = pytest.mark.root

APPS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx-deployment}
spec:
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.17
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: nginx-service}
spec:
  selector: {app: nginx}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: busybox}
spec:
  containers:
  - {name: busybox, image: "busybox:1.36", command: ["sleep", "3600"]}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with running(Lab(unique_name("d"), tmp_path_factory.mktemp("state"), nodes=2, dns=True), APPS,
                 ready=[("app=nginx", 2)], pods=["busybox"]) as lab:
        yield lab


def dig(lab: Lab, *args: str, pod: str = "busybox") -> list[str]:
    """`dig +short` from a pod (through its resolv.conf's nameserver, 10.96.0.10)."""
    out = lab.exec(pod, "dig", "+short", "+time=2", "+tries=2", *args).stdout
    return [line.strip() for line in out.splitlines() if line.strip() and not line.startswith(";")]


def status(lab: Lab, *args: str) -> str:
    """The response code dig reports (NOERROR, NXDOMAIN, REFUSED...)."""
    out = lab.exec("busybox", "dig", "+time=2", "+tries=2", *args).stdout
    for line in out.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    raise AssertionError(out)


def getent(lab: Lab, name: str, pod: str = "busybox") -> str | None:
    p = lab.exec(pod, "getent", "hosts", name, check=False)
    return p.stdout.split()[0] if p.returncode == 0 and p.stdout.strip() else None


def cluster_ip(lab: Lab, name: str, ns: str = "default") -> str:
    return lab.get_json("svc", name, "-n", ns)["spec"]["clusterIP"]


def test_pod_resolver_configuration(lab: Lab) -> None:
    conf = lab.exec("busybox", "cat", "/etc/resolv.conf").stdout.split("\n")
    assert "nameserver 10.96.0.10" in conf
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in conf
    assert "options ndots:5" in conf
    dns_pods = lab.pods("k8s-app=kube-dns", namespace="kube-system")
    assert len(dns_pods) == 2 and all(is_ready(p) for p in dns_pods)
    # the DNS pods use dnsPolicy Default: the node's resolvers (the lab's upstream), not themselves
    dns_pod = dns_pods[0]["metadata"]["name"]
    conf = lab.cli("exec", "-n", "kube-system", dns_pod, "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 192.168.56.100" in conf and "10.96.0.10" not in conf


def test_service_names_resolve_to_the_cluster_ip(lab: Lab) -> None:
    ip = cluster_ip(lab, "nginx-service")
    for name in ("nginx-service", "nginx-service.default", "nginx-service.default.svc",
                 "nginx-service.default.svc.cluster.local", "NGINX-Service.Default.svc.cluster.local"):
        assert getent(lab, name) == ip, name
    assert dig(lab, "nginx-service.default.svc.cluster.local") == [ip]
    assert getent(lab, "kubernetes.default") == "10.96.0.1"
    assert getent(lab, "kube-dns.kube-system") == "10.96.0.10"
    assert status(lab, "no-such-service.default.svc.cluster.local") == "NXDOMAIN"
    assert getent(lab, "no-such-service") is None


def test_service_in_another_namespace_by_svc_dot_ns(lab: Lab) -> None:
    lab.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\n"
              "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: other}\nspec:\n"
              "  ports: [{port: 5432}]\n")
    ip = cluster_ip(lab, "db", "other")
    assert lab.wait_for("db.other resolves", lambda: getent(lab, "db.other") == ip, timeout=10)
    assert getent(lab, "db") is None  # not in the pod's own namespace
    lab.cli("delete", "svc", "db", "-n", "other")
    lab.wait_for("db.other gone", lambda: getent(lab, "db.other") is None, timeout=10)


def test_headless_service_follows_scaling(lab: Lab) -> None:
    lab.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: hl}\nspec:\n  replicas: 2\n"
              "  selector: {matchLabels: {app: hl}}\n  template:\n    metadata: {labels: {app: hl}}\n"
              "    spec:\n      containers: [{name: a, image: agnhost, args: [netexec, --http-port=8080]}]\n"
              "---\napiVersion: v1\nkind: Service\nmetadata: {name: hl}\nspec:\n  clusterIP: None\n"
              "  selector: {app: hl}\n  ports: [{name: http, port: 8080}]\n")
    for replicas in (2, 4, 1):
        lab.cli("scale", "deployment", "hl", "--replicas", str(replicas))
        pods = lab.ready_pods("app=hl", replicas)
        want = sorted(p["status"]["podIP"] for p in pods)
        # the DNS answer follows the endpoints (the propagation time is measured by `make bench`)
        lab.wait_for(f"headless answer with {replicas} IPs",
                     lambda want=want: sorted(dig(lab, "hl.default.svc.cluster.local")) == want, timeout=20)
        # one SRV per ready endpoint, each target an a-b-c-d name under the service
        srv = dig(lab, "SRV", "_http._tcp.hl.default.svc.cluster.local")
        assert len(srv) == replicas and all(r.split()[2] == "8080" for r in srv), srv
        targets = sorted(r.split()[3] for r in srv)
        assert targets == sorted(f"{ip.replace('.', '-')}.hl.default.svc.cluster.local." for ip in want)
        assert dig(lab, targets[0]) == [targets[0].split(".")[0].replace("-", ".")]
    lab.cli("delete", "deployment", "hl")
    lab.wait_for("no ready endpoints: NXDOMAIN", lambda: status(lab, "hl.default.svc.cluster.local") == "NXDOMAIN",
                 timeout=30)
    lab.cli("delete", "svc", "hl")


def test_srv_ptr_txt_and_pod_records(lab: Lab) -> None:
    ip = cluster_ip(lab, "nginx-service")
    srv = dig(lab, "SRV", "_http._tcp.nginx-service.default.svc.cluster.local")
    assert len(srv) == 1 and srv[0].split()[2:] == ["80", "nginx-service.default.svc.cluster.local."], srv
    assert dig(lab, "-x", ip) == ["nginx-service.default.svc.cluster.local."]
    assert dig(lab, "TXT", "dns-version.cluster.local") == ['"1.1.0"']
    pod = lab.pods("app=nginx")[0]
    pod_ip = pod["status"]["podIP"]
    dashed = pod_ip.replace(".", "-")
    assert dig(lab, f"{dashed}.default.pod.cluster.local") == [pod_ip]
    assert dig(lab, f"{dashed}.nginx-service.default.svc.cluster.local") == [pod_ip]
    # NODATA: the name exists, not with this type; the SOA comes in the authority section
    out = lab.exec("busybox", "dig", "AAAA", "nginx-service.default.svc.cluster.local").stdout
    assert "status: NOERROR" in out and "ANSWER: 0" in out and "SOA" in out, out


def test_statefulset_pods_have_stable_names(lab: Lab) -> None:
    lab.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: None\n"
              "  selector: {app: web}\n  ports: [{name: web, port: 80}]\n---\n"
              "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  serviceName: web\n"
              "  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n"
              "    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: nginx, image: nginx}]\n")
    pods = lab.ready_pods("app=web", 2)
    by_name = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    for name in ("web-0", "web-1"):
        lab.wait_for(f"{name}.web resolves", lambda name=name: getent(lab, f"{name}.web") == by_name[name],
                     timeout=20)
        assert dig(lab, f"{name}.web.default.svc.cluster.local") == [by_name[name]]
        assert dig(lab, "-x", by_name[name]) == [f"{name}.web.default.svc.cluster.local."]
    srv = dig(lab, "SRV", "_web._tcp.web.default.svc.cluster.local")
    assert sorted(r.split()[3] for r in srv) == ["web-0.web.default.svc.cluster.local.",
                                                  "web-1.web.default.svc.cluster.local."]
    lab.cli("delete", "statefulset", "web")
    lab.cli("delete", "svc", "web")


def test_external_name_is_a_cname_and_forwarding_reaches_the_labs_upstream(lab: Lab) -> None:
    # a name outside the cluster, answered by the lab's upstream server through the cluster DNS
    assert dig(lab, "www.lab.example") == ["192.168.56.100"]
    assert getent(lab, "www.lab.example") == "192.168.56.100"
    assert dig(lab, "TXT", "hello.lab.example") == ['"netk8s upstream"']
    assert status(lab, "missing.lab.example") == "NXDOMAIN"
    lab.apply("apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  type: ExternalName\n"
              "  externalName: www.lab.example\n")
    lab.wait_for("ExternalName CNAME", lambda: dig(lab, "CNAME", "ext.default.svc.cluster.local")
                 == ["www.lab.example."], timeout=10)
    # an A query for the ExternalName gets the CNAME and, through the upstream, the address
    assert dig(lab, "ext.default.svc.cluster.local")[-1] == "192.168.56.100"
    lab.cli("delete", "svc", "ext")


def test_curl_service_by_name_and_a_service_created_after_the_pod(lab: Lab) -> None:
    page = lab.exec("busybox", "curl", "-s", "--max-time", "5", "http://nginx-service").stdout
    assert "Welcome to nginx!" in page
    lab.apply("apiVersion: v1\nkind: Service\nmetadata: {name: late}\nspec:\n  selector: {app: nginx}\n"
              "  ports: [{port: 8080, targetPort: 80}]\n")
    page = lab.wait_for("late service by name", lambda: lab.exec(
        "busybox", "curl", "-s", "--max-time", "5", "http://late:8080", check=False).stdout, timeout=20)
    assert "Welcome to nginx!" in page
    lab.cli("delete", "svc", "late")


def test_not_an_open_resolver_for_clients_outside_the_cluster(lab: Lab) -> None:
    # expose the DNS pods to the underlay keeping the client's address (externalTrafficPolicy Local)
    lab.apply("apiVersion: v1\nkind: Service\nmetadata: {name: dns-outside, namespace: kube-system}\nspec:\n"
              "  type: NodePort\n  externalTrafficPolicy: Local\n  selector: {k8s-app: kube-dns}\n"
              "  ports: [{port: 53, protocol: UDP}]\n")
    svc = lab.get_json("svc", "dns-outside", "-n", "kube-system")
    port = svc["spec"]["ports"][0]["nodePort"]
    node = lab.pods("k8s-app=kube-dns", namespace="kube-system")[0]["spec"]["nodeName"]
    node_ip = str(ipaddress.ip_address("192.168.56.10") + int(node.removeprefix("node")))

    def ask(name: str) -> str:
        out = lab.node_exec("external", "dig", "-p", str(port), f"@{node_ip}", "+time=2", "+tries=1", name).stdout
        return next((ln.split("status:")[1].split(",")[0].strip() for ln in out.splitlines() if "status:" in ln),
                    "no answer")

    # cluster names are answered authoritatively to anyone (as CoreDNS does) ...
    assert lab.wait_for("answers outside", lambda: ask("kube-dns.kube-system.svc.cluster.local") == "NOERROR",
                        timeout=20)
    # ... but recursion is refused to a client outside the cluster
    assert ask("www.lab.example") == "REFUSED"
    lab.cli("delete", "svc", "dns-outside", "-n", "kube-system")
