"""NetworkPolicy as a kind: defaulting as kube-apiserver does, `get netpol` columns, apply + get via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from netk8s.cli.main import cli
from netk8s.cli.printers import parse_time, render_table
from netk8s.model.defaults import apply_defaults
from netk8s.model.kinds import resolve_kind
from tests.unit.test_cli_apply import lab_env  # noqa: F401  (fixture)

NOW = parse_time("2024-05-01T12:00:00Z")
assert NOW is not None


def _np(spec: dict, name: str = "np") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "creationTimestamp": "2024-05-01T11:55:00Z"}, "spec": spec}


@pytest.mark.parametrize("spec,want", [
    ({"podSelector": {}}, ["Ingress"]),
    ({"podSelector": {}, "egress": [{}]}, ["Ingress", "Egress"]),
    ({"podSelector": {}, "egress": []}, ["Ingress"]),
    ({"podSelector": {}, "policyTypes": ["Egress"]}, ["Egress"]),
], ids=["nothing", "egress-rules", "empty-egress", "explicit"])
def test_policy_types_default(spec: dict, want: list[str]) -> None:
    assert apply_defaults(_np(spec))["spec"]["policyTypes"] == want


def test_port_protocol_defaults_to_tcp() -> None:
    out = apply_defaults(_np({"podSelector": {}, "ingress": [{"ports": [{"port": 80}, {"protocol": "UDP"}]}]}))
    assert [p["protocol"] for p in out["spec"]["ingress"][0]["ports"]] == ["TCP", "UDP"]


def test_short_and_plural_names() -> None:
    for word in ("netpol", "networkpolicy", "networkpolicies", "NetworkPolicy", "networkpolicies.networking.k8s.io"):
        assert resolve_kind(word).kind == "NetworkPolicy"


def test_get_netpol_columns_like_kubectl() -> None:
    objs = [_np({"podSelector": {}}, "deny"),
            _np({"podSelector": {"matchLabels": {"app": "db"},
                                 "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]}},
                "db")]
    assert render_table("NetworkPolicy", objs, NOW).splitlines() == [
        "NAME   POD-SELECTOR           AGE",
        "deny   <none>                 5m",
        "db     app=db,tier in (a,b)   5m",
    ]


def test_apply_and_get_netpol_through_the_cli(lab_env: Path) -> None:  # noqa: F811
    manifest = json.dumps(_np({"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{}]}, "allow-all"))
    runner = CliRunner()
    res = runner.invoke(cli, ["apply", "-f", "-"], input=manifest)
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["get", "netpol"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert lines[1].split()[:2] == ["allow-all", "role=db"]
    res = runner.invoke(cli, ["get", "networkpolicy", "allow-all", "-o", "json"])
    assert json.loads(res.output)["spec"]["policyTypes"] == ["Ingress"]


def test_describe_netpol_like_kubectl() -> None:
    from netk8s.cli.describe import describe
    from netk8s.cli.manifests import load_documents

    path = Path(__file__).resolve().parents[1] / "manifests" / "valid" / "networkpolicy.yaml"
    obj = apply_defaults(load_documents([str(path)])[0][1])
    obj["metadata"]["creationTimestamp"] = "2024-05-01T11:55:00Z"
    assert describe(obj, {}, NOW) == """Name:         test-network-policy
Namespace:    default
Created on:   2024-05-01 11:55:00 +0000 UTC
Labels:       <none>
Annotations:  <none>
Spec:
  PodSelector:     role=db
  Allowing ingress traffic:
    To Port: 6379/TCP
    To Port: metrics/TCP
    From:
      IPBlock:
        CIDR: 172.17.0.0/16
        Except: 172.17.1.0/24
    From:
      NamespaceSelector: project=myproject
    From:
      NamespaceSelector: team in (a,b)
      PodSelector: role=frontend
  Allowing egress traffic:
    To Port: 32000-32768/TCP
    To Port: 53/UDP
    To:
      IPBlock:
        CIDR: 10.0.0.0/24
        Except: 
  Policy Types: Ingress, Egress"""


def test_describe_default_deny() -> None:
    from netk8s.cli.describe import describe

    obj = apply_defaults(_np({"podSelector": {}}, "deny"))
    text = describe(obj, {}, NOW)
    assert "  PodSelector:     <none> (Allowing the specific traffic to all pods in this namespace)\n" in text
    assert "    <none> (Selected pods are isolated for ingress connectivity)\n  Not affecting egress traffic\n" in text


def test_policy_why_through_the_cli(lab_env: Path) -> None:  # noqa: F811
    from netk8s.store.sqlite import SqliteStore

    store = SqliteStore(lab_env / "store.db")
    for name, ip, labels in (("web", "10.244.1.5", {"app": "web"}), ("cli", "10.244.2.6", {"app": "cli"})):
        store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": "default", "labels": labels, "annotations": {"netk8s.io/pod-ip": ip}},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "agnhost"}]}})
    store.create(apply_defaults(_np({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"app": "cli"}}}], "ports": [{"port": 80}]}]}, "web-in")
        | {"metadata": {"name": "web-in", "namespace": "default"}}))
    store.close()
    runner = CliRunner()
    ok = runner.invoke(cli, ["policy", "why", "cli", "web", "80"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[0] == "ALLOWED"
    assert "ingress of default/web from default/cli on 80/TCP: allowed by networkpolicy default/web-in ingress[0]" in ok.output
    no = runner.invoke(cli, ["policy", "why", "default/cli", "web", "81", "--proto", "udp"])
    assert no.exit_code == 0 and no.output.splitlines()[0] == "DROPPED"
    assert "isolated by networkpolicy default/web-in and no rule allows it: dropped" in no.output
    # no node namespace behind this store: the verdict stands, the kernel lines say the node was not read
    assert "kernel: cannot read node1:" in no.output and "kernel agrees" not in no.output
    model_only = runner.invoke(cli, ["policy", "why", "default/cli", "web", "81", "--no-kernel", "-o", "json"])
    assert model_only.exit_code == 0 and json.loads(model_only.output)["allowed"] is False
    assert "kernel" not in json.loads(model_only.output)
    for args, word in ((["--probe", "--no-kernel"], "--probe"), (["--probe", "--proto", "sctp"], "--probe")):
        refused = runner.invoke(cli, ["policy", "why", "cli", "web", "80", *args])
        assert refused.exit_code != 0 and word in refused.output, refused.output
    bad = runner.invoke(cli, ["policy", "why", "cli", "nothere", "80"])
    assert bad.exit_code == 1 and 'DST: pod "default/nothere" not found' in bad.output
    bad = runner.invoke(cli, ["policy", "why", "cli", "web", "99999"])
    assert bad.exit_code == 1 and "PORT: must be a number" in bad.output
