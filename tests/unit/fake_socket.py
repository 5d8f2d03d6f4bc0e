"""Unix sockets that stand where the agent's control socket should be but answer as no
agent does: the tests of `ask`, `status` and the Nagios check share them."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def serving(path: Path, respond: Callable[[socket.socket], None]) -> Iterator[Path]:
    """A socket at `path` whose every connection `respond` handles, in a thread."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # the client may hang up first
                respond(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(5)
        server.close()


def read_request(conn: socket.socket) -> dict[str, Any]:
    """The one JSON request line a client sent on `conn`."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    request: dict[str, Any] = json.loads(data)
    return request


def answering(path: Path, reply: bytes) -> contextlib.AbstractContextManager[Path]:
    """A socket at `path` that answers every request with `reply`."""

    def respond(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(reply)

    return serving(path, respond)


def answering_forever(path: Path) -> contextlib.AbstractContextManager[Path]:
    """A socket at `path` whose answer never ends (no newline, ever)."""

    def respond(conn: socket.socket) -> None:
        while True:
            conn.sendall(b"x" * 65536)

    return serving(path, respond)
