"""`netk8s rules` formatting: chains of a service port followed through real jumps, counters, spread."""

from __future__ import annotations

from netk8s.proxy.model import Endpoint, ProxyState, ServicePort
from netk8s.proxy.rules_view import format_rules, parse_rule


def r(rule: str, packets: int = 0) -> dict:
    return {"rule": rule, "packets": packets, "bytes": packets * 60}


SVC = "KUBE-SVC-ABCDEFGHIJKLMNOP"
EXT = "KUBE-EXT-ABCDEFGHIJKLMNOP"
SEPS = ["KUBE-SEP-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB", "KUBE-SEP-CCCCCCCCCCCCCCCC"]
IPS = ["10.244.1.5", "10.244.2.5", "10.244.3.5"]
DB_SVC = "KUBE-SVC-DBDBDBDBDBDBDBDB"

# What `iptables-legacy-save -c` prints for a NodePort Service with 3 endpoints (option order as saved).
DUMP = {
    "_source": "python-iptables",
    "nat": {
        "PREROUTING": [r('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES', 310)],
        "KUBE-SERVICES": [
            r(f'-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "default/web:http cluster IP" '
              f'-m tcp --dport 80 -j {SVC}', 300),
            r(f'-A KUBE-SERVICES -d 10.96.0.30/32 -p tcp -m comment --comment "default/db cluster IP" '
              f'-m tcp --dport 5432 -j {DB_SVC}', 7),
            r('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
              'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS', 3),
        ],
        "KUBE-NODEPORTS": [
            r(f"-A KUBE-NODEPORTS -p tcp -m comment --comment default/web:http -m tcp --dport 30080 -j {EXT}", 3),
        ],
        EXT: [
            r(f'-A {EXT} -m comment --comment "masquerade traffic for default/web:http external destinations" '
              f'-j KUBE-MARK-MASQ', 3),
            r(f"-A {EXT} -j {SVC}", 3),
        ],
        SVC: [
            r(f'-A {SVC} ! -s 10.244.0.0/16 -d 10.96.0.20/32 -p tcp -m comment --comment "default/web:http '
              f'cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ', 0),
            r(f'-A {SVC} -m comment --comment "default/web:http -> {IPS[0]}:8080" -m statistic --mode random '
              f'--probability 0.33333333349 -j {SEPS[0]}', 101),
            r(f'-A {SVC} -m comment --comment "default/web:http -> {IPS[1]}:8080" -m statistic --mode random '
              f'--probability 0.50000000000 -j {SEPS[1]}', 98),
            r(f'-A {SVC} -m comment --comment "default/web:http -> {IPS[2]}:8080" -j {SEPS[2]}', 104),
        ],
        **{sep: [r(f"-A {sep} -s {ip}/32 -m comment --comment default/web:http -j KUBE-MARK-MASQ", 0),
                 r(f"-A {sep} -p tcp -m comment --comment default/web:http -m tcp -j DNAT "
                   f"--to-destination {ip}:8080", n)]
           for sep, ip, n in zip(SEPS, IPS, (101, 98, 104))},
        DB_SVC: [r(f'-A {DB_SVC} -m comment --comment "default/db -> 10.244.1.7:5432" -j KUBE-SEP-DB00000000000000',
                   7)],
        "KUBE-SEP-DB00000000000000": [
            r("-A KUBE-SEP-DB00000000000000 -p tcp -m tcp -j DNAT --to-destination 10.244.1.7:5432", 7)],
        "KUBE-MARK-MASQ": [r("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000", 3)],
    },
    "filter": {"INPUT": [], "KUBE-SERVICES": [
        r('-A KUBE-SERVICES -d 10.96.0.40/32 -p tcp -m comment --comment "default/empty has no endpoints" '
          '-m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable', 4)]},
}


def state() -> ProxyState:
    web = ServicePort("default", "web", "http", "TCP", "10.96.0.20", 80, 8080, 30080)
    db = ServicePort("default", "db", "", "TCP", "10.96.0.30", 5432, 5432)
    empty = ServicePort("default", "empty", "", "TCP", "10.96.0.40", 80, 80)
    eps = tuple(Endpoint(ip, 8080, "node1", True, True, False, True) for ip in IPS)
    return ProxyState(
        {web.key: web, db.key: db, empty.key: empty},
        {web.key: eps + (Endpoint("10.244.4.5", 8080, "node2", False, False, False, False),),
         db.key: (Endpoint("10.244.1.7", 5432, "node1", True, True, False, True),), empty.key: ()},
    )


def test_parse_rule_pulls_out_fields() -> None:
    rule = parse_rule(DUMP["nat"]["KUBE-SERVICES"][0])
    assert (rule.chain, rule.dst, rule.dport, rule.proto, rule.target) == (
        "KUBE-SERVICES", "10.96.0.20/32", "80", "tcp", SVC)
    assert rule.comment == "default/web:http cluster IP" and rule.packets == 300


def test_one_service_shows_its_chains_counters_and_spread() -> None:
    out = format_rules(DUMP, "default/web", state())
    lines = out.splitlines()
    assert lines[0] == "(counters read with python-iptables)"
    assert lines[1].startswith("default/web:http  TCP 10.96.0.20:80  nodePort 30080")
    for chain in ("KUBE-SERVICES", "KUBE-NODEPORTS", EXT, SVC, *SEPS):
        assert f"  {chain}" in lines
    assert DB_SVC not in out and "default/db" not in out.replace("default/web", "")
    # the spread, in the order the chains were reached, with shares of the 303 connections
    assert any(l.split() == [f"{IPS[0]}:8080", SEPS[0], "101", "33.3%"] for l in lines)
    assert any(l.split() == [f"{IPS[1]}:8080", SEPS[1], "98", "32.3%"] for l in lines)
    assert any(l.split() == [f"{IPS[2]}:8080", SEPS[2], "104", "34.3%"] for l in lines)
    assert any(l.split() == ["total", "303"] for l in lines)
    assert "not in the rules here (not ready, or not local): 10.244.4.5:8080" in out
    assert lines[-1] == "1 service port(s), 303 connection(s) sent to endpoints"
    # every rule of the SVC chain appears with its own counter
    assert any(l.strip().startswith("104  -A " + SVC) for l in lines)


def test_all_services_and_totals() -> None:
    out = format_rules(DUMP, None, state())
    assert "default/db  TCP 10.96.0.30:5432" in out and "default/web:http" in out
    assert "default/empty" in out and "(no endpoint chains: traffic is rejected or dropped)" in out
    assert "  filter KUBE-SERVICES" in out and "REJECT --reject-with icmp-port-unreachable" in out
    assert out.splitlines()[-1] == "3 service port(s), 310 connection(s) sent to endpoints"


def test_without_state_groups_by_comment() -> None:
    out = format_rules(DUMP, None, None)
    assert out.splitlines()[1] == "default/db"
    assert "default/web:http" in out and SEPS[2] in out
    assert out.splitlines()[-1] == "2 service port(s), 310 connection(s) sent to endpoints"
    only = format_rules(DUMP, "default/web", None)
    assert "default/db" not in only and "303" in only


def test_unknown_service_and_empty_dump() -> None:
    assert "no proxied service port matches default/nope" in format_rules(DUMP, "default/nope", state())
    assert format_rules({"nat": {}}, None, None) == "no proxied service ports\n"
