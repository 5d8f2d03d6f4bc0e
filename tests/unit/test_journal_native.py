"""The journal and sd_notify datagrams, sent to real Unix sockets this test binds.

journald's native protocol and sd_notify are written in the agent itself (no
python3-systemd); the lab checks the real journald and systemd take them (journal
lines, READY=1, the watchdog). Here: the exact bytes, the memfd for a big entry,
and that a missing or stuck receiver costs a counted line, never an exception.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
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
from mosqit_failover.notify import STATUS_MAX, Notifier


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
            data = os.pread(fd, os.fstat(fd).st_size, 0)
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
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)  # as JournalSocket asks
    granted = probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    probe.close()
    reason = "x" * (granted + 1)  # more than one datagram can carry
    log = DecisionLog(use_journal=True, socket_path=path)
    log.write(decision(reason))
    assert receive(sock)["REASON"] == reason
    assert log.lost == 0


def drain(sock: socket.socket) -> list[str]:
    """Every message queued in the fake journald's socket, in order."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(receive(sock)["MESSAGE"])
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(5)


def test_entries_journald_cannot_take_wait_in_order_and_go_later(
    journald: tuple[socket.socket, str],
) -> None:
    sock, path = journald
    log = DecisionLog(use_journal=True, socket_path=path)
    for n in range(30):  # nobody reads: the queue (net.unix.max_dgram_qlen) fills up
        log.note(f"line {n}")
    assert log.waiting > 0 and log.lost == 0
    got: list[str] = []
    while log.waiting:  # journald reads its queue, the next entries go
        got += drain(sock)
        log.flush()
    got += drain(sock)
    assert got == [f"line {n}" for n in range(30)]
    assert log.waiting == 0 and log.lost == 0


def test_with_the_loop_attached_what_waits_goes_without_a_next_line(
    journald: tuple[socket.socket, str],
) -> None:
    sock, path = journald

    async def scenario() -> list[str]:
        log = DecisionLog(use_journal=True, socket_path=path)
        log.attach(asyncio.get_running_loop())
        for n in range(20):
            log.note(f"line {n}")
        got = drain(sock)  # journald reads its queue; nothing else is logged
        for _ in range(50):
            await asyncio.sleep(DecisionLog.RETRY)
            got += drain(sock)
            if not log.waiting:
                break
        return got

    assert asyncio.run(scenario()) == [f"line {n}" for n in range(20)]


def test_a_full_backlog_drops_the_oldest_and_says_so_when_journald_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "journal.sock")
    monkeypatch.setattr(DecisionLog, "BACKLOG", 5)
    log = DecisionLog(use_journal=True, socket_path=path)
    log.write(decision())  # no journald: nothing raises
    for n in range(7):
        log.note(f"line {n}")
    assert (log.lost, log.waiting) == (3, 5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)  # journald (re)started, its socket made anew
        log.note("back")
        assert drain(sock) == [
            "3 journal line(s) lost: journald did not take them",
            "line 2",
            "line 3",
            "line 4",
            "line 5",
            "line 6",
            "back",
        ]
    assert (log.lost, log.waiting) == (3, 0)


def test_a_path_that_is_no_journal_socket_never_raises(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "missing", tmp_path / "file", tmp_path, "bad\0path"):
        log = DecisionLog(use_journal=True, socket_path=str(path))
        log.write(decision())
        log.note("x")
        assert log.waiting == 2


def test_keys_journald_would_refuse_are_left_out_and_values_become_text(
    journald: tuple[socket.socket, str],
) -> None:
    sock, path = journald
    log = DecisionLog(use_journal=True, socket_path=path)
    bad = {"lower": "x", "A=B": "y", "NL\nKEY": "z", "_TRUSTED": "w", "1X": "v", "GOOD": "\udcff"}
    log.note("text", priority=4, MESSAGE="not the text", PRIORITY="0", **bad)
    fields = receive(sock)
    assert fields == {
        "MESSAGE": "text",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "mosqit-failover",
        "GOOD": "?",
    }
    assert encode_entry({"N": 7, "B": b"raw\0bytes"}) == b"N=7\nB=raw\0bytes\n"


def test_the_fence_verb_line_gets_through_or_is_dropped_without_a_word(
    journald: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, path = journald
    assert JournalSocket(path).send(encode_entry({"MESSAGE": "one"}))
    assert receive(sock)["MESSAGE"] == "one"
    assert not JournalSocket(str(tmp_path / "missing")).send(b"MESSAGE=x\n")


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
        notifier.status("ACTIVE\nREADY=1\0 \udcff" + "x" * 5000)  # one line, bounded
        status = sock.recv(8192)
        assert status.startswith(b"STATUS=ACTIVE READY=1 ?xx") and b"\n" not in status
        assert len(status) == len("STATUS=") + STATUS_MAX
        assert not notifier.pending


def test_a_ready_systemd_did_not_take_goes_again_until_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        filler = Notifier()
        while filler._send("X=1"):  # PID 1 busy: its queue full
            pass

        async def scenario() -> None:
            notifier = Notifier()
            notifier.attach(asyncio.get_running_loop())
            notifier.ready("STANDBY")
            notifier.watchdog()
            assert notifier.pending
            sock.setblocking(False)
            seen: list[bytes] = []
            for _ in range(50):  # PID 1 reads again
                await asyncio.sleep(Notifier.RETRY / 5)
                with contextlib.suppress(BlockingIOError):
                    while True:
                        seen.append(sock.recv(4096))
                if not notifier.pending:
                    break
            assert b"READY=1\nSTATUS=STANDBY" in seen and b"WATCHDOG=1" in seen

        asyncio.run(scenario())


def test_notify_without_systemd_or_with_it_gone_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    Notifier().ready("x")  # outside systemd: a no-op
    for value in ("relative/path", "@", str(tmp_path / "missing"), str(tmp_path)):
        monkeypatch.setenv("NOTIFY_SOCKET", value)
        notifier = Notifier()
        notifier.ready("x")
        notifier.watchdog()  # no socket: no exception
        notifier.status("\udcff")
        notifier.stopping()
