"""The NetworkPolicy nftables renderer, traced: the rendered text is run by a small nft interpreter
(the subset the renderer writes) and every packet of every truth-table case gets the model's verdict."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

import pytest

from netk8s.policy import nftables as R
from tests.netpol_cases import PODS, PORTS, PROTOCOLS
from tests.unit.test_policy_model import ALL_CASES, NODES, ip_of, model_of


@dataclass
class Table:
    """The kernel state the text builds; operations fail where nft would (missing set/chain, busy chain)."""

    sets: dict[str, set[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)

    def run(self, text: str) -> None:
        for line in text.splitlines():
            self.command(line)

    def command(self, line: str) -> None:
        words = line.split()
        verb, what = words[0], words[1]
        if what == "table":
            if verb == "delete":
                self.sets, self.maps, self.chains = {}, {}, {}
            return
        name = words[4]
        if what == "map":
            self.maps.setdefault(name, {})
        elif what == "set":
            if verb == "delete":
                assert not any(f"@{name}" in r for rules in self.chains.values() for r in rules), f"{name} in use"
                del self.sets[name]
            else:
                self.sets.setdefault(name, set())
        elif what == "chain":
            if verb == "delete":
                assert not any(f"jump {name}" == v for m in self.maps.values() for v in m.values()), f"{name} in use"
                del self.chains[name]
            elif verb == "flush":
                self.chains[name] = []
            else:
                self.chains.setdefault(name, [])
        elif what == "rule":
            for ref in re.findall(r"@(\S+)", line):
                assert ref in self.sets or ref in self.maps, f"rule uses missing {ref}"
            self.chains[name].append(" ".join(words[5:]))
        elif what == "element":
            body = line[line.index("{") + 1:line.rindex("}")]
            items = [i.strip() for i in body.split(",")]
            if name in self.maps:
                for item in items:
                    if verb == "add":
                        ip, _, chain = item.partition(" : jump ")
                        assert chain in self.chains, f"map jumps to missing chain {chain}"
                        self.maps[name][ip] = f"jump {chain}"
                    else:
                        del self.maps[name][item]
            else:
                for item in items:
                    if verb == "add":
                        self.sets[name].add(item)
                    else:
                        self.sets[name].remove(item)

    # ----- evaluation
    def _in(self, ip: str, items: set[str] | list[str]) -> bool:
        addr = ipaddress.IPv4Address(ip)
        return any(addr in ipaddress.IPv4Network(i) for i in items)

    def _match(self, rule: str, pkt: dict) -> tuple[bool, str]:
        rule = re.sub(r' comment ".*"$', "", rule)
        tokens = rule.split()
        i = 0
        while i < len(tokens):
            t = tokens[i]
            if t == "ip":
                field_, value = tokens[i + 1], tokens[i + 2]
                addr = pkt[field_]
                if value == "vmap":
                    target = self.maps[tokens[i + 3][1:]].get(addr)
                    return (True, target) if target else (False, "")
                if value == "{":
                    end = tokens.index("}", i)
                    items = [x.strip(",") for x in tokens[i + 3:end]]
                    if not self._in(addr, items):
                        return False, ""
                    i = end + 1
                    continue
                if value.startswith("@"):
                    if not self._in(addr, self.sets[value[1:]]):
                        return False, ""
                elif addr != value:
                    return False, ""
                i += 3
            elif t == "meta":
                if pkt["proto"] != tokens[i + 2]:
                    return False, ""
                i += 3
            elif t == "th":
                lo, _, hi = tokens[i + 2].partition("-")
                if not int(lo) <= pkt["dport"] <= int(hi or lo):
                    return False, ""
                i += 3
            elif t == "ct":
                return ("new" in tokens[i + 2].split(","), "accept")
            elif t == "counter":
                i += 1
            elif t == "log":  # log group N prefix "..." queue-threshold N: no effect on the verdict
                i = tokens.index("queue-threshold", i) + 2
            else:
                return True, " ".join(tokens[i:])
        raise AssertionError(f"rule without verdict: {rule}")

    def verdict(self, pkt: dict, chain: str = "forward") -> str:
        for rule in self.chains[chain]:
            hit, action = self._match(rule, pkt)
            if not hit:
                continue
            if action.startswith("jump "):
                v = self.verdict(pkt, action.split()[1])
                if v != "return":
                    return v
                continue
            return action
        return "return" if chain != "forward" else "accept"


def forward_chain(t: Table) -> None:
    t.chains["forward"] = ["ct state established,related accept", f"ip saddr vmap @{R.EGRESS_MAP}",
                           f"ip daddr vmap @{R.INGRESS_MAP}"]


def tables_for(policies: tuple[dict, ...]) -> dict[str, Table]:
    model = model_of(policies)
    out = {}
    for node in NODES:
        t = Table()
        t.run(R.render_full(R.node_rules(model, node)))
        assert t.chains["forward"] == ["ct state established,related accept", "ip saddr vmap @egress-pods",
                                       "ip daddr vmap @ingress-pods"]
        out[node] = t
    return out


def node_of(pod: str) -> str:
    return NODES[PODS.index(pod) % 2]


@pytest.mark.parametrize("c", ALL_CASES, ids=[c.name for c in ALL_CASES])
def test_traced_rules_agree_with_the_model(c) -> None:  # type: ignore[no-untyped-def]
    model, tables = model_of(c.policies), tables_for(c.policies)
    bad = []
    for s in PODS:
        for d in PODS:
            if s == d:
                continue  # loopback: never reaches the node
            for port in PORTS:
                for proto in PROTOCOLS:
                    pkt = {"saddr": ip_of(s), "daddr": ip_of(d), "proto": proto.lower(), "dport": port}
                    passes = [tables[n].verdict(pkt) == "accept" for n in {node_of(s), node_of(d)}]
                    if all(passes) != model.check(ip_of(s), ip_of(d), port, proto).allowed:
                        bad.append(f"{s} -> {d} {port}/{proto}: rules {all(passes)}")
    assert not bad, "\n".join(bad[:20])


def test_replies_of_allowed_connections_pass() -> None:
    t = tables_for(next(c for c in ALL_CASES if c.name == "default-deny-both").policies)["node-1"]
    pkt = {"saddr": ip_of("x/a"), "daddr": ip_of("y/a"), "proto": "tcp", "dport": 80}
    assert t.verdict(pkt) == "drop"
    t.chains["forward"][0] = "ct state established,related,new accept"  # what a reply's ct state matches
    assert t.verdict(pkt) == "accept"


def test_own_node_passes_an_isolated_pod() -> None:
    t = tables_for(next(c for c in ALL_CASES if c.name == "default-deny-ingress").policies)["node-1"]
    assert t.verdict({"saddr": "192.168.56.11", "daddr": ip_of("x/a"), "proto": "tcp", "dport": 80}) == "accept"
    assert t.verdict({"saddr": "192.168.56.12", "daddr": ip_of("x/a"), "proto": "tcp", "dport": 80}) == "drop"


@pytest.mark.parametrize("i", range(0, len(ALL_CASES) - 1, 3))
def test_diff_moves_the_kernel_from_one_case_to_the_next(i: int) -> None:
    a, b = ALL_CASES[i], ALL_CASES[i + 1]
    for node in NODES:
        old, new = (R.node_rules(model_of(c.policies), node) for c in (a, b))
        moved, fresh = Table(), Table()
        moved.run(R.render_full(old))
        moved.run(R.render_diff(old, new))
        fresh.run(R.render_full(new))
        assert moved == fresh
        assert R.render_diff(new, new) == ""


def test_a_label_change_only_touches_set_elements() -> None:
    from tests.netpol_cases import np
    from tests.unit.test_policy_model import name_of

    pol = [np("from-client", {"podSelector": {"matchLabels": {"pod": "a"}},
                              "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})]
    labels = {p: {"pod": name_of(p)} for p in PODS}
    before = R.node_rules(model_of(pol), "node-1")
    after = R.node_rules(model_of(pol, labels=labels | {"x/c": {"pod": "c", "role": "client"}}), "node-1")
    diff = R.render_diff(before, after).splitlines()
    assert len(diff) == 1 and diff[0].startswith("add element ip netk8s-policy peer-") and ip_of("x/c") in diff[0]


def logged_model(policies: tuple[dict, ...] | list[dict], logging: tuple[str, ...]):  # type: ignore[no-untyped-def]
    from netk8s.policy.model import LOG_DROPS_ANNOTATION, build
    from tests.unit.test_policy_model import NODE_OBJECTS, ns_objects, pod_objects

    namespaces = [ns | {"metadata": {**ns["metadata"], "annotations": {LOG_DROPS_ANNOTATION: "true"}}}
                  if ns["metadata"]["name"] in logging else ns for ns in ns_objects()]
    return build(pod_objects(), policies, namespaces, NODE_OBJECTS)


def test_drops_log_to_nflog_only_in_namespaces_that_ask_and_the_verdicts_stay() -> None:
    c = next(c for c in ALL_CASES if c.name == "default-deny-both")
    plain = R.node_rules(model_of(c.policies), "node-1")
    assert not any("log" in line.split() for lines in plain.chains.values() for line in lines)  # off by default
    rules = R.node_rules(logged_model(c.policies, ("x",)), "node-1")
    for chain, lines in rules.chains.items():
        pod = rules.comments[chain]
        if pod.startswith("x/"):
            assert lines[-1] == (f'counter log group {R.NFLOG_GROUP} prefix "{R.LOG_PREFIX}{chain} " queue-threshold 1 '
                                 f'drop comment "isolated by x/deny"'), lines[-1]
            assert R.chain_of_prefix(f"{R.LOG_PREFIX}{chain} ") == chain
        else:
            assert "log" not in lines[-1].split(), (pod, lines[-1])
    assert any(rules.comments[ch].startswith("x/") for ch in rules.chains)
    t = Table()
    t.run(R.render_full(rules))
    assert t.verdict({"saddr": ip_of("x/a"), "daddr": ip_of("y/a"), "proto": "tcp", "dport": 80}) == "drop"
    # turning it on is a change of the chains' rules only
    diff = R.render_diff(plain, rules)
    assert diff and all(" chain " in ln or " rule " in ln for ln in diff.splitlines()), diff
    assert R.chain_of_prefix("something else") is None


def test_the_log_prefix_fits_the_kernels_limit() -> None:
    # NF_LOG_PREFIXLEN is 128 with the NUL (include/net/netfilter/nf_log.h); nft refuses longer ones
    longest = R.log_statement(R.chain_name("ingress", "n" * 63 + "/" + "p" * 253))
    prefix = longest.split('prefix "', 1)[1].split('"', 1)[0]
    assert len(prefix) < 128
