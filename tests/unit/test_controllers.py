"""Pure controllers driven through a dict-backed fake store: scheduling, IPAM, workloads, GC, idempotency."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from netk8s.controller.gc import GARBAGE_COLLECTOR, NAMESPACES
from netk8s.controller.manager import default_reconcilers
from netk8s.controller.reconcile import Reconciler, is_active, is_pod_ready, rfc3339
from netk8s.controller.scheduler import NODE_CIDRS, SCHEDULER
from netk8s.controller.workloads import (
    POD_TEMPLATE_HASH,
    REPLICASETS,
    STS_POD_NAME,
    template_hash,
)
from netk8s.model.ipam import POD_IP_ANNOTATION
from netk8s.model.kinds import KINDS
from netk8s.store.base import Op

T0 = 1_700_000_000.0
Key = tuple[str, str, str]


class FakeCluster:
    """A tiny store: dict of objects, resourceVersion checks, deterministic generateName suffixes."""

    def __init__(self) -> None:
        self.objs: dict[Key, dict] = {}
        self.rev = 0
        self.seq = 0
        self.now = T0
        self.conflicts = 0

    @staticmethod
    def key(obj: dict) -> Key:
        md = obj["metadata"]
        ns = (md.get("namespace") or "default") if KINDS[obj["kind"]].namespaced else ""
        return obj["kind"], ns, md["name"]

    # snapshot protocol
    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [copy.deepcopy(o) for k, o in sorted(self.objs.items())
                if k[0] == kind and (namespace is None or k[1] == namespace)]

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        ns = (namespace or "default") if KINDS[kind].namespaced else ""
        obj = self.objs.get((kind, ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    def frozen(self) -> FakeCluster:
        snap = FakeCluster()
        snap.objs = copy.deepcopy(self.objs)
        return snap

    # writes
    def _bump(self, obj: dict) -> None:
        self.rev += 1
        obj["metadata"]["resourceVersion"] = str(self.rev)

    def add(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        if not md.get("name"):
            self.seq += 1
            md["name"] = f"{md['generateName']}{self.seq:05d}"
        if KINDS[obj["kind"]].namespaced:
            md.setdefault("namespace", "default")
        key = self.key(obj)
        if key in self.objs:
            raise KeyError(key)
        self.seq += 1
        md["uid"] = f"uid-{self.seq}"
        md["creationTimestamp"] = rfc3339(self.now)
        md["generation"] = 1
        self._bump(obj)
        self.objs[key] = obj
        return obj

    def modify(self, kind: str, ns: str, name: str, fn: Callable[[dict], None]) -> None:
        obj = self.objs[(kind, ns, name)]
        before = copy.deepcopy(obj)
        fn(obj)
        if obj.get("spec") != before.get("spec"):
            obj["metadata"]["generation"] += 1
        if obj != before:
            self._bump(obj)

    def apply(self, ops: list[Op]) -> None:
        for op in ops:
            md = op.obj["metadata"]
            key = self.key(op.obj) if md.get("name") else None
            cur = self.objs.get(key) if key else None
            rv = md.get("resourceVersion")
            if op.type == "create":
                if cur is not None:
                    self.conflicts += 1
                    continue
                self.add(op.obj)
            elif cur is None or (rv and rv != cur["metadata"]["resourceVersion"]):
                self.conflicts += 1
            elif op.type == "delete":
                del self.objs[key]  # type: ignore[arg-type]
            else:
                new = copy.deepcopy(op.obj)
                for field in ("uid", "creationTimestamp", "generation"):
                    new["metadata"][field] = cur["metadata"][field]
                if new.get("spec") != cur.get("spec"):
                    new["metadata"]["generation"] += 1
                self._bump(new)
                self.objs[key] = new  # type: ignore[index]

    def run_pass(self, reconcilers: list[Reconciler] | None = None) -> list[Op]:
        """One controller pass: every reconciler sees the snapshot from the start of the pass."""
        snap = self.frozen()
        ops: list[Op] = []
        for rec in reconcilers if reconcilers is not None else default_reconcilers():
            rec_ops = rec.reconcile(snap, self.now)
            self.apply(rec_ops)
            ops.extend(rec_ops)
        return ops

    def kubelet(self, ready: bool = True) -> bool:
        """What node agents do: start pods that have a node and an IP, remove pods marked for deletion."""
        changed = False
        for key, pod in list(self.objs.items()):
            if key[0] != "Pod":
                continue
            if pod["metadata"].get("deletionTimestamp"):
                del self.objs[key]
                changed = True
            elif (pod["spec"].get("nodeName") and POD_IP_ANNOTATION in pod["metadata"].get("annotations", {})
                  and pod.get("status", {}).get("phase", "Pending") == "Pending" and ready):
                self.modify(*key, lambda p: p.__setitem__("status", running_ready_status(self.now)))
                changed = True
        return changed

    def converge(self, ready: bool = True, max_rounds: int = 200,
                 check: Callable[[FakeCluster], None] | None = None) -> int:
        """Controller passes + kubelet until nothing changes; returns the number of rounds."""
        for rounds in range(1, max_rounds + 1):
            refresh_heartbeats(self)
            ops = self.run_pass()
            if check:
                check(self)
            kubelet_changed = self.kubelet(ready=ready)
            if check:
                check(self)
            self.now += 1
            if not ops and not kubelet_changed:
                return rounds
        raise AssertionError("did not converge")

    def pods(self, namespace: str | None = "default") -> list[dict]:
        return self.list("Pod", namespace)


def set_spec(field: str, value: object) -> Callable[[dict], None]:
    def fn(obj: dict) -> None:
        obj["spec"][field] = value
    return fn


def running_ready_status(now: float) -> dict:
    return {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(now)}]}


def make_node(name: str, now: float, ready: bool = True, cidr: str | None = None, heartbeat_age: float = 0.0,
              **spec: object) -> dict:
    node: dict = {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": dict(spec),
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "lastHeartbeatTime": rfc3339(now - heartbeat_age)}]},
    }
    if cidr:
        node["spec"]["podCIDR"] = cidr
    return node


def make_pod(name: str, node: str | None = None, ip: str | None = None, **meta: object) -> dict:
    pod: dict = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": name, "namespace": "default", **meta},
                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    if node:
        pod["spec"]["nodeName"] = node
    if ip:
        pod["metadata"]["annotations"] = {POD_IP_ANNOTATION: ip}
    return pod


def pod_template(image: str = "nginx", app: str = "web") -> dict:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}


def make_deployment(name: str = "web", replicas: int = 3, image: str = "nginx", **spec: object) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": pod_template(image, name), **spec}}


def make_statefulset(name: str = "web", replicas: int = 3, **spec: object) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "serviceName": "nginx", "selector": {"matchLabels": {"app": name}},
                     "template": pod_template("nginx", name), **spec}}


def cluster_with_nodes(n: int = 3, **kw: object) -> FakeCluster:
    c = FakeCluster()
    c.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}, "status": {"phase": "Active"}})
    for i in range(1, n + 1):
        c.add(make_node(f"node{i}", c.now, **kw))  # type: ignore[arg-type]
    c.run_pass([NODE_CIDRS])
    return c


def refresh_heartbeats(c: FakeCluster) -> None:
    for node in c.list("Node"):
        def beat(n: dict) -> None:
            n["status"]["conditions"][0]["lastHeartbeatTime"] = rfc3339(c.now)
        c.modify("Node", "", node["metadata"]["name"], beat)


def assert_unique_ips(c: FakeCluster) -> None:
    ips = [p["metadata"]["annotations"][POD_IP_ANNOTATION] for p in c.list("Pod")
           if POD_IP_ANNOTATION in (p["metadata"].get("annotations") or {})]
    assert len(ips) == len(set(ips)), sorted(ips)


# ---- nodes and scheduling --------------------------------------------------------------------------


def test_node_cidrs_lowest_free_and_preset_kept() -> None:
    c = FakeCluster()
    c.add(make_node("a", c.now, cidr="10.244.2.0/24"))
    c.add(make_node("b", c.now))
    c.add(make_node("c", c.now))
    c.run_pass([NODE_CIDRS])
    cidrs = {n["metadata"]["name"]: (n["spec"]["podCIDR"], n["spec"].get("podCIDRs")) for n in c.list("Node")}
    assert cidrs == {"a": ("10.244.2.0/24", None), "b": ("10.244.1.0/24", ["10.244.1.0/24"]),
                     "c": ("10.244.3.0/24", ["10.244.3.0/24"])}
    assert c.run_pass([NODE_CIDRS]) == []


def test_scheduler_spreads_three_pods_over_three_nodes() -> None:
    c = cluster_with_nodes(3)
    for i in range(3):
        c.add(make_pod(f"p{i}"))
    c.run_pass([SCHEDULER])
    pods = c.pods()
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node1", "node2", "node3"]
    for p in pods:
        node = c.get("Node", "", p["spec"]["nodeName"])
        assert node is not None
        ip = p["metadata"]["annotations"][POD_IP_ANNOTATION]
        assert ip == node["spec"]["podCIDR"].replace(".0/24", ".2")  # same write as nodeName
        cond = [x for x in p["status"]["conditions"] if x["type"] == "PodScheduled"]
        assert cond and cond[0]["status"] == "True"
    assert c.run_pass([SCHEDULER]) == []


NOT_READY_CASES = [
    ("Ready condition False", {"ready": False}),
    ("heartbeat older than 40 s", {"heartbeat_age": 41.0}),
    ("cordoned", {"unschedulable": True}),
]


@pytest.mark.parametrize("node_kw", [c[1] for c in NOT_READY_CASES], ids=[c[0] for c in NOT_READY_CASES])
def test_scheduler_never_picks_unavailable_node(node_kw: dict) -> None:
    c = FakeCluster()
    c.add(make_node("node1", c.now, cidr="10.244.1.0/24", **node_kw))
    c.add(make_node("node2", c.now, cidr="10.244.2.0/24"))
    for i in range(4):
        c.add(make_pod(f"p{i}"))
    c.run_pass([SCHEDULER])
    assert {p["spec"]["nodeName"] for p in c.pods()} == {"node2"}


def test_heartbeat_within_40s_is_ready() -> None:
    c = FakeCluster()
    c.add(make_node("node1", c.now, cidr="10.244.1.0/24", heartbeat_age=39.0))
    c.add(make_pod("p"))
    c.run_pass([SCHEDULER])
    assert c.pods()[0]["spec"]["nodeName"] == "node1"


def test_scheduler_prefers_least_loaded_then_name() -> None:
    c = cluster_with_nodes(3)
    c.add(make_pod("old1", node="node1", ip="10.244.1.2"))
    c.add(make_pod("old2", node="node1", ip="10.244.1.3"))
    c.add(make_pod("old3", node="node3", ip="10.244.3.2"))
    c.add(make_pod("new1"))
    c.add(make_pod("new2"))
    c.run_pass([SCHEDULER])
    placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in c.pods()}
    assert placed["new1"] == "node2" and placed["new2"] == "node2"


def test_no_ready_node_leaves_pod_pending_unschedulable() -> None:
    c = FakeCluster()
    c.add(make_node("node1", c.now, ready=False, cidr="10.244.1.0/24"))
    c.add(make_pod("p"))
    c.run_pass([SCHEDULER])
    pod = c.pods()[0]
    assert "nodeName" not in pod["spec"]
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["conditions"][0]["reason"] == "Unschedulable"
    assert c.run_pass([SCHEDULER]) == []


def test_pod_bound_to_missing_node_waits_then_gets_ip() -> None:
    c = FakeCluster()
    c.add(make_pod("p", node="node7"))
    c.run_pass([SCHEDULER])
    pod = c.pods()[0]
    assert pod["status"]["phase"] == "Pending"
    cond = pod["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")
    assert "node7" in cond["message"]
    assert POD_IP_ANNOTATION not in (pod["metadata"].get("annotations") or {})
    assert c.run_pass([SCHEDULER]) == []
    c.add(make_node("node7", c.now, cidr="10.244.7.0/24"))
    c.run_pass([SCHEDULER])
    pod = c.pods()[0]
    assert pod["metadata"]["annotations"][POD_IP_ANNOTATION] == "10.244.7.2"
    assert pod["status"]["conditions"][0]["status"] == "True"


def test_pod_ip_lowest_free_counting_terminating_pods() -> None:
    c = cluster_with_nodes(1)
    c.add(make_pod("a", node="node1", ip="10.244.1.2"))
    c.add(make_pod("b", node="node1", ip="10.244.1.3", deletionTimestamp=rfc3339(c.now)))
    c.add(make_pod("c", node="node1"))
    c.add(make_pod("d", node="node1"))
    c.run_pass([SCHEDULER])
    ips = {p["metadata"]["name"]: p["metadata"]["annotations"][POD_IP_ANNOTATION] for p in c.pods()}
    assert ips == {"a": "10.244.1.2", "b": "10.244.1.3", "c": "10.244.1.4", "d": "10.244.1.5"}
    del c.objs[("Pod", "default", "b")]  # the node agent removed it: its IP is free again
    c.add(make_pod("e", node="node1"))
    c.run_pass([SCHEDULER])
    assert c.get("Pod", "default", "e")["metadata"]["annotations"][POD_IP_ANNOTATION] == "10.244.1.3"  # type: ignore[index]


def test_ip_uniqueness_across_many_create_delete_cycles() -> None:
    c = cluster_with_nodes(2)
    deploy = c.add(make_deployment(replicas=6))
    for replicas in [9, 2, 12, 0, 7, 3, 11, 1, 8]:
        c.modify("Deployment", "default", "web", set_spec("replicas", replicas))
        c.converge(check=assert_unique_ips)
        refresh_heartbeats(c)
        pods = [p for p in c.pods() if is_active(p)]
        assert len(pods) == replicas
        assert all(p["metadata"]["annotations"][POD_IP_ANNOTATION] for p in pods)
    assert deploy["metadata"]["uid"]


# ---- ReplicaSet ------------------------------------------------------------------------------------


def make_rs(c: FakeCluster, replicas: int) -> dict:
    return c.add({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": "web-abc", "namespace": "default"},
                  "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                           "template": pod_template()}})


def test_replicaset_creates_pods_with_generate_name_and_owner() -> None:
    c = cluster_with_nodes(2)
    rs = make_rs(c, 3)
    ops = c.run_pass([REPLICASETS])
    creates = [op for op in ops if op.type == "create"]
    assert len(creates) == 3
    for op in creates:
        md = op.obj["metadata"]
        assert md["generateName"] == "web-abc-" and "name" not in md
        assert md["labels"] == {"app": "web"}
        assert md["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                                          "uid": rs["metadata"]["uid"], "controller": True,
                                          "blockOwnerDeletion": True}]
        assert op.obj["spec"] == pod_template()["spec"]


def test_replicaset_scale_down_prefers_unscheduled_then_not_ready_then_newest() -> None:
    c = cluster_with_nodes(2)
    rs = make_rs(c, 4)
    owner = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": rs["metadata"]["uid"],
              "controller": True, "blockOwnerDeletion": True}]
    for name, node, ready, age in [("old-ready", "node1", True, 30), ("new-ready", "node1", True, 10),
                                   ("not-ready", "node2", False, 40), ("unscheduled", None, False, 50)]:
        c.now = T0 - age
        pod = make_pod(name, node=node, ownerReferences=owner)
        pod["spec"]["terminationGracePeriodSeconds"] = 5
        if ready:
            pod["status"] = running_ready_status(c.now)
        c.add(pod)
    c.now = T0
    order = []
    for replicas in [3, 2, 1]:
        c.modify("ReplicaSet", "default", "web-abc", set_spec("replicas", replicas))
        c.run_pass([REPLICASETS])
        marked = [p for p in c.pods() if p["metadata"].get("deletionTimestamp")]
        for p in marked:
            assert p["metadata"]["deletionTimestamp"] == rfc3339(c.now)
            assert p["metadata"]["deletionGracePeriodSeconds"] == 5
            order.append(p["metadata"]["name"])
            del c.objs[("Pod", "default", p["metadata"]["name"])]
    assert order == ["unscheduled", "not-ready", "new-ready"]


def test_replacement_after_pod_fails() -> None:
    c = cluster_with_nodes(2)
    c.add(make_deployment(replicas=2))
    c.converge()
    victim = c.pods()[0]["metadata"]["name"]
    c.modify("Pod", "default", victim, lambda p: p["status"].__setitem__("phase", "Failed"))
    c.run_pass()
    failed = c.get("Pod", "default", victim)
    assert failed is not None and failed["metadata"]["deletionTimestamp"]
    active = [p for p in c.pods() if is_active(p)]
    assert len(active) == 2 and victim not in {p["metadata"]["name"] for p in active}
    c.converge()
    assert len(c.pods()) == 2 and all(is_pod_ready(p) for p in c.pods())


# ---- Deployment ------------------------------------------------------------------------------------


def test_deployment_creates_replicaset_with_hash_and_owner() -> None:
    c = cluster_with_nodes(2)
    d = c.add(make_deployment(replicas=3))
    c.run_pass()
    h = template_hash(pod_template())
    assert len(h) == 10
    rs = c.get("ReplicaSet", "default", f"web-{h}")
    assert rs is not None
    assert rs["spec"]["replicas"] == 3
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", POD_TEMPLATE_HASH: h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", POD_TEMPLATE_HASH: h}
    assert rs["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                  "uid": d["metadata"]["uid"], "controller": True,
                                                  "blockOwnerDeletion": True}]
    c.converge()
    pods = c.pods()
    assert len(pods) == 3
    assert all(p["metadata"]["labels"] == {"app": "web", POD_TEMPLATE_HASH: h} for p in pods)
    assert all(p["metadata"]["name"].startswith(f"web-{h}-") for p in pods)
    status = c.get("Deployment", "default", "web")["status"]  # type: ignore[index]
    assert {k: status[k] for k in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas",
                                   "observedGeneration")} == {
        "replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "updatedReplicas": 3, "observedGeneration": 1}
    rs_status = c.get("ReplicaSet", "default", f"web-{h}")["status"]  # type: ignore[index]
    assert (rs_status["replicas"], rs_status["readyReplicas"], rs_status["availableReplicas"]) == (3, 3, 3)


def test_deployment_scale_3_5_1_converges() -> None:
    c = cluster_with_nodes(3)
    c.add(make_deployment(replicas=3))
    for replicas in [3, 5, 1]:
        c.modify("Deployment", "default", "web", set_spec("replicas", replicas))
        c.converge()
        pods = c.pods()
        assert len(pods) == replicas and all(is_pod_ready(p) for p in pods)
        assert len(c.list("ReplicaSet")) == 1
        assert c.list("ReplicaSet")[0]["spec"]["replicas"] == replicas
        d = c.get("Deployment", "default", "web")
        assert d is not None and d["status"]["readyReplicas"] == replicas
        assert d["status"]["observedGeneration"] == d["metadata"]["generation"]


def check_rollout_limits(replicas: int, surge: int, unavailable: int) -> Callable[[FakeCluster], None]:
    def check(c: FakeCluster) -> None:
        active = [p for p in c.pods() if is_active(p)]
        assert len(active) <= replicas + surge, f"{len(active)} pods > {replicas}+{surge}"
        ready = [p for p in active if is_pod_ready(p)]
        assert len(ready) >= replicas - unavailable, f"{len(ready)} ready < {replicas}-{unavailable}"
        assert sum(rs["spec"]["replicas"] for rs in c.list("ReplicaSet")) <= replicas + surge
    return check


ROLLING_CASES = [
    ("defaults 25%/25% of 4", 4, {}, 1, 1),
    ("defaults of 10: surge 3, unavailable 2", 10, {}, 3, 2),
    ("maxSurge 1 maxUnavailable 0", 3, {"maxSurge": 1, "maxUnavailable": 0}, 1, 0),
    ("maxSurge 0 maxUnavailable 1", 3, {"maxSurge": 0, "maxUnavailable": 1}, 0, 1),
    ("percentages 50%/0", 4, {"maxSurge": "50%", "maxUnavailable": 0}, 2, 0),
]


@pytest.mark.parametrize("replicas,rolling,surge,unavailable", [c[1:] for c in ROLLING_CASES],
                         ids=[c[0] for c in ROLLING_CASES])
def test_rolling_update_respects_surge_and_unavailable(replicas: int, rolling: dict, surge: int,
                                                       unavailable: int) -> None:
    c = cluster_with_nodes(3)
    strategy = {"type": "RollingUpdate", "rollingUpdate": rolling} if rolling else {}
    c.add(make_deployment(replicas=replicas, **({"strategy": strategy} if strategy else {})))
    c.converge()
    old_hash = template_hash(pod_template("nginx"))
    new_template = pod_template("nginx:1.25")
    new_hash = template_hash(new_template)

    def set_image(d: dict) -> None:
        d["spec"]["template"] = new_template
    c.modify("Deployment", "default", "web", set_image)
    saw_both = False

    def check(cl: FakeCluster) -> None:
        nonlocal saw_both
        check_rollout_limits(replicas, surge, unavailable)(cl)
        hashes = {p["metadata"]["labels"][POD_TEMPLATE_HASH] for p in cl.pods() if is_active(p)}
        saw_both = saw_both or hashes == {old_hash, new_hash}
    c.converge(check=check)
    assert saw_both  # it was a rolling update, not a recreate
    pods = c.pods()
    assert len(pods) == replicas
    assert {p["metadata"]["labels"][POD_TEMPLATE_HASH] for p in pods} == {new_hash}
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1.25"}
    old_rs = c.get("ReplicaSet", "default", f"web-{old_hash}")
    assert old_rs is not None and old_rs["spec"]["replicas"] == 0  # kept for rollback history
    d = c.get("Deployment", "default", "web")["status"]  # type: ignore[index]
    assert (d["updatedReplicas"], d["availableReplicas"], d["replicas"]) == (replicas, replicas, replicas)
    progressing = next(x for x in d["conditions"] if x["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"


def test_rollback_reuses_old_replicaset() -> None:
    c = cluster_with_nodes(2)
    c.add(make_deployment(replicas=2))
    c.converge()
    for image in ["nginx:1.25", "nginx"]:
        c.modify("Deployment", "default", "web",
                 set_spec("template", pod_template(image)))
        c.converge()
    assert len(c.list("ReplicaSet")) == 2
    assert {p["spec"]["containers"][0]["image"] for p in c.pods()} == {"nginx"}


def test_recreate_strategy_never_mixes_versions() -> None:
    c = cluster_with_nodes(2)
    c.add(make_deployment(replicas=3, strategy={"type": "Recreate"}))
    c.converge()
    c.modify("Deployment", "default", "web", set_spec("template", pod_template("nginx:2")))

    def check(cl: FakeCluster) -> None:
        images = {p["spec"]["containers"][0]["image"] for p in cl.pods()}
        assert len(images) <= 1, images
    c.converge(check=check)
    assert [p["spec"]["containers"][0]["image"] for p in c.pods()] == ["nginx:2"] * 3


# ---- StatefulSet -----------------------------------------------------------------------------------


def sts_pod_names(c: FakeCluster) -> list[str]:
    return sorted(p["metadata"]["name"] for p in c.pods() if not p["metadata"].get("deletionTimestamp"))


def test_statefulset_ordered_creation_waits_for_ready() -> None:
    c = cluster_with_nodes(2)
    sts = c.add(make_statefulset(replicas=3))
    seen = []
    for _ in range(6):
        c.run_pass()
        c.run_pass()
        seen.append(sts_pod_names(c))
        if len(seen[-1]) == 3:
            break
        # nothing becomes Ready yet: the next ordinal must not appear
        c.run_pass()
        assert sts_pod_names(c) == seen[-1]
        c.kubelet()
    assert seen == [["web-0"], ["web-0", "web-1"], ["web-0", "web-1", "web-2"]]
    pod = c.get("Pod", "default", "web-1")
    assert pod is not None
    assert pod["spec"]["hostname"] == "web-1" and pod["spec"]["subdomain"] == "nginx"
    assert pod["metadata"]["labels"][STS_POD_NAME] == "web-1" and pod["metadata"]["labels"]["app"] == "web"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]
    c.converge()
    status = c.get("StatefulSet", "default", "web")["status"]  # type: ignore[index]
    assert (status["replicas"], status["readyReplicas"], status["currentReplicas"]) == (3, 3, 3)


def test_statefulset_scale_down_highest_first_one_at_a_time() -> None:
    c = cluster_with_nodes(2)
    c.add(make_statefulset(replicas=4))
    c.converge()
    c.modify("StatefulSet", "default", "web", set_spec("replicas", 1))
    removed = []
    for _ in range(20):
        c.run_pass()
        c.run_pass()  # a second pass must not mark another pod while one is terminating
        marked = [p["metadata"]["name"] for p in c.pods() if p["metadata"].get("deletionTimestamp")]
        assert len(marked) <= 1
        removed.extend(marked)
        c.kubelet()
    assert removed == ["web-3", "web-2", "web-1"]
    assert sts_pod_names(c) == ["web-0"]


def test_statefulset_parallel_creates_all_at_once() -> None:
    c = cluster_with_nodes(2)
    c.add(make_statefulset(replicas=3, podManagementPolicy="Parallel"))
    c.run_pass()
    assert sts_pod_names(c) == ["web-0", "web-1", "web-2"]


def test_statefulset_failed_pod_recreated_with_same_name() -> None:
    c = cluster_with_nodes(2)
    c.add(make_statefulset(replicas=2))
    c.converge()
    old_uid = c.get("Pod", "default", "web-1")["metadata"]["uid"]  # type: ignore[index]
    c.modify("Pod", "default", "web-1", lambda p: p["status"].__setitem__("phase", "Failed"))
    c.run_pass()
    assert c.get("Pod", "default", "web-1")["metadata"]["deletionTimestamp"]  # type: ignore[index]
    c.converge()
    new = c.get("Pod", "default", "web-1")
    assert new is not None and new["metadata"]["uid"] != old_uid and is_pod_ready(new)


# ---- garbage collection ----------------------------------------------------------------------------


def test_gc_deletes_orphans_of_a_deleted_deployment() -> None:
    c = cluster_with_nodes(2)
    c.add(make_deployment(replicas=2))
    c.converge()
    del c.objs[("Deployment", "default", "web")]
    c.run_pass([GARBAGE_COLLECTOR])
    assert c.list("ReplicaSet") == []
    assert all(p["metadata"].get("deletionTimestamp") for p in c.pods())  # pods go gracefully
    c.converge()
    assert c.pods() == []


def test_gc_keeps_pods_of_a_recreated_owner_with_other_uid_out() -> None:
    c = cluster_with_nodes(1)
    make_rs(c, 1)
    c.converge()
    del c.objs[("ReplicaSet", "default", "web-abc")]
    make_rs(c, 0)  # same name, new uid: the old pods are orphans
    c.run_pass([GARBAGE_COLLECTOR])
    assert all(p["metadata"].get("deletionTimestamp") for p in c.pods())


FORCE_CASES = [
    ("never scheduled", None, {}, True),
    ("node gone", "ghost", {}, True),
    ("node heartbeat stale", "node1", {"heartbeat_age": 60.0}, True),
    ("node healthy: the agent removes it", "node1", {}, False),
]


@pytest.mark.parametrize("node,node_kw,forced", [c[1:] for c in FORCE_CASES], ids=[c[0] for c in FORCE_CASES])
def test_gc_force_deletes_terminating_pods_nobody_will_remove(node: str | None, node_kw: dict,
                                                            forced: bool) -> None:
    c = FakeCluster()
    c.add(make_node("node1", c.now, cidr="10.244.1.0/24", **node_kw))
    c.add(make_pod("p", node=node, deletionTimestamp=rfc3339(c.now)))
    c.run_pass([GARBAGE_COLLECTOR])
    assert (c.get("Pod", "default", "p") is None) == forced


def test_namespace_deletion_cascades_then_namespace_goes() -> None:
    c = cluster_with_nodes(2)
    c.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    dep = make_deployment(replicas=2)
    dep["metadata"]["namespace"] = "shop"
    c.add(dep)
    c.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}, "spec": {}})
    c.converge()
    assert c.get("Namespace", "", "shop")["status"]["phase"] == "Active"  # type: ignore[index]
    assert len(c.pods("shop")) == 2
    c.modify("Namespace", "", "shop", lambda n: n["metadata"].__setitem__("deletionTimestamp", rfc3339(c.now)))
    c.run_pass([NAMESPACES])
    assert c.get("Namespace", "", "shop")["status"]["phase"] == "Terminating"  # type: ignore[index]
    assert c.get("Service", "shop", "web") is None
    c.converge()
    assert c.get("Namespace", "", "shop") is None
    for kind in ("Pod", "ReplicaSet", "Deployment", "Service"):
        assert c.list(kind, "shop") == []
    assert c.get("Namespace", "", "default") is not None


def test_objects_in_missing_namespace_are_deleted() -> None:
    c = cluster_with_nodes(1)
    c.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "gone"}, "spec": {}})
    c.run_pass([NAMESPACES])
    assert c.get("Service", "gone", "x") is None


# ---- idempotency -----------------------------------------------------------------------------------


def test_second_pass_produces_no_ops() -> None:
    c = cluster_with_nodes(3)
    c.add(make_deployment(replicas=4))
    c.add(make_statefulset(name="db", replicas=2))
    c.converge()
    assert c.run_pass() == []
    assert c.run_pass() == []
