"""How many reads a wake-up of the shared ICMP socket costs (issue 15).

Reading on to the empty socket's EAGAIN cost a system call and an exception on
every wake-up; a drain now stops once no prober waits for a reply. It still
reads at least one packet per call, so a stray packet never makes the poller
call it again and again without consuming anything.
"""

from __future__ import annotations

import asyncio
import struct

from mosqit_failover.probes.echo import ECHO_REPLY, PAYLOAD, EchoProber, _Channel


class QueuedSocket:
    """A non-blocking socket with the packets `queue` holds, counting reads."""

    def __init__(self, queue: list[bytes]) -> None:
        self.queue = queue
        self.reads = 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        if not self.queue:
            raise BlockingIOError
        return self.queue.pop(0)


def reply(ident: int, seq: int, payload: bytes = PAYLOAD) -> bytes:
    """An echo reply as a raw socket reads it: a 20-byte IPv4 header, then ICMP."""
    ip = bytes([0x45]) + bytes(19)
    return ip + struct.pack("!BBHHH", ECHO_REPLY, 0, 0, ident, seq) + payload


def channel_with(pending: list[int], queue: list[bytes]) -> tuple[_Channel, EchoProber, list[bool]]:
    loop = asyncio.new_event_loop()
    reports: list[bool] = []
    prober = EchoProber("peer-a", "10.0.0.1", "10.0.0.2", 0.1, reports.append)
    prober._loop = loop
    prober._pending = dict.fromkeys(pending, loop.time())
    channel = _Channel(loop, "10.0.0.1")
    channel.members[prober.ident] = prober
    channel._sock = QueuedSocket(queue)  # type: ignore[assignment]
    loop.close()
    return channel, prober, reports


def test_the_last_awaited_reply_ends_the_drain_without_another_read() -> None:
    channel, prober, reports = channel_with([1, 2], [])
    sock = channel._sock
    assert isinstance(sock, QueuedSocket)
    sock.queue += [reply(prober.ident, 1), reply(prober.ident, 2)]
    channel.drain()
    assert reports == [True, True]
    assert sock.reads == 2  # no third read for the EAGAIN


def test_a_reply_still_awaited_is_read_for_until_the_socket_is_empty() -> None:
    channel, prober, reports = channel_with([1, 2], [])
    sock = channel._sock
    assert isinstance(sock, QueuedSocket)
    sock.queue.append(reply(prober.ident, 1))
    channel.drain()
    assert reports == [True]
    assert sock.reads == 2  # the reply, then EAGAIN: probe 2 is still awaited


def test_a_stray_packet_is_read_even_when_nothing_is_awaited() -> None:
    channel, prober, reports = channel_with([], [])
    sock = channel._sock
    assert isinstance(sock, QueuedSocket)
    sock.queue += [reply(prober.ident, 7), reply(prober.ident, 8)]
    channel.drain()
    assert reports == []
    assert sock.reads == 1 and len(sock.queue) == 1  # one per call: the next call reads on
    channel.drain()
    assert sock.queue == []
