"""scripts/bench/vm.py: the VM-node section is registered with the bench driver and renders its figures (pure)."""

from __future__ import annotations

import importlib

from scripts.bench import __main__ as bench_main
from scripts.bench import report, vm


def sample() -> dict:
    full_split = {"set_addresses": 2.0, "ipset_restore": 0.5, "restore": 0.25, "ipvsadm_list": 0.125}
    return {
        "quick": True, "accel": "tcg", "guest_kernel": "6.1.0-57-amd64",
        "boots": [{"ready": 23.5, "pid1": 10.0}, {"ready": 25.5, "pid1": 12.0}],
        "rules": [
            {"mode": "iptables", "services": 100, "full_s": 1.5, "apply_s": 0.5, "kernel_rules": 1750,
             "rss_peak": 40 * 2**20, "partial": [{"s": 0.5, "apply_s": 0.25}, {"s": 0.75, "apply_s": 0.5}]},
            {"mode": "ipvs", "services": 100, "full_s": 10.0, "apply_s": 1.5, "kernel_rules": 660,
             "split": full_split, "partial": [{"s": 4.0, "apply_s": 0.1, "split": {"ipvsadm_list": 1.0}}]},
            {"mode": "nftables", "services": 1000, "error": "nft -f -: timed out after 120.0s"},
        ],
        "dataplane": {"tools": {"bulk": "iperf3", "conn": "nginx"},
                      "setup": {"iptables": {"sync_s": 1.0}, "ipvs": {"sync_s": 2.0}},
                      "runs": {"iptables/ClusterIP": {"bps": [800e6, 1000e6], "cps": [400.0, 600.0]},
                               "iptables/pod IP": {"bps": [1000e6, 1000e6], "cps": [500.0, 500.0]},
                               "ipvs/ClusterIP": {"bps": [450e6, 450e6], "cps": [250.0, 250.0]},
                               "ipvs/pod IP": {"bps": [900e6, 900e6], "cps": [500.0, 500.0]}}},
        "load": [("start", "3.1 2.0 1.0"), ("end", "4.0 3.0 2.0")],
        "machine": {"CPU": "AMD EPYC", "logical CPUs": "2"}, "date": "2026-12-03 13:17 UTC",
    }


def test_vm_is_a_registered_benchmark_with_the_driver_interface() -> None:
    assert "vm" in bench_main.BENCHES
    mod = importlib.import_module("scripts.bench.vm")
    assert callable(mod.run_bench) and callable(mod.plot)


def test_plan_sizes_quick_and_full() -> None:
    assert vm.plan(True)["sizes"] == (100, 1000)
    assert vm.plan(False)["sizes"] == (1000, 10000)
    assert vm.plan(False)["modes"] == ("iptables", "nftables", "ipvs")


def test_section_renders_boot_rules_split_dataplane_and_load() -> None:
    sec = vm.section(sample())
    text = report.render_report([sec], {"CPU": "x"}, quick=True, command="python -m scripts.bench --quick --only vm")
    assert "## 10. VM nodes" in text
    assert "iperf3 (one stream)" in sec.method and "wrk -t1 -c16" in sec.method
    assert "| 24.5 s | 23.5 s | 25.5 s | 11.0 s | 2 | tcg | 6.1.0-57-amd64 |" in text
    assert "| iptables | 100 | 1.50 s | 0.500 s | 0.625 s | 0.375 s | 2 | 1,750 | 40.0 MiB |" in text
    assert "| nftables | 1,000 | failed: nft -f -: timed out after 120.0s |" in text
    # IPVS: where the time went, biggest kernel call first after ipvsadm --restore
    assert ("| 100 | ipvsadm --restore 1.50 s, set_addresses 2.00 s, ipset_restore 0.500 s, restore 0.250 s, "
            "ipvsadm_list 0.125 s | ipvsadm --restore 0.100 s, ipvsadm_list 1.00 s |") in text
    assert "| iptables | ClusterIP | 900 Mbit/s (800-1,000) | 500 conn/s (400-600) | 0.90x | 1.00x | 2 |" in text
    assert "| ipvs | ClusterIP | 450 Mbit/s (450-450) | 250 conn/s (250-250) | 0.50x | 0.50x | 2 |" in text
    assert "IPVS vs iptables in the same guest: throughput 0.50x, connection rate 0.50x" in text
    assert "during the run of 2026-12-03 13:17 UTC, shared with other jobs: start: 3.1 2.0 1.0; end: 4.0 3.0 2.0" in text
    assert "machine (host): CPU AMD EPYC, logical CPUs 2" in text


def test_section_without_figures_still_renders() -> None:
    sec = vm.section({"quick": False, "boots": [], "rules": [], "dataplane": {"error": "setup failed"}})
    text = report.render_report([sec], {}, quick=False, command="make bench")
    assert "## 10. VM nodes" in text
    assert "Python bulk sender" in sec.method  # no tools reported: the Python stand-ins are named
    assert "data plane failed: setup failed" in text
