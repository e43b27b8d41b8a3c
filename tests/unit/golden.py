"""Golden files of the renderers: compared byte for byte, written only with NETK8S_REGEN_GOLDEN=1 (then reviewed)."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_ROOT = Path(__file__).resolve().parent.parent / "golden"


def check_golden(path: Path, text: str) -> None:
    """Assert that `text` is the golden file at `path` (or write it, with NETK8S_REGEN_GOLDEN=1)."""
    if os.environ.get("NETK8S_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with NETK8S_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), f"render differs from {path} (NETK8S_REGEN_GOLDEN=1 to update)"
