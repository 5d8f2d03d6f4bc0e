"""sd_notify to systemd: READY, STATUS in words, and the watchdog keep-alive.

Guarantee: every call is a no-op outside systemd (no NOTIFY_SOCKET), never
waits and never raises. A datagram systemd does not take at once (its queue
full while PID 1 is busy, say in a daemon-reload) is not lost for good: READY=1,
the latest STATUS and a keep-alive go again with the next call, and after
``RETRY`` once ``attach``-ed to the event loop, until systemd took them (a lost
READY=1 would leave the `Type=notify` unit starting until systemd kills it).
The datagram goes to $NOTIFY_SOCKET as ``sd_notify`` sends it (a path, or an
abstract socket written with a leading "@"), without python3-systemd.
"""

from __future__ import annotations

import asyncio
import os
import socket

STATUS_MAX = 1000  # PID 1 reads a notification into a buffer of a page at most


def _address(value: str) -> str | None:
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # an abstract socket
    return value if value.startswith("/") else None


def _status_text(status: str) -> str:
    """One line for STATUS=: systemd splits a notification at newlines."""
    flat = " ".join(status.replace("\0", " ").split())
    return flat[:STATUS_MAX]


class Notifier:
    RETRY = 0.5  # how soon what systemd did not take goes again (with ``attach``)

    def __init__(self) -> None:
        self._address = _address(os.environ.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._ready_pending = False  # READY=1 asked for, not taken by systemd yet
        self._watchdog_pending = False
        self._status = ""  # the latest STATUS asked for
        self._status_sent = ""  # the latest STATUS systemd took

    @property
    def pending(self) -> bool:
        """Something systemd has not taken yet."""
        return self._ready_pending or self._watchdog_pending or self._status != self._status_sent

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send again from ``loop`` after ``RETRY`` what systemd did not take, not only
        with the next call."""
        self._loop = loop

    def _send(self, text: str) -> bool:
        """True when systemd took the datagram (or there is no systemd to tell)."""
        if self._address is None:
            return True
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(text.encode("utf-8", "replace"), self._address)
            return True
        except (OSError, ValueError):
            return False

    def _catch_up(self) -> None:
        """Send what systemd must still hear: READY=1 (with the STATUS), a STATUS it has
        not taken, a keep-alive; and come back for what it did not take."""
        if self._ready_pending:
            if self._send(f"READY=1\nSTATUS={self._status}"):
                self._ready_pending = False
                self._status_sent = self._status
        elif self._status != self._status_sent and self._send(f"STATUS={self._status}"):
            self._status_sent = self._status
        if self._watchdog_pending and self._send("WATCHDOG=1"):
            self._watchdog_pending = False
        if self.pending and self._loop is not None and self._retry is None:
            self._retry = self._loop.call_later(self.RETRY, self._retried)

    def _retried(self) -> None:
        self._retry = None
        self._catch_up()

    def ready(self, status: str) -> None:
        self._status = _status_text(status)
        self._ready_pending = True
        self._catch_up()

    def status(self, status: str) -> None:
        self._status = _status_text(status)
        self._catch_up()

    def watchdog(self) -> None:
        self._watchdog_pending = True
        self._catch_up()

    def stopping(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._send("STOPPING=1")

    @staticmethod
    def watchdog_period() -> float | None:
        """How often to send WATCHDOG=1: half of WatchdogSec, or None when not asked for."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2_000_000
