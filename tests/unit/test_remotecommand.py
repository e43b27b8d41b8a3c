"""The remote-command channel protocols of pods/exec: negotiation, framing, and the error channel's exit code."""

from __future__ import annotations

import json

import pytest

from netk8s.model import remotecommand as rc


@pytest.mark.parametrize(("offered", "chosen"), [
    (["v5.channel.k8s.io", "v4.channel.k8s.io"], "v5.channel.k8s.io"),      # kubectl 1.30+
    (["v4.channel.k8s.io"], "v4.channel.k8s.io"),                          # the Python client
    (["SPDY/3.1+portforward.k8s.io", "channel.k8s.io"], "channel.k8s.io"),
    (["v6.channel.k8s.io"], None),
])
def test_negotiation_takes_the_clients_first_supported(offered: list[str], chosen: str | None) -> None:
    assert rc.negotiate(offered) == chosen


def test_binary_frames_carry_the_channel_in_the_first_byte() -> None:
    msg = rc.encode("v5.channel.k8s.io", rc.STDOUT, b"hi")
    assert msg == b"\x01hi"
    assert rc.decode("v5.channel.k8s.io", msg) == (rc.STDOUT, b"hi")
    assert rc.decode("v5.channel.k8s.io", b"\xff\x00") == (rc.CLOSE, b"\x00")
    assert rc.decode("v5.channel.k8s.io", b"") is None


def test_base64_frames_are_text() -> None:
    msg = rc.encode("base64.channel.k8s.io", rc.STDERR, b"oops")
    assert msg == "2b29wcw=="
    assert rc.decode("base64.channel.k8s.io", msg) == (rc.STDERR, b"oops")
    assert rc.decode("base64.channel.k8s.io", "x") is None


def test_exit_status_as_kubelet_writes_it() -> None:
    ok = json.loads(rc.exit_status("v5.channel.k8s.io", 0, ["true"]))
    assert ok == {"metadata": {}, "status": "Success"}
    failed = json.loads(rc.exit_status("v4.channel.k8s.io", 3, ["sh", "-c", "exit 3"]))
    assert (failed["status"], failed["reason"]) == ("Failure", "NonZeroExitCode")
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert rc.exit_status("channel.k8s.io", 0, ["true"]) == b""  # v1: plain text, empty on success
    assert b"exit status 2" in rc.exit_status("channel.k8s.io", 2, ["false"])


@pytest.mark.parametrize(("data", "size"), [
    (b'{"Width": 80, "Height": 24}', (80, 24)),
    (b'{"Width": 0, "Height": 24}', None),
    (b"not json", None),
    (b'{"Width": "x"}', None),
])
def test_resize_messages(data: bytes, size: tuple[int, int] | None) -> None:
    assert rc.parse_resize(data) == size
