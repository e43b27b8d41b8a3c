"""The nftables proxier against a real kernel, in a namespace of its own: 1,000 Services programmed, then one
endpoint change is one transaction naming only that Service; `nft list table ip kube-proxy` has the layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netk8s.dataplane import netns
from netk8s.model import naming

pytestmark = pytest.mark.root

NS = f"{naming.NETNS_PREFIX}t{os.getpid()}-nft"
REPO = Path(__file__).resolve().parents[2]

# Runs in NS: the Proxier with the nftables backend over the real `nft -f` behind a recorder, fed 1,000 Services x 5 endpoints
# from a static informer; after a full sync, one endpoint of s417 goes away and the proxier syncs again.
# Prints what was sent to nft at each step.
DRIVER = r"""
import json, sys
from netk8s.dataplane import nftables
from netk8s.proxy.model import NodeContext
from netk8s.proxy.backend_nftables import NftablesBackend
from netk8s.proxy.proxier import Proxier
from netk8s.store.base import Event

N = 1000
services, slices = [], []
for i in range(N):
    ip = f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{(i & 255) or 250}"
    spec = {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    if i % 100 == 0:
        spec["type"] = "NodePort"
        spec["ports"][0]["nodePort"] = 30000 + i // 100
    if i % 250 == 1:
        spec["sessionAffinity"] = "ClientIP"
    services.append({"kind": "Service", "metadata": {"name": f"s{i}", "namespace": "default"}, "spec": spec})
    slices.append({"kind": "EndpointSlice", "addressType": "IPv4",
                   "metadata": {"name": f"s{i}-x", "namespace": "default",
                                "labels": {"kubernetes.io/service-name": f"s{i}"}},
                   "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                   "endpoints": [{"addresses": [f"10.244.{(i * 5 + j) >> 8 & 255}.{(i * 5 + j) & 255}"],
                                  "nodeName": f"node{j % 3 + 1}", "conditions": {"ready": True}}
                                 for j in range(5)]})

class Informer:
    revision = 1
    def list(self, kind, namespace=None):
        return {"Service": services, "EndpointSlice": slices}.get(kind, [])

class Null:
    def update(self, services): pass
    def close(self): pass
    def sync(self, lb_map): return set()

sent = []
class Recording:
    def apply(self, text):
        sent.append(text)
        nftables.apply(text)
    chain_exists = staticmethod(nftables.chain_exists)
    list_names = staticmethod(nftables.list_names)

p = Proxier(NodeContext("node1", ("192.168.56.11",)), NftablesBackend(Recording()), healthcheck=Null(),
            announcer=Null())
out = {}
p.sync(Informer(), [], 0.0)
out["full"] = {"ok": p.last_sync_stats.ok, "error": p.last_sync_stats.error, "transactions": len(sent),
               "rules": p.rendered.rule_count}
sent.clear()
slices[417] = dict(slices[417], endpoints=slices[417]["endpoints"][1:])
Informer.revision = 2
p.sync(Informer(), [Event(2, "MODIFIED", slices[417])], 1.0)
out["partial"] = {"ok": p.last_sync_stats.ok, "mode": p.last_sync_stats.mode, "error": p.last_sync_stats.error,
                  "sent": list(sent), "stale": list(p.rendered.stale_chains)}
sent.clear()
p.sync(Informer(), [], 2.5)
out["later"] = list(sent)
print(json.dumps(out))
"""


def run(argv: list[str], check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return netns.run_in_netns(NS, argv, check=check, timeout=timeout)


@pytest.fixture
def ns() -> Iterator[str]:
    netns.create_netns(NS)
    try:
        run(["ip", "link", "set", "lo", "up"])
        yield NS
    finally:
        netns.delete_netns(NS)


def test_one_endpoint_change_among_1000_services_is_one_transaction_naming_only_it(ns: str) -> None:
    p = subprocess.run(netns.exec_argv(ns, [sys.executable, "-c", DRIVER]), capture_output=True, text=True,
                       timeout=600, cwd=REPO, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["full"]["ok"], out["full"]["error"]
    assert out["full"]["transactions"] >= 3  # base, chains, elements
    partial = out["partial"]
    assert partial["ok"] and partial["mode"] == "partial", partial["error"]
    (text,) = partial["sent"]
    names = {w for w in text.split() if w.count("/") >= 3}
    assert names and all(n.split("-", 2)[2].startswith("default/s417/") for n in names), sorted(names)
    assert "add element" not in text and "delete element" not in text
    assert len(text.splitlines()) < 30, text
    (stale,) = partial["stale"]
    assert stale.endswith("default/s417/tcp/http__10.244.8.37/8080")  # endpoint 417 * 5 = 2085 = 8 * 256 + 37
    (later,) = out["later"]
    assert f"delete chain ip kube-proxy {stale}" in later

    listing = run(["nft", "list", "table", "ip", "kube-proxy"]).stdout
    for fragment in (
        "map service-ips {", "type ipv4_addr . inet_proto . inet_service : verdict",
        "map service-nodeports {", "type inet_proto . inet_service : verdict",
        "map no-endpoint-services {", "map no-endpoint-nodeports {", "set cluster-ips {", "set nodeport-ips {",
        "chain services {", "ip daddr . meta l4proto . th dport vmap @service-ips",
        "chain mark-for-masquerade {", "chain masquerading {", "masquerade fully-random",
        "chain service-endpoints-check {", "chain nodeport-endpoints-check {", "chain filter-forward {",
        "chain nat-prerouting {", "type nat hook prerouting priority dstnat; policy accept;",
        "numgen random mod 5 vmap {", "numgen random mod 4 vmap {",
        "flags dynamic,timeout", "timeout 3h", "update @affinity-",
        "tcp . 30001 : goto external-",
    ):
        assert fragment in listing, fragment
    assert stale not in listing
    assert listing.count("chain endpoint-") == 1000 * 5 - 1
    json_listing = json.loads(run(["nft", "-j", "list", "table", "ip", "kube-proxy"]).stdout)
    chains = [o["chain"]["name"] for o in json_listing["nftables"] if "chain" in o]
    assert sum(c.startswith("service-") and "/" in c for c in chains) == 1000
