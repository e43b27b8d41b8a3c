"""Pure helpers of the benchmarks: statistics, ratios, targets, kube-proxy rule counts, the Markdown report.

Nothing here reads a clock or touches the system; the driver passes in what it measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

NOT_AVAILABLE = "not available in this build"


# ----------------------------------------------------------------------------------------- statistics
def median(values: Iterable[float]) -> float | None:
    """The median, or None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def percentile(values: Iterable[float], pct: float) -> float | None:
    """The pct-th percentile (0..100) with linear interpolation between closest ranks (numpy's default);
    None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile: {pct} is not within 0..100")
    pos = (len(xs) - 1) * pct / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def profile_summary(pstats_text: str, limit: int = 12) -> str:
    """pstats' table with the preamble dropped and at most `limit` rows."""
    lines = [re.sub(r"\S*/site-packages/|\S*/lib/python3\.\d+/|\S*/(?=netk8s/|scripts/)", "", ln)
             for ln in pstats_text.splitlines()
             if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), 0)
    return "\n".join(lines[start:start + 1 + limit])


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Ratios of interleaved repetitions (rep i of one against rep i of the other): on a noisy machine
    the median of paired ratios is steadier than the ratio of medians."""
    return [n / d for n, d in zip(numerators, denominators) if d]


# ----------------------------------------------------------------------------------------- formatting
def fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    """A number with up to `digits` significant digits and its unit; '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    elif value == 0:
        text = "0"
    else:
        mag = math.floor(math.log10(abs(value)))
        decimals = max(0, digits - 1 - mag)
        text = f"{value:,.{decimals}f}"
    return f"{text} {unit}".rstrip() if unit else text


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table; cells are str()-ed and `|` escaped."""
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One goal of the issue beside what was measured. met: True/False, None = could not be measured."""

    name: str
    goal: str
    measured: str
    met: bool | None
    reason: str = ""  # one line: why it was missed (or why it could not be measured)
    close_gap: str = ""  # what would close the gap

    @property
    def verdict(self) -> str:
        return {True: "met", False: "not met", None: "not measured"}[self.met]


def at_most(name: str, goal_text: str, value: float | None, limit: float, measured: str, *,
            reason: str = "", close_gap: str = "") -> Target:
    """A target `value <= limit` (None value: not measured)."""
    met = None if value is None else value <= limit
    return Target(name, goal_text, measured, met, reason.strip() if met is False else "", close_gap if met is False else "")


def at_least(name: str, goal_text: str, value: float | None, limit: float, measured: str, *,
             reason: str = "", close_gap: str = "") -> Target:
    """A target `value >= limit` (None value: not measured)."""
    met = None if value is None else value >= limit
    return Target(name, goal_text, measured, met, reason.strip() if met is False else "", close_gap if met is False else "")


@dataclass
class Section:
    """What one benchmark contributes to BENCHMARKS.md."""

    key: str
    title: str
    method: str
    tables: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: str = ""
    plot: str = ""  # path of the PNG relative to the report
    error: str = ""  # the benchmark failed: this says why (the rest may be partial)
    seconds: float = 0.0
    data: dict = field(default_factory=dict)  # raw figures, for the plots


def targets_table(targets: Sequence[Target]) -> str:
    rows = []
    for t in targets:
        why = t.reason.rstrip(". ") + (f". To close: {t.close_gap}" if t.close_gap else "")
        rows.append((t.name, t.goal, t.measured, t.verdict, why or ""))
    return table(("target", "goal", "measured", "verdict", "reason / what would close the gap"), rows)


def render_report(sections: Sequence[Section], machine: dict[str, str], *, quick: bool, command: str) -> str:
    """The whole BENCHMARKS.md."""
    out = [
        "# netk8s benchmarks",
        "",
        (f"Generated by `{command}`; every figure below comes from that one run "
         f"({'quick: smaller sizes, fewer repetitions' if quick else 'full sizes'}). Do not edit by hand: "
         "run `make bench` (or `make bench-quick`) to regenerate. Comparisons are measured side by side in "
         "the same run with interleaved repetitions (A, B, A, B, ...), reported as medians and as ratios, "
         "because the machine is shared and noisy."),
        "",
        "## Machine",
        "",
        table(("what", "value"), sorted(machine.items())),
        "",
        "## Targets at a glance",
        "",
    ]
    all_targets = [(s.title, t) for s in sections for t in s.targets]
    out.append(table(("benchmark", "target", "goal", "measured", "verdict"),
                     [(title, t.name, t.goal, t.measured, t.verdict) for title, t in all_targets]))
    out.append("")
    for s in sections:
        out += [f"## {s.title}", "", f"**Method.** {s.method}", ""]
        if s.error:
            out += [f"**This benchmark failed:** {s.error}", ""]
        for t in s.tables:
            out += [t, ""]
        if s.targets:
            out += ["**Targets.**", "", targets_table(s.targets), ""]
        if s.profile:
            out += ["**Profile (where the time goes).**", "", "```", s.profile.rstrip(), "```", ""]
        for n in s.notes:
            out += [f"- {n}"]
        if s.notes:
            out.append("")
        if s.plot:
            out += [f"![{s.title}]({s.plot})", ""]
        out += [f"_({s.seconds:.0f} s)_", ""]
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------------------- machine
def parse_cpuinfo(text: str) -> tuple[str, int]:
    """(CPU model name, logical CPU count) from /proc/cpuinfo."""
    model, count = "unknown", 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            count += 1
        elif key == "model name" and model == "unknown":
            model = value.strip()
    return model, count


def parse_meminfo_total(text: str) -> int | None:
    """MemTotal in bytes from /proc/meminfo."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def parse_vm_hwm(status_text: str) -> int | None:
    """VmHWM (peak resident set) in bytes from /proc/PID/status."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


# ----------------------------------------------------------------------------------------- kube-proxy
# Rules kube-proxy's iptables proxier (pkg/proxy/iptables/proxier.go, v1.28+ with --cluster-cidr set,
# masquerade bit 14, no loadBalancerSourceRanges) writes whatever the Services are, counted as
# sync_proxy_rules_iptables_total does plus the jumps from the built-in chains it installs
# (iptablesJumpChains): filter KUBE-FORWARD 3 (INVALID drop, mark accept, established accept);
# nat KUBE-POSTROUTING 3, KUBE-MARK-MASQ 1, the KUBE-NODEPORTS tail jump of KUBE-SERVICES 1;
# built-in jumps filter INPUT 3 + FORWARD 4 + OUTPUT 2, nat PREROUTING 1 + OUTPUT 1 + POSTROUTING 1.
KUBE_PROXY_FIXED_RULES = 3 + 3 + 1 + 1 + (3 + 4 + 2) + (1 + 1 + 1)


def kube_proxy_service_port_rules(endpoints: int, node_port: bool = False) -> int:
    """Rules kube-proxy writes for ONE service port (TCP, no affinity, traffic policies Cluster).

    With endpoints: KUBE-SERVICES jump 1; KUBE-SVC- chain 1 masquerade rule (off-cluster sources) +
    1 rule per endpoint (the `statistic --probability` ladder, the last one unconditional); per endpoint
    a KUBE-SEP- chain of 2 rules (hairpin masquerade + DNAT). A NodePort adds the KUBE-NODEPORTS jump and
    a KUBE-EXT- chain of 2 rules (masquerade, jump to KUBE-SVC-). Without endpoints: 1 filter REJECT
    in KUBE-SERVICES (+1 in KUBE-EXTERNAL-SERVICES for a NodePort).
    """
    if endpoints <= 0:
        return 1 + (1 if node_port else 0)
    rules = 1 + 1 + endpoints + 2 * endpoints
    if node_port:
        rules += 1 + 2
    return rules


def kube_proxy_rule_count(service_ports: Iterable[tuple[int, bool]]) -> int:
    """Total rules kube-proxy's iptables mode programs for (endpoints, is_node_port) per service port."""
    return KUBE_PROXY_FIXED_RULES + sum(kube_proxy_service_port_rules(e, np) for e, np in service_ports)


KUBE_PROXY_DERIVATION = (
    "kube-proxy's count is derived from its iptables proxier layout (proxier.go syncProxyRules, v1.28+): "
    f"{KUBE_PROXY_FIXED_RULES} fixed rules (KUBE-FORWARD 3, KUBE-POSTROUTING 3, KUBE-MARK-MASQ 1, the "
    "KUBE-NODEPORTS tail jump 1, and 15 jumps from the built-in chains), then per ClusterIP service port "
    "with E endpoints 2 + 3E (KUBE-SERVICES jump, KUBE-SVC- masquerade rule + E probability rules, 2 rules "
    "in each KUBE-SEP-), plus 3 for a NodePort (KUBE-NODEPORTS jump + 2 KUBE-EXT- rules)."
)
