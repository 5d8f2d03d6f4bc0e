"""The journal and sd_notify datagrams, sent to real Unix sockets this test binds.

journald's native protocol and sd_notify are written in the agent itself (no
python3-systemd); the lab checks the real journald and systemd take them (journal
lines, READY=1, the watchdog). Here: the exact bytes, the memfd for a big entry,
and that a missing or stuck receiver costs a counted line, never an exception.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosqit_failover.actions import Decision
from mosqit_failover.events import Role
from mosqit_failover.journal import DecisionLog, JournalSocket, encode_entry, message_id
from mosqit_failover.kinds import DecisionKind
from mosqit_failover.notify import Notifier


def decode_entry(data: bytes) -> dict[str, str]:
    """journald's side of the native protocol (src/journal/journald-native.c)."""
    fields: dict[str, str] = {}
    while data:
        line, sep, rest = data.partition(b"\n")
        assert sep, "every field ends with a newline"
        if b"=" in line:
            key, _, value = line.partition(b"=")
            data = rest
        else:
            key = line
            (size,) = struct.unpack("<Q", rest[:8])
            value, end = rest[8 : 8 + size], rest[8 + size : 9 + size]
            assert end == b"\n"
            data = rest[9 + size :]
        fields[key.decode()] = value.decode()
    return fields


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "journal.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    data, ancillary, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
    if not data:  # a big entry: a sealed memfd
        (level, kind, raw) = ancillary[0]
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
        fd = array.array("i", raw)[0]
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
            data = os.pread(fd, 1 << 24, 0)
        finally:
            os.close(fd)
    return decode_entry(data)


def decision(reason: str = "peer gone on both networks") -> Decision:
    return Decision(DecisionKind.PROMOTE, "beta", Role.STANDBY, Role.PROMOTING, 7, "ACTIVE", reason)


def test_message_ids_are_the_uuid5_of_the_kind_names() -> None:
    namespace = uuid.UUID("6d6f7371-6974-2d66-6169-6c6f76657221")
    for kind in DecisionKind:
        assert message_id(kind) == uuid.uuid5(namespace, str(kind)).hex


def test_a_decision_arrives_with_every_field(journald: tuple[socket.socket, str]) -> None:
    sock, path = journald
    log = DecisionLog(use_journal=True, socket_path=path)
    log.write(decision())
    assert receive(sock) == {
        "MESSAGE": decision().text,
        "MESSAGE_ID": message_id("promote"),
        "PRIORITY": str(DecisionKind.PROMOTE.priority),
        "SYSLOG_IDENTIFIER": "mosqit-failover",
        "NODE": "beta",
        "STATE": "PROMOTING",
        "OLD_STATE": "STANDBY",
        "EPOCH": "7",
        "PEER_STATE": "ACTIVE",
        "REASON": "peer gone on both networks",
        "DECISION": "promote",
    }
    assert log.lost == 0


def test_newlines_and_non_ascii_survive(journald: tuple[socket.socket, str]) -> None:
    sock, path = journald
    log = DecisionLog(use_journal=True, socket_path=path)
    log.note("first line\nsecond line: héhé = ok", priority=3, CORE_ERROR="KeyError")
    fields = receive(sock)
    assert fields["MESSAGE"] == "first line\nsecond line: héhé = ok"
    assert fields["PRIORITY"] == "3"
    assert fields["CORE_ERROR"] == "KeyError"
    assert b"MESSAGE\n" in encode_entry({"MESSAGE": "a\nb"})  # the length-prefixed form


def test_an_entry_too_big_for_a_datagram_goes_in_a_sealed_memfd(
    journald: tuple[socket.socket, str],
) -> None:
    sock, path = journald
    reason = "x" * (4 << 20)  # above any SO_SNDBUF the kernel grants
    log = DecisionLog(use_journal=True, socket_path=path)
    log.write(decision(reason))
    assert receive(sock)["REASON"] == reason
    assert log.lost == 0


def test_no_journald_costs_a_counted_line_and_the_next_one_gets_through(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.sock")
    log = DecisionLog(use_journal=True, socket_path=path)
    log.write(decision())  # nobody listens: no exception
    log.note("also lost")
    assert log.lost == 2
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)  # journald (re)started
        sock.settimeout(5)
        log.note("back")
        assert receive(sock)["MESSAGE"] == "back"
    assert log.lost == 2


def test_a_stuck_journald_loses_lines_instead_of_stopping_the_agent(
    journald: tuple[socket.socket, str],
) -> None:
    sock, path = journald
    log = DecisionLog(use_journal=True, socket_path=path)
    for n in range(40):  # nobody reads: the queue (net.unix.max_dgram_qlen) fills up
        log.note(f"line {n}")
    assert log.lost > 0
    first = receive(sock)
    assert first["MESSAGE"] == "line 0"


def test_journal_socket_close_is_idempotent(journald: tuple[socket.socket, str]) -> None:
    _sock, path = journald
    journal = JournalSocket(path)
    journal.send({"MESSAGE": "one"})
    journal.close()
    journal.close()


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_reaches_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, abstract: bool
) -> None:
    name = f"mosqit-test-notify-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name if abstract else name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name if abstract else name)
        notifier = Notifier()
        notifier.ready("STANDBY (auto)")
        assert sock.recv(4096) == b"READY=1\nSTATUS=STANDBY (auto)"
        notifier.status("STANDBY (auto)")  # unchanged: nothing sent
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_without_systemd_or_with_it_gone_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    Notifier().ready("x")  # outside systemd: a no-op
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    Notifier().ready("x")  # not an address systemd would give: ignored
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing"))
    notifier = Notifier()
    notifier.ready("x")
    notifier.watchdog()  # no socket: no exception
    notifier.stopping()
