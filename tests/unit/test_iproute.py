"""netk8s.model.iproute: the `ip -batch` text for kube-ipvs0's addresses, and the IPVS applier sending it in one call."""

from __future__ import annotations

import pytest

from netk8s.dataplane import ipvs
from netk8s.model import iproute


@pytest.mark.parametrize(("add", "delete", "present", "want"), [
    pytest.param([], [], None, "", id="nothing"),
    pytest.param(["10.96.0.1", "10.96.0.10"], [], None,
                 "address replace 10.96.0.1/32 dev kube-ipvs0\naddress replace 10.96.0.10/32 dev kube-ipvs0\n",
                 id="adds-in-order"),
    pytest.param(["10.96.0.1", "10.96.0.1"], [], None, "address replace 10.96.0.1/32 dev kube-ipvs0\n",
                 id="each-address-once"),
    pytest.param([], ["10.96.0.7"], None, "address delete 10.96.0.7/32 dev kube-ipvs0\n", id="delete-unknown-present"),
    pytest.param([], ["10.96.0.7", "10.96.0.8"], ["10.96.0.8"], "address delete 10.96.0.8/32 dev kube-ipvs0\n",
                 id="delete-only-what-is-there"),
    pytest.param(["10.96.0.2"], ["10.96.0.3"], ["10.96.0.3"],
                 "address delete 10.96.0.3/32 dev kube-ipvs0\naddress replace 10.96.0.2/32 dev kube-ipvs0\n",
                 id="deletes-first"),
    pytest.param(["10.96.0.4"], ["10.96.0.4"], ["10.96.0.4"], "address replace 10.96.0.4/32 dev kube-ipvs0\n",
                 id="added-and-deleted-is-added"),
])
def test_address_batch(add: list[str], delete: list[str], present: list[str] | None, want: str) -> None:
    assert iproute.address_batch("kube-ipvs0", add, delete, present) == want


@pytest.mark.parametrize(("device", "add", "field"), [
    pytest.param("", ["10.96.0.1"], "device", id="empty-device"),
    pytest.param("kube ipvs0", ["10.96.0.1"], "device", id="space-in-device"),
    pytest.param("a-name-longer-than-15", ["10.96.0.1"], "device", id="long-device"),
    pytest.param("kube-ipvs0", ["10.96.0.1/32"], "address", id="cidr-not-address"),
    pytest.param("kube-ipvs0", ["10.96.0.1\naddress flush dev eth0"], "address", id="line-injection"),
    pytest.param("kube-ipvs0", ["fd00::1"], "address", id="ipv6"),
])
def test_address_batch_rejects_bad_input_naming_the_field(device: str, add: list[str], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        iproute.address_batch(device, add, [])


def test_set_addresses_sends_every_change_to_one_ip_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], str | None]] = []
    monkeypatch.setattr(ipvs, "_run", lambda argv, stdin=None: calls.append((argv, stdin)) or "")
    monkeypatch.setattr(ipvs, "device_addresses", lambda: {"10.96.0.9", "10.96.0.1"})
    ipvs.set_addresses([f"10.96.1.{i}" for i in range(200)], ["10.96.0.9", "10.96.0.99"])
    assert len(calls) == 1
    argv, text = calls[0]
    assert argv == ["ip", "-batch", "-"]
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == "address delete 10.96.0.9/32 dev kube-ipvs0"  # 10.96.0.99 is not there: not deleted
    assert lines[1:] == [f"address replace 10.96.1.{i}/32 dev kube-ipvs0" for i in range(200)]


def test_set_addresses_with_nothing_to_do_runs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(ipvs, "_run", lambda argv, stdin=None: calls.append(argv) or "")
    monkeypatch.setattr(ipvs, "device_addresses", lambda: {"10.96.0.1"})
    ipvs.set_addresses([], [])
    ipvs.set_addresses([], ["10.96.0.2"])  # not on the device: no delete to send
    assert calls == []


def test_apply_timeouts_scale_with_the_text() -> None:
    from netk8s.dataplane import timeouts

    assert timeouts.for_text(60.0, "") == 60.0
    assert timeouts.for_text(60.0, "x" * timeouts.BYTES_PER_SECOND * 100) == 160.0


def test_parse_addresses_of_ip_o_4_address_show() -> None:
    text = ("7: kube-ipvs0    inet 10.96.0.1/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n"
            "7: kube-ipvs0    inet 10.96.0.10/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n")
    assert iproute.parse_addresses(text) == {"10.96.0.1", "10.96.0.10"}
    assert iproute.parse_addresses("") == set()


def test_device_addresses_reads_them_with_one_ip_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    calls: list[list[str]] = []

    def fake_exec(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "7: kube-ipvs0    inet 10.96.0.1/32 scope global kube-ipvs0\n", "")

    monkeypatch.setattr(ipvs, "_exec", fake_exec)
    monkeypatch.setattr(ipvs.links, "link_exists", lambda netns, name: True)
    assert ipvs.device_addresses() == {"10.96.0.1"}
    assert calls == [["ip", "-o", "-4", "address", "show", "dev", "kube-ipvs0"]]
    monkeypatch.setattr(ipvs.links, "link_exists", lambda netns, name: False)
    assert ipvs.device_addresses() is None  # no device: None, and no ip call
    assert len(calls) == 1


def test_ipset_restore_gets_the_slower_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from netk8s.dataplane import timeouts

    seen: list[float] = []

    def fake_run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        seen.append(kw["timeout"])  # type: ignore[arg-type]
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(ipvs.subprocess, "run", fake_run)
    text = "x" * 10 * 1024
    ipvs.ipset_restore(text)
    ipvs.ipvsadm_restore(text)
    assert seen == [ipvs.TIMEOUT + 10.0, timeouts.for_text(ipvs.TIMEOUT, text)]
