"""`lab up` refuses every bad flag with a one-line error naming it, before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from netk8s.cli.main import cli
from netk8s.dataplane.netns import list_netns
from netk8s.errors import LabError, ValidationError
from netk8s.lab import manager

GOOD = {"nodes": 2, "proxy_mode": "iptables", "overlay": "vxlan", "store_kind": "sqlite", "timeout": 60.0}


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.parametrize(
    ("name", "bad", "error", "field"),
    [
        ("flagt", {"nodes": 0}, LabError, "--nodes"),
        ("flagt", {"nodes": 51}, LabError, "--nodes"),
        ("flagt", {"proxy_mode": "bogus"}, LabError, "--proxy-mode"),
        ("flagt", {"overlay": "gre"}, LabError, "--overlay"),
        ("flagt", {"store_kind": "mongodb"}, LabError, "--store"),
        ("flagt", {"timeout": 0.0}, LabError, "--timeout"),
        ("Bad_Name", {}, ValidationError, "--name"),
    ],
    ids=["nodes-0", "nodes-51", "proxy-mode", "overlay", "store", "timeout-0", "name"],
)
def test_bad_flag_refused_before_anything_is_built(state_dir: Path, name: str, bad: dict, error: type,
                                                   field: str) -> None:
    namespaces = list_netns()
    with pytest.raises(error) as exc:
        manager.lab_up(name, **{**GOOD, **bad})
    assert field in exc.value.message and "\n" not in exc.value.message
    assert not state_dir.exists(), "lab up wrote state before refusing the flag"
    assert list_netns() == namespaces


def test_cli_refuses_a_bad_duration_with_the_field(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("netk8s.cli.main.need_root", lambda: None)
    result = CliRunner().invoke(cli, ["lab", "up", "--name", "flagt", "--timeout", "soon"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[0] == "error: --timeout: invalid duration 'soon' (e.g. 60s, 2m)"
    assert not state_dir.exists()
