"""Switching away from iptables mode removes that mode's rules and nothing else (pure cleanup text)."""

from __future__ import annotations

from netk8s.proxy.modes import iptables_cleanup_text

NAT = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FLANNEL-POSTRTG - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-ABC - [0:0]
:KUBE-PORTALS-CONTAINER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -j KUBE-PORTALS-CONTAINER
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-ABC
COMMIT
"""


def test_removes_kube_chains_and_only_their_jumps() -> None:
    text = iptables_cleanup_text({"nat": NAT, "filter": "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"},
                                 keep=frozenset({"KUBE-PORTALS-CONTAINER"}))
    lines = text.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in lines
    assert '-D POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING' in lines
    assert {ln for ln in lines if ln.startswith("-X")} == {"-X KUBE-SERVICES", "-X KUBE-POSTROUTING", "-X KUBE-SVC-ABC"}
    assert not any("FLANNEL" in ln or "PORTALS" in ln for ln in lines)  # a neighbour's and the kept mode's rules stay
    assert not any(ln.startswith("-F ") and ln.split()[1] in ("PREROUTING", "POSTROUTING", "OUTPUT") for ln in lines)
    assert "*filter" not in lines  # nothing of ours there


def test_nothing_to_remove_gives_empty_text() -> None:
    assert iptables_cleanup_text({"nat": "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"}) == ""
