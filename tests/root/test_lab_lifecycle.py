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


def etcd_pid(lab: Lab) -> int | None:
    """The lab's etcd, when it runs one: its recorded PID, checked to be a tagged, live etcd."""
    if lab.store != "etcd":
        return None
    pid = int((lab.state_dir / lab.name / "pids" / "etcd.pid").read_text())
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        argv = fh.read().split(b"\0")
    assert argv[0].endswith(b"etcd") and str(lab.state_dir / lab.name / "etcd").encode() in argv, argv
    assert pid in procs.tagged_pids(lab.name)
    return pid


@pytest.mark.parametrize("store", ["sqlite", "etcd"])
def test_lab_down_removes_everything(tmp_path, store: str) -> None:
    lab = Lab(unique_name("d"), tmp_path, nodes=2, store=store)
    etcd = None
    try:
        lab.up()
        lab.apply(DEPLOY)
        lab.ready_pods("app=web", 2)
        assert len(netns_of(lab.name)) == 3 + 2 + 2  # switch, external, control plane, 2 nodes, 2 pods
        assert procs.tagged_pids(lab.name)
        etcd = etcd_pid(lab)
    finally:
        lab.down()
    assert netns_of(lab.name) == []
    assert procs.tagged_pids(lab.name) == []
    assert etcd is None or not procs.alive(etcd)
    assert not (tmp_path / lab.name).exists()  # the store (store.db, or etcd's data directory) too


@pytest.mark.parametrize("store", ["sqlite", "etcd"])
def test_kill9_then_clean_leaves_nothing(tmp_path, store: str) -> None:
    lab = Lab(unique_name("k"), tmp_path, nodes=2, store=store)
    try:
        lab.up()
        lab.apply(DEPLOY)
        lab.ready_pods("app=web", 2)
        pids = procs.tagged_pids(lab.name)
        assert len(pids) >= 3 + 2 * 2  # controller, 2 agents, 2 pods x (sandbox + container)
        etcd = etcd_pid(lab)
        assert etcd is None or etcd in pids
        for pid in pids:  # all started by this lab, by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        r = lab.cli("clean", "--name", lab.name)  # the same sweep as plain `clean`, scoped to this lab
        assert r.returncode == 0
        assert netns_of(lab.name) == []
        assert procs.tagged_pids(lab.name) == []
        assert etcd is None or not procs.alive(etcd)
        assert not (tmp_path / lab.name).exists()
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
        bad = lab.cli("lab", "up", "--store", "foo", check=False)
        assert bad.returncode == 1 and bad.stderr.startswith("error: --store:") and "etcd" in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert netns_of(lab.name) == [] and not (tmp_path / lab.name).exists()
        lab.up()
        again = lab.cli("lab", "up", check=False)
        assert again.returncode == 1 and "already up" in again.stderr
        assert lab.cli("get", "nodes").stdout.count("Ready") == 1
    finally:
        lab.down()
