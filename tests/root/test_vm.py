"""IPVS mode on a real guest kernel: one QEMU guest (TCG, Debian's kernel, ip_vs loaded) on a switch namespace.

One boot serves every test of this file (module fixture). The guest is a VM node in miniature: its tap
sits in a switch namespace made here (never in the host's root namespace), the host reaches it from
there through the guest control server, and inside it pods are namespaces of the guest's kernel wired
by the agent's CNI code (tests/root/vm_guest.py). Each proxy sync runs what a node agent runs at start
in that mode (refuse what the kernel cannot do, clean up every other mode, one sync). After the file,
the VM, its tap and every namespace are gone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from netk8s.dataplane import links, netns, qemu
from netk8s.lab import procs
from netk8s.lab.vm import VmNode
from netk8s.model import naming
from tests.root.conftest import RUN_TAG

pytestmark = [pytest.mark.root, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
LAB = f"{RUN_TAG}vm"
SWITCH = naming.switch_netns(LAB)
GUEST_IP = "192.168.56.11"
CONTROL_IP = "192.168.56.10"  # the control plane's address on the underlay, here on the switch's bridge
WEB, STICKY, EMPTY = "10.96.0.20", "10.96.0.21", "10.96.0.22"
CLIENT = 3  # pods 0-2 are the endpoints, pod 3 the client


def service(name: str, ip: str, affinity: bool = False) -> dict:
    spec: dict = {"clusterIP": ip, "selector": {"app": "web"},
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 60}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def slice_of(name: str, ips: list[str]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "nodeName": "node1", "conditions": {"ready": True}} for ip in ips]}


ENDPOINTS = [f"10.244.1.{10 + i}" for i in range(3)]
OBJECTS = {"services": [service("web", WEB), service("sticky", STICKY, affinity=True), service("empty", EMPTY)],
           "slices": [slice_of("web", ENDPOINTS), slice_of("sticky", ENDPOINTS), slice_of("empty", [])]}


class Guest:
    def __init__(self, vm: VmNode) -> None:
        self.vm = vm

    def sh(self, script: str, timeout: float = 120) -> str:
        r = self.vm.run(["sh", "-c", script], timeout=timeout)
        assert r.rc == 0, f"guest: {script!r} exited {r.rc}: {r.stderr or r.stdout}"
        return r.stdout

    def py(self, *args: str, stdin: str = "", timeout: float = 300) -> dict:
        r = self.vm.run([sys.executable, "-m", "tests.root.vm_guest", *args], stdin=stdin, timeout=timeout,
                        env={"PYTHONPATH": str(REPO)})
        assert r.rc == 0, f"guest: vm_guest {' '.join(args)} exited {r.rc}: {r.stderr[-1500:]} {r.stdout[-500:]}"
        return json.loads(r.stdout.strip().splitlines()[-1])

    def sync(self, mode: str) -> dict:
        return self.py("sync", mode, stdin=json.dumps(OBJECTS))

    def curl(self, ip: str, n: int) -> list[str]:
        """n requests from the client pod; each line is the answer or `FAIL <curl exit code>`."""
        ns = f"nk8s-vmt-p-{CLIENT}"
        out = self.sh(f"for i in $(seq {n}); do ip netns exec {ns} curl -s -m 10 http://{ip}/ "
                      f"|| echo FAIL $?; done", timeout=60 + 15 * n)
        return out.strip().splitlines()


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    workdir = tmp_path_factory.mktemp("vm")
    netns.create_netns(SWITCH)
    vm = VmNode(name="node1", switch_netns=SWITCH, bridge=naming.UNDERLAY_BRIDGE, tap=naming.vm_tap(LAB, "node1"),
                ip_cidr=f"{GUEST_IP}/24", workdir=workdir, tag=LAB)
    try:
        links.ensure_loopback_up(SWITCH)
        links.ensure_bridge(SWITCH, naming.UNDERLAY_BRIDGE)
        links.set_up(SWITCH, naming.UNDERLAY_BRIDGE)
        links.ensure_address(SWITCH, naming.UNDERLAY_BRIDGE, f"{CONTROL_IP}/24")
        vm.boot()
        vm.wait_ready()
        g = Guest(vm)
        pods = g.py("pods", str(CLIENT + 1))
        assert sorted(pods.values()) == sorted([*ENDPOINTS, f"10.244.1.{10 + CLIENT}"])
        # the HTTP servers answer directly before any proxy rule exists
        g.sh(f"for ip in {' '.join(ENDPOINTS)}; do until curl -s -m 5 http://$ip:8080/ >/dev/null; do sleep 0.5; done; done",
             timeout=120)
        yield g
    finally:
        pid = vm.pid
        vm.stop()
        netns.delete_netns(SWITCH)
        assert pid is None or not procs.alive(pid), "QEMU still running"
        assert not netns.netns_exists(SWITCH)


@pytest.fixture(scope="module")
def ipvs_synced(guest: Guest) -> dict:
    return guest.sync("ipvs")


def test_guest_runs_debians_kernel_with_ip_vs_and_the_tap_is_in_the_switch_namespace(guest: Guest) -> None:
    version, _, _ = qemu.find_kernel()
    assert guest.sh("uname -r").strip() == version
    assert "IP Virtual Server" in guest.sh("head -1 /proc/net/ip_vs")
    # a module init did not preload comes in on demand through the kernel's modprobe (the extracted kernel)
    guest.sh("iptables-legacy -A INPUT -m limit --limit 1/s -j ACCEPT && iptables-legacy -D INPUT -m limit --limit 1/s "
             "-j ACCEPT && grep -q '^xt_limit ' /proc/modules")
    assert guest.vm.tap in links.list_links(SWITCH)
    assert not links.link_exists(None, guest.vm.tap)  # never in the host's root namespace
    # the host's tree is read-only in the guest; where a node writes is its own
    assert guest.vm.run(["touch", "/usr/netk8s-vm-test"]).rc != 0
    guest.sh("touch /etc/netk8s-vm-test /var/netk8s-vm-test /tmp/x /run/x")
    assert not Path("/etc/netk8s-vm-test").exists()


def test_ipvsadm_lists_the_virtual_server_and_its_real_servers(guest: Guest, ipvs_synced: dict) -> None:
    assert ipvs_synced["ok"], ipvs_synced
    listing = guest.sh("ipvsadm -Ln")
    assert f"TCP  {WEB}:80 rr" in listing
    block = listing.split(f"TCP  {WEB}:80")[1].split("TCP ")[0]
    assert sorted(line.split()[1] for line in block.splitlines() if "->" in line and "Remote" not in line) == \
        sorted(f"{ip}:8080" for ip in ENDPOINTS)
    assert "Masq" in block
    assert {WEB, STICKY, EMPTY} <= set(guest.sh(f"ip -4 -o addr show dev {naming.KUBE_IPVS_DEVICE}")
                                       .replace("/32", " ").split())
    assert f"{WEB},tcp:80" in guest.sh(f"ipset list {naming.IPSET_CLUSTER_IP}")


def test_clusterip_from_a_pod_reaches_all_three_endpoints(guest: Guest, ipvs_synced: dict) -> None:
    answers = guest.curl(WEB, 6)
    assert sorted(set(answers)) == ["pod-0", "pod-1", "pod-2"], answers


def test_session_affinity_pins_the_client(guest: Guest, ipvs_synced: dict) -> None:
    assert "persistent 60" in guest.sh("ipvsadm -Ln").split(f"TCP  {STICKY}:80")[1].splitlines()[0]
    answers = guest.curl(STICKY, 5)
    assert len(set(answers)) == 1 and answers[0] in ("pod-0", "pod-1", "pod-2"), answers


def test_a_service_without_endpoints_is_refused(guest: Guest, ipvs_synced: dict) -> None:
    (answer,) = guest.curl(EMPTY, 1)
    assert answer == "FAIL 7", answer  # curl: connection refused (no real server: ICMP port unreachable)


def test_trace_reads_the_guests_ipvs_state(guest: Guest, ipvs_synced: dict) -> None:
    """`netk8s trace`'s IPVS code (netk8s.trace.ipvs) over the guest's live state through the control channel:
    the dry run lists the three real servers with probabilities summing to 1; a probe's trace names the real
    server the connection table gave it, which is the pod that answered; affinity pins a client; a Service
    without endpoints is rejected; nothing of the guest's rules, sets or IPVS services changed."""
    import random
    import re

    from netk8s.trace import ipvs as ti
    from netk8s.trace.model import Trace, hop_kinds, render_svg, render_text

    client_ip, client_ns = f"10.244.1.{10 + CLIENT}", f"nk8s-vmt-p-{CLIENT}"
    names = {ip: (f"pod-{i}", "node1") for i, ip in enumerate(ENDPOINTS)}

    def run(argv: Sequence[str]) -> str:  # a command in the node (here: the guest)
        r = guest.vm.run(list(argv), timeout=60)
        assert r.rc == 0, f"guest: {argv} exited {r.rc}: {r.stderr}"
        return r.stdout

    def snapshot() -> tuple[str, ...]:
        rules = re.sub(r"\[\d+:\d+\]", "", guest.sh("iptables-legacy-save | grep -v '^#'"))
        return rules, guest.sh("ipset save"), guest.sh("ipvsadm -Sn"), guest.sh("ip -o -4 addr"), \
            guest.sh("nft list ruleset")

    def probe(vip: str, sport: int) -> dict:
        """One request from the client pod's port `sport` (curl: a Python start is slow in a TCG guest)."""
        r = guest.vm.run(["ip", "netns", "exec", client_ns, "curl", "-s", "-m", "10", "--local-port", str(sport),
                          "-w", "\n%{http_code}", f"http://{vip}/"], timeout=60)
        body, _, code = r.stdout.rpartition("\n")
        return {"ok": r.rc == 0, "status": f"HTTP {code}", "body": body,
                "error": {0: None, 7: "refused", 28: "timeout"}.get(r.rc, f"curl exit {r.rc}")}

    def traced(vip: str, service: str) -> Trace:
        sport = random.SystemRandom().randrange(40000, 60000)
        t = Trace("pod/client", vip, "tcp", 80, "ipvs", service=service)
        return ti.live(t, run, lambda: probe(vip, sport), client_ip, sport, vip, 80, names, node="node1")

    before = snapshot()
    dry = ti.dry_run(Trace("pod/client", WEB, "tcp", 80, "ipvs", service="default/web"), ti.read_state(run),
                     client_ip, WEB, 80, names, node="node1", conns=ti.read_conns(run))
    eps = {e["endpoint"]: e["probability"] for e in dry.hops[0].details["endpoints"]}
    assert sorted(eps) == sorted(f"{ip}:8080" for ip in ENDPOINTS), render_text(dry)
    assert abs(sum(eps.values()) - 1) < 1e-9 and dry.hops[0].details["scheduler"] == "rr"
    assert any(r.table == "ipset" and r.chain == naming.IPSET_CLUSTER_IP for r in dry.hops[0].rules)

    pods = set()
    for _ in range(3):
        t = traced(WEB, "default/web")
        assert t.verdict == "delivered", render_text(t)
        assert hop_kinds(t) == ["rules", "ipvs", "dnat", "bridge", "delivery", "reply"], render_text(t)
        answered = t.hops[-2].details["probe"]["body"].strip()
        assert t.endpoint is not None and t.endpoint["pod"] == answered, render_text(t)  # the pod that answered
        assert naming.KUBE_IPVS_DEVICE in t.hops[0].summary and any(r.packets for r in t.hops[0].rules)
        pods.add(answered)
    assert pods == {"pod-0", "pod-1", "pod-2"}  # rr: three new connections, three real servers
    assert json.loads(json.dumps(t.to_dict()))["endpoint"]["pod"] == answered
    assert render_svg(t).startswith("<svg") and "ipvs" in render_svg(t)

    first, second = traced(STICKY, "default/sticky"), traced(STICKY, "default/sticky")
    assert first.endpoint and second.endpoint and first.endpoint["pod"] == second.endpoint["pod"]
    assert second.endpoint["choice"] == "affinity", render_text(second) + run(["cat", ti.CONN_TABLE])
    assert "persistence template" in second.hops[1].summary, render_text(second)

    empty = traced(EMPTY, "default/empty")
    assert empty.verdict == "rejected" and hop_kinds(empty)[-1] == "drop", render_text(empty)
    assert empty.reason and "has no endpoints" in empty.reason
    no_ep = ti.dry_run(Trace("pod/client", EMPTY, "tcp", 80, "ipvs"), ti.read_state(run), client_ip, EMPTY, 80,
                       names, node="node1")
    assert [e["endpoint"] for e in no_ep.hops[0].details["endpoints"]] == ["REJECT"]
    assert snapshot() == before  # no tracing rule, set or service left behind


def test_switching_to_iptables_and_back_leaves_no_ipvs_state_behind(guest: Guest, ipvs_synced: dict) -> None:
    st = guest.sync("iptables")
    assert st["ok"] and st["mode"] == "iptables", st
    assert guest.sh("ipvsadm -Sn").strip() == ""  # no virtual server at all
    assert guest.vm.run(["ip", "link", "show", naming.KUBE_IPVS_DEVICE]).rc != 0
    assert naming.IPSET_CLUSTER_IP not in guest.sh("ipset list -n")
    assert sorted(set(guest.curl(WEB, 40))) == ["pod-0", "pod-1", "pod-2"]  # iptables mode serves it
    st = guest.sync("ipvs")
    assert st["ok"] and st["mode"] == "ipvs", st
    nat = guest.sh("iptables-legacy-save -t nat")
    assert "KUBE-SVC-" not in nat and "KUBE-SEP-" not in nat  # the iptables mode's chains went
    assert f"TCP  {WEB}:80 rr" in guest.sh("ipvsadm -Ln")
    assert sorted(set(guest.curl(WEB, 40))) == ["pod-0", "pod-1", "pod-2"]
    # and out again, as kube-proxy --cleanup: nothing of IPVS mode stays
    st = guest.sync("iptables")
    assert st["ok"], st
    assert guest.sh("ipvsadm -Sn").strip() == ""
    assert guest.vm.run(["ip", "link", "show", naming.KUBE_IPVS_DEVICE]).rc != 0


def test_no_vm_tap_or_namespace_outlives_a_stopped_or_killed_vm(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A VM stopped right after boot leaves no QEMU and no tap; a VM whose QEMU got `kill -9` is swept by
    `netk8s clean` (manager.clean_all: tagged processes, the lab's namespaces) with no saved state."""
    from netk8s.lab import manager

    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path / "state"))
    lab = f"{LAB}s"
    ns = naming.switch_netns(lab)

    def boot(i: int) -> VmNode:
        vm = VmNode(name="node9", switch_netns=ns, bridge=naming.UNDERLAY_BRIDGE, tap=naming.vm_tap(lab, "node9"),
                    ip_cidr="192.168.56.19/24", workdir=tmp_path / f"vm{i}", tag=lab)
        vm.boot()
        assert vm.pid is not None and procs.alive(vm.pid)
        assert links.link_exists(ns, vm.tap) and not links.link_exists(None, vm.tap)
        assert vm.pid in procs.tagged_pids(lab)  # `netk8s clean` finds it by tag
        return vm

    netns.create_netns(ns)
    vm = None
    try:
        links.ensure_bridge(ns, naming.UNDERLAY_BRIDGE)
        vm = boot(0)
        pid = vm.pid
        vm.stop()
        assert pid is not None and not procs.alive(pid) and not links.link_exists(ns, vm.tap)
        vm.stop()  # idempotent
        vm = boot(1)
        pid = vm.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        removed = manager.clean_all(lab)
        qemu.reap()
        vm.pid = None  # gone: the finally's stop() must not signal a PID the kernel may hand out again
        assert removed == [ns]
        assert not procs.alive(pid) and not netns.netns_exists(ns) and not os.path.exists(f"/run/netns/{ns}")
        assert not procs.tagged_pids(lab)
    finally:
        if vm is not None:
            vm.stop()
        netns.delete_netns(ns)
