"""sd_notify to systemd: READY, STATUS in words, and the watchdog keep-alive.

Guarantee: every call is a no-op outside systemd (no NOTIFY_SOCKET) and never
raises; a lost notification is not worth stopping the agent for.
"""

from __future__ import annotations

import os


class Notifier:
    def __init__(self) -> None:
        self._enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._last_status = ""

    def _send(self, text: str) -> None:
        if not self._enabled:
            return
        try:
            from systemd import daemon

            daemon.notify(text)
        except (ImportError, OSError):
            pass

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
