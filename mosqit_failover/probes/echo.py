"""ICMP echo to one target on a fixed cadence (icmplib, raw socket, one socket per prober).

Probe k is sent at ``start + k * interval`` whatever happened to probe k-1: a
slow reply never shifts the schedule, and with a timeout longer than the
interval several probes are in flight at once. If the process was stalled
(SIGSTOP, a blocked loop) for a whole interval or more, the missed slots are
skipped, not sent in a burst.

Every probe ends in exactly one ``report(answered)``: ``True`` when its echo
reply arrived before its timeout, ``False`` otherwise, also when the send
failed (network unreachable, source address gone, ...) or an ICMP error came
back for it. Replies are matched by ICMP id (unique per prober in this
process) and sequence number. Replies that queued up in the socket while the
process was stalled are read before any probe is declared lost.

The socket is kept open for the prober's lifetime and re-created only when it
became unusable (a receive error, or a send error that is not a plain routing
failure); while it cannot be created (source address missing) every slot
still counts as a miss and creation is retried at the next slot.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import select
import time
from collections.abc import Callable
from typing import Any

from icmplib import (
    AsyncSocket,
    ICMPRequest,
    ICMPSocketError,
    ICMPv4Socket,
    TimeoutExceeded,
)

LOGGER = logging.getLogger("mosqit_failover.probes")

# 16 bytes: short enough that icmplib cannot mistake an echo *request* it sees
# on the raw socket (a peer pinging us) for an error quoting one of ours.
PAYLOAD = b"mosqit-failover!"
_ECHO_REPLY = 0
_ICMP_ERRORS = frozenset({3, 11, 12})  # unreachable, time exceeded, parameter problem
# Send errors that say "no way there now", not "this socket is broken".
_ROUTING_ERRNOS = frozenset(
    {
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.EADDRNOTAVAIL,
        errno.ENOBUFS,
        errno.EAGAIN,
        errno.EPERM,  # a firewall rejected the packet
    }
)

_ids_in_use: set[int] = set()
_id_counter = itertools.count()


def _allocate_id() -> int:
    """An ICMP id no other prober of this process uses (raw sockets see all replies)."""
    while True:
        ident = (os.getpid() + 0x9E37 * next(_id_counter)) & 0xFFFF
        if ident and ident not in _ids_in_use:
            _ids_in_use.add(ident)
            return ident


def _errno_of(exc: BaseException) -> int | None:
    """The OSError errno behind an icmplib exception (icmplib keeps only the text)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


class EchoProber:
    """Pings ``target`` from ``source`` every ``interval`` seconds; ``report(answered)`` each.

    ``timeout`` (default: ``interval``) is how long a probe may wait for its
    reply. Counters for status output: ``sent`` (probes attempted, including
    those whose send failed), ``answered``, ``last_rtt`` (seconds, of the last
    answered probe, or None), ``consecutive_misses``, ``errors`` (socket
    errors), ``skipped`` (slots skipped after a stall).
    """

    def __init__(
        self,
        name: str,
        source: str,
        target: str,
        interval: float,
        report: Callable[[bool], None],
        timeout: float | None = None,
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
        self._report = report
        self.sent = 0
        self.answered = 0
        self.last_rtt: float | None = None
        self.consecutive_misses = 0
        self.errors = 0
        self.skipped = 0
        self.ident = _allocate_id()
        self._seq = 0
        self._pending: dict[int, float] = {}  # sequence -> monotonic send time
        self._sock: Any = None  # icmplib.AsyncSocket while open
        self._failing: str | None = None  # current error streak, for rate-limited logs

    # -- the loop ---------------------------------------------------------

    async def run(self) -> None:
        """Probe until cancelled; closes the socket on the way out."""
        start = time.monotonic()
        slot = 0  # index of the next send
        try:
            while True:
                await self._drain()
                now = time.monotonic()
                self._expire(now)
                due = start + slot * self.interval
                if now >= due:
                    late = int((now - due) / self.interval)
                    if late:
                        self.skipped += late
                        slot += late
                        LOGGER.warning(
                            "echo %s: stalled %.2fs, skipping %d probe(s)",
                            self.name,
                            now - due,
                            late,
                        )
                    self._send(now)
                    slot += 1
                wake = start + slot * self.interval
                if self._pending:
                    wake = min(wake, min(self._pending.values()) + self.timeout)
                await self._receive(wake - time.monotonic())
        finally:
            self._close()
            # the in-flight probes die with the prober: no report for them
            self._pending.clear()

    def _send(self, now: float) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        self.sent += 1
        self._pending.pop(seq, None)
        sock = self._open()
        if sock is None:
            self._miss()
            return
        request = ICMPRequest(self.target, self.ident, seq, payload=PAYLOAD)
        try:
            sock.send(request)
        except ICMPSocketError as exc:
            code = _errno_of(exc)
            self._error(f"send to {self.target} failed: {exc}", reopen=code not in _ROUTING_ERRNOS)
            self._miss()
            return
        self._pending[seq] = now

    async def _receive(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for one ICMP packet and account for it."""
        if timeout <= 0:
            return
        sock = self._sock
        if sock is None:
            await asyncio.sleep(timeout)
            return
        try:
            reply = await sock.receive(None, timeout)
        except TimeoutExceeded:
            return
        except ICMPSocketError as exc:
            self._error(f"receive failed: {exc}", reopen=True)
            return
        self._handle(reply)

    async def _drain(self) -> None:
        """Read the packets already waiting in the socket (after a stall) before expiring."""
        while self._sock is not None:
            try:
                ready, _, _ = select.select([self._sock.sock], [], [], 0)
            except (OSError, ValueError) as exc:
                self._error(f"socket unusable: {exc}", reopen=True)
                return
            if not ready:
                return
            try:
                reply = await self._sock.receive(None, min(0.01, self.interval))
            except TimeoutExceeded:
                return  # readable, but nothing icmplib could parse
            except ICMPSocketError as exc:
                self._error(f"receive failed: {exc}", reopen=True)
                return
            self._handle(reply)

    def _handle(self, reply: Any) -> None:
        if reply.id != self.ident:
            return  # another prober's, or someone pinging us
        sent_at = self._pending.get(reply.sequence)
        if sent_at is None:
            return  # late (already counted as a miss) or duplicate
        if reply.type == _ECHO_REPLY:
            del self._pending[reply.sequence]
            self.last_rtt = time.monotonic() - sent_at
            self.answered += 1
            self.consecutive_misses = 0
            if self._failing is not None:
                LOGGER.info("echo %s: %s answers again", self.name, self.target)
                self._failing = None
            self._emit(True)
        elif reply.type in _ICMP_ERRORS:
            del self._pending[reply.sequence]
            LOGGER.debug(
                "echo %s: ICMP error type %d code %d for seq %d",
                self.name,
                reply.type,
                reply.code,
                reply.sequence,
            )
            self._miss()

    def _expire(self, now: float) -> None:
        for seq, sent_at in list(self._pending.items()):
            if now - sent_at >= self.timeout:
                del self._pending[seq]
                self._miss()

    # -- bookkeeping ------------------------------------------------------

    def _miss(self) -> None:
        self.consecutive_misses += 1
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
        if reopen:
            self._close()

    def _open(self) -> Any:
        if self._sock is not None and not self._sock.is_closed:
            return self._sock
        self._sock = None
        try:
            self._sock = AsyncSocket(ICMPv4Socket(address=self.source))
        except ICMPSocketError as exc:
            self._error(f"cannot open an ICMP socket on {self.source}: {exc}", reopen=False)
            return None
        return self._sock

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
