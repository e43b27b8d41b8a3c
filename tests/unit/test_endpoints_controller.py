"""Endpoints / EndpointSlice / mirroring controllers and the `kubernetes` Service, driven through a fake store."""

from __future__ import annotations

import copy

import pytest

from netk8s.controller.endpoints import (
    ENDPOINTS,
    LABEL_HEADLESS,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    LABEL_SKIP_MIRROR,
    MANAGED_ANNOTATION,
    MIRROR_CONTROLLER,
    NAME_ALPHABET,
    SLICE_CONTROLLER,
    find_port,
    slice_name,
)
from netk8s.controller.manager import default_reconcilers
from netk8s.controller.reconcile import Reconciler
from netk8s.controller.services import KUBERNETES_SERVICE
from netk8s.model.ipam import POD_IP_ANNOTATION
from netk8s.model.kinds import KINDS
from netk8s.store.base import Op

T0 = 1_700_000_000.0
Key = tuple[str, str, str]


class Cluster:
    """A dict-backed store and snapshot: uids, resourceVersion checks, ops applied like the store does."""

    def __init__(self) -> None:
        self.objs: dict[Key, dict] = {}
        self.rev = 0

    @staticmethod
    def key(obj: dict) -> Key:
        md = obj["metadata"]
        ns = (md.get("namespace") or "default") if KINDS[obj["kind"]].namespaced else ""
        return obj["kind"], ns, md["name"]

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [copy.deepcopy(o) for k, o in sorted(self.objs.items())
                if k[0] == kind and (namespace is None or k[1] == namespace)]

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        ns = (namespace or "default") if KINDS[kind].namespaced else ""
        obj = self.objs.get((kind, ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    def add(self, obj: dict, uid: str | None = None) -> dict:
        obj = copy.deepcopy(obj)
        md = obj["metadata"]
        if KINDS[obj["kind"]].namespaced:
            md.setdefault("namespace", "default")
        self.rev += 1
        md.setdefault("uid", uid or f"uid-{md['name']}-{self.rev}")
        md["resourceVersion"] = str(self.rev)
        md.setdefault("creationTimestamp", f"2023-11-14T22:13:{self.rev % 60:02d}Z")
        assert self.key(obj) not in self.objs, self.key(obj)
        self.objs[self.key(obj)] = obj
        return obj

    def put(self, obj: dict) -> None:
        """Replace (or add) an object as a user would, bumping its resourceVersion."""
        key = self.key({**obj, "metadata": {"namespace": "default", **obj["metadata"]}})
        if key in self.objs:
            obj = copy.deepcopy(obj)
            obj["metadata"]["uid"] = self.objs[key]["metadata"]["uid"]
            self.rev += 1
            obj["metadata"]["resourceVersion"] = str(self.rev)
            obj["metadata"].setdefault("namespace", key[1])
            self.objs[key] = obj
        else:
            self.add(obj)

    def remove(self, kind: str, name: str, ns: str = "default") -> None:
        del self.objs[(kind, ns, name)]

    def apply(self, ops: list[Op]) -> None:
        for op in ops:
            key = self.key(op.obj)
            cur = self.objs.get(key)
            if op.type == "create":
                assert cur is None, f"create of existing {key}"
                self.add(op.obj)
                continue
            assert cur is not None, f"{op.type} of missing {key}"
            rv = op.obj["metadata"].get("resourceVersion")
            assert not rv or rv == cur["metadata"]["resourceVersion"], f"stale {op.type} of {key}"
            if op.type == "delete":
                del self.objs[key]
            else:
                new = copy.deepcopy(op.obj)
                new["metadata"]["uid"] = cur["metadata"]["uid"]
                self.rev += 1
                new["metadata"]["resourceVersion"] = str(self.rev)
                self.objs[key] = new

    def run(self, reconciler: Reconciler = ENDPOINTS) -> list[Op]:
        snap = Cluster()
        snap.objs = copy.deepcopy(self.objs)
        ops = reconciler.reconcile(snap, T0)
        self.apply(ops)
        return ops

    def converge(self, reconciler: Reconciler = ENDPOINTS) -> list[Op]:
        """One pass, then assert that a second pass is a no-op (level-triggered and idempotent)."""
        ops = self.run(reconciler)
        assert self.run(reconciler) == [], "second pass must write nothing"
        return ops

    def slices(self, svc: str, ns: str = "default") -> list[dict]:
        return [s for s in self.list("EndpointSlice", ns)
                if s["metadata"].get("labels", {}).get(LABEL_SERVICE_NAME) == svc]


# ---- builders --------------------------------------------------------------------------------------


def service(name: str = "web", selector: dict | None = None, ports: list[dict] | None = None,
            labels: dict | None = None, **spec: object) -> dict:
    svc_spec: dict = {"type": "ClusterIP", "clusterIP": "10.96.0.50",
                      "ports": ports if ports is not None else [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}
    if selector is not None:
        svc_spec["selector"] = selector
    svc_spec.update(spec)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}}, "spec": svc_spec}


def pod(name: str, ip: str | None, ready: bool = True, labels: dict | None = None, node: str = "node1",
        phase: str = "Running", terminating: bool = False, ports: list[dict] | None = None, **spec: object) -> dict:
    p: dict = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "labels": labels if labels is not None else {"app": "web"}},
               "spec": {"nodeName": node, "containers": [{"name": "c", "image": "agnhost", "ports": ports or []}], **spec},
               "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if ip:
        p["status"]["podIP"] = ip
        p["metadata"]["annotations"] = {POD_IP_ANNOTATION: ip}
    if terminating:
        p["metadata"]["deletionTimestamp"] = "2023-11-14T22:14:00Z"
    return p


def addr(c: Cluster, name: str, ip: str, node: str = "node1", **extra: str) -> dict:
    p = c.get("Pod", "default", name)
    assert p is not None
    return {"ip": ip, **extra, "nodeName": node,
            "targetRef": {"kind": "Pod", "namespace": "default", "name": name, "uid": p["metadata"]["uid"]}}


def conds(ready: bool, serving: bool, terminating: bool) -> dict:
    return {"ready": ready, "serving": serving, "terminating": terminating}


def slice_view(s: dict) -> tuple:
    """(ports, [(ip, conditions, node, hostname)]) of one slice, for compact assertions."""
    return (s["ports"], [(e["addresses"][0], e["conditions"], e.get("nodeName"), e.get("hostname"))
                         for e in s["endpoints"]])


WEB = {"app": "web"}


# ---- v1 Endpoints ----------------------------------------------------------------------------------


def test_ready_pods_become_sorted_addresses_with_target_refs() -> None:
    c = Cluster()
    c.add(service(selector=WEB, labels={"team": "a"}, ports=[{"name": "http", "port": 80, "protocol": "TCP",
                                                              "targetPort": 8080}]))
    c.add(pod("b", "10.244.1.10"))
    c.add(pod("a", "10.244.2.9", node="node2"))
    c.add(pod("z", "10.244.1.9"))
    c.converge()
    ep = c.get("Endpoints", "default", "web")
    assert ep is not None
    assert ep["metadata"]["labels"] == {"team": "a"}
    assert ep["metadata"]["annotations"][MANAGED_ANNOTATION] == "endpoint-controller"
    assert ep["subsets"] == [{
        "addresses": [addr(c, "z", "10.244.1.9"), addr(c, "b", "10.244.1.10"), addr(c, "a", "10.244.2.9", "node2")],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }]


@pytest.mark.parametrize("case, pods, want_ready, want_not_ready", [
    ("not ready goes to notReadyAddresses", [pod("a", "10.244.1.2"), pod("b", "10.244.1.3", ready=False)],
     ["10.244.1.2"], ["10.244.1.3"]),
    ("terminating pods are dropped (ShouldPodBeInEndpoints)",
     [pod("a", "10.244.1.2"), pod("b", "10.244.1.3", terminating=True)], ["10.244.1.2"], []),
    ("no status.podIP: the IPAM annotation is not enough",
     [pod("a", "10.244.1.2"), {**pod("b", None), "metadata": {"name": "b", "labels": WEB,
                                                             "annotations": {POD_IP_ANNOTATION: "10.244.1.3"}}}],
     ["10.244.1.2"], []),
    ("Succeeded and Failed pods are dropped",
     [pod("a", "10.244.1.2", phase="Succeeded"), pod("b", "10.244.1.3", phase="Failed"), pod("c", "10.244.1.4")],
     ["10.244.1.4"], []),
    ("other labels are not selected", [pod("a", "10.244.1.2", labels={"app": "db"}), pod("b", "10.244.1.3")],
     ["10.244.1.3"], []),
])
def test_endpoints_address_selection(case: str, pods: list[dict], want_ready: list[str],
                                     want_not_ready: list[str]) -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    for p in pods:
        c.add(p)
    c.converge()
    subsets = c.get("Endpoints", "default", "web")["subsets"]  # type: ignore[index]
    ready = [a["ip"] for s in subsets for a in s.get("addresses", [])]
    not_ready = [a["ip"] for s in subsets for a in s.get("notReadyAddresses", [])]
    assert (ready, not_ready) == (want_ready, want_not_ready), case


def test_pod_in_another_namespace_is_not_selected() -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    other = pod("x", "10.244.1.5")
    other["metadata"]["namespace"] = "other"
    c.add(other)
    c.converge()
    assert c.get("Endpoints", "default", "web")["subsets"] == []  # type: ignore[index]


def test_publish_not_ready_addresses_puts_everyone_in_addresses() -> None:
    c = Cluster()
    c.add(service(selector=WEB, publishNotReadyAddresses=True))
    c.add(pod("a", "10.244.1.2", ready=False))
    c.add(pod("b", "10.244.1.3", terminating=True))
    c.converge()
    subsets = c.get("Endpoints", "default", "web")["subsets"]  # type: ignore[index]
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.1.2", "10.244.1.3"]
    assert "notReadyAddresses" not in subsets[0]
    [slc] = c.slices("web")
    assert [e["conditions"] for e in slc["endpoints"]] == [conds(True, False, False), conds(True, True, True)]


def test_named_target_port_is_resolved_per_pod() -> None:
    c = Cluster()
    c.add(service(selector=WEB, ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}]))
    c.add(pod("a", "10.244.1.2", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}]))
    c.add(pod("b", "10.244.1.3", ports=[{"name": "web", "containerPort": 9090, "protocol": "TCP"}]))
    c.add(pod("c", "10.244.1.4", ports=[{"name": "other", "containerPort": 8080, "protocol": "TCP"}]))
    c.add(pod("d", "10.244.1.5", ports=[{"name": "web", "containerPort": 7070, "protocol": "UDP"}]))
    c.converge()
    subsets = c.get("Endpoints", "default", "web")["subsets"]  # type: ignore[index]
    assert [([a["ip"] for a in s["addresses"]], s["ports"]) for s in subsets] == [
        (["10.244.1.2"], [{"name": "http", "port": 8080, "protocol": "TCP"}]),
        (["10.244.1.3"], [{"name": "http", "port": 9090, "protocol": "TCP"}]),
    ]
    # slices: one per distinct port mapping; pods lacking the port still appear, with no ports (upstream)
    views = sorted(((ports, [e[0] for e in eps]) for ports, eps in map(slice_view, c.slices("web"))),
                   key=lambda v: [p["port"] for p in v[0]])
    assert views == [
        ([], ["10.244.1.4", "10.244.1.5"]),
        ([{"name": "http", "port": 8080, "protocol": "TCP"}], ["10.244.1.2"]),
        ([{"name": "http", "port": 9090, "protocol": "TCP"}], ["10.244.1.3"]),
    ]


@pytest.mark.parametrize("case, svc_port, want", [
    ("number", {"port": 80, "targetPort": 8080, "protocol": "TCP"}, 8080),
    ("unset targetPort means port", {"port": 80, "protocol": "TCP"}, 80),
    ("name, same protocol", {"port": 53, "targetPort": "dns", "protocol": "UDP"}, 5353),
    ("name, other protocol", {"port": 53, "targetPort": "dns", "protocol": "TCP"}, None),
    ("missing name", {"port": 80, "targetPort": "nope", "protocol": "TCP"}, None),
    ("sidecar init container", {"port": 9, "targetPort": "side", "protocol": "TCP"}, 9000),
])
def test_find_port(case: str, svc_port: dict, want: int | None) -> None:
    p = pod("a", "10.244.1.2", ports=[{"name": "dns", "containerPort": 5353, "protocol": "UDP"}])
    p["spec"]["initContainers"] = [{"name": "s", "restartPolicy": "Always",
                                    "ports": [{"name": "side", "containerPort": 9000, "protocol": "TCP"}]}]
    assert find_port(p, svc_port) == want, case


def test_multi_port_service_groups_ports_in_one_subset() -> None:
    c = Cluster()
    c.add(service(selector=WEB, ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                                       {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]))
    c.add(pod("a", "10.244.1.2"))
    c.add(pod("b", "10.244.1.3", ready=False))
    c.converge()
    subsets = c.get("Endpoints", "default", "web")["subsets"]  # type: ignore[index]
    assert subsets == [{
        "addresses": [addr(c, "a", "10.244.1.2")],
        "notReadyAddresses": [addr(c, "b", "10.244.1.3")],
        "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "http", "port": 8080, "protocol": "TCP"}],
    }]
    [slc] = c.slices("web")
    assert slc["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"},
                            {"name": "dns", "port": 5353, "protocol": "UDP"}]


def test_hostname_only_when_subdomain_names_the_service() -> None:
    c = Cluster()
    c.add(service("nginx", selector=WEB, clusterIP="None"))
    c.add(pod("web-0", "10.244.1.2", hostname="web-0", subdomain="nginx"))
    c.add(pod("web-1", "10.244.1.3", hostname="web-1", subdomain="other"))
    c.converge()
    addrs = c.get("Endpoints", "default", "nginx")["subsets"][0]["addresses"]  # type: ignore[index]
    assert [a.get("hostname") for a in addrs] == ["web-0", None]
    [slc] = c.slices("nginx")
    assert [e.get("hostname") for e in slc["endpoints"]] == ["web-0", None]


def test_headless_without_ports_lists_addresses_and_is_labelled() -> None:
    c = Cluster()
    c.add(service("db", selector=WEB, clusterIP="None", ports=[]))
    c.add(pod("a", "10.244.1.2"))
    c.converge()
    ep = c.get("Endpoints", "default", "db")
    assert ep["subsets"] == [{"addresses": [addr(c, "a", "10.244.1.2")]}]  # type: ignore[index]
    assert ep["metadata"]["labels"] == {LABEL_HEADLESS: ""}  # type: ignore[index]
    [slc] = c.slices("db")
    assert slc["metadata"]["labels"][LABEL_HEADLESS] == ""
    assert slice_view(slc) == ([], [("10.244.1.2", conds(True, True, False), "node1", None)])


def test_user_endpoints_of_a_selector_service_are_taken_over() -> None:
    c = Cluster()
    c.add({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
           "subsets": [{"addresses": [{"ip": "1.2.3.4"}], "ports": [{"port": 1, "protocol": "TCP"}]}]})
    c.add(service(selector=WEB))
    c.add(pod("a", "10.244.1.2"))
    c.converge()
    ep = c.get("Endpoints", "default", "web")
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.1.2"]  # type: ignore[index]


# ---- EndpointSlices --------------------------------------------------------------------------------


def test_slice_shape_labels_owner_and_name() -> None:
    c = Cluster()
    svc = c.add(service(selector=WEB, labels={"team": "a"},
                        ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]))
    c.add(pod("a", "10.244.1.2"))
    c.converge()
    [slc] = c.slices("web")
    name = slc["metadata"]["name"]
    assert name.startswith("web-") and len(name) == len("web-") + 5
    assert all(ch in NAME_ALPHABET for ch in name[4:])
    assert slc["metadata"]["labels"] == {"team": "a", LABEL_SERVICE_NAME: "web", LABEL_MANAGED_BY: SLICE_CONTROLLER}
    assert slc["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Service", "name": "web", "uid": svc["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]
    assert slc["addressType"] == "IPv4"
    p = c.get("Pod", "default", "a")
    assert slc["endpoints"] == [{
        "addresses": ["10.244.1.2"], "conditions": conds(True, True, False),
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": p["metadata"]["uid"]},  # type: ignore[index]
        "nodeName": "node1"}]
    assert slc["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_slice_name_is_deterministic_per_owner_uid() -> None:
    assert slice_name("web", "uid-1", "[]") == slice_name("web", "uid-1", "[]")
    assert slice_name("web", "uid-1", "[]") != slice_name("web", "uid-2", "[]")
    assert len(slice_name("x" * 80, "u", "[]")) == 63


@pytest.mark.parametrize("case, p, want", [
    ("ready", pod("a", "10.244.1.2"), conds(True, True, False)),
    ("not ready", pod("a", "10.244.1.2", ready=False), conds(False, False, False)),
    ("terminating, still serving", pod("a", "10.244.1.2", terminating=True), conds(False, True, True)),
    ("terminating, not serving", pod("a", "10.244.1.2", ready=False, terminating=True), conds(False, False, True)),
])
def test_slice_conditions_like_the_endpointslice_controller(case: str, p: dict, want: dict) -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    c.add(p)
    c.converge()
    [slc] = c.slices("web")
    assert [e["conditions"] for e in slc["endpoints"]] == [want], case


def test_no_pods_gives_empty_endpoints_and_a_placeholder_slice() -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    c.converge()
    assert c.get("Endpoints", "default", "web")["subsets"] == []  # type: ignore[index]
    [slc] = c.slices("web")
    assert (slc["endpoints"], slc["ports"]) == ([], [])


def test_pod_changes_update_in_place_and_second_pass_is_quiet() -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    c.add(pod("a", "10.244.1.2"))
    c.converge()
    [before] = c.slices("web")
    c.put(pod("a", "10.244.1.2", ready=False))
    ops = c.converge()
    assert sorted((op.type, op.obj["kind"]) for op in ops) == [("update", "EndpointSlice"), ("update", "Endpoints")]
    [after] = c.slices("web")
    assert after["metadata"]["name"] == before["metadata"]["name"]
    assert after["endpoints"][0]["conditions"] == conds(False, False, False)
    ep = c.get("Endpoints", "default", "web")
    assert [a["ip"] for a in ep["subsets"][0]["notReadyAddresses"]] == ["10.244.1.2"]  # type: ignore[index]


def test_port_mapping_change_replaces_the_slice() -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    c.add(pod("a", "10.244.1.2"))
    c.converge()
    [old] = c.slices("web")
    c.put(service(selector=WEB, ports=[{"port": 80, "protocol": "TCP", "targetPort": 9090}]))
    ops = c.converge()
    assert sorted(op.type for op in ops) == ["create", "delete", "update"]
    [new] = c.slices("web")
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["ports"] == [{"name": "", "port": 9090, "protocol": "TCP"}]


def test_user_slices_of_a_selector_service_are_left_alone() -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    user = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-manual", "namespace": "default",
                         "labels": {LABEL_SERVICE_NAME: "web", LABEL_MANAGED_BY: "me"}},
            "addressType": "IPv4", "endpoints": [], "ports": []}
    c.add(user)
    c.converge()
    assert c.get("EndpointSlice", "default", "web-manual")["endpoints"] == []  # type: ignore[index]
    assert len(c.slices("web")) == 2


# ---- selector-less Services and mirroring ----------------------------------------------------------


def manual_endpoints(name: str = "ext", ips: tuple[str, ...] = ("10.244.1.2", "10.244.2.3"),
                     not_ready: tuple[str, ...] = (), **labels: str) -> dict:
    subset: dict = {"addresses": [{"ip": ip} for ip in ips], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": "default", "labels": dict(labels),
                         "annotations": {"note": "x", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "subsets": [subset]}


def test_selectorless_endpoints_are_left_alone_and_mirrored() -> None:
    c = Cluster()
    c.add(service("ext", ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]))
    ep = c.add(manual_endpoints(not_ready=("10.244.3.4",), team="a"))
    ops = c.converge()
    assert [(op.type, op.obj["kind"]) for op in ops] == [("create", "EndpointSlice")]
    assert c.get("Endpoints", "default", "ext") == ep
    [slc] = c.slices("ext")
    assert slc["metadata"]["labels"] == {"team": "a", LABEL_SERVICE_NAME: "ext", LABEL_MANAGED_BY: MIRROR_CONTROLLER}
    assert slc["metadata"]["annotations"] == {"note": "x"}
    assert slc["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
    assert slc["metadata"]["ownerReferences"][0]["uid"] == ep["metadata"]["uid"]
    assert [(e["addresses"], e["conditions"]) for e in slc["endpoints"]] == [
        (["10.244.1.2"], {"ready": True}), (["10.244.2.3"], {"ready": True}), (["10.244.3.4"], {"ready": False})]
    assert slc["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_mirror_follows_endpoints_edits() -> None:
    c = Cluster()
    c.add(service("ext"))
    c.add(manual_endpoints())
    c.converge()
    c.put(manual_endpoints(ips=("10.244.1.2",)))
    ops = c.converge()
    assert [(op.type, op.obj["kind"]) for op in ops] == [("update", "EndpointSlice")]
    assert [e["addresses"] for e in c.slices("ext")[0]["endpoints"]] == [["10.244.1.2"]]


@pytest.mark.parametrize("case, setup", [
    ("skip-mirror label", lambda c: c.add(manual_endpoints(**{LABEL_SKIP_MIRROR: "true"}))),
    ("no Service", lambda c: (c.remove("Service", "ext"), c.add(manual_endpoints()))),
    ("user supplied slices", lambda c: (c.add(manual_endpoints()), c.add({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "ext-1", "namespace": "default", "labels": {LABEL_SERVICE_NAME: "ext"}},
        "addressType": "IPv4", "endpoints": [], "ports": []}))),
])
def test_no_mirroring(case: str, setup: object) -> None:
    c = Cluster()
    c.add(service("ext"))
    setup(c)  # type: ignore[operator]
    c.converge()
    assert [s for s in c.slices("ext") if s["metadata"]["labels"].get(LABEL_MANAGED_BY) == MIRROR_CONTROLLER] == [], case
    ep = c.get("Endpoints", "default", "ext")
    assert ep is not None and ep["subsets"][0]["addresses"][0]["ip"] == "10.244.1.2", case


def test_user_slices_added_later_remove_the_mirror() -> None:
    c = Cluster()
    c.add(service("ext"))
    c.add(manual_endpoints())
    c.converge()
    c.add({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "ext-1", "namespace": "default", "labels": {LABEL_SERVICE_NAME: "ext"}},
           "addressType": "IPv4", "endpoints": [], "ports": []})
    ops = c.converge()
    assert [(op.type, op.obj["kind"]) for op in ops] == [("delete", "EndpointSlice")]
    assert [s["metadata"]["name"] for s in c.slices("ext")] == ["ext-1"]


# ---- cleanup ---------------------------------------------------------------------------------------


def test_service_deleted_removes_managed_endpoints_and_slices_only() -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    c.add(pod("a", "10.244.1.2"))
    c.add(manual_endpoints("orphan"))  # user Endpoints applied before their Service: kept
    c.converge()
    c.remove("Service", "web")
    ops = c.converge()
    assert sorted((op.type, op.obj["kind"]) for op in ops) == [("delete", "EndpointSlice"), ("delete", "Endpoints")]
    assert c.get("Endpoints", "default", "web") is None and c.slices("web") == []
    assert c.get("Endpoints", "default", "orphan") is not None and c.slices("orphan") == []


def test_service_becoming_external_name_loses_endpoints_and_slices() -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    c.add(pod("a", "10.244.1.2"))
    c.converge()
    ext = service(selector=WEB, type="ExternalName", externalName="example.com")
    del ext["spec"]["clusterIP"]
    c.put(ext)
    c.converge()
    assert c.get("Endpoints", "default", "web") is None
    assert c.slices("web") == []


def test_service_losing_its_selector_keeps_endpoints_which_get_mirrored() -> None:
    c = Cluster()
    c.add(service(selector=WEB))
    c.add(pod("a", "10.244.1.2"))
    c.converge()
    [managed] = c.slices("web")
    c.put(service())
    c.converge()
    ep = c.get("Endpoints", "default", "web")
    assert ep is not None and ep["subsets"][0]["addresses"][0]["ip"] == "10.244.1.2"
    [slc] = c.slices("web")
    assert slc["metadata"]["labels"][LABEL_MANAGED_BY] == MIRROR_CONTROLLER
    assert c.get("EndpointSlice", "default", managed["metadata"]["name"]) is None


def test_recreated_service_gets_new_slices() -> None:
    c = Cluster()
    c.add(service(selector=WEB), uid="first")
    c.add(pod("a", "10.244.1.2"))
    c.converge()
    [old] = c.slices("web")
    c.remove("Service", "web")
    c.add(service(selector=WEB), uid="second")
    c.converge()
    [new] = c.slices("web")
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["metadata"]["ownerReferences"][0]["uid"] == "second"


# ---- the kubernetes Service ------------------------------------------------------------------------


def node(name: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}}


def test_kubernetes_service_endpoints_and_slice() -> None:
    c = Cluster()
    c.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    c.add(node("node2", "192.168.56.12"))
    c.add(node("node1", "192.168.56.11"))
    c.converge(KUBERNETES_SERVICE)
    svc = c.get("Service", "default", "kubernetes")
    assert svc is not None
    assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    assert "selector" not in svc["spec"]
    assert (svc["spec"]["type"], svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"]) == (
        "ClusterIP", "10.96.0.1", ["10.96.0.1"])
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]
    ep = c.get("Endpoints", "default", "kubernetes")
    assert ep["subsets"] == [{"addresses": [{"ip": "192.168.56.11"}],  # type: ignore[index]
                              "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    assert ep["metadata"]["labels"] == {LABEL_SKIP_MIRROR: "true"}  # type: ignore[index]
    slc = c.get("EndpointSlice", "default", "kubernetes")
    assert slice_view(slc) == ([{"name": "https", "port": 6443, "protocol": "TCP"}],  # type: ignore[arg-type]
                               [("192.168.56.11", {"ready": True}, None, None)])
    # the endpoints controller leaves it alone and does not mirror it
    assert c.converge(ENDPOINTS) == []


def test_kubernetes_service_follows_first_node_and_restores_ports() -> None:
    c = Cluster()
    c.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    c.converge(KUBERNETES_SERVICE)
    assert c.get("Endpoints", "default", "kubernetes")["subsets"] == []  # type: ignore[index]
    c.add(node("node3", "192.168.56.13"))
    svc = c.get("Service", "default", "kubernetes")
    svc["spec"]["ports"][0]["port"] = 8443  # type: ignore[index]
    c.put(svc)  # type: ignore[arg-type]
    ops = c.converge(KUBERNETES_SERVICE)
    assert sorted(op.obj["kind"] for op in ops) == ["EndpointSlice", "Endpoints", "Service"]
    assert c.get("Service", "default", "kubernetes")["spec"]["ports"][0]["port"] == 443  # type: ignore[index]
    assert c.get("Endpoints", "default", "kubernetes")["subsets"][0]["addresses"] == [  # type: ignore[index]
        {"ip": "192.168.56.13"}]


def test_kubernetes_service_waits_for_default_namespace() -> None:
    c = Cluster()
    assert c.run(KUBERNETES_SERVICE) == []


def test_registered_in_default_reconcilers() -> None:
    names = [r.name for r in default_reconcilers()]
    assert {"endpoints", "kubernetes-service", "loadbalancer"} <= set(names)
