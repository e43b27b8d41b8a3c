"""How long an applier waits for its one restore process: a floor plus time in proportion to the text.

Why it scales: the timeout guards against a hung tool (the xtables lock held elsewhere, a wedged netlink
socket), not against a big sync. A fixed 60 s killed a correct iptables-restore of 10,000 Services in a
QEMU TCG guest (BENCHMARKS.md section 9), where every instruction is emulated; a text that size on a
real node loads in ~4 s, so the scaled bound is still far above any healthy run there.
"""

from __future__ import annotations

# 1 s per 16 KiB: ~1,100 s for the 17 MB iptables text of 10,000 Services x 5 endpoints. The slowest run
# measured was IPVS mode's in a TCG guest (section 9); this keeps a 10x margin over it.
BYTES_PER_SECOND = 16 * 1024


def for_text(floor: float, text: str | bytes) -> float:
    """`floor` seconds, plus one second per BYTES_PER_SECOND bytes of `text` (characters for str)."""
    return floor + len(text) / BYTES_PER_SECOND
