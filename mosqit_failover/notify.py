"""sd_notify to systemd: READY, STATUS in words, and the watchdog keep-alive.

Guarantee: every call is a no-op outside systemd (no NOTIFY_SOCKET), waits
at most ``SEND_WAIT`` for systemd to take the datagram and never raises; a lost
notification is not worth stopping the agent for. The datagram goes to
$NOTIFY_SOCKET as ``sd_notify`` sends it (a path, or an abstract socket written
with a leading "@"), without python3-systemd.
"""

from __future__ import annotations

import os
import socket


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # an abstract socket
    return value if value.startswith("/") else None


class Notifier:
    SEND_WAIT = 0.1  # systemd's queue is short (net.unix.max_dgram_qlen); it reads at once

    def __init__(self) -> None:
        self._address = _address(os.environ.get("NOTIFY_SOCKET", ""))
        self._last_status = ""
        self._sock: socket.socket | None = None

    def _send(self, text: str) -> None:
        if self._address is None:
            return
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock = sock
                # connected: a wait for room in the queue is a poll() that systemd's
                # next read ends (unconnected, it would spin on EAGAIN)
                sock.settimeout(self.SEND_WAIT)
                sock.connect(self._address)
            self._sock.send(text.encode())
        except OSError:
            if self._sock is not None:
                self._sock.close()
                self._sock = None  # the next notification connects anew

    def ready(self, status: str) -> None:
        self._last_status = status
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    @staticmethod
    def watchdog_period() -> float | None:
        """How often to send WATCHDOG=1: half of WatchdogSec, or None when not asked for."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2_000_000
