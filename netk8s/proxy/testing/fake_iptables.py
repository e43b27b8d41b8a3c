"""A fake iptables-restore for tests: netk8s.proxy.tracer_iptables' tables, strict (refusing what the kernel
refuses: a jump to a missing chain, `-X` of a chain still referenced or not empty, a rule in a chain that
neither exists nor is declared, a table without COMMIT, a policy on a user chain, unknown commands).

`FakeRestore.ensure_rules` is the fake of netk8s.dataplane.iptables.ensure_rules (the built-in chains'
jumps, which the iptables proxier ensures apart from its restore text). FakeRestore implements the
IptablesKernel protocol (restore, chain_exists, list_chains, ensure_rules, save), so
netk8s.proxy.backend_iptables runs on it unchanged. The parser and the packet tracer are the product's
(netk8s.proxy.tracer_iptables), re-exported here for the tests that import them from the fake.
"""

from __future__ import annotations

from netk8s.proxy.tracer_iptables import (
    BUILTIN_CHAINS,
    BUILTIN_TARGETS,
    Chain,
    Chooser,
    IpsetLookup,
    Rule,
    Ruleset,
    Tables,
    TraceResult,
    parse_rule,
    trace,
)

__all__ = ["BUILTIN_CHAINS", "BUILTIN_TARGETS", "Chain", "Chooser", "FakeRestore", "IpsetLookup", "Rule", "Ruleset",
           "TraceResult", "parse_rule", "trace"]


class FakeRestore(Tables):
    """Strict tables with the IptablesKernel protocol. `strict=False` skips the checks (used to read text
    whose chains live elsewhere)."""

    def __init__(self, strict: bool = True) -> None:
        super().__init__(strict)

    # -- the IptablesKernel protocol (netk8s.proxy.backend_iptables), as netk8s.dataplane.iptables has it
    def restore(self, text: str) -> None:
        self.apply(text)

    def chain_exists(self, table: str, chain: str) -> bool:
        return chain in self.tables.get(table, {})

    def list_chains(self, table: str) -> set[str]:
        return self.chains(table)

    def save(self, table: str | None = None) -> str:
        """iptables-save style text of the current state (of one table, as `iptables-save -t TABLE`)."""
        lines: list[str] = []
        for name, chains in self.tables.items():
            if table is not None and name != table:
                continue
            lines.append(f"*{name}")
            ordered = [c for c in chains.values() if c.builtin] + sorted(
                (c for c in chains.values() if not c.builtin), key=lambda c: c.name)
            lines.extend(f":{c.name} {c.policy} [0:0]" for c in ordered)
            for c in ordered:
                lines.extend(r.text for r in c.rules)
            lines.append("COMMIT")
        return "\n".join(lines) + "\n"
