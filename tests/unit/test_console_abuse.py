"""The console under abuse: login floods, slow and piled-up connections, TLS.

A real server on 127.0.0.1 in its own event loop, reached with real sockets.
Several client addresses are used: Linux routes all of 127/8 to the loopback
device, so a socket bound to 127.0.0.2 reaches the server on 127.0.0.1 and
the server sees 127.0.0.2 as its peer.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import select
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mosqit_failover.config import ConfigError, parse
from mosqit_failover.console import server as server_module
from mosqit_failover.sim_scenarios import SIM_CONFIG
from tests.unit.test_console import Served, make_server, run_in

LEGIT = "127.0.0.2"  # the operator
ABUSER = "127.0.0.3"  # the address that floods


@pytest.fixture
def console(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Served]:
    c = make_server(tmp_path, loop)
    yield c
    run_in(loop, c.server.close())


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for 127.0.0.1 and its key (0600): (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mosqit console test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "console.crt", directory / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def tls_client(cert: Path) -> ssl.SSLContext:
    """A client that trusts only the test's certificate and checks the name 127.0.0.1."""
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@pytest.fixture
def tls_console(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Served]:
    cert, key = self_signed(tmp_path)
    c = make_server(tmp_path, loop, tls=tls_client(cert), tls_cert=cert, tls_key=key)
    yield c
    run_in(loop, c.server.close())


def slow_connections(port: int, count: int, source: str, head: bytes) -> list[socket.socket]:
    """`count` connections from `source` that send `head` and then nothing more."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        if head:
            sock.sendall(head)
        socks.append(sock)
    return socks


def wait_closed(socks: list[socket.socket], want: int, within: float) -> dict[int, bytes]:
    """Wait until the server has closed `want` of `socks` (or `within` s passed);
    {index: what it sent before closing} of the closed ones."""
    deadline = time.monotonic() + within
    got: dict[int, bytes] = {i: b"" for i in range(len(socks))}
    closed: dict[int, bytes] = {}
    while len(closed) < want and (left := deadline - time.monotonic()) > 0:
        open_ = [s for i, s in enumerate(socks) if i not in closed]
        readable, _, _ = select.select(open_, [], [], left)
        for sock in readable:
            i = socks.index(sock)
            try:
                data = sock.recv(65536)
            except ConnectionError:
                data = b""
            if data:
                got[i] += data
            else:
                closed[i] = got[i]
    return closed


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# ---- 1. failed logins are limited per client address, never for everybody ---------------


def test_failed_logins_from_many_addresses_lock_out_only_those_addresses(
    console: Served,
) -> None:
    # 7 addresses x 5 failures = 35 failed logins within a minute
    attackers = [f"127.0.0.{n}" for n in range(10, 17)]
    for address in attackers:
        for _ in range(5):
            assert console.login("ab" * 32, source=address)[0] == 401, address
    # each of them is locked out now, even with the right token ...
    for address in attackers:
        status, headers = console.login(source=address)
        assert status == 429 and int(headers["retry-after"]) > 0, address
    # ... one keeps hammering ...
    for _ in range(20):
        assert console.login("cd" * 32, source=ABUSER)[0] in (401, 429)
    # ... and an operator at another address still logs in
    status, headers = console.login(source=LEGIT)
    assert status == 303 and "mqconsole=" in headers["set-cookie"]
    assert any(f"failed login from {attackers[0]}" in text for text, _ in console.notes)


# ---- 2. connection caps and the request deadline ---------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_forty_slow_connections_from_one_address_leave_room_for_another(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, tls: bool
) -> None:
    if tls:
        cert, key = self_signed(tmp_path)
        console = make_server(tmp_path, loop, tls=tls_client(cert), tls_cert=cert, tls_key=key)
        head = b""  # not even a TLS ClientHello
    else:
        console = make_server(tmp_path, loop)
        head = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the head never ends
    socks = slow_connections(console.port, 40, ABUSER, head)
    try:
        # accepted after the forty (the listen queue is FIFO), served all the same
        status, headers = console.login(source=LEGIT)
        assert status == 303 and "mqconsole=" in headers["set-cookie"]
        # beyond the per-address cap the server hung up at once ...
        per_client = server_module.MAX_PER_CLIENT
        assert per_client <= 8
        early = wait_closed(socks, 40 - per_client, within=10)
        assert len(early) >= 40 - per_client
        # ... and the ones it held get their deadline: a slowloris holds no slot for long
        late = wait_closed(socks, 40, within=20)
        assert len(late) == 40
        if not tls:
            timed_out = [late[i] for i in set(late) - set(early)]
            assert timed_out and all(a.startswith(b"HTTP/1.1 408 ") for a in timed_out)
    finally:
        close_all(socks)
        run_in(loop, console.server.close())


def test_the_global_cap_refuses_more_connections_and_frees_slots_as_they_end(
    console: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 6)
    monkeypatch.setattr(server_module, "MAX_PER_CLIENT", 3)
    monkeypatch.setattr(server_module, "REQUEST_TIMEOUT", 60.0)
    head = b"GET /login HTTP/1.1\r\n"
    held = slow_connections(console.port, 3, "127.0.0.3", head)
    held += slow_connections(console.port, 3, "127.0.0.4", head)
    try:
        over_client = slow_connections(console.port, 1, "127.0.0.3", head)
        over_all = slow_connections(console.port, 1, "127.0.0.5", head)
        assert len(wait_closed(over_client + over_all, 2, within=10)) == 2
        assert select.select(held, [], [], 0)[0] == []  # the six are still held
        close_all(held)
        # once the server has seen them go, 127.0.0.5 is served
        deadline = time.monotonic() + 10
        while True:
            try:
                status, _, _ = console.request("GET", "/login", source="127.0.0.5")
                break
            except ConnectionError:
                assert time.monotonic() < deadline, "no slot came free"
                time.sleep(0.05)
        assert status == 200
    finally:
        close_all(held)


def test_closing_the_console_ends_the_connections_it_still_serves(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "REQUEST_TIMEOUT", 60.0)
    console = make_server(tmp_path, loop)
    slow = slow_connections(console.port, 2, ABUSER, b"GET /login HTTP/1.1\r\n")
    try:
        console.request("GET", "/login")  # served after the two: they are held now
        run_in(loop, console.server.close())
        assert len(wait_closed(slow, 2, within=10)) == 2
    finally:
        close_all(slow)


def test_a_request_head_trickled_line_by_line_is_cut_off_within_five_seconds(
    console: Served,
) -> None:
    sock = socket.create_connection(("127.0.0.1", console.port), timeout=5)
    answer = b""
    started = time.monotonic()
    with sock:
        sock.sendall(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\n".encode())
        while time.monotonic() - started < 20:
            if select.select([sock], [], [], 0.4)[0]:
                while data := sock.recv(65536):
                    answer += data
                break
            sock.sendall(b"X-Slow: 1\r\n")  # a new header line well within every gap
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:60]
    assert elapsed < 8.5, f"a trickled head held its slot {elapsed:.1f} s"


# ---- 3. TLS ------------------------------------------------------------------------


def test_tls_serves_the_console_with_a_secure_cookie_and_an_https_origin(
    tls_console: Served,
) -> None:
    c = tls_console
    assert c.login(origin=f"http://127.0.0.1:{c.port}")[0] == 403  # the page is https now
    status, headers = c.login()
    assert status == 303
    cookie = headers["set-cookie"]
    assert "Secure" in cookie.split("; ") and "HttpOnly" in cookie
    session, _ = c.session()
    _, _, page = c.request("GET", "/", headers={"Cookie": session})
    csrf = page.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()
    status, reply = c.command(session, csrf, "maintenance-on")
    assert status == 200 and reply["ok"]
    status, _ = c.command(session, csrf, "maintenance-off", Origin=f"http://127.0.0.1:{c.port}")
    assert status == 403
    assert c.agent.commands == ["maintenance-on"]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_refuses_plain_http_and_tls_before_1_2(tls_console: Served) -> None:
    answer = b""
    with socket.create_connection(("127.0.0.1", tls_console.port), timeout=10) as sock:
        sock.sendall(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{tls_console.port}\r\n\r\n".encode())
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionError:
            pass
    assert b"HTTP/1.1 200" not in answer and b"token" not in answer
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client really offers TLS 1.1
    with (
        socket.create_connection(("127.0.0.1", tls_console.port), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        old.wrap_socket(raw).close()
    assert tls_console.tls is not None
    with (
        socket.create_connection(("127.0.0.1", tls_console.port), timeout=10) as raw,
        tls_console.tls.wrap_socket(raw, server_hostname="127.0.0.1") as good,
    ):
        assert good.version() in ("TLSv1.2", "TLSv1.3")


def test_a_stalled_tls_handshake_is_dropped(
    tls_console: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "HANDSHAKE_TIMEOUT", 0.5)
    monkeypatch.setattr(server_module, "REQUEST_TIMEOUT", 60.0)
    # a silent client, and one that stops inside its ClientHello
    stalled = slow_connections(tls_console.port, 1, ABUSER, b"")
    stalled += slow_connections(tls_console.port, 1, ABUSER, b"\x16\x03\x01\x02\x00\x01")
    try:
        assert len(wait_closed(stalled, 2, within=10)) == 2
    finally:
        close_all(stalled)


# ---- 3b. behind a TLS-terminating proxy ----------------------------------------------


@pytest.fixture
def proxied(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Served]:
    c = make_server(tmp_path, loop, behind_tls_proxy=True, server_names=("console.example",))
    yield c
    run_in(loop, c.server.close())


def test_behind_a_tls_proxy_the_origin_is_https_and_the_cookie_secure(proxied: Served) -> None:
    # the listener itself is plain HTTP
    assert proxied.request("GET", "/login")[0] == 200
    assert proxied.login(origin=f"http://127.0.0.1:{proxied.port}")[0] == 403
    status, headers = proxied.login()  # Origin https://127.0.0.1:PORT
    assert status == 303 and "Secure" in headers["set-cookie"].split("; ")
    # the name the browser used, on the proxy's port (443: none), passed on by the proxy
    status, headers = proxied.login(
        origin="https://console.example", Host="console.example", **{"X-Forwarded-For": LEGIT}
    )
    assert status == 303
    status, _ = proxied.login(origin="https://console.example", Host="evil.example")
    assert status == 421


def test_behind_a_tls_proxy_failed_logins_count_per_forwarded_client(proxied: Served) -> None:
    def login(token: str | None, forwarded: str) -> int:
        # what nginx's $proxy_add_x_forwarded_for gives: what the client sent, then its address
        return proxied.login(token, **{"X-Forwarded-For": f"10.9.9.9, {forwarded}"})[0]

    for _ in range(5):
        assert login("ab" * 32, "203.0.113.5") == 401
    assert login(None, "203.0.113.5") == 429
    assert login(None, "203.0.113.6") == 303  # another browser behind the same proxy
    assert any("failed login from 203.0.113.5" in text for text, _ in proxied.notes)


def test_without_a_proxy_x_forwarded_for_is_ignored(console: Served) -> None:
    for n in range(5):
        assert console.login("ab" * 32, **{"X-Forwarded-For": f"203.0.113.{n}"})[0] == 401
    assert console.login(**{"X-Forwarded-For": "203.0.113.99"})[0] == 429


# ---- 3c. the TLS settings --------------------------------------------------------------


def console_config(**keys: object) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    return SIM_CONFIG + "\n[console]\n" + "\n".join(lines) + "\n"


def problems(**keys: object) -> str:
    with pytest.raises(ConfigError) as error:
        parse(console_config(**keys))
    return error.value.report()


def test_tls_settings_are_read_and_checked(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    console = parse(console_config(tls_cert=str(cert), tls_key=str(key))).console
    assert (console.tls_cert, console.tls_key, console.behind_tls_proxy) == (cert, key, False)
    default = parse(SIM_CONFIG).console
    assert (default.tls_cert, default.tls_key, default.behind_tls_proxy) == (None, None, False)
    assert parse(console_config(behind_tls_proxy=True)).console.behind_tls_proxy

    assert "console.tls_key: missing" in problems(tls_cert=str(cert))
    assert "console.tls_cert: missing" in problems(tls_key=str(key))
    assert "absolute path" in problems(tls_cert="console.crt", tls_key=str(key))
    text = problems(tls_cert=str(tmp_path / "absent.crt"), tls_key=str(key))
    assert "console.tls_cert" in text and "no such file" in text
    assert "not a regular file" in problems(tls_cert=str(tmp_path), tls_key=str(key))
    for mode in (0o640, 0o604, 0o644):
        os.chmod(key, mode)
        text = problems(tls_cert=str(cert), tls_key=str(key))
        assert "console.tls_key" in text and f"mode {mode:04o}" in text and "chmod 600" in text
    os.chmod(key, 0o400)
    assert parse(console_config(tls_cert=str(cert), tls_key=str(key))).console.tls_key == key
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    text = problems(tls_cert=str(garbage), tls_key=str(key))
    assert "console.tls_cert" in text and "do not load" in text
    (tmp_path / "other").mkdir()
    other_cert, other_key = self_signed(tmp_path / "other")
    assert "do not load" in problems(tls_cert=str(other_cert), tls_key=str(key))
    # an encrypted key: a clear error, never a passphrase prompt
    plain = serialization.load_pem_private_key(other_key.read_bytes(), None)
    other_key.write_bytes(
        plain.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    text = problems(tls_cert=str(other_cert), tls_key=str(other_key))
    assert "console.tls_key" in text and "encrypted" in text and "openssl pkey" in text


def test_a_tls_proxy_setting_goes_with_a_loopback_listener_and_no_own_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    text = problems(behind_tls_proxy=True, tls_cert=str(cert), tls_key=str(key))
    assert "console.behind_tls_proxy" in text and "one or the other" in text
    text = problems(behind_tls_proxy=True, listen="0.0.0.0:8405")
    assert "console.behind_tls_proxy" in text and "loopback" in text
    assert parse(console_config(behind_tls_proxy=True, listen="[::1]:8405")).console.listen
    assert "must be true or false" in problems(behind_tls_proxy="yes")
