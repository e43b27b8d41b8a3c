"""The drop log: nfnetlink_log messages parsed from bytes, drops as JSON lines and text, and the
PolicySyncer turning what its NFLOG group delivers into lines of the node's drop file (fake reader)."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from netk8s.dataplane import nflog
from netk8s.policy import droplog
from netk8s.policy import nftables as R
from netk8s.policy import syncer as syncer_mod
from netk8s.policy.syncer import PolicySyncer
from netk8s.store.base import mutate
from netk8s.store.informer import Informer
from netk8s.store.memory import MemoryStore
from tests.netpol_cases import np


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, proto: int = 6) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return header + struct.pack("!HH", sport, dport) + b"\0" * 16


def packet_message(prefix: str, payload: bytes, ts: tuple[int, int] | None = (1_700_000_000, 250_000)) -> bytes:
    attrs = nflog._attr(nflog.NFULA_PREFIX, prefix.encode() + b"\0") + nflog._attr(nflog.NFULA_PAYLOAD, payload)
    attrs += nflog._attr(nflog.NFULA_IFINDEX_INDEV, struct.pack("!I", 7))
    if ts is not None:
        attrs += nflog._attr(nflog.NFULA_TIMESTAMP, struct.pack("!QQ", *ts))
    body = struct.pack("!BBH", socket.AF_INET, 0, R.NFLOG_GROUP) + attrs
    return struct.pack("=IHHII", 16 + len(body), nflog.NFNL_SUBSYS_ULOG << 8 | nflog.NFULNL_MSG_PACKET, 0, 0, 0) + body


def test_packet_messages_parse_to_five_tuples() -> None:
    data = packet_message("netk8s-drop in-abc ", ipv4_tcp("10.244.1.3", "10.244.2.5", 40000, 80)) + \
        packet_message("p2", ipv4_tcp("10.0.0.1", "10.0.0.2", 5353, 53, proto=17), ts=None) + \
        packet_message("p3", b"\x60" + b"\0" * 39)  # IPv6: not ours, skipped
    got = nflog.parse_messages(data)
    assert [(p.prefix, p.protocol, p.src, p.sport, p.dst, p.dport, p.indev) for p in got] == [
        ("netk8s-drop in-abc ", "TCP", "10.244.1.3", 40000, "10.244.2.5", 80, 7),
        ("p2", "UDP", "10.0.0.1", 5353, "10.0.0.2", 53, 7)]
    assert got[0].timestamp == pytest.approx(1_700_000_000.25) and got[1].timestamp == 0.0
    icmp = nflog.parse_packet(ipv4_tcp("10.0.0.1", "10.0.0.2", 0, 0, proto=1), "x")
    assert icmp is not None and (icmp.protocol, icmp.sport, icmp.dport) == ("ICMP", 0, 0)


def test_the_bind_request_names_the_group_in_the_nfgenmsg() -> None:
    msg = nflog.config_message(100, 7, nflog._attr(nflog.NFULA_CFG_CMD, bytes([nflog.NFULNL_CFG_CMD_BIND])))
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq) == (len(msg), 4 << 8 | 1, 7) and flags & nflog.NLM_F_ACK
    assert struct.unpack_from("!BBH", msg, 16) == (socket.AF_UNSPEC, 0, 100)
    assert msg[20:26] == struct.pack("=HH", 5, nflog.NFULA_CFG_CMD) + bytes([1]) + b"\0"


def test_a_drop_round_trips_as_a_json_line_and_reads_as_one_line_of_text() -> None:
    d = droplog.Drop(1_700_000_000.5, "node1", "ingress", "x/a", ("x/from-b",), "TCP", "10.244.1.4", 40000,
                     "10.244.1.2", 80, "x/c", "x/a")
    assert droplog.parse_lines(d.to_json() + "\n{torn\n\n" + d.to_json()) == [d, d]
    text = droplog.format_drop(d)
    assert "x/c (10.244.1.4:40000) -> x/a (10.244.1.2:80)" in text
    assert text.endswith("dropped: ingress of x/a isolated by x/from-b") and "node1" in text
    outside = droplog.Drop(0.0, "node1", "ingress", "x/a", ("x/p",), "ICMP", "192.168.56.100", 0, "10.244.1.2", 0,
                           dst_pod="x/a")
    assert "192.168.56.100 -> x/a (10.244.1.2)" in droplog.format_drop(outside)


class FakeNflog:
    def __init__(self) -> None:
        self.queue: list[nflog.LoggedPacket] = []
        self.closed = False

    def read(self, timeout: float = 0.0) -> list[nflog.LoggedPacket]:
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        self.closed = True


def _pod(name: str, ip: str, labels: dict, node: str = "node1") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "x", "labels": labels, "annotations": {"netk8s.io/pod-ip": ip}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "agnhost"}]}}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    applied: list[str] = []
    monkeypatch.setattr(syncer_mod.nft, "apply", applied.append)
    store = MemoryStore()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    store.create(_pod("a", "10.244.1.2", {"pod": "a"}))
    store.create(_pod("c", "10.244.2.4", {"pod": "c"}, node="node2"))
    store.create(np("from-b", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    informer = Informer(store, ["Pod", "NetworkPolicy", "Namespace", "Node"])
    informer.sync()
    return store, informer, applied


def test_the_syncer_binds_nflog_only_once_a_chain_logs_and_writes_each_drop(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, informer, applied = world
    opened: list[FakeNflog] = []

    def open_nflog() -> FakeNflog:
        opened.append(FakeNflog())
        return opened[-1]

    path = tmp_path / droplog.FILE_NAME
    s = PolicySyncer("node1", drops_file=path, open_nflog=open_nflog)
    s.sync(informer, [], 100.0)
    s.sync(informer, [], 101.0)
    assert not opened and "log group" not in applied[-1]  # logging is off: the group is not even bound
    mutate(store, "Namespace", "", "x",
           lambda o: {**o, "metadata": {**o["metadata"], "annotations": {"netk8s.io/log-drops": "true"}}})
    s.sync(informer, informer.poll(0.1), 102.0)
    assert f"log group {R.NFLOG_GROUP}" in applied[-1]
    s.sync(informer, [], 103.0)
    assert len(opened) == 1
    chain = R.chain_name("ingress", "x/a")
    opened[0].queue = [nflog.parse_packet(ipv4_tcp("10.244.2.4", "10.244.1.2", 40000, 80), f"{R.LOG_PREFIX}{chain} "),
                       nflog.parse_packet(ipv4_tcp("10.0.0.9", "10.244.1.2", 1, 2), "someone else's prefix ")]
    s.sync(informer, [], 104.0)
    got = droplog.parse_lines(path.read_text())
    assert got == [droplog.Drop(104.0, "node1", "ingress", "x/a", ("x/from-b",), "TCP", "10.244.2.4", 40000,
                                "10.244.1.2", 80, "x/c", "x/a")]


def test_a_busy_group_is_retried_later_not_on_every_sync(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from netk8s.errors import KernelError

    store, informer, _ = world
    mutate(store, "Namespace", "", "x",
           lambda o: {**o, "metadata": {**o["metadata"], "annotations": {"netk8s.io/log-drops": "true"}}})
    informer.poll(0.1)
    tries: list[float] = []

    def busy() -> FakeNflog:
        tries.append(1)
        raise KernelError("nflog group 100: is bound by another listener")

    s = PolicySyncer("node1", drops_file=tmp_path / droplog.FILE_NAME, open_nflog=busy)
    s.sync(informer, [], 0.0)
    s.sync(informer, [], 1.0)
    s.sync(informer, [], 2.0)
    assert len(tries) == 1
    s.sync(informer, [], 0.5 + syncer_mod.NFLOG_RETRY)
    assert len(tries) == 2


def test_policy_drops_prints_the_latest_drops_of_the_chosen_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netk8s.cli.main import cli
    from netk8s.config import LabPaths

    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path))
    lab = LabPaths("nk8s-unit-drops")
    lab.root.mkdir(parents=True)
    lab.lab_file.write_text(json.dumps({"name": "nk8s-unit-drops", "nodes": 2, "overlay": "vxlan",
                                        "proxy_mode": "iptables", "store": f"sqlite://{lab.store}",
                                        "created": 0.0}))
    for node, times in (("node1", (3.0, 1.0)), ("node2", (2.0,))):
        lab.node_dir(node).mkdir(parents=True)
        (lab.node_dir(node) / droplog.FILE_NAME).write_text("".join(
            droplog.Drop(t, node, "ingress", "x/a", ("x/p",), "TCP", "10.244.2.4", 4000 + int(t), "10.244.1.2", 80,
                         "y/c" if t == 2.0 else "x/c", "x/a").to_json() + "\n" for t in times))
    run = CliRunner().invoke
    out = run(cli, ["--lab", "nk8s-unit-drops", "policy", "drops", "-o", "json"])
    assert out.exit_code == 0, out.output
    assert [json.loads(line)["sport"] for line in out.output.splitlines()] == [4001, 4002, 4003]  # by time
    one = run(cli, ["--lab", "nk8s-unit-drops", "policy", "drops", "--node", "node2"])
    assert one.exit_code == 0 and len(one.output.splitlines()) == 1 and "y/c (10.244.2.4:4002)" in one.output
    ns = run(cli, ["--lab", "nk8s-unit-drops", "policy", "drops", "-n", "y", "-o", "json"])
    assert [json.loads(line)["src_pod"] for line in ns.output.splitlines()] == ["y/c"]
    last = run(cli, ["--lab", "nk8s-unit-drops", "policy", "drops", "--tail", "1", "-o", "json"])
    assert [json.loads(line)["sport"] for line in last.output.splitlines()] == [4003]
    bad = run(cli, ["--lab", "nk8s-unit-drops", "policy", "drops", "--node", "node9"])
    assert bad.exit_code == 1 and "--node" in bad.output and "node9" in bad.output
