"""How long an applier waits for its one restore process: a floor plus time in proportion to the text.

Why it scales: the timeout guards against a hung tool (the xtables lock held elsewhere, a wedged netlink
socket), not against a big sync. A fixed 60 s killed a correct iptables-restore of 10,000 Services in a
QEMU TCG guest (BENCHMARKS.md section 9), where every instruction is emulated; a text that size on a
real node loads in ~4 s, so the scaled bound is still far above any healthy run there.
"""

from __future__ import annotations

# 1 s per 16 KiB: ~1,100 s for the 17 MB iptables text of 10,000 Services x 5 endpoints. The slowest runs
# measured were iptables-restore's and ipvsadm's in a TCG guest (section 9), well under it.
BYTES_PER_SECOND = 16 * 1024


# `ipset restore` is the slowest per byte: ~100 entries/s (~5 KB/s) in a TCG guest, where the 60,000
# entries of 10,000 Services (3.2 MB) outlasted 1 s per 16 KiB (section 9). 1 s per 1 KiB: 4x margin.
IPSET_BYTES_PER_SECOND = 1024


def for_text(floor: float, text: str | bytes, bytes_per_second: float = BYTES_PER_SECOND) -> float:
    """`floor` seconds, plus one second per `bytes_per_second` bytes of `text` (characters for str)."""
    return floor + len(text) / bytes_per_second
