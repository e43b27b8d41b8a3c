"""`netk8s apply` through the real CLI: every invalid manifest is refused, exit 1, store untouched."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from netk8s.cli.main import cli
from netk8s.store.sqlite import SqliteStore

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
INVALID = sorted((MANIFESTS / "invalid").glob("*.yaml"))


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lab state directory with a store but no processes: apply talks only to the store."""
    root = tmp_path / "state"
    lab = root / "unit"
    lab.mkdir(parents=True)
    db = lab / "store.db"
    store = SqliteStore(db)
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keep", "namespace": "default"},
                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    store.close()
    (lab / "lab.json").write_text(json.dumps({"name": "unit", "nodes": 1, "overlay": "vxlan",
                                              "proxy_mode": "iptables", "store": f"sqlite://{db}",
                                              "created": 0.0}))
    monkeypatch.setenv("NETK8S_STATE_DIR", str(root))
    monkeypatch.setenv("NETK8S_LAB", "unit")
    return lab


def store_digest(lab: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(lab.glob("store.db*")):
        if f.name.endswith("-shm"):
            continue  # shared-memory index: rebuilt by readers, not data
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_at_least_thirty_invalid_manifests() -> None:
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_manifest_refused_and_store_unchanged(lab_env: Path, path: Path) -> None:
    expects = [m.group(1).strip() for m in re.finditer(r"^# expect: (.*)$", path.read_text(), re.MULTILINE)]
    before = store_digest(lab_env)
    result = CliRunner().invoke(cli, ["apply", "-f", str(path)])
    assert result.exit_code == 1, result.output
    message = result.stderr.splitlines()[0]
    assert message.startswith("error: ")
    for e in expects:
        assert e in message, (e, message)
    assert store_digest(lab_env) == before


def test_apply_is_all_or_nothing_when_namespace_missing(lab_env: Path, tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c, image: busybox}]\n"
                 "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: nope}\nspec:\n"
                 "  containers: [{name: c, image: busybox}]\n")
    before = store_digest(lab_env)
    result = CliRunner().invoke(cli, ["apply", "-f", str(f)])
    assert result.exit_code == 1
    assert 'metadata.namespace "nope" not found' in result.stderr
    assert store_digest(lab_env) == before


def test_apply_create_configure_unchanged(lab_env: Path, tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text((MANIFESTS / "valid").joinpath("nginx-deployment.yaml").read_text())
    runner = CliRunner()
    assert "deployment.apps/nginx-deployment created" in runner.invoke(cli, ["apply", "-f", str(f)]).output
    assert "deployment.apps/nginx-deployment unchanged" in runner.invoke(cli, ["apply", "-f", str(f)]).output
    f.write_text(f.read_text().replace("replicas: 3", "replicas: 2"))
    assert "deployment.apps/nginx-deployment configured" in runner.invoke(cli, ["apply", "-f", str(f)]).output
    out = runner.invoke(cli, ["get", "deploy", "nginx-deployment", "-o", "json"]).output
    assert json.loads(out)["spec"]["replicas"] == 2


def test_get_missing_object_exits_nonzero(lab_env: Path) -> None:
    result = CliRunner().invoke(cli, ["get", "pod", "nope", "-o", "json"])
    assert result.exit_code == 1
    assert 'pods "nope" not found' in result.stderr


def test_get_list_shape_and_kinds(lab_env: Path) -> None:
    runner = CliRunner()
    for word in ("pod", "pods", "po"):
        out = runner.invoke(cli, ["get", word, "-o", "json"]).output
        doc = json.loads(out)
        assert doc["kind"] == "List" and [i["metadata"]["name"] for i in doc["items"]] == ["keep"]
    assert runner.invoke(cli, ["get", "pods", "-o", "name"]).output.strip() == "pod/keep"
    bad = runner.invoke(cli, ["get", "frobs"])
    assert bad.exit_code == 1 and "frobs" in bad.stderr
