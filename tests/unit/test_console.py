"""The web console: a real server on 127.0.0.1 in its own event loop, asked with http.client.

The agent behind it is a stand-in that records every command it is given, so
each refused request can be checked to have changed nothing.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.authkeys import generate_secret_text
from mosqit_failover.config import ConfigError, Console, parse
from mosqit_failover.console.auth import ConsoleAuthError
from mosqit_failover.console.server import ConsoleServer
from mosqit_failover.sim_scenarios import SIM_CONFIG


@dataclass
class FakeAgent:
    """Answers like `Agent._control`; remembers the operator commands it got."""

    role: str = "ACTIVE"
    mode: str = "AUTO"
    commands: list[str] = field(default_factory=list)
    peer_extra: dict[str, Any] = field(default_factory=dict)  # more fields of status["peer"]
    peers: dict[str, dict[str, Any]] | None = None  # status["peers"] (multi-server) when set
    requests: list[dict[str, Any]] = field(default_factory=list)  # the commands, whole

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["command"]
        if name == "status":
            return {"ok": True, "status": self.status()}
        self.commands.append(name)
        self.requests.append(request)
        if name == "switchover":
            if self.role != "ACTIVE":
                return {"ok": False, "decisions": ["switchover refused: this node is STANDBY"]}
            self.role = "STANDBY"
        elif name == "maintenance-on":
            self.mode = "MAINTENANCE"
        elif name == "maintenance-off":
            self.mode = "AUTO"
        return {"ok": True, "decisions": [f"{name} done"]}

    def status(self) -> dict[str, Any]:
        more = {} if self.peers is None else {"peers": self.peers}
        return more | {
            "node": "alpha",
            "cluster": "lab",
            "vip": "192.0.2.50/24",
            "role": self.role,
            "mode": self.mode,
            "epoch": 3,
            "uplinks": {"a": "healthy", "b": "healthy"},
            "peer": {"node": "beta", "role": "STANDBY", "heard_ago": 0.05, **self.peer_extra},
            "recent_decisions": ["12:00:00 <script>alert(1)</script> became ACTIVE"],
            "sync": {"running": False, "epoch": None, "dirs": []},
        }


class Runner:
    def __init__(self, state: bool | None) -> None:
        self.state = state

    async def running(self) -> bool:
        if self.state is None:
            raise RuntimeError("status command failed")
        return self.state


@dataclass
class Served:
    server: ConsoleServer
    agent: FakeAgent
    loop: asyncio.AbstractEventLoop
    token: str
    notes: list[tuple[str, int]]
    tls: ssl.SSLContext | None = None  # the client's context when the console does TLS
    https: bool = False  # the browser's side is https (native TLS or behind a TLS proxy)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def origin(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: str | bytes = b"",
        headers: dict[str, str] | None = None,
        source: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request from 127.0.0.1, or from `source` (another loopback address)."""
        bind = (source, 0) if source else None
        conn = (
            http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=5, source_address=bind, context=self.tls
            )
            if self.tls is not None
            else http.client.HTTPConnection("127.0.0.1", self.port, timeout=5, source_address=bind)
        )
        try:
            data = body.encode() if isinstance(body, str) else body
            conn.request(
                method, path, body=data if method == "POST" else None, headers=headers or {}
            )
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def login(
        self,
        token: str | None = None,
        origin: str | None = None,
        source: str | None = None,
        **extra: str,
    ) -> tuple[int, dict[str, str]]:
        status, headers, _ = self.request(
            "POST",
            "/login",
            f"token={token if token is not None else self.token}",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": origin if origin is not None else self.origin,
                **extra,
            },
            source,
        )
        return status, headers

    def session(self) -> tuple[str, str]:
        """Log in; return (cookie header value, CSRF token)."""
        status, headers = self.login()
        assert status == 303, status
        cookie = headers["set-cookie"].split(";")[0]
        status, _, page = self.request("GET", "/", headers={"Cookie": cookie})
        assert status == 200
        match = re.search(rb'name="csrf-token" content="([^"]+)"', page)
        assert match is not None
        return cookie, match.group(1).decode()

    def command(
        self, cookie: str, csrf: str | None, name: str = "switchover", **extra: str
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Cookie": cookie, "Content-Type": "application/json", "Origin": self.origin}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        headers.update(extra)
        status, _, body = self.request(
            "POST", "/api/command", json.dumps({"command": name}), headers
        )
        reply: dict[str, Any] = json.loads(body) if body.startswith(b"{") else {}
        return status, reply

    def raw(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(data)
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        return out


def write_token(path: Path, mode: int = 0o600) -> str:
    text = generate_secret_text()
    path.write_text(text)
    os.chmod(path, mode)
    return text.split()[-1]


def run_in(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(10)


def make_server(
    tmp_path: Path,
    loop: asyncio.AbstractEventLoop,
    runners: dict[str, Runner] | None = None,
    tls: ssl.SSLContext | None = None,
    nodes: list[str] | None = None,
    **settings_given: Any,
) -> Served:
    """A console on 127.0.0.1 (any port); `settings_given` are more `Console` fields,
    `tls` the client context to reach it with when it does TLS itself."""
    token = write_token(tmp_path / "console_token")
    agent = FakeAgent()
    notes: list[tuple[str, int]] = []
    settings = Console("127.0.0.1:0", tmp_path / "console_token", **settings_given)

    async def build() -> ConsoleServer:
        server = ConsoleServer(
            settings,
            agent.control,
            lambda text, prio: notes.append((text, prio)),
            lambda: runners or {},
            owner_uid=os.getuid(),
            nodes=None if nodes is None else lambda: nodes,
        )
        assert await server.start()
        return server

    https = tls is not None or bool(settings_given.get("behind_tls_proxy"))
    return Served(run_in(loop, build()), agent, loop, token, notes, tls, https)


@pytest.fixture
def console(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Served]:
    c = make_server(tmp_path, loop, {"demo": Runner(True), "db": Runner(None)})
    yield c
    run_in(loop, c.server.close())


# ---- without a session ---------------------------------------------------------


def test_without_a_session_the_page_redirects_to_the_login_and_the_api_says_401(
    console: Served,
) -> None:
    status, headers, _ = console.request("GET", "/")
    assert (status, headers["location"]) == (303, "/login")
    status, _, body = console.request("GET", "/api/status")
    assert status == 401 and b"log in" in body
    status, _, _ = console.request("GET", "/api/status", headers={"Cookie": "mqconsole=forged"})
    assert status == 401
    status, _, page = console.request("GET", "/login")
    assert status == 200 and b'name="token"' in page


def test_a_command_without_a_session_is_refused_and_reaches_nothing(console: Served) -> None:
    status, _ = console.command("mqconsole=forged", "whatever")
    assert status == 401
    status, _ = console.command("", None)
    assert status == 401
    assert console.agent.commands == []


def test_a_wrong_token_gives_401_and_no_cookie_and_is_noted(console: Served) -> None:
    # the last byte changed (a token that ends in 00 made "00" the right one: 1 in 256)
    near = console.token[:-2] + ("11" if console.token.endswith("00") else "00")
    for wrong in ("", "00" * 32, "zz", near, "1 " + "ab" * 32):
        status, headers = console.login(wrong)
        assert status == 401, wrong
        assert "set-cookie" not in headers
        if console.server.limiter.wait("127.0.0.1") > 0:
            break
    assert any("failed login from 127.0.0.1" in text for text, _ in console.notes)


def test_a_good_token_opens_a_session_with_a_strict_httponly_cookie(console: Served) -> None:
    status, headers = console.login()
    assert (status, headers["location"]) == (303, "/")
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    # the whole "KEYID HEX" line pasted works too
    status, _ = console.login(f"1+{console.token}")
    assert status == 303


def test_login_from_another_origin_or_without_origin_is_refused(console: Served) -> None:
    assert console.login(origin="http://evil.example")[0] == 403
    status, _, _ = console.request(
        "POST",
        "/login",
        f"token={console.token}",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 403
    assert len(console.server.sessions) == 0


def test_failed_logins_are_rate_limited_even_for_the_right_token(console: Served) -> None:
    for _ in range(5):
        assert console.login("ab" * 32)[0] == 401
    status, headers = console.login()
    assert status == 429
    assert int(headers["retry-after"]) > 0
    assert len(console.server.sessions) == 0


# ---- with a session -------------------------------------------------------------


def test_the_status_api_and_page_need_and_accept_the_session(console: Served) -> None:
    cookie, csrf = console.session()
    status, headers, body = console.request("GET", "/api/status", headers={"Cookie": cookie})
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["status"]["role"] == "ACTIVE" and data["status"]["peer"]["node"] == "beta"
    assert data["commands"] == ["switchover", "maintenance-on", "maintenance-off"]
    assert {r["name"] for r in data["resources"]} == {"demo", "db"}
    assert len(csrf) >= 40


def test_resource_states_are_checked_while_somebody_watches(console: Served) -> None:
    cookie, _ = console.session()
    states: dict[str, Any] = {}
    for _ in range(50):
        _, _, body = console.request("GET", "/api/status", headers={"Cookie": cookie})
        states = {r["name"]: r for r in json.loads(body)["resources"]}
        if states["demo"]["state"] != "unknown":
            break
        threading.Event().wait(0.05)
    assert states["demo"]["state"] == "running"
    assert states["db"]["state"] == "unknown" and "status command failed" in states["db"]["error"]


def test_every_answer_carries_the_security_headers(console: Served) -> None:
    cookie, _ = console.session()
    for path, cookies in (("/", cookie), ("/login", ""), ("/api/status", cookie), ("/nope", "")):
        _, headers, _ = console.request("GET", path, headers={"Cookie": cookies})
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"


def test_the_page_has_no_inline_script_or_style(console: Served) -> None:
    cookie, _ = console.session()
    for path, cookies in (("/", cookie), ("/login", "")):
        _, _, page = console.request("GET", path, headers={"Cookie": cookies})
        assert b"<html" in page
        scripts = re.findall(rb"<script[^>]*>", page)
        assert all(b'src="/static/' in s for s in scripts)
        assert b"<style" not in page and b" style=" not in page and b" onclick" not in page
    status, headers, js = console.request("GET", "/static/console.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert b"innerHTML" not in js


def test_a_command_without_or_with_a_wrong_csrf_token_is_refused(console: Served) -> None:
    cookie, csrf = console.session()
    other_cookie, other_csrf = console.session()
    assert console.command(cookie, None)[0] == 403
    assert console.command(cookie, "")[0] == 403
    assert console.command(cookie, csrf[:-1] + ("A" if csrf[-1] != "A" else "B"))[0] == 403
    assert console.command(cookie, other_csrf)[0] == 403  # tied to the session
    assert console.command(other_cookie, csrf)[0] == 403
    assert console.agent.commands == []
    assert console.agent.role == "ACTIVE"


def test_a_cross_origin_command_is_refused_even_with_the_right_token(console: Served) -> None:
    cookie, csrf = console.session()
    assert console.command(cookie, csrf, Origin="http://evil.example")[0] == 403
    assert console.command(cookie, csrf, Origin="null")[0] == 403
    assert console.command(cookie, csrf, **{"Sec-Fetch-Site": "cross-site"})[0] == 403
    headers = {"Cookie": cookie, "Content-Type": "application/json", "X-CSRF-Token": csrf}
    status, _, _ = console.request("POST", "/api/command", '{"command": "switchover"}', headers)
    assert status == 403  # no Origin at all
    assert console.command(cookie, csrf, **{"Content-Type": "text/plain"})[0] == 415
    assert console.agent.commands == []


def test_only_the_console_commands_are_accepted(console: Served) -> None:
    cookie, csrf = console.session()
    for name in ("status", "force-active", "reload", "stop", ""):
        status, reply = console.command(cookie, csrf, name)
        assert status == 400 and not reply["ok"]
    assert console.agent.commands == []


def test_a_good_switchover_and_maintenance_reach_the_agent_and_are_noted(
    console: Served,
) -> None:
    cookie, csrf = console.session()
    status, reply = console.command(cookie, csrf, "switchover")
    assert status == 200 and reply["ok"] and reply["decisions"] == ["switchover done"]
    status, reply = console.command(cookie, csrf, "switchover")
    assert status == 200 and not reply["ok"]  # the agent's refusal is passed on
    assert console.command(cookie, csrf, "maintenance-on")[1]["ok"]
    assert console.agent.mode == "MAINTENANCE"
    assert console.command(cookie, csrf, "maintenance-off")[1]["ok"]
    assert console.agent.commands == [
        "switchover",
        "switchover",
        "maintenance-on",
        "maintenance-off",
    ]
    noted = [text for text, _ in console.notes if "asked from" in text]
    assert "web console: switchover asked from 127.0.0.1: done" in noted
    assert "web console: switchover asked from 127.0.0.1: refused" in noted


def test_logout_needs_the_csrf_token_and_ends_the_session(console: Served) -> None:
    cookie, csrf = console.session()
    form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = console.request(
        "POST", "/logout", "csrf=wrong", {**form, "Origin": console.origin}
    )
    assert status == 403
    assert console.request("GET", "/api/status", headers={"Cookie": cookie})[0] == 200
    status, headers, _ = console.request(
        "POST", "/logout", f"csrf={csrf}", {**form, "Origin": console.origin}
    )
    assert (status, headers["location"]) == (303, "/login")
    assert "Max-Age=0" in headers["set-cookie"]
    assert console.request("GET", "/api/status", headers={"Cookie": cookie})[0] == 401


# ---- Host, methods and malformed requests ------------------------------------------


def test_a_foreign_host_name_is_refused_against_dns_rebinding(console: Served) -> None:
    for host in ("evil.example", f"evil.example:{console.port}", "127.0.0.1:1", "[::1"):
        status, _, _ = console.request("GET", "/login", headers={"Host": host})
        assert status == 421, host
    for host in (f"localhost:{console.port}", f"127.0.0.1:{console.port}", f"[::1]:{console.port}"):
        assert console.request("GET", "/login", headers={"Host": host})[0] == 200, host


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"DELETE / HTTP/1.1\r\nHost: H\r\n\r\n", 501),
        (b"GET http://x/ HTTP/1.1\r\nHost: H\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: H\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: H\r\nHost: H\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: H\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: H\r\n\r\n", 400),
        (b"POST /login HTTP/1.1\r\nHost: H\r\n\r\n", 411),
        (b"POST /login HTTP/1.1\r\nHost: H\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST /login HTTP/1.1\r\nHost: H\r\nContent-Length: 99999\r\n\r\n", 413),
        (b"POST /login HTTP/1.1\r\nHost: H\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: H\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /login HTTP/1.1\r\nHost: H\r\nX: \x01\r\n\r\n", 400),
    ],
)
def test_malformed_requests_get_an_error_and_change_nothing(
    console: Served, request_bytes: bytes, status: int
) -> None:
    data = request_bytes.replace(b"Host: H", f"Host: 127.0.0.1:{console.port}".encode())
    answer = console.raw(data)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    assert b"Connection: close" in answer
    assert console.agent.commands == [] and len(console.server.sessions) == 0


def test_wrong_method_and_unknown_path(console: Served) -> None:
    status, headers, _ = console.request("POST", "/api/status", "", {"Origin": console.origin})
    assert status == 405 and headers["allow"] == "GET"
    assert console.request("GET", "/api/command")[0] == 405
    assert console.request("GET", "/etc/passwd")[0] == 404
    assert console.request("GET", "/static/../auth.py")[0] == 404


# ---- the token file --------------------------------------------------------------


def test_no_token_file_means_no_console_and_a_note(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    notes: list[tuple[str, int]] = []
    server = ConsoleServer(
        Console("127.0.0.1:0", tmp_path / "absent"),
        FakeAgent().control,
        lambda text, prio: notes.append((text, prio)),
        owner_uid=os.getuid(),
    )
    assert run_in(loop, server.start()) is False
    assert "web console off: no token file" in notes[0][0]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_an_unsafe_token_file_stops_the_start(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, mode: int
) -> None:
    path = tmp_path / "token"
    write_token(path, mode)
    server = ConsoleServer(
        Console("127.0.0.1:0", path), FakeAgent().control, lambda t, p: None, owner_uid=os.getuid()
    )
    with pytest.raises(ConsoleAuthError, match=f"mode {mode:04o}.*chmod 600"):
        run_in(loop, server.start())


def test_a_symlinked_token_file_stops_the_start(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    write_token(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    server = ConsoleServer(
        Console("127.0.0.1:0", tmp_path / "link"),
        FakeAgent().control,
        lambda t, p: None,
        owner_uid=os.getuid(),
    )
    with pytest.raises(ConsoleAuthError, match="symbolic link"):
        run_in(loop, server.start())


def test_a_changed_token_file_takes_effect_at_the_next_login(console: Served) -> None:
    new = write_token(console.server.settings.token_file)
    assert console.login()[0] == 401
    status, _ = console.login(new)
    assert status == 303


def test_a_busy_address_names_the_setting(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    write_token(tmp_path / "token")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = ConsoleServer(
            Console(f"127.0.0.1:{port}", tmp_path / "token"),
            FakeAgent().control,
            lambda t, p: None,
            owner_uid=os.getuid(),
        )
        with pytest.raises(OSError, match=r"console\.listen"):
            run_in(loop, server.start())


# ---- config ---------------------------------------------------------------------


def test_console_config_defaults_and_checks() -> None:
    default = parse(SIM_CONFIG).console
    assert default.listen == "127.0.0.1:8405"
    assert default.token_file == Path("/etc/mosqit-failover/console_token")
    custom = parse(
        SIM_CONFIG
        + '\n[console]\nlisten = "[::1]:9000"\ntoken_file = "/etc/t"\nserver_names = ["Ops"]\n'
        'session_idle = "30m"\n'
    ).console
    assert (custom.listen, custom.server_names) == ("[::1]:9000", ("ops",))
    assert custom.session_idle == 1800
    assert parse(SIM_CONFIG + '\n[console]\nlisten = ""\n').console.listen == ""
    with pytest.raises(ConfigError) as error:
        parse(SIM_CONFIG + '\n[console]\nlisten = "8405"\ntoken_file = "t"\ncolour = 1\n')
    text = error.value.report()
    assert "console.listen" in text and "console.token_file" in text and "console.colour" in text


# ---- what the page shows -----------------------------------------------------------


def test_peer_authentication_failures_reach_the_page_as_a_banner(console: Served) -> None:
    """The status passes `peer.unauthenticated` on; the page has a hidden banner for it
    that the script fills with textContent (the rendering itself: tests/lab)."""
    cookie, _ = console.session()
    console.agent.peer_extra["unauthenticated"] = "bad-mac: the secrets differ"
    _, _, body = console.request("GET", "/api/status", headers={"Cookie": cookie})
    assert json.loads(body)["status"]["peer"]["unauthenticated"] == "bad-mac: the secrets differ"
    _, _, page = console.request("GET", "/", headers={"Cookie": cookie})
    banner = re.search(rb'<[a-z]+ id="peer-auth"[^>]*>', page)
    assert (
        banner is not None and b" hidden" in banner.group(0) and b'role="alert"' in banner.group(0)
    )
    _, _, js = console.request("GET", "/static/console.js")
    assert b"p.unauthenticated" in js and b"Peer messages fail authentication: " in js
