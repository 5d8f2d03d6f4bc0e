"""The echo requests the prober packs itself, against scapy's and RFC 1071."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP

from mosqit_failover.probes.echo import PAYLOAD, EchoRequests, parse_icmp


def rfc1071_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("ident", [1, 0x1234, 0xFFFF])
@pytest.mark.parametrize("seq", [0, 1, 2, 0x7FFF, 0xFFFE, 0xFFFF])
def test_the_request_is_the_one_scapy_builds(ident: int, seq: int) -> None:
    expected = bytes(ICMP(type=8, code=0, id=ident, seq=seq) / PAYLOAD)
    assert EchoRequests(ident).packet(seq) == expected


@pytest.mark.parametrize("seq", range(0, 0x10000, 4099))
def test_every_checksum_verifies(seq: int) -> None:
    packet = EchoRequests(0xBEEF).packet(seq)
    assert rfc1071_sum(packet) == 0xFFFF  # a correct checksum sums to all ones


def test_an_odd_payload_is_padded_for_the_checksum_only() -> None:
    packet = EchoRequests(7, payload=b"abc").packet(9)
    assert packet.endswith(b"abc") and len(packet) == 11
    assert rfc1071_sum(packet) == 0xFFFF


def test_the_reply_to_a_request_parses_as_ours() -> None:
    request = EchoRequests(0x4242).packet(77)
    reply = b"\x00" + request[1:]  # what the peer's kernel echoes (type 0)
    ip = bytes([0x45]) + bytes(19)
    assert parse_icmp(ip + reply) == (0, 0, 0x4242, 77, PAYLOAD)


@pytest.mark.parametrize("ident", [-1, 0x10000])
def test_an_id_out_of_range_is_refused(ident: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        EchoRequests(ident)
