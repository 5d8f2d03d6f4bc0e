"""The local control socket: a unix stream socket, root only, one JSON line each way.

Requests: {"command": "status"} or {"command": one of the operator commands}.
Replies: {"ok": true, ...} or {"ok": false, "error": "..."}. The server never
trusts the request: bad JSON, unknown commands and oversized lines get an
error reply and change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mosqit_failover.deadlines import within
from mosqit_failover.effects import EffectError

MAX_REQUEST = 4096
Handler = Callable[[dict[str, Any]], dict[str, Any]]
DIR_MODE = 0o755  # of the socket's directory when the agent creates it; the socket is 0600
# Directories anyone may create files in: another user could put a socket of
# their own where `mosqit-failover status` or a switchover goes.
SHARED_DIRS = frozenset(
    {"/", "/dev", "/dev/shm", "/run", "/run/lock", "/run/user", "/tmp", "/var/lock", "/var/run"}
    | {"/var/tmp"}
)
SOCKET_FIX = 'give it a directory of its own: control_socket = "/run/mosqit-failover/control.sock"'


class ControlError(Exception):
    """The agent could not be asked; the message says why and what to do."""


class ControlSocketError(EffectError):
    """The control socket cannot be set up safely (the agent does not start)."""


def socket_path_problem(path: str) -> str | None:
    """What is wrong with `path` as cluster.control_socket, from its text alone, or None."""
    if not path.startswith("/"):
        return 'must be an absolute path, like "/run/mosqit-failover/control.sock"'
    directory = posixpath.dirname(posixpath.normpath(path))
    if directory in SHARED_DIRS:
        return f"{directory} is shared by every user; {SOCKET_FIX}"
    length = len(os.fsencode(path))
    if length > SOCKET_PATH_MAX:
        # the kernel's sockaddr_un holds 108 bytes with the NUL: the agent could not listen
        return (
            f"is {length} bytes long, and a unix socket's path can be at most "
            f'{SOCKET_PATH_MAX}; use a shorter one, like "/run/mosqit-failover/control.sock"'
        )
    return None


SOCKET_PATH_MAX = 107


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self._path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._inode = 0  # of the socket file this server listens on

    async def start(self) -> None:
        """Listen on the socket: its directory is made (0755) only if missing, never chmod-ed.

        Raises ControlSocketError naming cluster.control_socket and the fix.
        """
        where = f"cluster.control_socket = {str(self._path)!r}"
        problem = socket_path_problem(str(self._path))
        if problem:
            raise ControlSocketError(f"{where}: {problem}")
        try:
            self._prepare_directory()
            self._remove_stale_socket()
            old_umask = os.umask(0o177)
            try:
                self._server = await asyncio.start_unix_server(
                    self._serve, path=str(self._path), limit=MAX_REQUEST
                )
            finally:
                os.umask(old_umask)
            self._inode = os.lstat(self._path).st_ino
        except ControlSocketError as error:
            raise ControlSocketError(f"{where}: {error}") from None
        except OSError as error:
            raise ControlSocketError(
                f"{where}: cannot listen there ({error.strerror or error}); "
                "check the path, or that no other agent uses it"
            ) from None

    def _prepare_directory(self) -> None:
        directory = self._path.parent
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            directory.mkdir(mode=DIR_MODE)
            os.chmod(directory, DIR_MODE)  # ours: set its mode whatever the umask
        except FileExistsError:
            pass  # somebody's directory: checked, never chmod-ed or chown-ed
        real = os.path.realpath(directory)
        st = os.stat(real)
        if not stat.S_ISDIR(st.st_mode):
            raise ControlSocketError(f"{directory} is not a directory; {SOCKET_FIX}")
        if real in SHARED_DIRS or st.st_mode & 0o002:
            raise ControlSocketError(
                f"{directory} is writable by every user (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"{SOCKET_FIX}"
            )

    def _remove_stale_socket(self) -> None:
        """An old socket (from a stopped agent) goes; anything else there is refused."""
        try:
            st = os.lstat(self._path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"{self._path} exists and is not a socket; {SOCKET_FIX}")
        self._path.unlink()

    async def restore(self) -> bool:
        """Listen again when the socket file is gone or is another file (deleted by hand,
        the CLI and the Nagios check said "is the agent running?" until a restart: a
        helper's finding); True when it did. Raises what :meth:`start` raises."""
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(self._path).st_ino == self._inode:
                return False
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.start()
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._answer(reader)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await within(reader.readline(), 5)
        except ValueError:
            return {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
        try:
            request = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "request is not a JSON line"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": 'request needs {"command": "..."}'}
        return self._handler(request)


class UnreadableReply(ControlError):
    """Something answered on the socket, but not with a reply of the agent's."""


MAX_REPLY = 4 * 1024 * 1024  # a status reply is a few KiB: more is not the agent


def ask(path: Path, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the local agent and return its reply (a JSON object).

    Raises ControlError when the agent cannot be asked, UnreadableReply (a ControlError)
    when what answered gave no JSON object: another program, or another version.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n") and len(data) <= MAX_REPLY:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except FileNotFoundError:
        raise ControlError(
            f"no agent control socket at {path}: is the agent running? "
            "(systemctl status mosqit-failover)"
        ) from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run as root") from None
    except (ConnectionRefusedError, TimeoutError, OSError) as error:
        if isinstance(error, ConnectionRefusedError) and not _is_socket(path):
            raise ControlError(
                f"{path} is not a socket: is it the agent's control socket? (pass --socket "
                "PATH, or set cluster.control_socket)"
            ) from None
        raise ControlError(
            f"the agent at {path} did not answer ({error}); is it running?"
        ) from None
    finally:
        sock.close()
    return _reply(path, data)


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return True  # gone meanwhile: say what connect said


_JSON_KINDS: dict[type, str] = {list: "array", str: "string", int: "number", float: "number"}
_JSON_KINDS |= {bool: "boolean", type(None): "null"}


def _reply(path: Path, data: bytes) -> dict[str, Any]:
    """The reply's JSON object, or UnreadableReply saying what it was instead."""
    if not data.strip():
        raise ControlError(
            f"the agent at {path} closed the connection without a reply; is it running "
            "(or restarting)?"
        )
    problem = None
    if len(data) > MAX_REPLY:
        problem = f"longer than {MAX_REPLY // (1024 * 1024)} MiB"
    else:
        try:
            reply = json.loads(data)
        except UnicodeDecodeError:
            problem = "not UTF-8 text"
        except json.JSONDecodeError as error:
            problem = f"not a JSON line ({error.msg} at character {error.pos})"
        except RecursionError:
            problem = "JSON nested too deeply"
        except ValueError:  # an integer of more digits than int() takes
            problem = "a number too long"
        else:
            if isinstance(reply, dict):
                return reply
            problem = f"a JSON {_JSON_KINDS.get(type(reply), 'value')}, not an object"
    raise UnreadableReply(
        f"the agent at {path} gave an unreadable reply: {problem}; "
        "is it another program or another version?"
    )
