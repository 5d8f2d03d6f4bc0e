"""ICMP echo to one target on a fixed cadence (raw sockets shared per source address).

Probe k is sent at ``start + k * interval`` whatever happened to probe k-1: a
slow reply never shifts the schedule, and with a timeout longer than the
interval several probes are in flight at once. If the process was stalled
(SIGSTOP, a blocked loop) for a whole interval or more, the missed slots are
skipped, not sent in a burst.

With ``retries``, a probe that timed out is followed at once by another one,
up to ``retries`` in a row until one is answered (like corosync's token
retransmits): a streak of misses is then confirmed in about ``retries x
timeout`` rather than ``retries x interval``, and an idle, healthy link costs
nothing more. Retries do not shift the cadence. With ``retry_each_slot`` every
slot's probe has ``retries`` of its own: a target judged by the time since its
last answer (the switch: ``switch_timeout``) gets ``retries`` more chances in
every slot, not only in the first one after an answer, also where a slot's
retries run into the next slot (they shared one counter until 2026-12-04, and a
silent switch got 1-3 tries fewer than ``Timing.switch_tries`` counts).

With ``calm_every`` a prober that is answered probes less often (the switch: half
as often), and from its first miss at its full pace again, retries included, until
the next answer: the idle packets are fewer, a silent target gets nearly all its
tries.

Every probe ends in exactly one ``report(answered)``: ``True`` when its echo
reply arrived before its timeout, ``False`` otherwise, also when the send
failed (network unreachable, source address gone, ...) or an ICMP error came
back for it. Replies are matched by ICMP id (unique per prober in this
process) and sequence number, and an echo reply must carry our payload.
Replies that queued up in the socket while the process was stalled are read
before any probe is declared lost.

Cost at idle (the agent runs four probers at 10 Hz for ever):

- The probers of one event loop with the same source address share one raw
  socket (a :class:`_Channel`). An ``ICMP_FILTER`` on it lets the kernel drop
  every ICMP type but echo reply and the errors that can quote a probe, so the
  peer's echo requests to us never wake the agent; the socket's reader is
  registered once with the loop and reads every queued packet per wake-up.
  (Every raw ICMP socket gets a copy of every ICMP packet to its address, so
  one socket per prober multiplied the wake-ups.)
- The probers of one event loop with the same interval share one timer (a
  :class:`_Cadence`): the probes of a slot go out together, and the timeouts
  of probes sent together expire together; once every probe of a slot is
  answered the timer sleeps until the next slot. A prober that joins a running
  cadence sends its first probe at the cadence's next slot. While the nodes are
  calm, a slot due soon runs in the wake-up of the first node's heartbeat instead
  (:meth:`_Cadence.follow`): every other node then wakes once a slot.

The raw socket is icmplib's (``ICMPv4Socket``: its checks and errors when it
cannot be opened). The packets are not: icmplib's send builds a request
object, computes the checksum in Python and sets the TTL with a system call
for every probe, a third of a prober's cost at 10 Hz; here each prober keeps
its request's checksum without the sequence number (:class:`EchoRequests`)
and a probe is one ``struct.pack`` and one ``sendto``. icmplib's public
receive paths (a blocking ``recvfrom`` with a timeout, or one
``asyncio.wait_for`` task per packet) cannot be driven from a reader callback,
so received packets are parsed here too (:func:`parse_icmp`, an IPv4 header,
an ICMP header and, for errors, the quoted probe).

The socket is kept open while a prober uses it and re-created only when it
became unusable (a receive error, or a send error that says the socket itself
is broken, never one about a single target: the other probers share it);
while it cannot be created (source address missing) every slot still counts as
a miss and creation is retried at the next slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import math
import os
import socket
import struct
from collections.abc import Callable

from icmplib import ICMPSocketError, ICMPv4Socket

from mosqit_failover.config import FOLLOW_GRACE, FOLLOW_REACH

LOGGER = logging.getLogger("mosqit_failover.probes")

# 16 bytes: an echo reply must carry exactly this (someone else's ping that
# happens to use our id is not an answer to us).
PAYLOAD = b"mosqit-failover!"
ECHO_REPLY = 0
ECHO_REQUEST = 8
ICMP_ERRORS = frozenset({3, 11, 12})  # unreachable, time exceeded, parameter problem
SOL_RAW = 255  # socket.SOL_RAW is missing from Python's socket module
ICMP_FILTER = 1  # linux/icmp.h: a bitmask of the ICMP types the socket must NOT receive
FILTER_MASK = ~sum(1 << t for t in {ECHO_REPLY, *ICMP_ERRORS}) & 0xFFFFFFFF
_FOLLOW_MARGIN = 1e-6  # _Cadence.follow: a slot moved to now is due, whatever the rounding
_READ_BATCH = 64  # packets read per wake-up at most (a flood must not starve the loop)
_STALL_BATCH = 4096  # before expiring probes: everything that queued up (bounded anyway)
_RECV_SIZE = 1024
# Send errors that say "this socket is broken", not "no way to this target now".
# Anything else (unreachable, a blackhole or prohibit route's EINVAL and EACCES, a
# firewall's EPERM, a broadcast target's EACCES...) concerns the one target: closing
# the socket would make every other prober sharing it miss its replies too.
_SOCKET_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK, errno.EFAULT, errno.EDESTADDRREQ})
_ICMP_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, id, sequence

_ids_in_use: set[int] = set()
_id_counter = itertools.count()


def _allocate_id() -> int:
    """An ICMP id no other prober of this process uses (they share sockets)."""
    while True:
        ident = (os.getpid() + 0x9E37 * next(_id_counter)) & 0xFFFF
        if ident and ident not in _ids_in_use:
            _ids_in_use.add(ident)
            return ident


def _socket_of(icmp: ICMPv4Socket) -> socket.socket:
    """The Python socket under icmplib's: ``.sock`` from icmplib 3.0; icmplib 2.x
    (Debian 12 ships 2.1.1) keeps it in ``._sock`` only."""
    sock: socket.socket = getattr(icmp, "sock", None) or icmp._sock
    return sock


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071: the 16-bit words of ``data`` (zero-padded) added with end-around carry."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class EchoRequests:
    """The echo requests of one ICMP id: packed with the checksum of all but the
    sequence number computed once (RFC 1624's incremental update)."""

    def __init__(self, ident: int, payload: bytes = PAYLOAD) -> None:
        if not 0 <= ident <= 0xFFFF:
            raise ValueError(f"ICMP id {ident} outside 0..65535")
        self.ident = ident
        self.payload = payload
        self._partial = ones_complement_sum(
            _ICMP_HEADER.pack(ECHO_REQUEST, 0, 0, ident, 0) + payload
        )

    def packet(self, seq: int) -> bytes:
        """The ICMP header and payload of request ``seq`` (the kernel adds the IP header)."""
        total = self._partial + seq
        total = (total & 0xFFFF) + (total >> 16)
        checksum = ~total & 0xFFFF
        return _ICMP_HEADER.pack(ECHO_REQUEST, 0, checksum, self.ident, seq) + self.payload


def parse_icmp(packet: bytes) -> tuple[int, int, int, int, bytes] | None:
    """What a raw IPv4 ICMP socket read says about one of our probes, if anything.

    ``(type, code, id, sequence, detail)``: for an echo reply ``detail`` is its
    payload; for an ICMP error quoting an echo request (of ours or anyone's) it
    is the quoted request's destination address (4 bytes). Anything else (other
    types, errors about other protocols, truncated packets) is ``None``.
    """
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + 8:
        return None
    icmp_type, code, _, ident, seq = _ICMP_HEADER.unpack_from(packet, ihl)
    if icmp_type == ECHO_REPLY:
        return icmp_type, code, ident, seq, packet[ihl + 8 :]
    if icmp_type not in ICMP_ERRORS:
        return None
    inner = ihl + 8  # the quoted IP header of the packet that caused the error
    if len(packet) < inner + 20 or packet[inner] >> 4 != 4 or packet[inner + 9] != 1:
        return None
    inner_ihl = (packet[inner] & 0x0F) * 4
    quoted = inner + inner_ihl
    if inner_ihl < 20 or len(packet) < quoted + 8 or packet[quoted] != ECHO_REQUEST:
        return None
    _, _, _, ident, seq = _ICMP_HEADER.unpack_from(packet, quoted)
    return icmp_type, code, ident, seq, packet[inner + 16 : inner + 20]


class _Channel:
    """The raw ICMP socket of one source address, shared by the probers of one loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, source: str) -> None:
        self.loop = loop
        self.source = source
        self.members: dict[int, EchoProber] = {}  # ICMP id -> prober
        self.icmp: ICMPv4Socket | None = None
        self._sock: socket.socket | None = None  # icmp.sock, for the reads
        self.packets = 0  # packets read from the socket (ICMP_FILTER keeps this low)
        self._fd = -1

    def open(self, prober: EchoProber) -> ICMPv4Socket | None:
        """The socket, created if needed; None (the error told to ``prober``) if it cannot be."""
        if self.icmp is not None:
            return self.icmp
        try:
            icmp = ICMPv4Socket(address=self.source)
        except ICMPSocketError as exc:
            prober._error(f"cannot open an ICMP socket on {self.source}: {exc}", reopen=False)
            return None
        sock = _socket_of(icmp)
        try:
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", FILTER_MASK))
        except OSError as exc:  # not Linux: works, only with more wake-ups
            LOGGER.debug("ICMP_FILTER not available: %s", exc)
        try:
            sock.setblocking(False)
            self.loop.add_reader(sock.fileno(), self._readable)
        except (OSError, ValueError, RuntimeError) as exc:
            icmp.close()
            prober._error(f"cannot watch the ICMP socket on {self.source}: {exc}", reopen=False)
            return None
        self.icmp, self._sock, self._fd = icmp, sock, sock.fileno()
        return icmp

    def socket(self, prober: EchoProber) -> socket.socket | None:
        """The raw socket to send on (see :meth:`open`)."""
        return self._sock if self.open(prober) is not None else None

    def close(self) -> None:
        icmp, self.icmp, self._sock = self.icmp, None, None
        if icmp is None:
            return
        with contextlib.suppress(ValueError, RuntimeError):  # the loop is closing
            self.loop.remove_reader(self._fd)
        self._fd = -1
        icmp.close()

    def _readable(self) -> None:
        try:
            self.drain()
        except Exception:  # a reader callback that raises would be called again and again
            LOGGER.exception("echo: reading the ICMP socket on %s failed", self.source)
            self.close()

    def drain(self, limit: int = _READ_BATCH) -> None:
        """Read and dispatch the packets waiting in the socket (at most ``limit``).

        After the first packet it stops once no member waits for a reply: reading
        on to the empty socket's EAGAIN cost a system call and an exception on every
        wake-up (the poller reports anything still queued again at once, and each
        call reads at least one packet, so nothing stays queued for ever).
        """
        members = self.members.values()
        for i in range(limit):
            sock = self._sock
            if sock is None or (i and not any(m._pending for m in members)):
                return
            try:
                packet = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                for prober in list(self.members.values()):
                    prober._error(f"receive failed: {exc}", reopen=True)
                self.close()
                return
            self.packets += 1
            parsed = parse_icmp(packet)
            if parsed is None:
                continue
            member = self.members.get(parsed[2])
            if member is not None:
                member._handle(*parsed)


class _Cadence:
    """One timer for the probers of one loop with the same interval: send, expire, skip.

    Slots are ``start + k * interval``; the timer wakes only for a slot in which an
    active member probes (a prober probing every n-th slot, or switched off, costs
    no wake-up in the others) or a member has an ``on_slot`` hook, and for the
    timeouts of probes in flight.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.members: list[EchoProber] = []
        self.start = loop.time()
        self.slot = 0  # index of the next slot that may send (the last one sent + 1)
        self._planned: int | None = 0  # the slot the timer is armed for (None: no slot)
        self._hooks: list[Callable[[], None]] = []  # the members' on_slot, each once
        self._ticking = False
        self._last_slot_at = -math.inf  # when the last slot ran (follow keeps the pace)
        self._following = False  # the last slot ran in a heartbeat's wake-up (follow)
        self.followed = 0  # slots that follow() ran in another event's wake-up
        self._timer: asyncio.TimerHandle | None = loop.call_at(loop.time(), self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self, followed: bool = False) -> None:
        self._timer = None
        self._ticking = True
        try:
            self._step(followed)
        except Exception:  # never let the cadence die: log, and keep ticking
            LOGGER.exception("echo: probe cadence step failed")
        finally:
            self._ticking = False
        if self.members:
            self._schedule()

    def _step(self, followed: bool = False) -> None:
        members = list(self.members)
        for channel in {id(m._channel): m._channel for m in members if m._pending}.values():
            if channel is not None:
                channel.drain(_STALL_BATCH)  # replies queued in a stall count before expiring
        now = self.loop.time()
        for prober in members:
            prober._expire(now)
        if self._planned is None:
            return
        due = self.start + self._planned * self.interval
        if now < due:
            return
        # later than the slot it was armed for by whole intervals: the process stalled
        late = int((now - due) / self.interval)
        slot = self._planned + late
        if late:
            for prober in members:
                prober.skipped += late
                LOGGER.warning(
                    "echo %s: stalled %.2fs, skipping %d probe(s)", prober.name, now - due, late
                )
        for prober in members:
            if prober.active and slot % prober.slot_every == 0:
                prober._send_slot(now)
        self.slot = slot + 1
        self._last_slot_at = now
        self._following = followed
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                LOGGER.exception("echo: a slot hook failed")

    def _plan(self) -> int | None:
        """The next slot, not before now, in which an active member probes."""
        everies = {m.slot_every for m in self.members if m.active}
        if self._hooks:
            everies.add(1)
        if not everies:
            return None
        now_slot = math.ceil((self.loop.time() - self.start) / self.interval)
        first = max(self.slot, now_slot)
        planned = self._planned
        if planned is not None and self.slot <= planned < first:
            # due, and its timer not run yet (a reader ran first in this pass of the
            # loop): the slot is kept, or it would be lost without being counted
            first = planned
        return min(first + (-first) % every for every in everies)

    def _schedule(self, replan: bool = True) -> None:
        """Arm the timer for the planned slot and the timeouts in flight; ``replan``:
        plan the slot anew first (after a step, or a member changed; a reply only
        drops its timeout, so a slot missed in a stall is still seen as late)."""
        if replan:
            self._planned = self._plan()
        wake = math.inf
        if self._planned is not None:
            wake = self.start + self._planned * self.interval
            wake += self._grace  # the heartbeat followed may come a little late
        for prober in self.members:
            for sent_at in prober._pending.values():
                wake = min(wake, sent_at + prober.timeout)
        if self._timer is not None:
            if self._timer.when() == wake:
                return
            self._timer.cancel()
            self._timer = None
        if not math.isinf(wake):
            self._timer = self.loop.call_at(wake, self._tick)

    def follow(self) -> None:
        """The first node's calm heartbeat woke the agent: run the next slot in this
        wake-up if it is due soon (or a little overdue), else bring it toward now.

        Two nodes whose slots lie apart each wake twice a slot (their own slot, the
        other's heartbeat); once one node's slot follows the other's heartbeat, it wakes
        once. In the lab that node's idle CPU fell by a third at the standard timing
        (docs/timing.md, "Following the peer's heartbeat").

        The caller calls this only for the heartbeats of one node, the first in
        `cluster.order` (and never on that node), and only while calm: with every
        node following every other, two nodes far apart (a round trip of a fifth of
        an interval and more) or a ring of four to eight could pull each other's slots
        forward for ever, at 1.25 times the pace.

        The next slot runs now if that leaves 1 - FOLLOW_REACH intervals since the slot
        before it, else it moves as far toward now as that allows: from any phase the
        slots reach the heartbeats in five intervals at most. While following, the
        slot's timer waits FOLLOW_GRACE intervals past the slot for the heartbeat, and
        one that comes in that time runs it (the slots then move later by as much). So
        the slots keep the heartbeats' pace, between 1 - FOLLOW_REACH and
        1 + FOLLOW_GRACE intervals apart, and the heartbeat, which goes out with a slot
        up to a quarter period early (Core._beat_when_due), goes with it.
        """
        if self._ticking or self._planned is None:
            return
        now = self.loop.time()
        due = self.start + self._planned * self.interval
        if due - now < -self._grace:
            return
        reach = FOLLOW_REACH * self.interval
        moved = max(now, due - reach, self._last_slot_at + self.interval - reach)
        if moved > now:
            if moved < due:
                self.start -= due - moved
                self._schedule(replan=False)
            return
        self.start -= due - now + _FOLLOW_MARGIN  # due now, not a rounding error after it
        if self._timer is not None:  # armed for the slot's old time: it would wake us
            self._timer.cancel()
        self.followed += 1
        self._tick(followed=True)  # in this wake-up (it arms the timer for the next slot)

    @property
    def _grace(self) -> float:
        """How long past a slot its timer waits for the heartbeat it follows."""
        return FOLLOW_GRACE * self.interval if self._following else 0.0

    def answered(self) -> None:
        """A reply came: once every probe of the slot is answered, sleep until the next slot.

        Without this, each slot cost a second wake-up at its probes' timeout.
        """
        if not self._ticking and not any(m._pending for m in self.members):
            self._schedule(replan=False)

    def changed(self) -> None:
        """A member joined or left, was switched on or off, or sent a probe outside a
        slot: arm the timer anew (inside a tick it is armed after the step anyway)."""
        hooks = {id(m.on_slot): m.on_slot for m in self.members if m.on_slot is not None}
        self._hooks = list(hooks.values())
        if not self._ticking:
            self._schedule()


_channels: dict[tuple[asyncio.AbstractEventLoop, str], _Channel] = {}
_cadences: dict[tuple[asyncio.AbstractEventLoop, float], _Cadence] = {}


class EchoProber:
    """Pings ``target`` from ``source`` every ``interval`` seconds; ``report(answered)`` each.

    ``timeout`` (default: ``interval``) is how long a probe may wait for its
    reply; ``retries`` how many probes may follow a timed-out one at once
    (see the module docstring); ``every``: probe only every n-th slot of the
    interval (a slower probe that still shares the cadence's wake-ups);
    ``calm_every``: while the last probe was answered, probe only every
    calm_every-th slot (a multiple of ``every`` is best: the calm slots are then
    slots of ``every`` too); from the first miss until the next answer, every
    ``every``-th slot again, so that a target that went silent gets its full
    number of tries (a calm target costs fewer packets, a silent one as many);
    ``on_slot``: called once per slot of the cadence, after its probes went out,
    whether this prober probes in it or not (the agent's heartbeat shares the
    wake-up: one hook per distinct callable); ``retry_each_slot``: the retries
    start anew with every slot's probe (see the module docstring).

    Counters for status output: ``sent`` (probes attempted, including those
    whose send failed), ``answered``, ``last_rtt`` (seconds, of the last
    answered probe, or None), ``consecutive_misses``, ``errors`` (socket
    errors), ``skipped`` (slots skipped after a stall), ``retried`` (probes
    sent at once after a timeout), ``active`` (see :meth:`set_active`).
    """

    def __init__(
        self,
        name: str,
        source: str,
        target: str,
        interval: float,
        report: Callable[[bool], None],
        timeout: float | None = None,
        retries: int = 0,
        every: int = 1,
        on_slot: Callable[[], None] | None = None,
        retry_each_slot: bool = False,
        calm_every: int | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.name = name
        self.source = source
        self.target = target
        self.interval = float(interval)
        self.timeout = self.interval if timeout is None else float(timeout)
        self.retries = max(0, retries)
        self.every = max(1, every)
        self.calm_every = self.every if calm_every is None else max(self.every, calm_every)
        self._calm = False  # the last probe was answered: every calm_every-th slot
        self.on_slot = on_slot
        self.retry_each_slot = retry_each_slot
        self._report = report
        self.sent = 0
        self.answered = 0
        self.last_rtt: float | None = None
        self.consecutive_misses = 0
        self.errors = 0
        self.skipped = 0
        self.retried = 0
        self._streak_retries = 0  # retries sent since the last answer
        self._retries_left: dict[int, int] = {}  # retry_each_slot: sequence -> its own
        self.active = True  # probing every slot; off: sends nothing (set_active)
        self.ident = _allocate_id()
        self._requests = EchoRequests(self.ident)
        try:
            self._target_bytes = socket.inet_aton(target)
        except OSError:
            self._target_bytes = b""  # a name, not an address: errors are matched by id only
        self._seq = 0
        self._pending: dict[int, float] = {}  # sequence -> loop time of the send
        self._channel: _Channel | None = None
        self._cadence: _Cadence | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failing: str | None = None  # current error streak, for rate-limited logs

    @property
    def slot_every(self) -> int:
        """Probe in every this many slots now: ``calm_every`` while the last probe was
        answered and none is in flight, ``every`` otherwise. A probe still unanswered
        at a slot counts as a miss there: where its timeout ends on a slot, the timer
        jitter decides whether the expiry or the slot runs first, and a calm prober
        skipped that slot (two tries fewer for a switch that went silent)."""
        return self.calm_every if self._calm and not self._pending else self.every

    # -- the loop ---------------------------------------------------------

    async def run(self) -> None:
        """Probe until cancelled; closes the socket on the way out if no one else uses it."""
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            raise RuntimeError(f"echo {self.name}: run() is already running")
        self._loop = loop
        channel = _channels.get((loop, self.source))
        if channel is None:
            channel = _channels[(loop, self.source)] = _Channel(loop, self.source)
        channel.members[self.ident] = self
        self._channel = channel
        cadence = _cadences.get((loop, self.interval))
        if cadence is None:
            cadence = _cadences[(loop, self.interval)] = _Cadence(loop, self.interval)
        cadence.members.append(self)
        self._cadence = cadence
        cadence.changed()
        try:
            await loop.create_future()  # the cadence and the channel do the work
        finally:
            cadence.members.remove(self)
            if cadence.members:
                cadence.changed()
            else:
                cadence.stop()
                if _cadences.get((loop, self.interval)) is cadence:
                    del _cadences[(loop, self.interval)]
            del channel.members[self.ident]
            if not channel.members:
                channel.close()
                if _channels.get((loop, self.source)) is channel:
                    del _channels[(loop, self.source)]
            self._channel = None
            self._cadence = None
            self._loop = None
            # the in-flight probes die with the prober: no report for them
            self._pending.clear()
            self._retries_left.clear()

    def set_active(self, active: bool) -> None:
        """Probe every slot (True, with one probe at once unless one is in flight, also
        when it was on already) or not at all (False: the probes in flight still end in
        their one report each).

        Echo on demand: the core turns a peer's probes off while its heartbeats
        arrive on time, and on when one is late, when it must not wait for a slot.
        """
        changed, self.active = active != self.active, active
        cadence, loop = self._cadence, self._loop
        if cadence is None or loop is None:
            return
        if active:
            # from the loop, not from inside the caller (the core's feed): a send that
            # fails reports its miss at once, which must not nest in that feed
            loop.call_soon(self._send_between_slots)
        if changed:
            cadence.changed()

    def follow(self) -> None:
        """The agent is awake anyway (the first node's calm heartbeat): let this
        prober's cadence run its next slot in this wake-up if it is due soon
        (:meth:`_Cadence.follow`)."""
        if self._cadence is not None:
            self._cadence.follow()

    @property
    def slots_followed(self) -> int:
        """Slots of this prober's cadence that :meth:`follow` ran (status)."""
        return self._cadence.followed if self._cadence is not None else 0

    def _send_between_slots(self) -> None:
        """The probe at once of :meth:`set_active`, unless one is in flight (or it was
        switched off meanwhile)."""
        cadence, loop = self._cadence, self._loop
        if not self.active or self._pending or cadence is None or loop is None:
            return
        self._send(loop.time())
        cadence.changed()

    def _send_slot(self, now: float) -> None:
        """This slot's probe; with ``retry_each_slot`` it has all its retries."""
        self._send(now)

    def _send(self, now: float, retries_left: int | None = None) -> None:
        """One probe; with ``retry_each_slot`` it may be followed by ``retries_left``
        more (default: ``retries``, a slot's probe)."""
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        self.sent += 1
        self._pending.pop(seq, None)
        self._retries_left.pop(seq, None)
        channel = self._channel
        sock = channel.socket(self) if channel is not None else None
        if sock is None:
            self._miss()
            return
        try:
            sock.sendto(self._requests.packet(seq), (self.target, 0))
        except OSError as exc:
            why = exc.strerror or str(exc)
            self._error(f"send to {self.target} failed: {why}", reopen=exc.errno in _SOCKET_ERRNOS)
            self._miss()
            return
        except Exception as exc:  # e.g. a target that is no address: still exactly one report
            self._error(f"send to {self.target} failed: {exc!r}", reopen=False)
            self._miss()
            return
        self._pending[seq] = now
        if self.retry_each_slot:
            self._retries_left[seq] = self.retries if retries_left is None else retries_left

    def _handle(self, icmp_type: int, code: int, _ident: int, seq: int, detail: bytes) -> None:
        """One packet with our id, parsed by :func:`parse_icmp`."""
        sent_at = self._pending.get(seq)
        if sent_at is None:
            return  # late (already counted as a miss) or duplicate
        if icmp_type == ECHO_REPLY:
            if detail != PAYLOAD:
                return  # someone else's ping with the same id
            del self._pending[seq]
            self._retries_left.pop(seq, None)
            assert self._loop is not None
            self.last_rtt = self._loop.time() - sent_at
            self.answered += 1
            self.consecutive_misses = 0
            self._streak_retries = 0
            self._calm = True  # a slot planned at the faster pace: one wake-up, nothing sent
            if self._failing is not None:
                LOGGER.info("echo %s: %s answers again", self.name, self.target)
                self._failing = None
            self._emit(True)
            if not self._pending and self._cadence is not None:
                self._cadence.answered()
        else:
            if self._target_bytes and detail != self._target_bytes:
                return  # quotes someone else's echo request to another host
            del self._pending[seq]
            self._retries_left.pop(seq, None)  # an error is a miss, not retried
            LOGGER.debug(
                "echo %s: ICMP error type %d code %d for seq %d", self.name, icmp_type, code, seq
            )
            self._miss()

    def _expire(self, now: float) -> None:
        for seq, sent_at in list(self._pending.items()):
            if now - sent_at >= self.timeout:
                del self._pending[seq]
                left = self._retries_left.pop(seq, None)
                self._miss()
                if left is not None:  # retry_each_slot: this probe's own retries
                    if left > 0:
                        self.retried += 1
                        self._send(now, left - 1)
                elif self._streak_retries < self.retries:
                    self._streak_retries += 1
                    self.retried += 1
                    self._send(now)

    # -- bookkeeping ------------------------------------------------------

    def _miss(self) -> None:
        self.consecutive_misses += 1
        if self._calm:
            self._calm = False
            if self._cadence is not None and self.calm_every != self.every:
                self._cadence.changed()  # its next slot may come sooner now
        self._emit(False)

    def _emit(self, answered: bool) -> None:
        try:
            self._report(answered)
        except Exception:
            LOGGER.exception("echo %s: report callback failed", self.name)

    def _error(self, what: str, reopen: bool) -> None:
        self.errors += 1
        if self._failing != what:
            LOGGER.warning(
                "echo %s: %s%s", self.name, what, " (re-opening the socket)" if reopen else ""
            )
            self._failing = what
        if reopen and self._channel is not None:
            self._channel.close()
