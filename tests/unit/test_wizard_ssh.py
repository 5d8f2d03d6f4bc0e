"""The wizard's ssh connections against real servers on 127.0.0.1.

Host keys: paramiko servers (ServerInterface + Transport, each connection
served by paramiko's own thread) holding generated ed25519 and RSA host keys
that a test swaps between connections, as a reinstalled node or a man in the
middle would. Failures: plain TCP servers that answer with something else
than ssh, close at once, say nothing, or drop the handshake halfway; each must
give one line naming HOST:PORT and the fix, never a traceback.
"""

from __future__ import annotations

import io
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mosqit_failover import cli
from mosqit_failover.wizards.cli import PASSWORD_ENV
from mosqit_failover.wizards.ssh import AuthError, KnownHosts, Login, SshError, connect, fingerprint

PASSWORD = "root-password"


def new_ed25519_key() -> paramiko.PKey:
    """A fresh host key for a test server."""
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


@pytest.fixture(scope="module")
def ed_key() -> paramiko.PKey:
    return new_ed25519_key()


@pytest.fixture(scope="module")
def rsa_key() -> paramiko.PKey:
    return paramiko.RSAKey.generate(2048)


class _Node(paramiko.ServerInterface):  # type: ignore[misc]
    def __init__(self, server: SshServer) -> None:
        self.server = server

    def get_allowed_auths(self, username: str) -> str:
        return self.server.allowed

    def check_auth_password(self, username: str, password: str) -> int:
        self.server.passwords.append(password)
        ok = password == PASSWORD and "password" in self.server.allowed
        return int(paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED)


class SshServer:
    """An ssh server on 127.0.0.1 whose host keys the test sets before each connection."""

    def __init__(self, *keys: paramiko.PKey) -> None:
        self.keys = list(keys)
        self.allowed = "password"
        self.passwords: list[str] = []  # every password a client sent
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            for key in self.keys:
                transport.add_server_key(key)
            self._transports.append(transport)
            transport.start_server(event=threading.Event(), server=self._node())

    def _node(self) -> paramiko.ServerInterface:
        """What answers each connection's requests."""
        return _Node(self)

    def close(self) -> None:
        _stop_listening(self._listener)
        for transport in self._transports:
            transport.close()
        self._thread.join(5)


def _stop_listening(listener: socket.socket) -> None:
    """Close a listening socket and wake the thread blocked in its accept()."""
    with suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


@contextmanager
def ssh_server(*keys: paramiko.PKey) -> Iterator[SshServer]:
    server = SshServer(*keys)
    try:
        yield server
    finally:
        server.close()


class Decisions:
    """The wizard's host key decision: accept new hosts, refuse (or accept) changed keys."""

    def __init__(self, accept_changed: bool = False, accept_new: bool = True) -> None:
        self.accept_changed = accept_changed
        self.accept_new = accept_new
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, host: str, now: str, old: str | None) -> bool:
        self.asked.append((now, old))
        return self.accept_new if old is None else self.accept_changed


def login_to(server: SshServer, known: Path, decide: Decisions, timeout: float = 5.0) -> str:
    """Log in, return the type of the host key the server proved."""
    session = connect(
        "node1",
        "127.0.0.1",
        Login(password=PASSWORD, port=server.port, timeout=timeout),
        KnownHosts(known),
        decide,
    )
    try:
        key = session._transport.get_remote_server_key()
        return str(key.get_name())
    finally:
        session.close()


# ---- host keys --------------------------------------------------------------


def test_a_known_node_offering_a_key_of_another_type_is_refused_as_changed(
    tmp_path: Path, ed_key: paramiko.PKey, rsa_key: paramiko.PKey
) -> None:
    known = tmp_path / "known_hosts"
    with ssh_server(ed_key) as node:
        assert login_to(node, known, Decisions()) == "ssh-ed25519"
        assert node.passwords == [PASSWORD]

        node.keys = [rsa_key]  # someone else answers at that address, with an RSA key
        decide = Decisions()
        with pytest.raises(SshError) as caught:
            login_to(node, known, decide)
        message = str(caught.value)
        assert "host key of node1 (127.0.0.1:" in message and "CHANGED" in message
        assert fingerprint(ed_key) in message and fingerprint(rsa_key) in message
        assert "Nothing was changed" in message and "\n" not in message
        assert decide.asked == [(fingerprint(rsa_key), f"{fingerprint(ed_key)} (ssh-ed25519)")]
        assert node.passwords == [PASSWORD]  # the password never went to the impostor
    assert KnownHosts(known).stored("127.0.0.1", node.port) == {"ssh-ed25519": ed_key}


def test_a_known_node_is_asked_for_a_key_of_the_type_stored(
    tmp_path: Path, ed_key: paramiko.PKey, rsa_key: paramiko.PKey
) -> None:
    known = tmp_path / "known_hosts"
    with ssh_server(rsa_key) as node:
        assert login_to(node, known, Decisions()) == "ssh-rsa"
        # the node now has an ed25519 key too, which clients prefer: the wizard still asks
        # for the RSA key it knows, and logs in without a question
        node.keys = [ed_key, rsa_key]
        decide = Decisions(accept_new=False)
        assert login_to(node, known, decide) == "ssh-rsa"
        assert decide.asked == []
        assert node.passwords == [PASSWORD, PASSWORD]


def test_a_reinstalled_node_with_other_key_types_is_accepted_only_explicitly(
    tmp_path: Path, ed_key: paramiko.PKey, rsa_key: paramiko.PKey
) -> None:
    known = tmp_path / "known_hosts"
    with ssh_server(ed_key) as node:
        login_to(node, known, Decisions())
        node.keys = [rsa_key]  # it has no ed25519 key any more: asked for one, it has none
        with pytest.raises(SshError, match="CHANGED"):
            login_to(node, known, Decisions(accept_changed=False))
        assert len(node.passwords) == 1
        decide = Decisions(accept_changed=True)
        assert login_to(node, known, decide) == "ssh-rsa"
        assert decide.asked == [(fingerprint(rsa_key), f"{fingerprint(ed_key)} (ssh-ed25519)")]
        assert KnownHosts(known).stored("127.0.0.1", node.port) == {"ssh-rsa": rsa_key}
        # the replaced key is no longer trusted
        node.keys = [ed_key]
        with pytest.raises(SshError, match="CHANGED"):
            login_to(node, known, Decisions())
        assert len(node.passwords) == 2


# ---- failures: one line naming HOST:PORT and the fix ---------------------------------


@contextmanager
def tcp_server(behave: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that handles one connection with ``behave``."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            behave(conn)
            stop.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        _stop_listening(listener)
        thread.join(5)


def _drain(conn: socket.socket) -> None:
    """Read what the client sent (its banner and key exchange offer) until it pauses."""
    conn.settimeout(0.3)
    try:
        while conn.recv(65536):
            pass
    except TimeoutError:
        pass


def garbage(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def garbage_then_closes(conn: socket.socket) -> None:
    garbage(conn)
    conn.close()


def closes_at_once(conn: socket.socket) -> None:
    conn.close()


def says_nothing(conn: socket.socket) -> None:
    pass


def resets_mid_handshake(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
    _drain(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def eof_mid_handshake(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
    _drain(conn)
    conn.shutdown(socket.SHUT_RDWR)


@contextmanager
def _first_contact() -> Iterator[KnownHosts]:
    """Known hosts that know no node: in a directory of its own, removed after. (A
    fixed path outside the test's directory collected every key a test accepted, and
    a port used again by a later run met a "changed" key.)"""
    with tempfile.TemporaryDirectory(prefix="mqwiz-") as scratch:
        yield KnownHosts(Path(scratch) / "known_hosts")


def _fails(port: int, timeout: float = 5.0, password: str = PASSWORD) -> str:
    started = time.monotonic()
    with _first_contact() as known, pytest.raises(SshError) as caught:
        connect(
            "node1",
            "127.0.0.1",
            Login(password=password, port=port, timeout=timeout),
            known,
            Decisions(),
        )
    assert time.monotonic() - started < timeout + 3
    message = str(caught.value)
    assert "\n" not in message and f"node1 (127.0.0.1:{port})" in message, message
    assert message.endswith("Nothing was changed."), message
    return message


@pytest.mark.parametrize(
    ("behave", "what"),
    [
        (garbage, "answered, but not with the SSH protocol (it said 'HTTP/1.1 400 Bad Request')"),
        (closes_at_once, "closed the connection before the SSH greeting"),
        (says_nothing, "did not complete an SSH greeting within 1s"),
        (resets_mid_handshake, "reset the connection during the SSH handshake"),
        (eof_mid_handshake, "closed the connection during the SSH handshake"),
    ],
)
def test_a_port_that_does_not_speak_ssh_is_one_clear_line(
    behave: Callable[[socket.socket], None], what: str
) -> None:
    with tcp_server(behave) as port:
        message = _fails(port, timeout=1.0)
    assert what in message, message
    assert f"is sshd listening on 127.0.0.1:{port}?" in message, message


def test_a_refused_connection_is_one_clear_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    message = _fails(port)
    assert "Connection refused" in message and f"is sshd listening on 127.0.0.1:{port}?" in message


def test_a_connection_that_is_never_accepted_times_out_in_one_line() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: the queue fills, further SYNs are dropped
        port = listener.getsockname()[1]
        queued = [socket.create_connection(("127.0.0.1", port), timeout=1) for _ in range(1)]
        try:
            message = _fails(port, timeout=0.5)
        finally:
            for held in queued:
                held.close()
    assert "no answer within 0.5s" in message, message


def test_a_login_method_the_node_does_not_offer_is_one_clear_line(
    ed_key: paramiko.PKey,
) -> None:
    with ssh_server(ed_key) as node:
        node.allowed = "publickey"
        message = _fails(node.port)
    assert "does not allow logging in with a password (it allows: publickey)" in message
    assert "enable PasswordAuthentication" in message


def test_a_wrong_password_is_a_login_error_worth_another_try(ed_key: paramiko.PKey) -> None:
    with (
        ssh_server(ed_key) as node,
        _first_contact() as known,
        pytest.raises(AuthError, match="wrong password"),
    ):
        connect("node1", "127.0.0.1", Login(password="wrong", port=node.port), known, Decisions())


@pytest.mark.parametrize("wizard", ["deploy", "resources"])
def test_the_wizard_command_prints_one_line_not_a_traceback(
    wizard: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("HOME", str(tmp_path))
    argv: list[Any] = ["wizard", wizard, "--unattended", "--known-hosts", tmp_path / "kh"]
    with tcp_server(garbage_then_closes) as port:
        argv += ["--node1", "127.0.0.1", "--node2", "127.0.0.2", "--port", str(port)]
        status = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"is sshd listening on 127.0.0.1:{port}?" in lines[0]
    assert lines[0].endswith("Nothing was changed.")
