"""The gratuitous ARP frame the agent packs itself, byte for byte against scapy's."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.l2 import ARP, Ether

from mosqit_failover.effects.garp import build_frame

VIP = ipaddress.IPv4Address("10.231.1.50")
MAC = bytes.fromhex("02aabbccddee")


def scapy_frame(reply: bool) -> bytes:
    hw = ":".join(f"{b:02x}" for b in MAC)
    frame = Ether(dst="ff:ff:ff:ff:ff:ff", src=hw, type=0x0806) / ARP(
        op=2 if reply else 1,
        hwsrc=hw,
        psrc=str(VIP),
        hwdst="ff:ff:ff:ff:ff:ff" if reply else "00:00:00:00:00:00",
        pdst=str(VIP),
    )
    raw = bytes(frame)
    return raw + bytes(60 - len(raw))


@pytest.mark.parametrize("reply", [False, True])
def test_the_frame_is_the_one_scapy_builds(reply: bool) -> None:
    assert build_frame(VIP, MAC, reply=reply) == scapy_frame(reply)


def test_scapy_parses_it_as_a_gratuitous_arp_request() -> None:
    frame = Ether(build_frame(VIP, MAC))
    arp = frame[ARP]
    assert (frame.dst, frame.src) == ("ff:ff:ff:ff:ff:ff", "02:aa:bb:cc:dd:ee")
    assert (arp.op, arp.psrc, arp.pdst, arp.hwsrc) == (1, str(VIP), str(VIP), frame.src)
    assert len(build_frame(VIP, MAC)) == 60  # the Ethernet minimum, zero padded


def test_a_request_for_a_neighbour_is_the_one_scapy_builds() -> None:
    """Who-has 10.231.1.1 tell the VIP, as arping sends it (`ArpAsk`)."""
    switch = ipaddress.IPv4Address("10.231.1.1")
    hw = ":".join(f"{b:02x}" for b in MAC)
    raw = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=hw, type=0x0806)
        / ARP(op=1, hwsrc=hw, psrc=str(VIP), hwdst="00:00:00:00:00:00", pdst=str(switch))
    )
    assert build_frame(VIP, MAC, target=switch) == raw + bytes(60 - len(raw))
    assert build_frame(VIP, MAC, target=switch, reply=True) == build_frame(VIP, MAC, target=switch)


@pytest.mark.parametrize("mac", [b"", bytes(5), bytes(7)])
def test_a_mac_of_another_length_is_refused(mac: bytes) -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        build_frame(VIP, mac)


def test_the_agent_does_not_import_what_it_does_not_use() -> None:
    """Each costs megabytes of RSS: scapy and pyroute2 are not used any more, metrics
    and mail only when configured, the sync engine with the first [[sync]]
    directory and the replication stream with the first synchronous one (imported
    then, not at start)."""
    import subprocess
    import sys

    heavy = ["scapy", "pyroute2", "prometheus_client", "smtplib"]
    heavy += ["mosqit_failover.sync.engine", "mosqit_failover.syncfs.apply"]
    code = f"import sys, mosqit_failover.daemon; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
