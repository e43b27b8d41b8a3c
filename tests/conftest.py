"""Test-wide rules: a test that is neither `root` nor `integration` is pure, and is held to it.

A pure test starts no process and opens no socket (`make test-unit` runs exactly those, in seconds).
The guard below makes the rule checkable: while an unmarked test (and its fixtures) runs, creating a
socket, starting a subprocess or forking raises PureTestViolation, so a test that needs one fails until
it is marked `@pytest.mark.integration` (or `root`, for tests that build namespaces).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

KERNEL_MARKS = ("integration", "root")


class PureTestViolation(AssertionError):
    """An unmarked (pure) test tried to open a socket or start a process."""


def _refuse(what: str):  # type: ignore[no-untyped-def]
    def refuse(*args: object, **kwargs: object) -> None:
        raise PureTestViolation(f"{what} in a pure test: mark it @pytest.mark.integration")

    return refuse


@pytest.fixture(autouse=True)
def _pure_tests_stay_pure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if any(request.node.get_closest_marker(m) for m in KERNEL_MARKS):
        yield
        return
    monkeypatch.setattr(socket.socket, "__init__", _refuse("a socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("a subprocess"))
    monkeypatch.setattr(os, "fork", _refuse("fork()"))
    monkeypatch.setattr(os, "system", _refuse("os.system()"))
    yield
