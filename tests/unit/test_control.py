"""The control socket's directory: created 0755 when missing, never chmod-ed when not ours,
refused when shared (world-writable, /run, /tmp); nothing but an old socket is removed."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest

from mosqit_failover.control import (
    ControlError,
    ControlServer,
    ControlSocketError,
    UnreadableReply,
    ask,
    socket_path_problem,
)
from mosqit_failover.effects import EffectError
from tests.unit.fake_socket import answering, answering_forever


def handler(request: dict[str, object]) -> dict[str, object]:
    return {"ok": True}


async def start_and_close(path: Path) -> int:
    """Start a server on `path`, return the socket's mode, and close it."""
    server = ControlServer(path, handler)
    await server.start()
    try:
        return stat.S_IMODE(os.lstat(path).st_mode)
    finally:
        await server.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_missing_directory_is_created_0755_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"
    old = os.umask(0o077)
    try:
        assert asyncio.run(start_and_close(path)) == 0o600
    finally:
        os.umask(old)
    assert mode(path.parent) == 0o755
    assert not path.exists()


@pytest.mark.parametrize("existing", [0o711, 0o750, 0o755, 0o700])
def test_an_existing_directory_keeps_its_mode(tmp_path: Path, existing: int) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    directory.chmod(existing)
    assert asyncio.run(start_and_close(directory / "control.sock")) == 0o600
    assert mode(directory) == existing


@pytest.mark.parametrize("shared", [0o777, 0o1777, 0o1733])
def test_a_world_writable_directory_is_refused_and_left_alone(tmp_path: Path, shared: int) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(shared)
    path = directory / "control.sock"
    with pytest.raises(ControlSocketError) as caught:
        asyncio.run(start_and_close(path))
    assert str(caught.value) == (
        f"cluster.control_socket = '{path}': {directory} is writable by every user "
        f"(mode {shared:04o}); give it a directory of its own: "
        'control_socket = "/run/mosqit-failover/control.sock"'
    )
    assert stat.S_IMODE(directory.stat().st_mode) == shared
    assert not path.exists()


def test_a_symlink_to_a_shared_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (tmp_path / "run").symlink_to(shared)
    with pytest.raises(ControlSocketError, match="is writable by every user"):
        asyncio.run(start_and_close(tmp_path / "run" / "control.sock"))
    assert mode(shared) == 0o1777


def test_a_file_at_the_socket_path_is_refused_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("keep me")
    with pytest.raises(ControlSocketError, match="exists and is not a socket"):
        asyncio.run(start_and_close(path))
    assert path.read_text() == "keep me"


def test_an_old_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(str(path))
    old.close()  # a socket file nobody listens on: a stopped agent's
    assert asyncio.run(start_and_close(path)) == 0o600


def test_a_directory_that_cannot_be_made_is_an_error_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "run" / "control.sock"
    with pytest.raises(ControlSocketError, match=r"^cluster.control_socket = .*: cannot listen"):
        asyncio.run(start_and_close(path))


def test_a_start_failure_stops_the_agent_like_other_effect_errors() -> None:
    """cli's `agent` turns an EffectError into one 'cannot start: ...' line."""
    assert issubclass(ControlSocketError, EffectError)


@pytest.mark.parametrize(
    "path",
    [
        "/tmp/control.sock",
        "/run/control.sock",
        "/var/run/control.sock",
        "/var/tmp/x.sock",
        "/dev/shm/x.sock",
        "/x.sock",
        "/run/lock/../control.sock",
    ],
)
def test_a_socket_straight_in_a_shared_directory_is_refused_before_anything(path: str) -> None:
    problem = socket_path_problem(path)
    assert problem is not None and "is shared by every user" in problem
    with pytest.raises(ControlSocketError, match=r"cluster.control_socket = .* is shared"):
        asyncio.run(start_and_close(Path(path)))


@pytest.mark.parametrize("path", ["/run/mosqit-failover/control.sock", "/srv/ha/control.sock"])
def test_a_socket_in_its_own_directory_is_fine(path: str) -> None:
    assert socket_path_problem(path) is None


def test_a_reply_that_is_not_a_json_object_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    with answering(path, b"[1, 2]\n"), pytest.raises(UnreadableReply) as caught:
        ask(path, {"command": "status"})
    assert str(caught.value) == (
        f"the agent at {path} gave an unreadable reply: a JSON array, not an object; "
        "is it another program or another version?"
    )


def test_an_endless_reply_is_cut_off_unread(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    with answering_forever(path), pytest.raises(UnreadableReply, match="longer than 4 MiB"):
        ask(path, {"command": "status"}, timeout=5)


def test_a_connection_closed_without_a_reply_is_no_unreadable_reply(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    closed = pytest.raises(ControlError, match="closed the connection without a reply")
    with answering(path, b""), closed as caught:
        ask(path, {"command": "status"})
    assert not isinstance(caught.value, UnreadableReply)


def test_a_regular_file_at_the_socket_path_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("")
    with pytest.raises(ControlError, match=f"{path} is not a socket: is it the agent's"):
        ask(path, {"command": "status"})


def test_a_socket_deleted_by_hand_is_listened_on_again_by_restore(tmp_path: Path) -> None:
    """Deleted by hand, the CLI and the Nagios check said "is the agent running?" until a
    restart, and maintenance could not be set (a helper's finding); SIGHUP restores it."""
    path = tmp_path / "run" / "control.sock"

    async def main() -> tuple[bool, bool, dict[str, object]]:
        server = ControlServer(path, handler)
        await server.start()
        try:
            kept = await server.restore()  # still there: nothing to do
            path.unlink()
            again = await server.restore()
            reply = await asyncio.to_thread(ask, path, {"command": "status"})
            return kept, again, reply
        finally:
            await server.close()

    kept, again, reply = asyncio.run(main())
    assert (kept, again, reply) == (False, True, {"ok": True})
    assert not path.exists()
