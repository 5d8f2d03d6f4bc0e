"""Reading who else answers ARP for the VIP (`VipConflictProbe`): the frames it counts.

The probe's socket work is exercised in the lab (tests/lab/test_agent_lab.py); here the
frames it reads, built as the wire carries them, and hostile ones.
"""

from __future__ import annotations

import ipaddress

import pytest

from mosqit_failover.effects.garp import build_frame
from mosqit_failover.effects.vip_conflict import VipConflictProbe

VIP = ipaddress.IPv4Address("10.231.1.50")
OWN = bytes.fromhex("020000000001")
OTHER = bytes.fromhex("02000000000b")
PROBE = VipConflictProbe(VIP, "eth0")


def test_a_reply_or_an_announcement_of_the_vip_from_another_mac_is_a_claim() -> None:
    reply = build_frame(VIP, OTHER, reply=True)  # "VIP is-at OTHER"
    announce = build_frame(VIP, OTHER)  # gratuitous request from OTHER
    assert PROBE._claimant(reply, OWN) == "02:00:00:00:00:0b"
    assert PROBE._claimant(announce, OWN) == "02:00:00:00:00:0b"


@pytest.mark.parametrize(
    "frame",
    [
        build_frame(VIP, OWN, reply=True),  # our own
        build_frame(ipaddress.IPv4Address("10.231.1.11"), OTHER),  # another address
        build_frame(ipaddress.IPv4Address(0), OTHER, target=VIP),  # someone else's probe
        b"",
        b"\xff" * 20,  # cut short
        build_frame(VIP, OTHER)[:12] + b"\x08\x00" + build_frame(VIP, OTHER)[14:],  # IPv4
        build_frame(VIP, OTHER)[:16] + b"\x86\xdd" + build_frame(VIP, OTHER)[18:],  # not IPv4
    ],
    ids=["own", "other-address", "probe", "empty", "short", "ipv4-frame", "ipv6-arp"],
)
def test_anything_else_is_no_claim(frame: bytes) -> None:
    assert PROBE._claimant(frame, OWN) is None
