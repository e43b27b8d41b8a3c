"""The lab's etcd, as data: where it listens, where its data lives, the URL the API server opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from netk8s.errors import LabError
from netk8s.lab import etcd as lab_etcd
from netk8s.store.etcd import parse_etcd_url


def test_lab_etcd_listens_only_on_the_control_plane_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETK8S_STATE_DIR", str(tmp_path))
    argv = lab_etcd.lab_etcd_argv("e1")
    opts = dict(zip(argv[1::2], argv[2::2]))
    assert argv[0] == "etcd" and opts["--name"] == "e1"
    assert opts["--data-dir"] == str(tmp_path / "e1" / "etcd")
    for flag in ("--listen-client-urls", "--advertise-client-urls"):
        assert opts[flag] == "http://127.0.0.1:2379"
    for flag in ("--listen-peer-urls", "--initial-advertise-peer-urls"):
        assert opts[flag] == "http://127.0.0.1:2380"
    assert opts["--auto-compaction-retention"] == "0"  # the API server compacts
    assert lab_etcd.lab_etcd_argv("e1") == argv  # a restart runs the same command


def test_backend_url_opens_connections_in_the_control_plane_namespace() -> None:
    url = lab_etcd.backend_url("e1")
    assert url == "etcd://127.0.0.1:2379?netns=nk8s-e1-cp"
    assert parse_etcd_url(url.removeprefix("etcd://")) == ("127.0.0.1", 2379, {"netns": "nk8s-e1-cp"})


def test_missing_etcd_is_refused_naming_store() -> None:
    with pytest.raises(LabError, match="^--store etcd: ") as exc:
        lab_etcd.check_installed("etcd-that-is-not-installed")
    assert "etcd-server" in exc.value.hint
