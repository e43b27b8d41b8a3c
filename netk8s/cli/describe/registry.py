"""The describer registry: one function per kind, `describer("Kind")` registers it for `describe`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netk8s.cli.describe.common import Writer

# (writer, object, related objects by kind, now) -> writes the description
Describer = Callable[["Writer", dict, dict[str, list[dict]], float], None]

DESCRIBERS: dict[str, Describer] = {}


def describer(kind: str) -> Callable[[Describer], Describer]:
    """Register the decorated function as the describer of `kind` (one per kind)."""

    def register(fn: Describer) -> Describer:
        if kind in DESCRIBERS:
            raise ValueError(f"describer for {kind} registered twice")
        DESCRIBERS[kind] = fn
        return fn

    return register
