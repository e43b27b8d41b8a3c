"""DNS record table (pure): every record type of the Kubernetes DNS spec 1.1.0, and incremental updates."""

from __future__ import annotations

import pytest
from dnslib import EDNS0, DNSRecord

from netk8s.dns import records as rec
from netk8s.dns import wire
from netk8s.dns.records import RecordTable

Z = "cluster.local"
SOA_CLUSTER = f"SOA {Z}"


def service(name: str, ns: str = "default", cluster_ip: str | None = None, ports: list[dict] | None = None,
            **spec: object) -> dict:
    s: dict = {"ports": ports or [], **spec}
    if cluster_ip is not None:
        s["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": s}


def endpoint(ip: str, ready: bool = True, hostname: str = "") -> dict:
    ep: dict = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        ep["hostname"] = hostname
    return ep


def eslice(svc: str, endpoints: list[dict], ports: list[dict] | None = None, ns: str = "default",
           name: str = "") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{svc}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports or []}


def pod(name: str, ip: str, ns: str = "default", hostname: str = "", subdomain: str = "",
        phase: str = "Running") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec,
            "status": {"phase": phase, "podIP": ip}}


HTTP = {"name": "http", "port": 80, "protocol": "TCP"}
MYSQL = {"name": "mysql", "port": 3306, "protocol": "TCP"}


def world() -> RecordTable:
    t = RecordTable()
    t.apply_events([
        ("ADDED", service("web", cluster_ip="10.96.0.20", ports=[HTTP, {"name": "dns", "port": 53, "protocol": "UDP"},
                                                                  {"port": 9090}])),
        ("ADDED", eslice("web", [endpoint("10.244.1.2"), endpoint("10.244.2.3", ready=False)],
                         [{"name": "http", "port": 8080, "protocol": "TCP"}])),
        ("ADDED", service("db", cluster_ip="None", ports=[MYSQL])),
        ("ADDED", eslice("db", [endpoint("10.244.1.5", hostname="db-0"), endpoint("10.244.2.5", hostname="db-1"),
                                endpoint("10.244.3.5"), endpoint("10.244.3.6", ready=False)], [MYSQL])),
        ("ADDED", service("empty", cluster_ip="None")),
        ("ADDED", eslice("empty", [endpoint("10.244.1.8", ready=False)])),
        ("ADDED", service("pubnr", cluster_ip="None", publishNotReadyAddresses=True)),
        ("ADDED", eslice("pubnr", [endpoint("10.244.1.9", ready=False)])),
        ("ADDED", service("ext", type="ExternalName", externalName="www.Example.com.")),
        ("ADDED", service("mysql", cluster_ip="None", ports=[MYSQL])),
        ("ADDED", pod("mysql-0", "10.244.1.7", hostname="mysql-0", subdomain="mysql")),
        ("ADDED", eslice("mysql", [endpoint("10.244.1.7", hostname="mysql-0")], [MYSQL])),
        ("ADDED", pod("web-x", "10.244.1.2", hostname="alpha", subdomain="web")),
        ("ADDED", pod("busybox", "10.244.1.3")),
        ("ADDED", pod("done", "10.244.1.4", phase="Succeeded")),
        ("ADDED", service("kube-dns", ns="kube-system", cluster_ip="10.96.0.10", ports=[
            {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])),
    ])
    return t


def fmt(rr: rec.RR) -> str:
    name, rtype, _, rdata = rr
    kind = {rec.A: "A", rec.SRV: "SRV", rec.PTR: "PTR", rec.CNAME: "CNAME", rec.TXT: "TXT", rec.SOA: "SOA",
            rec.NS: "NS"}[rtype]
    if rtype == rec.SOA:
        return f"SOA {name}"
    return " ".join([kind, *map(str, rdata)])


def svc_name(s: str, ns: str = "default") -> str:
    return f"{s}.{ns}.svc.{Z}"


# (case id, name, qtype, rcode, answers, additional) — NODATA/NXDOMAIN answers are checked for the SOA.
CASES = [
    ("dns-version TXT", f"dns-version.{Z}", rec.TXT, rec.NOERROR, ["TXT 1.1.0"], []),
    ("ClusterIP A", svc_name("web"), rec.A, rec.NOERROR, ["A 10.96.0.20"], []),
    ("ClusterIP A in kube-system", svc_name("kube-dns", "kube-system"), rec.A, rec.NOERROR, ["A 10.96.0.10"], []),
    ("ClusterIP SRV tcp", f"_http._tcp.{svc_name('web')}", rec.SRV, rec.NOERROR,
     [f"SRV 0 100 80 {svc_name('web')}"], ["A 10.96.0.20"]),
    ("ClusterIP SRV udp", f"_dns._udp.{svc_name('web')}", rec.SRV, rec.NOERROR,
     [f"SRV 0 100 53 {svc_name('web')}"], ["A 10.96.0.20"]),
    ("ClusterIP PTR", "20.0.96.10.in-addr.arpa", rec.PTR, rec.NOERROR, [f"PTR {svc_name('web')}"], []),
    ("headless multi A (ready only)", svc_name("db"), rec.A, rec.NOERROR,
     ["A 10.244.1.5", "A 10.244.2.5", "A 10.244.3.5"], []),
    ("headless hostname A", f"db-1.{svc_name('db')}", rec.A, rec.NOERROR, ["A 10.244.2.5"], []),
    ("headless SRV per endpoint", f"_mysql._tcp.{svc_name('db')}", rec.SRV, rec.NOERROR,
     [f"SRV 0 33 3306 10-244-3-5.{svc_name('db')}", f"SRV 0 33 3306 db-0.{svc_name('db')}",
      f"SRV 0 33 3306 db-1.{svc_name('db')}"], ["A 10.244.1.5", "A 10.244.2.5", "A 10.244.3.5"]),
    ("headless PTR for hostname endpoint", "5.1.244.10.in-addr.arpa", rec.PTR, rec.NOERROR,
     [f"PTR db-0.{svc_name('db')}"], []),
    ("headless no PTR without hostname", "5.3.244.10.in-addr.arpa", rec.PTR, rec.NXDOMAIN, [], []),
    ("headless no ready endpoints is NXDOMAIN", svc_name("empty"), rec.A, rec.NXDOMAIN, [], []),
    ("not-ready endpoint not published", f"10-244-3-6.{svc_name('db')}", rec.A, rec.NXDOMAIN, [], []),
    ("publishNotReadyAddresses", svc_name("pubnr"), rec.A, rec.NOERROR, ["A 10.244.1.9"], []),
    ("a-b-c-d under headless service", f"10-244-3-5.{svc_name('db')}", rec.A, rec.NOERROR, ["A 10.244.3.5"], []),
    ("a-b-c-d under ClusterIP service", f"10-244-1-2.{svc_name('web')}", rec.A, rec.NOERROR, ["A 10.244.1.2"], []),
    ("pod A verified", f"10-244-1-3.default.pod.{Z}", rec.A, rec.NOERROR, ["A 10.244.1.3"], []),
    ("pod A unknown IP", f"10-244-9-9.default.pod.{Z}", rec.A, rec.NXDOMAIN, [], []),
    ("pod A other namespace", f"10-244-1-3.other.pod.{Z}", rec.A, rec.NXDOMAIN, [], []),
    ("pod A of a finished pod", f"10-244-1-4.default.pod.{Z}", rec.A, rec.NXDOMAIN, [], []),
    ("StatefulSet pod name", f"mysql-0.{svc_name('mysql')}", rec.A, rec.NOERROR, ["A 10.244.1.7"], []),
    ("pod hostname/subdomain via pod spec", f"alpha.{svc_name('web')}", rec.A, rec.NOERROR, ["A 10.244.1.2"], []),
    ("ExternalName CNAME for A", svc_name("ext"), rec.A, rec.NOERROR, ["CNAME www.example.com"], []),
    ("ExternalName CNAME for AAAA", svc_name("ext"), rec.AAAA, rec.NOERROR, ["CNAME www.example.com"], []),
    ("NODATA: AAAA of a ClusterIP service", svc_name("web"), rec.AAAA, rec.NOERROR, [], []),
    ("NODATA: TXT of a headless service", svc_name("db"), rec.TXT, rec.NOERROR, [], []),
    ("NXDOMAIN unknown service", svc_name("nope"), rec.A, rec.NXDOMAIN, [], []),
    ("NXDOMAIN unnamed port has no SRV", f"_9090._tcp.{svc_name('web')}", rec.SRV, rec.NXDOMAIN, [], []),
    ("empty non-terminal namespace", f"default.svc.{Z}", rec.A, rec.NOERROR, [], []),
    ("empty non-terminal svc", f"svc.{Z}", rec.A, rec.NOERROR, [], []),
    ("empty non-terminal _tcp", f"_tcp.{svc_name('web')}", rec.SRV, rec.NOERROR, [], []),
    ("empty non-terminal pod", f"pod.{Z}", rec.A, rec.NOERROR, [], []),
    ("unknown namespace is NXDOMAIN", f"nons.svc.{Z}", rec.A, rec.NXDOMAIN, [], []),
    ("apex SOA", Z, rec.SOA, rec.NOERROR, [SOA_CLUSTER], []),
    ("case-insensitive", "WEB.Default.SVC.Cluster.Local.", rec.A, rec.NOERROR, ["A 10.96.0.20"], []),
]


@pytest.mark.parametrize(("name", "qtype", "rcode", "answers", "additional"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_record(name: str, qtype: int, rcode: int, answers: list[str], additional: list[str]) -> None:
    ans = world().resolve(name, qtype)
    assert ans is not None
    assert ans.rcode == rcode
    assert sorted(fmt(rr) for rr in ans.answers) == sorted(answers)
    assert sorted(fmt(rr) for rr in ans.additional) == sorted(additional)
    if not answers:  # NODATA and NXDOMAIN carry the zone's SOA (RFC 2308)
        assert [fmt(rr) for rr in ans.authority] == [f"SOA {world().zone_of(name)}"]
        assert ans.authority[0][3][6] == 5  # minimum TTL = the configured TTL


def test_ttl_is_configurable_and_soa_minimum_follows() -> None:
    t = RecordTable(rec.DnsConfig(ttl=30))
    t.apply("ADDED", service("web", cluster_ip="10.96.0.20"))
    ans = t.resolve(svc_name("web"), rec.A)
    assert ans is not None and ans.answers[0][2] == 30
    neg = t.resolve(svc_name("nope"), rec.A)
    assert neg is not None and neg.authority[0][2] == 30 and neg.authority[0][3][6] == 30


def test_names_outside_our_zones_are_not_answered() -> None:
    t = world()
    assert t.resolve("www.example.com", rec.A) is None
    assert t.resolve("8.8.8.8.in-addr.arpa", rec.PTR) is None  # outside the service and pod CIDRs
    assert t.resolve("0.96.10.in-addr.arpa", rec.PTR) is None  # partial reverse name: not ours
    unknown = t.resolve("99.0.96.10.in-addr.arpa", rec.PTR)
    assert unknown is not None and unknown.rcode == rec.NXDOMAIN
    assert [fmt(rr) for rr in unknown.authority] == ["SOA 10.in-addr.arpa"]


def headless_ips(t: RecordTable, name: str = "db") -> list[str]:
    ans = t.resolve(svc_name(name), rec.A)
    assert ans is not None
    return sorted(rr[3][0] for rr in ans.answers) if ans.rcode == rec.NOERROR else []


def test_scale_2_4_1_changes_headless_answers() -> None:
    t = RecordTable()
    t.apply("ADDED", service("db", cluster_ip="None", ports=[MYSQL]))
    for n in (2, 4, 1):
        t.apply("MODIFIED", eslice("db", [endpoint(f"10.244.1.{i + 10}") for i in range(n)], [MYSQL]))
        assert headless_ips(t) == sorted(f"10.244.1.{i + 10}" for i in range(n))
        srv = t.resolve(f"_mysql._tcp.{svc_name('db')}", rec.SRV)
        assert srv is not None and len(srv.answers) == n
    assert t.resolve(f"10-244-1-11.{svc_name('db')}", rec.A).rcode == rec.NXDOMAIN  # type: ignore[union-attr]


def test_endpoints_becoming_not_ready_make_headless_name_disappear() -> None:
    t = RecordTable()
    t.apply("ADDED", service("db", cluster_ip="None"))
    t.apply("ADDED", eslice("db", [endpoint("10.244.1.5")]))
    assert headless_ips(t) == ["10.244.1.5"]
    t.apply("MODIFIED", eslice("db", [endpoint("10.244.1.5", ready=False)]))
    assert t.resolve(svc_name("db"), rec.A).rcode == rec.NXDOMAIN  # type: ignore[union-attr]


def test_several_slices_of_one_service_are_merged() -> None:
    t = RecordTable()
    t.apply("ADDED", service("db", cluster_ip="None"))
    t.apply("ADDED", eslice("db", [endpoint("10.244.1.5")], name="db-aaaaa"))
    t.apply("ADDED", eslice("db", [endpoint("10.244.2.5")], name="db-bbbbb"))
    assert headless_ips(t) == ["10.244.1.5", "10.244.2.5"]
    t.apply("DELETED", eslice("db", [], name="db-aaaaa"))
    assert headless_ips(t) == ["10.244.2.5"]


def test_slice_relabelled_to_another_service_moves_its_records() -> None:
    t = RecordTable()
    t.apply("ADDED", service("a", cluster_ip="None"))
    t.apply("ADDED", service("b", cluster_ip="None"))
    t.apply("ADDED", eslice("a", [endpoint("10.244.1.5")], name="s1"))
    t.apply("MODIFIED", eslice("b", [endpoint("10.244.1.5")], name="s1"))
    assert headless_ips(t, "a") == [] and headless_ips(t, "b") == ["10.244.1.5"]


def test_deleting_a_service_removes_its_names() -> None:
    t = world()
    t.apply("DELETED", service("web", cluster_ip="10.96.0.20"))
    for name, qtype in [(svc_name("web"), rec.A), (f"_http._tcp.{svc_name('web')}", rec.SRV),
                        ("20.0.96.10.in-addr.arpa", rec.PTR), (f"10-244-1-2.{svc_name('web')}", rec.A)]:
        assert t.resolve(name, qtype).rcode == rec.NXDOMAIN, name  # type: ignore[union-attr]
    assert not [n for n in t.names() if "web.default" in n]
    assert t.exists(f"default.svc.{Z}")  # other services keep the namespace as an empty non-terminal
    t2 = RecordTable()
    t2.apply("ADDED", service("only", ns="solo", cluster_ip="10.96.0.30"))
    assert t2.exists(f"solo.svc.{Z}")
    t2.apply("DELETED", service("only", ns="solo"))
    assert not t2.exists(f"solo.svc.{Z}")


def test_externalname_change_and_type_change() -> None:
    t = RecordTable()
    t.apply("ADDED", service("ext", type="ExternalName", externalName="a.example.com"))
    t.apply("MODIFIED", service("ext", type="ExternalName", externalName="b.example.com"))
    assert [fmt(rr) for rr in t.resolve(svc_name("ext"), rec.A).answers] == ["CNAME b.example.com"]  # type: ignore[union-attr]
    t.apply("MODIFIED", service("ext", cluster_ip="10.96.0.44"))
    assert [fmt(rr) for rr in t.resolve(svc_name("ext"), rec.A).answers] == ["A 10.96.0.44"]  # type: ignore[union-attr]


def test_pod_records_follow_pod_ip_and_deletion() -> None:
    t = RecordTable()
    t.apply("ADDED", pod("p", ""))
    assert t.resolve(f"10-244-1-3.default.pod.{Z}", rec.A).rcode == rec.NXDOMAIN  # type: ignore[union-attr]
    t.apply("MODIFIED", pod("p", "10.244.1.3"))
    assert t.resolve(f"10-244-1-3.default.pod.{Z}", rec.A).rcode == rec.NOERROR  # type: ignore[union-attr]
    t.apply("DELETED", pod("p", "10.244.1.3"))
    assert t.resolve(f"10-244-1-3.default.pod.{Z}", rec.A).rcode == rec.NXDOMAIN  # type: ignore[union-attr]


def test_update_touches_only_the_affected_names() -> None:
    t = RecordTable()
    events = []
    for i in range(50):
        events.append(("ADDED", service(f"s{i}", cluster_ip=f"10.96.1.{i}", ports=[HTTP])))
        events.append(("ADDED", eslice(f"s{i}", [endpoint(f"10.244.1.{i}"), endpoint(f"10.244.2.{i}")])))
        events.append(("ADDED", pod(f"p{i}", f"10.244.1.{i}")))
    t.apply_events(events)
    answers = wire.Answers(t)
    total = len(answers.positive)
    before = t.owners_recomputed
    dirty = t.apply("MODIFIED", eslice("s7", [endpoint("10.244.1.7"), endpoint("10.244.3.7")]))
    assert t.owners_recomputed == before + 1
    assert dirty == {f"10-244-2-7.{svc_name('s7')}", f"10-244-3-7.{svc_name('s7')}"}
    built = answers.update(dirty)
    assert built == 1 and total > 300  # one new template of 300+; the removed name's template is dropped
    assert (wire.name_to_wire(f"10-244-2-7.{svc_name('s7')}"), rec.A) not in answers.positive
    # A readiness-only pod change does not touch DNS at all.
    ready = pod("p3", "10.244.1.3")
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert t.apply("MODIFIED", ready) == set()
    # A service change rebuilds that service's names only.
    dirty = t.apply("MODIFIED", service("s9", cluster_ip="10.96.2.9", ports=[HTTP]))
    assert dirty == {svc_name("s9"), "9.1.96.10.in-addr.arpa", "9.2.96.10.in-addr.arpa",
                     f"_http._tcp.{svc_name('s9')}"}


def ask(answers: wire.Answers, name: str, qtype: str = "A", edns: int = 0) -> DNSRecord | None:
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=edns))
    parsed = wire.parse_fast(bytes(q.pack()))
    assert parsed is not None
    t = answers.lookup(parsed)
    return None if t is None else DNSRecord.parse(wire.render(parsed, t, True, True))


def test_templates_echo_case_and_follow_updates() -> None:
    t = world()
    answers = wire.Answers(t)
    reply = ask(answers, "Web.DEFAULT.svc.cluster.local")
    assert reply is not None and str(reply.q.qname) == "Web.DEFAULT.svc.cluster.local."
    assert [str(r.rdata) for r in reply.rr] == ["10.96.0.20"] and reply.header.aa
    assert ask(answers, "www.example.com") is None  # forwarded
    nx = ask(answers, "nope.default.svc.cluster.local")
    assert nx is not None and nx.header.rcode == rec.NXDOMAIN and nx.auth[0].rtype == rec.SOA
    nodata = ask(answers, "default.svc.cluster.local")
    assert nodata is not None and nodata.header.rcode == rec.NOERROR and not nodata.rr and nodata.auth
    answers.update(t.apply("ADDED", service("new", cluster_ip="10.96.0.99")))
    answers.set_serial(42)
    reply = ask(answers, "new.default.svc.cluster.local")
    assert reply is not None and [str(r.rdata) for r in reply.rr] == ["10.96.0.99"]
    nx = ask(answers, "gone.default.svc.cluster.local")
    assert nx is not None and nx.auth[0].rdata.times[0] == 42  # SOA serial follows the store


def test_large_headless_answer_truncates_without_edns_and_fits_with_it() -> None:
    t = RecordTable()
    t.apply("ADDED", service("big", cluster_ip="None"))
    t.apply("ADDED", eslice("big", [endpoint(f"10.244.{i // 250}.{i % 250 + 1}") for i in range(100)]))
    answers = wire.Answers(t)
    plain = ask(answers, svc_name("big"))
    assert plain is not None and plain.header.tc and not plain.rr
    big = ask(answers, svc_name("big"), edns=4096)
    assert big is not None and not big.header.tc and len(big.rr) == 100
