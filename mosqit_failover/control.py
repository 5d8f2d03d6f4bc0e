"""The local control socket: a unix stream socket, root only, one JSON line each way.

Requests: {"command": "status"} or {"command": one of the operator commands}.
Replies: {"ok": true, ...} or {"ok": false, "error": "..."}. The server never
trusts the request: bad JSON, unknown commands and oversized lines get an
error reply and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_REQUEST = 4096
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(Exception):
    """The agent could not be asked; the message says why and what to do."""


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self._path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._path.parent, 0o700)
        if self._path.is_socket() or self._path.exists():
            self._path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self._path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)

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
            line = await asyncio.wait_for(reader.readline(), timeout=5)
        except ValueError:
            return {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
        try:
            request = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "request is not a JSON line"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": 'request needs {"command": "..."}'}
        return self._handler(request)


def ask(path: Path, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the local agent and return its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
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
        raise ControlError(
            f"the agent at {path} did not answer ({error}); is it running?"
        ) from None
    finally:
        sock.close()
    try:
        reply: dict[str, Any] = json.loads(data)
    except json.JSONDecodeError:
        raise ControlError(f"the agent at {path} sent an unreadable reply") from None
    return reply
