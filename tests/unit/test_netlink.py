"""mosqit_failover.netlink against byte strings, a scripted kernel and hostile input.

The requests are compared with bytes written out by hand from the kernel's
uapi headers (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h). The
replies are real: captured from Linux 6.18 (x86_64) by this module's own
requests in a throwaway network namespace (veth d0/d1 up, 10.9.9.1/24 on d0;
our port id 3442, sequence numbers from 101). The socket logic (sequence
numbers, ACK/NLMSG_ERROR, dumps, events, ENOBUFS) runs against a scripted
kernel; tests/unit/test_netlink_kernel.py runs it against the real one.
Netlink is host-endian: skipped on a big-endian machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import re
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosqit_failover import netlink as nl
from mosqit_failover.effects import EffectError
from mosqit_failover.effects import vip as vip_module
from mosqit_failover.probes import links as links_module
from mosqit_failover.probes.links import LinkMonitor, carrier_of

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="captured on little-endian")

PORT = 3442

# -- captured kernel replies ----------------------------------------------------

GETLINK_D0 = bytes.fromhex(
    "d40500001000000065000000720d000000000100030000004310010000000000070003006430000008000d00"
    "e803000005001000060000000500110000000000050043000000000008000400dc0500000800320044000000"
    "08003300ffff000008001b000000000008001e000000000008003d000000000008001f000200000008002800"
    "ffff0000080029000000010008003a000000010008003f0000000100080040000000010008003b00f8ff0700"
    "08003c00ffff0000080042000000000008002000020000000500210001000000080023000200000008002f00"
    "0100000008003000010000000600440000000000060045000000000005002700000000000a000100d250f32b"
    "0be600000a000200ffffffffffff0000cc00170002000000000000000200000000000000b000000000000000"
    "b000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "640007000200000002000000b0000000b0000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000c002b0005000200000000001000120009000100766574680000000008000500"
    "020000000c0006006e6f71756575650030031a008c0002008800010000000000000000000000000001000000"
    "0100000001000000010000000000000001000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "10270000e80300000000000000000000000000000000000001000000a0020a00080001000000008014000500"
    "ffff0000a2ed1400b08f0000e8030000f40002000000000040000000dc050000010000000100000001000000"
    "01000000ffffffffa00f0000e803000000000000803a09008051010003000000580200001000000000000000"
    "01000000010000000100000060ea000000000000000000000000000000000000000000000000000001000000"
    "000000000000000010270000e803000001000000000000000000000001000000000000000000000001000000"
    "0000000000000000000000000000000080ee3600000000000000000001000000000000000000000000000000"
    "00000000000000000004000000000000ffff0000ffffffff0100000000000000000000000000000034010300"
    "2600000000000000020000000000000094000000000000000000000000000000020000000000000000000000"
    "0000000000000000000000000000000000000000020000000000000002000000000000009400000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000002000000000000000200000000000000000000000000000000000000000000009400000000000000"
    "940000000000000000000000000000000000000000000000000000000000000000000000000000003c000600"
    "0700000000000000000000000000000000000000000000000200000000000000000000000000000000000000"
    "0000000000000000000000001400070000000000000000000000000000000000050008000000000024000e00"
    "000000000000000000000000000000000000000000000000000000000000000004003e8004004180"
)
ACK_101 = bytes.fromhex("240000000200000165000000720d00000000000028000000120005006500000000000000")
ENODEV_102 = bytes.fromhex(
    "400000000200000066000000720d0000edffffff2c0000001200050066000000000000000000000000000000"
    "0000000000000000090003006e6f706500000000"
)
EEXIST_104 = bytes.fromhex(
    "3c0000000200000068000000720d0000efffffff280000001400050668000000000000000218000003000000"
    "080002000a090932080001000a090932"
)
ADDR_DUMP_105 = bytes.fromhex(
    "4c0000001400020069000000720d00000218800003000000080001000a090901080002000a09090107000300"
    "64300000080008008000000014000600ffffffffffffffffa2ed1400a2ed14004c0000001400020069000000"
    "720d00000218810003000000080001000a090932080002000a09093207000300643000000800080081000000"
    "14000600ffffffffffffffffd8ed1400d8ed1400"
)
DONE_105 = bytes.fromhex("140000000300020069000000720d000000000000")
EADDRNOTAVAIL_107 = bytes.fromhex(
    "3c000000020000006b000000720d00009dffffff28000000150005006b000000000000000218000003000000"
    "080002000a090932080001000a090932"
)
EVENT_D0_NO_CARRIER = bytes.fromhex(
    "d405000010000000000000000000000000000100030000000310000000000000070003006430000008000d00"
    "e803000005001000030000000500110000000000050043000000000008000400dc0500000800320044000000"
    "08003300ffff000008001b000000000008001e000000000008003d000000000008001f000200000008002800"
    "ffff0000080029000000010008003a000000010008003f0000000100080040000000010008003b00f8ff0700"
    "08003c00ffff0000080042000000000008002000020000000500210000000000080023000300000008002f00"
    "0100000008003000020000000600440000000000060045000000000005002700000000000a000100d250f32b"
    "0be600000a000200ffffffffffff0000cc00170002000000000000000200000000000000b000000000000000"
    "b000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "640007000200000002000000b0000000b0000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000c002b0005000200000000001000120009000100766574680000000008000500"
    "020000000c0006006e6f71756575650030031a008c0002008800010000000000000000000000000001000000"
    "0100000001000000010000000000000001000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "10270000e80300000000000000000000000000000000000001000000a0020a00080001000000008014000500"
    "ffff0000a2ed1400b08f0000e8030000f40002000000000040000000dc050000010000000100000001000000"
    "01000000ffffffffa00f0000e803000000000000803a09008051010003000000580200001000000000000000"
    "01000000010000000100000060ea000000000000000000000000000000000000000000000000000001000000"
    "000000000000000010270000e803000001000000000000000000000001000000000000000000000001000000"
    "0000000000000000000000000000000080ee3600000000000000000001000000000000000000000000000000"
    "00000000000000000004000000000000ffff0000ffffffff0100000000000000000000000000000034010300"
    "2600000000000000020000000000000094000000000000000000000000000000020000000000000000000000"
    "0000000000000000000000000000000000000000020000000000000002000000000000009400000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000002000000000000000200000000000000000000000000000000000000000000009400000000000000"
    "940000000000000000000000000000000000000000000000000000000000000000000000000000003c000600"
    "0700000000000000000000000000000000000000000000000200000000000000000000000000000000000000"
    "0000000000000000000000001400070000000000000000000000000000000000050008000000000024000e00"
    "000000000000000000000000000000000000000000000000000000000000000004003e8004004180"
)
EVENT_D0_DELETED = bytes.fromhex(
    "a8020000110000000000000000000000000001000300000002100000ffffffff070003006430000008000d00"
    "e803000005001000020000000500110000000000050043000000000008000400dc0500000800320044000000"
    "08003300ffff000008001b000000000008001e000000000008003d000000000008001f000200000008002800"
    "ffff0000080029000000010008003a000000010008003f0000000100080040000000010008003b00f8ff0700"
    "08003c00ffff0000080042000000000008002000020000000500210000000000080023000300000008002f00"
    "0100000008003000020000000600440000000000060045000000000005002700000000000a000100d250f32b"
    "0be600000a000200ffffffffffff0000cc001700000000000000000002000000000000000000000000000000"
    "b000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "64000700000000000200000000000000b0000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000c002b0005000200000000001000120009000100766574680000000008000500"
    "00000000090006006e6f6f700000000004001a0024000e000000000000000000000000000000000000000000"
    "00000000000000000000000004003e8004004180"
)

REPLIES = {
    "GETLINK_D0": GETLINK_D0,
    "ACK_101": ACK_101,
    "ENODEV_102": ENODEV_102,
    "EEXIST_104": EEXIST_104,
    "ADDR_DUMP_105": ADDR_DUMP_105,
    "DONE_105": DONE_105,
    "EADDRNOTAVAIL_107": EADDRNOTAVAIL_107,
    "EVENT_D0_NO_CARRIER": EVENT_D0_NO_CARRIER,
    "EVENT_D0_DELETED": EVENT_D0_DELETED,
}


def one(data: bytes) -> nl.Message:
    messages = nl.decode_messages(data)
    assert len(messages) == 1
    return messages[0]


# -- requests, byte for byte ----------------------------------------------------


def test_getlink_by_name_request() -> None:
    flags = nl.NLM_F_REQUEST | nl.NLM_F_ACK
    wire = nl.encode_message(nl.RTM_GETLINK, flags, 101, nl.ifinfo(ifname="d0"))
    assert wire == bytes.fromhex(
        "28000000 1200 0500 65000000 00000000"  # nlmsghdr: 40 bytes, RTM_GETLINK, REQUEST|ACK,
        # seq 101, pid 0 (the kernel knows ours)
        "00 00 0000 00000000 00000000 00000000"  # ifinfomsg: AF_UNSPEC, pad, type, index,
        # flags, change
        "0700 0300 643000 00"  # rtattr: 7 bytes, IFLA_IFNAME, "d0\0", padding
    )


def test_getlink_dump_request() -> None:
    wire = nl.encode_message(nl.RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 7, nl.ifinfo())
    assert wire == bytes.fromhex("20000000 1200 0103 07000000 00000000" + "00" * 16)


def test_newaddr_request() -> None:
    flags = nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE | nl.NLM_F_EXCL
    body = nl.ifaddr(3, prefixlen=24, local="10.9.9.50", address="10.9.9.50")
    assert nl.encode_message(nl.RTM_NEWADDR, flags, 103, body) == bytes.fromhex(
        "28000000 1400 0506 67000000 00000000"  # RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE
        "02 18 00 00 03000000"  # ifaddrmsg: AF_INET, /24, flags, scope universe, index 3
        "0800 0200 0a090932"  # IFA_LOCAL 10.9.9.50
        "0800 0100 0a090932"  # IFA_ADDRESS 10.9.9.50
    )


def test_deladdr_and_getaddr_dump_requests() -> None:
    body = nl.ifaddr(3, prefixlen=32, local="10.9.9.50", address="10.9.9.50")
    wire = nl.encode_message(nl.RTM_DELADDR, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 1, body)
    assert wire == bytes.fromhex(
        "28000000 1500 0500 01000000 00000000"  # RTM_DELADDR, REQUEST|ACK
        "02 20 00 00 03000000 0800 0200 0a090932 0800 0100 0a090932"
    )
    dump = nl.encode_message(nl.RTM_GETADDR, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 105, nl.ifaddr(3))
    assert dump == bytes.fromhex("18000000 1600 0103 69000000 00000000 02 00 00 00 03000000")


def test_attribute_padding() -> None:
    assert nl.encode_attr(3, b"eth0\0") == bytes.fromhex("090003006574683000000000")
    assert nl.encode_attr(1, b"") == bytes.fromhex("04000100")
    assert nl.encode_attr(1, b"abcd") == bytes.fromhex("0800010061626364")


# -- replies from the kernel ----------------------------------------------------


def test_link_reply_and_ack() -> None:
    reply = one(GETLINK_D0)
    assert (reply.type, reply.flags, reply.seq, reply.pid) == (nl.RTM_NEWLINK, 0, 101, PORT)
    link = nl.decode_link(reply)
    assert (link.kind, link.family, link.index, link.ifname) == (nl.RTM_NEWLINK, 0, 3, "d0")
    assert link.operstate_name == "UP"
    assert link.flags == 0x11043  # UP | BROADCAST | RUNNING | MULTICAST | LOWER_UP
    assert carrier_of(link)
    ack = one(ACK_101)
    assert (ack.type, ack.seq, ack.pid, nl.error_code(ack)) == (nl.NLMSG_ERROR, 101, PORT, 0)


def test_link_events() -> None:
    no_carrier = nl.decode_link(one(EVENT_D0_NO_CARRIER))
    assert (no_carrier.ifname, no_carrier.operstate_name) == ("d0", "LOWERLAYERDOWN")
    assert no_carrier.flags & 0x1 and not carrier_of(no_carrier)  # admin up, no carrier
    deleted = one(EVENT_D0_DELETED)
    assert (deleted.seq, deleted.pid) == (0, 0)  # multicast
    link = nl.decode_link(deleted)
    assert (link.kind, link.index, link.ifname) == (nl.RTM_DELLINK, 3, "d0")


def test_error_replies() -> None:
    for data, seq, code in (
        (ENODEV_102, 102, errno.ENODEV),
        (EEXIST_104, 104, errno.EEXIST),
        (EADDRNOTAVAIL_107, 107, errno.EADDRNOTAVAIL),
    ):
        message = one(data)
        assert (message.type, message.seq, message.pid) == (nl.NLMSG_ERROR, seq, PORT)
        assert nl.error_code(message) == code


def test_address_dump() -> None:
    messages = nl.decode_messages(ADDR_DUMP_105)
    assert [m.flags & nl.NLM_F_MULTI for m in messages] == [nl.NLM_F_MULTI] * 2
    addresses = [nl.decode_address(m) for m in messages]
    assert [(a.ip, a.prefixlen, a.index) for a in addresses] == [
        ("10.9.9.1", 24, 3),
        ("10.9.9.50", 24, 3),
    ]
    assert addresses[1].local == addresses[1].address == "10.9.9.50"
    done = one(DONE_105)
    assert (done.type, done.seq, nl.error_code(done)) == (nl.NLMSG_DONE, 105, 0)


# -- hostile input ----------------------------------------------------------------

HEADER = struct.Struct("=IHHII")


def malformed(call: Callable[[], object], *words: str) -> None:
    with pytest.raises(nl.NetlinkProtocolError) as caught:
        call()
    assert caught.value.errno == errno.EPROTO
    text = str(caught.value)
    assert "malformed netlink message" in text
    for word in words:
        assert word in text, text


def test_bad_message_lengths() -> None:
    assert nl.decode_messages(b"") == []
    malformed(lambda: nl.decode_messages(b"\0" * 15), "less than a header")
    for length in (0, 1, 15):  # 0 would never advance
        data = HEADER.pack(length, 3, 0, 0, 0)
        malformed(functools.partial(nl.decode_messages, data), "length")
    malformed(lambda: nl.decode_messages(HEADER.pack(17, 3, 0, 0, 0)), "length 17")
    malformed(lambda: nl.decode_messages(HEADER.pack(0xFFFFFFFF, 3, 0, 0, 0)), "length")
    # a good message followed by a stub
    malformed(lambda: nl.decode_messages(ACK_101 + b"\1\2\3"), "less than a header")
    assert len(nl.decode_messages(ACK_101 + ACK_101)) == 2


def test_bad_attribute_lengths() -> None:
    assert nl.decode_attrs(b"") == {}
    assert nl.decode_attrs(b"\0\0") == {}  # padding
    for length in (0, 1, 3):  # 0 would loop forever
        data = struct.pack("=HH", length, 1) + b"\0" * 8
        malformed(functools.partial(nl.decode_attrs, data), "length")
    malformed(lambda: nl.decode_attrs(struct.pack("=HH", 9, 1) + b"abcd"), "length 9")
    malformed(lambda: nl.decode_attrs(b"\x01\x02"), "less than an attribute")
    # the NLA_F_NESTED / NET_BYTEORDER bits are not part of the type; the first wins
    attrs = nl.decode_attrs(nl.encode_attr(0x8000 | 3, b"a\0") + nl.encode_attr(3, b"b\0"))
    assert attrs == {3: b"a\0"}


def test_bad_fixed_parts() -> None:
    short_link = nl.Message(nl.RTM_NEWLINK, 0, 0, 0, b"\0" * 15)
    malformed(lambda: nl.decode_link(short_link), "link message of 15 bytes")
    malformed(lambda: nl.decode_link(one(ACK_101)), "not a link message")
    empty_operstate = nl.Message(nl.RTM_NEWLINK, 0, 0, 0, nl.ifinfo() + nl.encode_attr(16, b""))
    malformed(lambda: nl.decode_link(empty_operstate), "IFLA_OPERSTATE")
    short_addr = nl.Message(nl.RTM_NEWADDR, 0, 0, 0, b"\2\0\0")
    malformed(lambda: nl.decode_address(short_addr), "address message of 3 bytes")
    inet6 = nl.Message(nl.RTM_NEWADDR, 0, 0, 0, struct.pack("=BBBBI", 10, 64, 0, 0, 1))
    malformed(lambda: nl.decode_address(inet6), "family 10")
    wide = nl.Message(nl.RTM_NEWADDR, 0, 0, 0, nl.ifaddr(1) + nl.encode_attr(2, b"\1" * 16))
    malformed(lambda: nl.decode_address(wide), "16 bytes")
    malformed(lambda: nl.decode_address(one(ACK_101)), "not an address message")
    malformed(lambda: nl.error_code(nl.Message(nl.NLMSG_ERROR, 0, 0, 0, b"\0\0")), "2 bytes")
    assert nl.error_code(nl.Message(nl.NLMSG_DONE, 0, 0, 0, b"")) == 0
    assert nl.error_code(nl.Message(nl.NLMSG_DONE, 0, 0, 0, struct.pack("=i", 1492))) == 0
    for code in (-(2**31), -4096):
        data = struct.pack("=i", code)
        malformed(functools.partial(nl.error_code, nl.Message(nl.NLMSG_ERROR, 0, 0, 0, data)))
    positive = nl.Message(nl.NLMSG_ERROR, 0, 0, 0, struct.pack("=i", 5))
    malformed(functools.partial(nl.error_code, positive), "positive")


def decode_fully(data: bytes) -> None:
    """Everything the agent would decode from one datagram."""
    for message in nl.decode_messages(data):
        if message.type in (nl.RTM_NEWLINK, nl.RTM_DELLINK):
            nl.decode_link(message)
        elif message.type in (nl.RTM_NEWADDR, nl.RTM_DELADDR):
            nl.decode_address(message)
        elif message.type in (nl.NLMSG_ERROR, nl.NLMSG_DONE):
            nl.error_code(message)


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_every_truncation_is_a_clear_error(name: str) -> None:
    data = REPLIES[name]
    decode_fully(data)
    for cut in range(len(data)):
        with contextlib.suppress(nl.NetlinkProtocolError):
            decode_fully(data[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(nl.NetlinkProtocolError):
        decode_fully(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(REPLIES)),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_corrupted_replies_raise_only_protocol_errors(
    name: str, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(REPLIES[name])
    for where, value in edits:
        data[where % len(data)] = value
    with contextlib.suppress(nl.NetlinkProtocolError):
        decode_fully(bytes(data))


def test_many_tiny_attributes_end() -> None:
    payload = nl.ifinfo() + nl.encode_attr(99, b"") * 50_000
    link = nl.decode_link(nl.Message(nl.RTM_NEWLINK, 0, 0, 0, payload))
    assert link.ifname is None and link.operstate is None and not carrier_of(link)


# -- the socket, against a scripted kernel ------------------------------------------

Respond = Callable[[nl.Message], list[bytes]]


class FakeKernel:
    """Stands in for the AF_NETLINK socket: answers requests with ``respond``.

    Readiness is real (a socketpair the event loop can watch); what recvmsg
    returns comes from the queue, from the kernel (port 0) unless said otherwise.
    """

    def __init__(self, respond: Respond | None = None) -> None:
        self.respond = respond or (lambda _request: [])
        self.requests: list[nl.Message] = []
        self._queue: deque[tuple[bytes | BaseException, int, int]] = deque()
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._ours.setblocking(False)
        self.closed = False

    def push(self, item: bytes | BaseException, sender: int = 0, flags: int = 0) -> None:
        self._queue.append((item, sender, flags))
        self._theirs.send(b"!")

    def fileno(self) -> int:
        return self._ours.fileno()

    def sendto(self, data: bytes, address: tuple[int, int]) -> int:
        assert address == (0, 0)
        request = one(data)
        self.requests.append(request)
        for reply in self.respond(request):
            self.push(reply)
        return len(data)

    def recvmsg(
        self, size: int, _ancillary: int, flags: int
    ) -> tuple[bytes, list[Any], int, tuple[int, int]]:
        assert flags & socket.MSG_DONTWAIT
        if not self._queue:
            raise BlockingIOError(errno.EAGAIN, "empty")
        self._ours.recv(1)
        item, sender, msg_flags = self._queue.popleft()
        if isinstance(item, BaseException):
            raise item
        return item[:size], [], msg_flags, (sender, 0)

    def close(self) -> None:
        self.closed = True
        self._ours.close()
        self._theirs.close()


def route_socket(kernel: FakeKernel, groups: int = 0) -> nl.RouteSocket:
    rt = nl.RouteSocket(groups)
    rt._sock.close()
    rt._sock = kernel  # type: ignore[assignment]
    rt.port = PORT
    return rt


def reply(request: nl.Message, kind: int, payload: bytes, flags: int = 0) -> bytes:
    return nl.encode_message(kind, flags, request.seq, payload, pid=PORT)


def ack(request: nl.Message, code: int = 0) -> bytes:
    return reply(request, nl.NLMSG_ERROR, struct.pack("=i", -code) + request_header(request))


def request_header(request: nl.Message) -> bytes:
    return HEADER.pack(16 + len(request.payload), request.type, request.flags, request.seq, 0)


def done(request: nl.Message) -> bytes:
    return reply(request, nl.NLMSG_DONE, struct.pack("=i", 0), nl.NLM_F_MULTI)


D0_PAYLOAD = one(GETLINK_D0).payload
NO_CARRIER_PAYLOAD = one(EVENT_D0_NO_CARRIER).payload
ADDRESS_PAYLOADS = [m.payload for m in nl.decode_messages(ADDR_DUMP_105)]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_request_sequence_numbers_and_ack() -> None:
    def respond(request: nl.Message) -> list[bytes]:
        if request.type == nl.RTM_GETLINK:
            return [reply(request, nl.RTM_NEWLINK, D0_PAYLOAD), ack(request)]
        return [ack(request)]

    kernel = FakeKernel(respond)
    with route_socket(kernel) as rt:
        assert run(rt.link_index("d0")) == 3
        run(rt.add_address(3, "10.9.9.50", 24))
        assert rt.link_index_sync("d0", deadline=float("inf")) == 3
    assert kernel.closed
    assert [r.seq for r in kernel.requests] == [1, 2, 3]
    assert [r.flags & nl.NLM_F_ACK for r in kernel.requests] == [nl.NLM_F_ACK] * 3
    assert kernel.requests[1].flags & (nl.NLM_F_CREATE | nl.NLM_F_EXCL) == 0x600


def test_errors_carry_the_kernels_errno() -> None:
    kernel = FakeKernel(lambda request: [ack(request, errno.EEXIST)])
    with route_socket(kernel) as rt:
        with pytest.raises(nl.NetlinkError) as caught:
            run(rt.add_address(3, "10.9.9.50", 24))
        assert caught.value.errno == errno.EEXIST
        assert "File exists" in str(caught.value)
    kernel = FakeKernel(lambda request: [ack(request, errno.ENODEV)])
    with route_socket(kernel) as rt:
        assert run(rt.link_index("nope")) is None
        assert rt.link_index_sync("nope", float("inf")) is None
        assert run(rt.link_index("x" * 16)) is None  # cannot exist: not even asked
        assert run(rt.link_index("")) is None
    assert len(kernel.requests) == 2


def test_answers_of_other_requests_and_strangers_are_not_taken() -> None:
    def respond(request: nl.Message) -> list[bytes]:
        stale = nl.encode_message(
            nl.NLMSG_ERROR, 0, request.seq - 1 or 99, struct.pack("=i", -1), pid=PORT
        )
        other_port = nl.encode_message(
            nl.NLMSG_ERROR, 0, request.seq, struct.pack("=i", -1), pid=PORT + 1
        )
        return [stale, other_port, ack(request)]

    kernel = FakeKernel(respond)
    with route_socket(kernel) as rt:
        kernel.push(ack(nl.Message(0, 0, 1, 0, b""), errno.EPERM), sender=4711)  # not the kernel
        run(rt.add_address(3, "10.9.9.50", 24))  # only its own ACK counts
        # the two strangers' messages are not answers: they wait as events
        assert [m.pid for m in run(rt.events())] == [PORT, PORT + 1]


def test_dump_collects_until_done_and_keeps_events_in_order() -> None:
    event = nl.encode_message(nl.RTM_NEWLINK, 0, 0, NO_CARRIER_PAYLOAD)

    def respond(request: nl.Message) -> list[bytes]:
        first = reply(request, nl.RTM_NEWADDR, ADDRESS_PAYLOADS[0], nl.NLM_F_MULTI)
        second = reply(request, nl.RTM_NEWADDR, ADDRESS_PAYLOADS[1], nl.NLM_F_MULTI)
        return [first + event, event, second, done(request)]

    kernel = FakeKernel(respond)
    with route_socket(kernel, nl.RTMGRP_LINK) as rt:
        addresses = run(rt.addresses(3))
        assert [a.ip for a in addresses] == ["10.9.9.1", "10.9.9.50"]
        assert rt.addresses_sync(4, float("inf")) == []  # the kernel ignores the index: we filter
        events = run(rt.events())
        assert len(events) == 4 and all(e.payload == NO_CARRIER_PAYLOAD for e in events)


def test_interrupted_dump_is_read_again() -> None:
    def respond(request: nl.Message) -> list[bytes]:
        flags = nl.NLM_F_MULTI | (nl.NLM_F_DUMP_INTR if len(kernel.requests) == 1 else 0)
        return [reply(request, nl.RTM_NEWLINK, D0_PAYLOAD, flags), done(request)]

    kernel = FakeKernel(respond)
    with route_socket(kernel) as rt:
        links = run(rt.dump_links())
    assert [link.ifname for link in links] == ["d0"]
    assert len(kernel.requests) == 2

    always = FakeKernel(
        lambda request: [
            reply(request, nl.RTM_NEWLINK, D0_PAYLOAD, nl.NLM_F_DUMP_INTR),
            done(request),
        ]
    )
    with route_socket(always) as rt:
        assert len(run(rt.dump_links())) == 1  # gives up after DUMP_ATTEMPTS, with the last
    assert len(always.requests) == nl.DUMP_ATTEMPTS


def test_dump_error_and_garbage_and_truncation_raise() -> None:
    failing_done = FakeKernel(
        lambda request: [reply(request, nl.NLMSG_DONE, struct.pack("=i", -errno.EINTR))]
    )
    with route_socket(failing_done) as rt, pytest.raises(nl.NetlinkError) as caught:
        run(rt.dump_links())
    assert caught.value.errno == errno.EINTR

    garbage = FakeKernel(lambda request: [b"\x05\0\0\0" + b"\0" * 12])
    with route_socket(garbage) as rt:
        malformed(lambda: run(rt.dump_links()), "length 5")

    truncated = FakeKernel()
    with route_socket(truncated) as rt:
        truncated.push(GETLINK_D0, flags=socket.MSG_TRUNC)
        malformed(lambda: run(rt.events()), "larger than")

    overrun = FakeKernel(lambda request: [reply(request, nl.NLMSG_OVERRUN, b"")])
    with route_socket(overrun) as rt:
        malformed(lambda: run(rt.dump_links()), "NLMSG_OVERRUN")


def test_enobufs_surfaces_from_the_read() -> None:
    kernel = FakeKernel()
    with route_socket(kernel, nl.RTMGRP_LINK) as rt:
        kernel.push(OSError(errno.ENOBUFS, "No buffer space available"))
        with pytest.raises(OSError) as caught:
            run(rt.events())
        assert caught.value.errno == errno.ENOBUFS


def test_sync_request_times_out() -> None:
    kernel = FakeKernel()  # never answers
    with route_socket(kernel) as rt, pytest.raises(TimeoutError):
        rt.addresses_sync(3, deadline=0.0)


def test_events_wait_in_the_loop_without_blocking_it() -> None:
    kernel = FakeKernel()

    async def main() -> tuple[list[nl.Message], int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, kernel.push, nl.encode_message(nl.RTM_NEWLINK, 0, 0, D0_PAYLOAD))
        with route_socket(kernel, nl.RTMGRP_LINK) as rt:
            events = await rt.events()
            fd = rt.fileno()
            # no reader is left behind on the socket
            assert not loop.remove_reader(fd)
        ticker.cancel()
        return events, ticks

    events, ticks = run(main())
    assert len(events) == 1 and ticks >= 5


# -- Vip's error messages ----------------------------------------------------------


@pytest.fixture
def vip_kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeKernel]]:
    """Vip's sockets answered by scripted kernels (one per socket, from the list)."""
    kernels: list[FakeKernel] = []

    def factory(groups: int = 0) -> nl.RouteSocket:
        return route_socket(kernels.pop(0), groups)

    monkeypatch.setattr(vip_module, "RouteSocket", factory)
    yield kernels


def test_vip_permission_denied_is_explained(vip_kernel: list[FakeKernel]) -> None:
    def respond(request: nl.Message) -> list[bytes]:
        if request.type == nl.RTM_GETLINK:
            return [reply(request, nl.RTM_NEWLINK, D0_PAYLOAD), ack(request)]
        return [ack(request, errno.EPERM)]

    vip = vip_module.Vip(ipaddress.IPv4Interface("10.9.9.50/24"), "d0")
    vip_kernel.append(FakeKernel(respond))
    with pytest.raises(EffectError) as caught:
        run(vip.claim())
    assert str(caught.value) == (
        "cannot add VIP 10.9.9.50/24 on d0: EPERM: permission denied; "
        "run the agent as root (CAP_NET_ADMIN)"
    )


def test_vip_claim_tolerates_eexist_and_release_every_prefix(vip_kernel: list[FakeKernel]) -> None:
    dump = [
        *ADDRESS_PAYLOADS,
        nl.ifaddr(3, prefixlen=32, local="10.9.9.50", address="10.9.9.50"),
        nl.ifaddr(4, prefixlen=24, local="10.9.9.50", address="10.9.9.50"),  # another interface
    ]

    def respond(request: nl.Message) -> list[bytes]:
        if request.type == nl.RTM_GETLINK:
            return [reply(request, nl.RTM_NEWLINK, D0_PAYLOAD), ack(request)]
        if request.type == nl.RTM_GETADDR:
            return [
                *(reply(request, nl.RTM_NEWADDR, p, nl.NLM_F_MULTI) for p in dump),
                done(request),
            ]
        if request.type == nl.RTM_NEWADDR:
            return [ack(request, errno.EEXIST)]
        return [ack(request, errno.EADDRNOTAVAIL if len(deleted) else 0)]

    vip = vip_module.Vip(ipaddress.IPv4Interface("10.9.9.50/24"), "d0")
    claim, release = FakeKernel(respond), FakeKernel(respond)
    deleted = release.requests
    vip_kernel.extend([claim, release, FakeKernel(respond)])
    run(vip.claim())  # EEXIST: already there, success
    run(vip.release())  # the second one already gone (EADDRNOTAVAIL): success
    removed = [nl.decode_address(r) for r in release.requests if r.type == nl.RTM_DELADDR]
    assert [(a.ip, a.prefixlen, a.index) for a in removed] == [
        ("10.9.9.50", 24, 3),
        ("10.9.9.50", 32, 3),
    ]
    assert vip.held()


def test_vip_other_errors_and_timeout(
    vip_kernel: list[FakeKernel], monkeypatch: pytest.MonkeyPatch
) -> None:
    vip = vip_module.Vip(ipaddress.IPv4Interface("10.9.9.50/24"), "d0")
    vip_kernel.append(FakeKernel(lambda request: [ack(request, errno.EINVAL)]))
    with pytest.raises(EffectError) as caught:
        run(vip.release())
    assert str(caught.value) == (
        "cannot remove VIP 10.9.9.50/24 on d0: netlink error EINVAL ([Errno 22] Invalid argument)"
    )
    vip_kernel.append(FakeKernel(lambda request: [b"\xff" * 20]))
    with pytest.raises(EffectError) as caught:
        vip.held()
    assert str(caught.value).startswith("cannot list the addresses of d0: netlink error EPROTO")
    assert "malformed netlink message" in str(caught.value)

    monkeypatch.setattr(vip_module, "NETLINK_TIMEOUT", 0.05)
    vip_kernel.extend([FakeKernel(), FakeKernel()])
    with pytest.raises(EffectError) as caught:
        run(vip.claim())
    assert str(caught.value) == (
        "cannot add VIP 10.9.9.50/24 on d0: netlink did not answer within 0.05s; "
        "check the host's load and kernel log"
    )
    with pytest.raises(EffectError) as caught:
        vip.held()
    assert "netlink did not answer within 0.05s" in str(caught.value)


def test_vip_missing_interface(vip_kernel: list[FakeKernel]) -> None:
    vip = vip_module.Vip(ipaddress.IPv4Interface("10.9.9.50/24"), "nope")
    vip_kernel.append(FakeKernel(lambda request: [ack(request, errno.ENODEV)]))
    missing = re.escape("interface 'nope' for VIP 10.9.9.50/24 does not exist")
    with pytest.raises(EffectError, match=missing):
        vip.held()


# -- LinkMonitor: ENOBUFS means read everything again -------------------------------


def test_link_monitor_redumps_after_lost_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events lost (ENOBUFS): the monitor opens a new socket and dumps again."""
    carrier = {"now": True}
    kernels: list[FakeKernel] = []

    def respond(request: nl.Message) -> list[bytes]:
        payload = D0_PAYLOAD if carrier["now"] else NO_CARRIER_PAYLOAD
        return [reply(request, nl.RTM_NEWLINK, payload, nl.NLM_F_MULTI), done(request)]

    def factory(groups: int = 0) -> nl.RouteSocket:
        assert groups == nl.RTMGRP_LINK
        kernels.append(FakeKernel(respond))
        return route_socket(kernels[-1], groups)

    monkeypatch.setattr(links_module, "RouteSocket", factory)
    monkeypatch.setattr(links_module, "BACKOFF_MIN", 0.01)
    reports: list[tuple[str, bool]] = []

    async def main() -> LinkMonitor:
        monitor = LinkMonitor({"a": "d0"}, lambda net, up: reports.append((net, up)))
        task = asyncio.create_task(monitor.run())
        while not reports:
            await asyncio.sleep(0.005)
        carrier["now"] = False  # the change whose event is lost
        kernels[0].push(OSError(errno.ENOBUFS, "No buffer space available"))
        while len(reports) < 2:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return monitor

    monitor = run(main())
    assert reports == [("a", True), ("a", False)]
    assert monitor.reconnects == 1
    assert all(k.closed for k in kernels)


def test_link_monitor_survives_a_malformed_event(monkeypatch: pytest.MonkeyPatch) -> None:
    kernels: list[FakeKernel] = []

    def respond(request: nl.Message) -> list[bytes]:
        return [reply(request, nl.RTM_NEWLINK, D0_PAYLOAD, nl.NLM_F_MULTI), done(request)]

    def factory(groups: int = 0) -> nl.RouteSocket:
        kernels.append(FakeKernel(respond))
        return route_socket(kernels[-1], groups)

    monkeypatch.setattr(links_module, "RouteSocket", factory)
    monkeypatch.setattr(links_module, "BACKOFF_MIN", 0.01)
    reports: list[tuple[str, bool]] = []

    async def main() -> LinkMonitor:
        monitor = LinkMonitor({"a": "d0"}, lambda net, up: reports.append((net, up)))
        task = asyncio.create_task(monitor.run())
        while not kernels or not reports:
            await asyncio.sleep(0.005)
        kernels[0].push(nl.encode_message(nl.RTM_NEWLINK, 0, 0, b"\0" * 4))  # ifinfomsg cut short
        while len(kernels) < 2:
            await asyncio.sleep(0.005)
        kernels[1].push(nl.encode_message(nl.RTM_NEWLINK, 0, 0, NO_CARRIER_PAYLOAD))
        while len(reports) < 2:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return monitor

    monitor = run(main())
    assert reports == [("a", True), ("a", False)]
    assert monitor.reconnects == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=4), st.booleans())
def test_hostile_datagrams_in_a_dump_raise_only_netlink_errors(
    garbage: list[bytes], as_answer: bool
) -> None:
    """Garbage (with our seq and port when ``as_answer``) before a good ending of the dump."""

    def respond(request: nl.Message) -> list[bytes]:
        datagrams = []
        for data in garbage:
            if as_answer and len(data) >= 16:  # dress it as a part of the answer
                header = HEADER.pack(*struct.unpack_from("=IHH", data), request.seq, PORT)
                data = header + data[16:]
            datagrams.append(data)
        return [*datagrams, done(request)]

    with route_socket(FakeKernel(respond)) as rt:
        try:
            links = run(rt.dump_links())
        except nl.NetlinkError:
            return
        assert all(isinstance(link, nl.Link) for link in links)


def test_a_dump_flagged_interrupted_only_on_its_done_is_read_again() -> None:
    """The kernel may set NLM_F_DUMP_INTR on NLMSG_DONE alone (the table changed between
    the last entry and the end): that dump is not complete either (found by the breaker)."""

    def respond(request: nl.Message) -> list[bytes]:
        entry = reply(request, nl.RTM_NEWLINK, D0_PAYLOAD, nl.NLM_F_MULTI)
        last = done(request)
        if len(kernel.requests) == 1:
            flagged = bytearray(last)
            flagged[6:8] = (nl.NLM_F_MULTI | nl.NLM_F_DUMP_INTR).to_bytes(2, "little")
            last = bytes(flagged)
        return [entry, last]

    kernel = FakeKernel(respond)
    with route_socket(kernel) as rt:
        links = run(rt.dump_links())
    assert len(kernel.requests) == 2 and [link.ifname for link in links] == ["d0"]
