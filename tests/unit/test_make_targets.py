"""The Makefile's test targets fail when pytest runs no test (exit 5), as CI must."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration  # runs make and pytest as processes


def make(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    # -o install: treat the dependency step as done (this test checks the exit status, not the setup)
    return subprocess.run(["make", "-s", "-o", "install", target, f"PY={sys.executable}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("target", ["test", "test-unit"])
def test_an_empty_selection_fails(target: str) -> None:
    result = make(target, "TESTS=tests/unit/test_labels.py", "PYTEST_ARGS=-k no_test_has_this_name")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "no tests ran" in result.stdout or "deselected" in result.stdout, result.stdout


def test_a_selection_that_runs_passes() -> None:
    result = make("test-unit", "TESTS=tests/unit/test_labels.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
