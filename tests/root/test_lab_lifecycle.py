"""Lab lifecycle: down removes everything; kill -9 of every netk8s process + `netk8s clean` too."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from netk8s.lab import procs
from netk8s.model import naming
from tests.root.labkit import Lab, unique_name

pytestmark = pytest.mark.root

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""


def netns_of(lab: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(naming.lab_netns_prefix(lab))]


def test_lab_down_removes_everything(tmp_path) -> None:
    lab = Lab(unique_name("d"), tmp_path, nodes=2)
    try:
        lab.up()
        lab.apply(DEPLOY)
        lab.ready_pods("app=web", 2)
        assert len(netns_of(lab.name)) == 3 + 2 + 2  # switch, external, control plane, 2 nodes, 2 pods
        assert procs.tagged_pids(lab.name)
    finally:
        lab.down()
    assert netns_of(lab.name) == []
    assert procs.tagged_pids(lab.name) == []
    assert not (tmp_path / lab.name).exists()


def test_kill9_then_clean_leaves_nothing(tmp_path) -> None:
    lab = Lab(unique_name("k"), tmp_path, nodes=2)
    try:
        lab.up()
        lab.apply(DEPLOY)
        lab.ready_pods("app=web", 2)
        pids = procs.tagged_pids(lab.name)
        assert len(pids) >= 3 + 2 * 2  # controller, 2 agents, 2 pods x (sandbox + container)
        for pid in pids:  # all started by this lab, by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        r = lab.cli("clean", "--name", lab.name)  # the same sweep as plain `clean`, scoped to this lab
        assert r.returncode == 0
        assert netns_of(lab.name) == []
        assert procs.tagged_pids(lab.name) == []
    finally:
        lab.down()


def test_lab_up_twice_is_refused_and_bad_flags_change_nothing(tmp_path) -> None:
    lab = Lab(unique_name("u"), tmp_path, nodes=1)
    try:
        bad = lab.cli("lab", "up", "--nodes", "0", check=False)
        assert bad.returncode == 1 and "--nodes" in bad.stderr
        assert netns_of(lab.name) == []
        bad = lab.cli("lab", "up", "--overlay", "weave", check=False)
        assert bad.returncode == 1 and "--overlay" in bad.stderr
        lab.up()
        again = lab.cli("lab", "up", check=False)
        assert again.returncode == 1 and "already up" in again.stderr
        assert lab.cli("get", "nodes").stdout.count("Ready") == 1
    finally:
        lab.down()
