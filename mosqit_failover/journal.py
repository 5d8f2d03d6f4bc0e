"""Decision lines to the journal, with structured fields; stderr without a journal.

Each kind of decision has a fixed MESSAGE_ID (derived from its name), so
`journalctl MESSAGE_ID=...` finds every failover, and the catalog can explain it.
Fields: STATE, OLD_STATE, EPOCH, PEER_STATE, REASON, DECISION, NODE.

The entries go to journald's native socket in its own protocol (what
``sd_journal_send`` does), written here instead of through python3-systemd:
that binding, libsystemd and the uuid module were 2.3 MB of the agent's RSS
for a datagram of ``KEY=value`` lines (issue 15).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping

from mosqit_failover.actions import Decision
from mosqit_failover.kinds import DecisionKind

_NAMESPACE = bytes.fromhex("6d6f737169742d6661696c6f76657221")  # the ids' UUID namespace
LOGGER = logging.getLogger("mosqit_failover")
JOURNAL_SOCKET = "/run/systemd/journal/socket"
_SNDBUF = 8 * 1024 * 1024  # as sd_journal's own socket: a burst of lines never waits
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def message_id(kind: str) -> str:
    """The journal MESSAGE_ID of a kind of decision (32 hex digits), from its name:
    the name-based UUID (version 5, RFC 4122) of ``kind`` in our namespace."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + str(kind).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return digest.hex()


def encode_entry(fields: Mapping[str, str]) -> bytes:
    """One journal entry in journald's native protocol: ``KEY=value`` lines; a value
    with a newline as the key's line, its length (64-bit little endian), the bytes."""
    parts = []
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            parts.append(key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class JournalSocket:
    """Sends entries to journald's native socket.

    Guarantees: ``send`` waits at most ``SEND_WAIT`` for journald to take an entry
    (its queue holds only `net.unix.max_dgram_qlen` datagrams, 10 by default, so a
    burst of lines may wait for it to read); an entry too big for one datagram
    goes in a sealed memfd, as libsystemd sends it. Any failure (no journald, its
    queue still full, the socket gone) raises OSError and sends nothing of that
    entry; the next ``send`` tries again with a fresh socket.
    """

    SEND_WAIT = 0.05  # a stuck journald costs lines, never the agent's probes

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                with contextlib.suppress(OSError):  # a smaller buffer only waits sooner
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
                # connected, so that waiting for room in journald's queue is a poll()
                # that journald's next read ends, not a loop of EAGAIN
                sock.settimeout(self.SEND_WAIT)
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def send(self, fields: Mapping[str, str]) -> None:
        payload = encode_entry(fields)
        sock = self._socket()
        try:
            try:
                sock.send(payload)
            except OSError as error:
                if error.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_memfd(sock, payload)
        except OSError:
            self.close()
            raise

    @staticmethod
    def _send_memfd(sock: socket.socket, payload: bytes) -> None:
        fd = os.memfd_create("mosqit-failover-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)  # journald takes only a sealed one
            socket.send_fds(sock, [b""], [fd])
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _journal_available() -> bool:
    return os.path.exists(JOURNAL_SOCKET)


class DecisionLog:
    """Writes each decision once; never raises (a logging failure must not stop the agent).

    A line journald cannot take at once is lost (counted in ``lost``): waiting for
    a stuck journald would stop the agent's probes and heartbeats with it.
    """

    def __init__(self, use_journal: bool | None = None, socket_path: str = JOURNAL_SOCKET) -> None:
        self.lost = 0
        enabled = use_journal if use_journal is not None else _journal_available()
        self._journal = JournalSocket(socket_path) if enabled else None

    def write(self, decision: Decision) -> None:
        priority = DecisionKind(decision.kind).priority  # warnings for what operators must see
        if self._journal is None:
            self._stderr(priority, decision.text)
            return
        fields = {
            "MESSAGE": decision.text,
            "MESSAGE_ID": message_id(decision.kind),
            "PRIORITY": str(priority),
            "SYSLOG_IDENTIFIER": "mosqit-failover",
            "NODE": decision.node,
            "STATE": decision.role.value,
            "OLD_STATE": decision.old_role.value,
            "EPOCH": str(decision.epoch),
            "PEER_STATE": decision.peer_role,
            "REASON": decision.reason,
            "DECISION": decision.kind,
        }
        try:
            self._journal.send(fields)
        except OSError as error:
            self.lost += 1
            LOGGER.warning("could not log a decision (%s): %s", error, decision.text)

    def note(self, text: str, priority: int = 6, **fields: str) -> None:
        """A line that is not a decision: probe trouble, dropped packets, effects."""
        if self._journal is None:
            self._stderr(priority, text)
            return
        entry = {"MESSAGE": text, "PRIORITY": str(priority)}
        entry.update(SYSLOG_IDENTIFIER="mosqit-failover", **fields)
        try:
            self._journal.send(entry)
        except OSError:
            self.lost += 1

    @staticmethod
    def _stderr(priority: int, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"<{priority}>{text}", file=sys.stderr, flush=True)
