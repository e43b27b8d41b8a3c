"""The gratuitous ARP a pod sends when its address appears (docs/reliability.md, cause 2): byte layout."""

from __future__ import annotations

import pytest

from netk8s.dataplane.arp import garp_frame


def test_frame_is_a_broadcast_arp_announcement_padded_to_60_bytes() -> None:
    frame = garp_frame("0a:58:0a:f4:01:05", "10.244.1.5")
    mac, ip = bytes.fromhex("0a580af40105"), bytes([10, 244, 1, 5])
    assert len(frame) == 60
    assert frame[0:6] == b"\xff" * 6  # to every host on the bridge
    assert frame[6:12] == mac
    assert frame[12:14] == b"\x08\x06"  # ethertype ARP
    assert frame[14:22] == b"\x00\x01\x08\x00\x06\x04\x00\x01"  # Ethernet/IPv4, request (RFC 5227 announcement)
    assert frame[22:28] == mac and frame[28:32] == ip  # sender: the pod
    assert frame[32:38] == b"\x00" * 6 and frame[38:42] == ip  # target: the same address (gratuitous)
    assert frame[42:] == b"\x00" * 18


@pytest.mark.parametrize(("mac", "ip"), [("0a:58:0a", "10.0.0.1"), ("0a:58:0a:f4:01:05", "10.0.0.300")],
                         ids=["short-mac", "bad-ip"])
def test_bad_addresses_are_refused(mac: str, ip: str) -> None:
    with pytest.raises(ValueError):
        garp_frame(mac, ip)
