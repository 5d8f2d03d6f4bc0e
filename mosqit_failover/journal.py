"""Decision lines to the journal, with structured fields; stderr without a journal.

Each kind of decision has a fixed MESSAGE_ID (derived from its name), so
`journalctl MESSAGE_ID=...` finds every failover, and the catalog can explain it.
Fields: STATE, OLD_STATE, EPOCH, PEER_STATE, REASON, DECISION, NODE.

The entries go to journald's native socket in its own protocol (what
``sd_journal_send`` does), written here instead of through python3-systemd:
that binding, libsystemd and the uuid module were 1.8 MB of the agent's RSS
for a datagram of ``KEY=value`` lines (issue 15). Unlike libsystemd's send,
nothing here waits for journald.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Mapping

from mosqit_failover.actions import Decision
from mosqit_failover.kinds import DecisionKind
from mosqit_failover.terminal import terminal_safe

_NAMESPACE = bytes.fromhex("6d6f737169742d6661696c6f76657221")  # the ids' UUID namespace
LOGGER = logging.getLogger("mosqit_failover")
JOURNAL_SOCKET = "/run/systemd/journal/socket"
_SNDBUF = 8 * 1024 * 1024  # as sd_journal's own socket: most entries fit one datagram
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def message_id(kind: str) -> str:
    """The journal MESSAGE_ID of a kind of decision (32 hex digits), from its name:
    the name-based UUID (version 5, RFC 4122) of ``kind`` in our namespace."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + str(kind).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return digest.hex()


_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")  # journald: no leading digit, "_X" trusted


def encode_entry(fields: Mapping[str, object]) -> bytes:
    """One journal entry in journald's native protocol: ``KEY=value`` lines; a value
    with a newline as the key's line, its length (64-bit little endian), the bytes.

    A key journald would not take (lower case, ``=``, a newline, a leading ``_``)
    is left out rather than garbling the entry; a value is its ``str()``, bytes as
    they are.
    """
    parts = []
    for key, value in fields.items():
        if not isinstance(key, str) or not _FIELD_NAME.fullmatch(key):
            continue
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        if b"\n" in data:
            parts.append(key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key.encode() + b"=" + data + b"\n")
    return b"".join(parts)


def our_entry(text: str, priority: int, fields: Mapping[str, object] | None = None) -> bytes:
    """An entry of ours: MESSAGE, PRIORITY and SYSLOG_IDENTIFIER, then ``fields`` (which
    cannot override those three)."""
    entry: dict[str, object] = {
        "MESSAGE": text,
        "PRIORITY": priority,
        "SYSLOG_IDENTIFIER": "mosqit-failover",
    }
    entry.update((k, v) for k, v in (fields or {}).items() if k not in entry)
    return encode_entry(entry)


class JournalSocket:
    """Sends entries to journald's native socket, never waiting.

    Guarantees: ``send`` returns at once, True when journald took the entry and
    False when it cannot take it now (its queue full, journald away, the path
    not a datagram socket); it raises nothing. Each entry is sent to the path
    anew, so a journald whose socket was re-created gets the next entry. An entry
    too big for one datagram goes in a sealed memfd, as libsystemd sends it.
    """

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self._sock: socket.socket | None = None

    def send(self, payload: bytes) -> bool:
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                with contextlib.suppress(OSError):  # a smaller buffer: big entries in a memfd
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
                self._sock = sock
            try:
                self._sock.sendto(payload, self.path)
            except OSError as error:
                if error.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_memfd(self._sock, payload)
            return True
        except (OSError, ValueError):  # ValueError: a path with a NUL in it
            return False

    def _send_memfd(self, sock: socket.socket, payload: bytes) -> None:
        fd = os.memfd_create("mosqit-failover-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)  # journald takes only a sealed one
            # sendmsg, not socket.send_fds: that one drops the address (CPython 3.11)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
            sock.sendmsg([b""], rights, 0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _journal_available() -> bool:
    return os.path.exists(JOURNAL_SOCKET)


class DecisionLog:
    """Writes each decision once; never raises and never waits (a logging failure
    must not stop the agent, nor a busy journald its probes and heartbeats).

    Entries journald cannot take at once wait here, in order, up to ``BACKLOG`` of
    them, and go at the next entry or, once the agent ``attach``-ed its event loop,
    after ``RETRY`` seconds; beyond that the oldest are dropped and counted
    (``lost``), and the first entry journald takes after a loss is preceded by a
    line saying how many went missing. ``status()`` shows both counts.
    """

    BACKLOG = 1000
    RETRY = 0.1

    def __init__(self, use_journal: bool | None = None, socket_path: str = JOURNAL_SOCKET) -> None:
        self.lost = 0
        self._unreported = 0  # lost since the last line that said so
        self._backlog: collections.deque[bytes] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None
        enabled = use_journal if use_journal is not None else _journal_available()
        self._journal = JournalSocket(socket_path) if enabled else None

    @property
    def waiting(self) -> int:
        """Entries journald has not taken yet."""
        return len(self._backlog)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Retry what journald did not take from ``loop``, not only at the next entry."""
        self._loop = loop

    def write(self, decision: Decision) -> None:
        try:
            priority = DecisionKind(decision.kind).priority  # warnings operators must see
            self._emit(
                decision.text,
                priority,
                {
                    "MESSAGE_ID": message_id(decision.kind),
                    "NODE": decision.node,
                    "STATE": decision.role.value,
                    "OLD_STATE": decision.old_role.value,
                    "EPOCH": str(decision.epoch),
                    "PEER_STATE": decision.peer_role,
                    "REASON": decision.reason,
                    "DECISION": decision.kind,
                },
            )
        except Exception:  # a bug in a line must not stop the agent: say it, go on
            LOGGER.exception("could not log a decision")

    def note(self, text: str, priority: int = 6, **fields: str) -> None:
        """A line that is not a decision: probe trouble, dropped packets, effects."""
        try:
            self._emit(text, priority, fields)
        except Exception:
            LOGGER.exception("could not log a line")

    def _emit(self, text: str, priority: int, fields: Mapping[str, object]) -> None:
        if self._journal is None:  # run by hand: the line may reach a terminal
            with contextlib.suppress(OSError, ValueError):
                print(f"<{priority}>{terminal_safe(text)}", file=sys.stderr, flush=True)
            return
        self._backlog.append(our_entry(text, priority, fields))
        self.flush()
        while len(self._backlog) > self.BACKLOG:
            self._backlog.popleft()
            self.lost += 1
            self._unreported += 1

    def flush(self) -> None:
        """Hand journald what waits, oldest first, as far as it takes it now."""
        journal = self._journal
        if journal is None:
            return
        if self._unreported and self._backlog:
            gap = f"{self._unreported} journal line(s) lost: journald did not take them"
            if journal.send(our_entry(gap, 4)):
                self._unreported = 0
        while self._backlog and journal.send(self._backlog[0]):
            self._backlog.popleft()
        if self._backlog and self._loop is not None and self._retry is None:
            self._retry = self._loop.call_later(self.RETRY, self._retried)

    def _retried(self) -> None:
        self._retry = None
        self.flush()
