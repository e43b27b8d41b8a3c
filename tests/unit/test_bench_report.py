"""The benchmarks' pure helpers: statistics, ratios, targets, kube-proxy rule counts, dnsperf parsing, report."""

from __future__ import annotations

import pytest

from netk8s.proxy import render_iptables as renderer
from netk8s.proxy.model import NodeContext, build_state
from scripts.bench import report, synth
from scripts.bench.dns import parse_dnsperf
from scripts.bench.report import Section, Target


@pytest.mark.parametrize(("values", "want"), [
    ([], None),
    ([3.0], 3.0),
    ([3.0, 1.0, 2.0], 2.0),
    ([4.0, 1.0, 3.0, 2.0], 2.5),
])
def test_median(values: list[float], want: float | None) -> None:
    assert report.median(values) == want


@pytest.mark.parametrize(("pct", "want"), [(0, 1.0), (50, 5.5), (99, 9.91), (100, 10.0)])
def test_percentile_interpolates_like_numpy(pct: float, want: float) -> None:
    assert report.percentile([float(x) for x in range(10, 0, -1)], pct) == pytest.approx(want)


def test_percentile_of_nothing_and_out_of_range() -> None:
    assert report.percentile([], 99) is None
    with pytest.raises(ValueError):
        report.percentile([1.0], 101)


def test_ratio_and_paired_ratios() -> None:
    assert report.ratio(3.0, 2.0) == 1.5
    assert report.ratio(None, 2.0) is None
    assert report.ratio(1.0, 0.0) is None
    # rep i against rep i; a zero denominator is skipped, not a crash
    assert report.paired_ratios([2.0, 3.0, 4.0], [1.0, 0.0, 2.0]) == [2.0, 2.0]


@pytest.mark.parametrize(("value", "unit", "want"), [
    (None, "s", "-"),
    (0.0123456, "s", "0.0123 s"),
    (1234.5, "", "1,234"),
    (17320, "", "17,320"),
    (0, "", "0"),
])
def test_fmt(value: float | None, unit: str, want: str) -> None:
    assert report.fmt(value, unit) == want


def test_targets_at_most_and_at_least_keep_the_reason_only_when_missed() -> None:
    met = report.at_most("x", "<= 1", 0.5, 1.0, "0.5", reason="slow", close_gap="faster")
    missed = report.at_most("x", "<= 1", 1.5, 1.0, "1.5", reason="slow", close_gap="faster")
    unmeasured = report.at_least("y", ">= 1", None, 1.0, "not available in this build", reason="slow")
    assert (met.met, met.reason, met.verdict) == (True, "", "met")
    assert (missed.met, missed.reason, missed.close_gap, missed.verdict) == (False, "slow", "faster", "not met")
    assert (unmeasured.met, unmeasured.reason, unmeasured.verdict) == (None, "", "not measured")
    assert report.at_least("z", ">= 10x", 12.0, 10.0, "12x").met is True


@pytest.mark.parametrize(("endpoints", "node_port", "want"), [
    (0, False, 1),  # filter REJECT only
    (0, True, 2),
    (1, False, 5),  # SERVICES jump, SVC masq + 1 ladder rule, SEP 2
    (5, False, 17),
    (5, True, 20),  # + NODEPORTS jump + 2 EXT rules
])
def test_kube_proxy_service_port_rules(endpoints: int, node_port: bool, want: int) -> None:
    assert report.kube_proxy_service_port_rules(endpoints, node_port) == want


def test_kube_proxy_rule_count_matches_the_netk8s_renderer_for_the_synthetic_services() -> None:
    for n in (1, 10, 25):
        services, slices = synth.objects(n, 5)
        rendered = renderer.render_full(build_state(services, slices, "node1"), NodeContext("node1", ("192.168.56.11",)))
        assert rendered.rule_count == report.kube_proxy_rule_count(synth.service_port_shapes(n, 5))
        # + the built-in chains' jumps, which the proxier ensures apart from the restore text
        assert rendered.rule_count == sum(1 for line in rendered.text.splitlines() if line.startswith("-A ")) \
            + renderer.JUMP_COUNT


def test_synthetic_objects_are_distinct_and_a_change_moves_one_endpoint() -> None:
    services, slices = synth.objects(300, 5)
    ips = {s["spec"]["clusterIP"] for s in services}
    eps = {e["addresses"][0] for sl in slices for e in sl["endpoints"]}
    assert len(ips) == 300 and len(eps) == 1500
    assert all(not ip.endswith(".0") for ip in eps)
    changed = synth.endpoint_slice(7, 5, replace={0: synth.changed_ip(0)})
    before = [e["addresses"][0] for e in slices[7]["endpoints"]]
    after = [e["addresses"][0] for e in changed["endpoints"]]
    assert after[1:] == before[1:] and after[0] != before[0] and after[0] not in eps


def test_machine_parsers() -> None:
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n"
    assert report.parse_cpuinfo(cpuinfo) == ("AMD EPYC", 2)
    assert report.parse_meminfo_total("MemTotal:       2048 kB\nMemFree: 1 kB\n") == 2048 * 1024
    assert report.parse_vm_hwm("Name:\tpython\nVmHWM:\t  51200 kB\nVmRSS:\t 100 kB\n") == 51200 * 1024
    assert report.parse_vm_hwm("Name:\tpython\n") is None


def test_parse_dnsperf() -> None:
    out = """[Status] Sending queries (to 127.0.0.1:5303)
> NOERROR svc-1.bench.svc.cluster.local A 0.010371
> NOERROR svc-2.bench.svc.cluster.local A 0.000500
> NXDOMAIN nope.cluster.local A 0.002000
  Queries sent:         19667
  Queries completed:    19660 (99.96%)
  Queries lost:         7 (0.04%)
  Queries per second:   9784.367797
"""
    r = parse_dnsperf(out)
    assert (r["sent"], r["completed"], r["lost"]) == (19667, 19660, 7)
    assert r["qps"] == pytest.approx(9784.367797)
    assert r["latencies"] == [0.010371, 0.0005, 0.002]
    assert r["rcodes"] == {"NOERROR": 2, "NXDOMAIN": 1}


def test_profile_summary_drops_the_preamble_and_shortens_paths() -> None:
    text = """         123 function calls in 1.0 seconds

   Ordered by: internal time

   ncalls  tottime  percall  cumtime  percall filename:lineno(function)
        5    0.001    0.000    2.056    0.411 /work/main/netk8s/node/podnet.py:86(add)
       50    0.002    0.000    1.330    0.027 /x/.venv/lib/python3.11/site-packages/pyroute2/iproute/linux.py:1(f)
        1    0.002    0.000    1.330    0.027 /usr/lib/python3.11/base64.py:166(_b32encode)
"""
    got = report.profile_summary(text, limit=2).splitlines()
    assert got[0].strip().startswith("ncalls")
    assert got[1].endswith("netk8s/node/podnet.py:86(add)") and "/work/main" not in got[1]
    assert got[2].endswith("pyroute2/iproute/linux.py:1(f)")
    assert len(got) == 3


def test_render_report_lists_machine_targets_and_sections() -> None:
    sec = Section("rules", "1. Rules", method="how it was measured", tables=[report.table(("a", "b"), [(1, "x|y")])],
                  targets=[Target("t1", "<= 1.3x", "1.5x", False, "render dominates", "cache lines")],
                  profile="ncalls ...", plot="docs/bench/rules.png")
    failed = Section("dns", "4. DNS", method="m", error="dnsperf not installed")
    text = report.render_report([sec, failed], {"CPU": "AMD EPYC", "kernel": "6.1"}, quick=True, command="make bench-quick")
    assert text.startswith("# netk8s benchmarks")
    assert "| CPU | AMD EPYC |" in text
    assert "| 1. Rules | t1 | <= 1.3x | 1.5x | not met |" in text
    assert "render dominates. To close: cache lines" in text
    assert "x\\|y" in text
    assert "![1. Rules](docs/bench/rules.png)" in text
    assert "**This benchmark failed:** dnsperf not installed" in text
    assert "make bench-quick" in text


def test_parse_wrk() -> None:
    from scripts.bench.ingress import parse_wrk

    text = """Running 5s test @ http://192.168.56.200/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.54ms    2.10ms  40.12ms   90.00%
    Req/Sec     1.52k   100.00     1.70k    70.00%
  Latency Distribution
     50%   10.10ms
     75%   11.00ms
     90%  950.00us
     99%    1.20s
  7590 requests in 5.00s, 1.20MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1517.80
Transfer/sec:    245.90KB
"""
    out = parse_wrk(text)
    assert out["rps"] == 1517.80
    assert out["percentiles"] == {50.0: pytest.approx(0.0101), 75.0: pytest.approx(0.011),
                                  90.0: pytest.approx(0.00095), 99.0: pytest.approx(1.2)}
    assert out["errors"] == 7
