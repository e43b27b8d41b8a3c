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
    from netk8s.model.manifest import load_documents

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
