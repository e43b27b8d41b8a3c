"""A fake `nft -f` for the kube-proxy table that rejects what the kernel rejects, for tests (the table model
and the packet tracer are the product's: netk8s.proxy.tracer_nft, re-exported here).

FakeNft applies the command grammar the nftables renderer writes (add/flush/delete of table, chain, set,
map, rule, element), one transaction at a time, atomically: a transaction that fails changes nothing. It
refuses, like the kernel: a rule or element naming a missing chain, set or map; deleting a chain that
still has rules or is referenced (by a rule or a map element); deleting a set a rule uses; deleting a
missing chain, set or element; re-adding a set or map with different properties; adding an existing map
key with a different value.
"""

from __future__ import annotations

import copy
import re

from netk8s.errors import KernelError
from netk8s.model import naming
from netk8s.proxy.tracer_nft import (
    NChain,
    NContainer,
    NftChooser,
    NftTable,
    NftTrace,
    NRule,
    parse_rule,
    trace,
)

__all__ = ["FakeNft", "NChain", "NContainer", "NRule", "NftChooser", "NftTable", "NftTrace", "parse_rule", "trace"]

_CMD_RE = re.compile(rf"^(add|flush|delete) (table|chain|set|map|rule|element) ip {re.escape(naming.KUBE_PROXY_TABLE)}"
                     r"(?: (\S+))?(?: (.*))?$")


class FakeNft:
    """The kube-proxy table as the kernel would hold it after the transactions applied so far."""

    def __init__(self) -> None:
        self.table: NftTable | None = None
        self.transactions: list[str] = []

    # ----- applying ------------------------------------------------------------------------------
    def apply(self, text: str) -> None:
        work = copy.deepcopy(self.table)
        for no, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                work = self._command(work, line.strip())
            except KernelError as exc:
                raise KernelError(f"nft -f: line {no}: {line!r}: {exc.message}") from None
        self.table = work
        self.transactions.append(text)

    def _command(self, t: NftTable | None, line: str) -> NftTable | None:
        m = _CMD_RE.match(line)
        if not m:
            raise KernelError("syntax error (not modelled)")
        verb, obj, name, rest = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        if obj == "table":
            if verb == "add":
                return t if t is not None else NftTable()
            if t is None:
                raise KernelError("No such file or directory (table)")
            return None if verb == "delete" else _flush_table(t)
        if t is None:
            raise KernelError("No such file or directory (table)")
        assert name is not None
        if obj == "chain":
            self._chain(t, verb, name, rest)
        elif obj in ("set", "map"):
            self._container(t, verb, obj, name, rest)
        elif obj == "rule":
            chain = t.chains.get(name)
            if chain is None:
                raise KernelError(f"No such file or directory (chain {name})")
            rule = parse_rule(rest)
            for target in rule.targets():
                if target not in t.chains:
                    raise KernelError(f"No such file or directory (jump to chain {target})")
                if t.chains[target].hook:
                    raise KernelError(f"Operation not supported (jump to base chain {target})")
            for ref in rule.set_refs():
                if ref not in t.containers:
                    raise KernelError(f"No such file or directory (set {ref})")
            chain.rules.append(rule)
        else:
            self._element(t, verb, name, rest)
        return t

    def _chain(self, t: NftTable, verb: str, name: str, rest: str) -> None:
        chain = t.chains.get(name)
        if verb == "add":
            m = re.search(r"type (\w+) hook (\w+) priority (-?\d+)", rest)
            if chain is None:
                chain = t.chains[name] = NChain(name)
                if m:
                    chain.kind, chain.hook, chain.priority = m.group(1), m.group(2), int(m.group(3))
            elif m and (chain.kind, chain.hook, chain.priority) != (m.group(1), m.group(2), int(m.group(3))):
                raise KernelError(f"Device or resource busy (chain {name} redefined)")
            return
        if chain is None:
            raise KernelError(f"No such file or directory (chain {name})")
        if verb == "flush":
            chain.rules = []
            return
        if chain.rules:
            raise KernelError(f"Device or resource busy (chain {name} is not empty)")
        users = [c.name for c in t.chains.values() for r in c.rules if name in r.targets()]
        users += [f"@{c.name}" for c in t.containers.values() if any(v.split()[-1:] == [name]
                                                                     for v in c.elements.values())]
        if users:
            raise KernelError(f"Device or resource busy (chain {name} is used by {users[0]})")
        del t.chains[name]

    def _container(self, t: NftTable, verb: str, kind: str, name: str, rest: str) -> None:
        c = t.containers.get(name)
        if verb == "add":
            typ = re.search(r"type ([^;]+?) ;", rest)
            flags = re.search(r"flags ([^;]+?) ;", rest)
            timeout = re.search(r"timeout (\d+)s ;", rest)
            props = (typ.group(1) if typ else "", flags.group(1) if flags else "",
                     int(timeout.group(1)) if timeout else None)
            if c is None:
                t.containers[name] = NContainer(name, kind, props)
            elif c.props != props or c.kind != kind:
                raise KernelError(f"File exists ({kind} {name} has other properties)")
            return
        if c is None:
            raise KernelError(f"No such file or directory ({kind} {name})")
        if verb == "flush":
            c.elements.clear()
            c.dynamic.clear()
            return
        if any(name in r.set_refs() for ch in t.chains.values() for r in ch.rules):
            raise KernelError(f"Device or resource busy ({kind} {name} is used by a rule)")
        del t.containers[name]

    def _element(self, t: NftTable, verb: str, name: str, rest: str) -> None:
        c = t.containers.get(name)
        if c is None:
            raise KernelError(f"No such file or directory (set {name})")
        m = re.match(r"^\{ (.*) \}$", rest)
        if not m:
            raise KernelError("syntax error in element")
        body = re.sub(r' comment "[^"]*"', "", m.group(1))
        key, _, value = body.partition(" : ")
        key, value = key.strip(), value.strip()
        if verb == "delete":
            if key not in c.elements:
                raise KernelError(f"No such file or directory (element {key} in {name})")
            del c.elements[key]
            return
        if c.kind == "map":
            words = value.split()
            if len(words) == 2 and words[0] in ("goto", "jump"):
                if words[1] not in t.chains:
                    raise KernelError(f"No such file or directory (chain {words[1]})")
            elif words not in (["drop"], ["accept"]):
                raise KernelError(f"unsupported verdict {value!r}")
        if key in c.elements and c.elements[key] != value:
            raise KernelError(f"File exists (element {key} in {name})")
        c.elements[key] = value

    # ----- reading -------------------------------------------------------------------------------
    def chains(self) -> set[str]:
        return set(self.table.chains) if self.table else set()

    def chain_rules(self, name: str) -> list[NRule]:
        return self.table.chains[name].rules if self.table and name in self.table.chains else []

    def elements(self, name: str) -> dict[str, str]:
        if self.table is None or name not in self.table.containers:
            return {}
        return dict(self.table.containers[name].elements)

    def sets(self) -> set[str]:
        return set(self.table.containers) if self.table else set()

    # ----- the NftKernel protocol (netk8s.proxy.backend_nftables), as netk8s.dataplane.nftables has it
    def chain_exists(self, table: str, chain: str) -> bool:
        return self.table is not None and table == naming.KUBE_PROXY_TABLE and chain in self.table.chains

    def list_names(self, table: str) -> set[str]:
        return self.chains() | self.sets() if table == naming.KUBE_PROXY_TABLE else set()

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.table.chains.values()) if self.table else 0


def _flush_table(t: NftTable) -> NftTable:
    for c in t.chains.values():
        c.rules = []
    for s in t.containers.values():
        s.elements.clear()
    return t

