"""The console's HTTP server, in the agent's own event loop.

Routes (every answer carries the security headers of `http.SECURITY_HEADERS`):

    GET  /                 the console page (session needed, else 303 to /login)
    GET  /login            the login form;  POST /login  token=... -> session cookie
    POST /logout           ends the session (CSRF token needed)
    GET  /api/status       the live state as JSON (session needed, else 401)
    POST /api/command      {"command": "switchover" | "maintenance-on" | "maintenance-off"}
                           (session, same Origin, X-CSRF-Token and application/json needed)
    GET  /static/console.js, /static/console.css

Every request must name this server in Host: an IP address literal, localhost,
or one of `[console] server_names`, with the listening port (this is what keeps
DNS rebinding out). Every POST must come from this origin: an Origin header
equal to http://HOST, and Sec-Fetch-Site, when sent, "same-origin".

Guarantees of `ConsoleServer` (the side-effect interface):
- `start()` returns False and binds nothing when the token file does not exist
  (the console is off; one journal note says how to turn it on); raises
  `ConsoleAuthError` when the file exists but is unsafe or unreadable, and
  `OSError` naming the address when it cannot listen.
- Requests are served by coroutines of the caller's loop, at most
  `MAX_CONNECTIONS` at a time (more are closed at once), one request each.
- Operator commands reach the agent only through the `control` callable
  (the same path as the control socket), only after every check above passed;
  each one, and each login and failed login, is written with `note`.
- A refused request changes nothing: not the agent, not the sessions.
- Resource states are checked (the resources' status commands) only while a
  session polls /api/status, at most one round at a time, every
  `RESOURCE_PERIOD` seconds; `close()` cancels a round in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, Protocol

from mosqit_failover.config import Console, split_host_port
from mosqit_failover.console.auth import (
    ConsoleAuthError,
    LoginLimiter,
    Session,
    Sessions,
    Tokens,
    csrf_ok,
)
from mosqit_failover.console.http import HttpError, Request, Response, read_request, write_response

LOGGER = logging.getLogger("mosqit_failover.console")
COOKIE = "mqconsole"
COMMANDS = ("switchover", "maintenance-on", "maintenance-off")
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT = 10.0
RESOURCE_PERIOD = 2.0
JSON = "application/json"

Control = Callable[[dict[str, Any]], dict[str, Any]]
Note = Callable[[str, int], None]


class StatusCheck(Protocol):
    async def running(self) -> bool: ...


def _asset(name: str) -> bytes:
    return resources.files("mosqit_failover.console").joinpath("assets", name).read_bytes()


ASSETS = {
    "/static/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/static/console.css": ("console.css", "text/css; charset=utf-8"),
}


class ResourceWatch:
    """The last known state of each resource, refreshed while somebody watches."""

    def __init__(
        self, runners: Callable[[], Mapping[str, StatusCheck]], clock: Callable[[], float]
    ):
        self._runners = runners
        self._clock = clock
        self._states: dict[str, tuple[str, str, float | None]] = {}  # name -> (state, error, at)
        self._task: asyncio.Task[None] | None = None
        self._last = -1e9

    def snapshot(self) -> list[dict[str, Any]]:
        """Each configured resource with its last checked state; starts a round if due."""
        now = self._clock()
        if (self._task is None or self._task.done()) and now - self._last >= RESOURCE_PERIOD:
            self._last = now
            self._task = asyncio.ensure_future(self._round())
        out = []
        for name in self._runners():
            state, error, at = self._states.get(name, ("unknown", "not checked yet", None))
            out.append(
                {
                    "name": name,
                    "state": state,
                    "error": error,
                    "checked_ago": None if at is None else round(now - at, 1),
                }
            )
        return out

    async def _round(self) -> None:
        for name, runner in list(self._runners().items()):
            try:
                state, error = ("running" if await runner.running() else "stopped"), ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # EffectError and anything a runner may raise
                state, error = "unknown", str(exc)[:300]
            self._states[name] = (state, error, self._clock())

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ConsoleServer:
    """The web console; see the module doc for its guarantees."""

    def __init__(
        self,
        settings: Console,
        control: Control,
        note: Note,
        runners: Callable[[], Mapping[str, StatusCheck]] = dict,
        *,
        owner_uid: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.host, self.port = split_host_port(settings.listen)
        self._control = control
        self._note = note
        self.tokens = Tokens(settings.token_file, owner_uid)
        self.sessions = Sessions(clock, idle=settings.session_idle)
        self.limiter = LoginLimiter(clock)
        self.watch = ResourceWatch(runners, clock)
        self._server: asyncio.AbstractServer | None = None
        self._open = 0
        self._names = {n.lower() for n in settings.server_names} | {"localhost"}

    # ---- life ----------------------------------------------------------

    async def start(self) -> bool:
        """Bind and serve; False when the token file is absent (console off)."""
        if not os.path.lexists(self.settings.token_file):
            self._note(
                f"web console off: no token file {self.settings.token_file} "
                f"(create it with `mosqit-failover gen-secret {self.settings.token_file}`, "
                'or set [console] listen = "" to silence this)',
                5,
            )
            return False
        self.tokens.load()
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=8192)
        except OSError as error:
            raise OSError(
                error.errno,
                f"console: cannot listen on {self.settings.listen}: {error.strerror}; "
                "fix console.listen",
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        self._note(
            f"web console listening on {self.settings.listen.rpartition(':')[0]}:{self.port}", 5
        )
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.watch.close()

    # ---- one connection ----------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else "?"
        try:
            try:
                request = await read_request(reader, client, REQUEST_TIMEOUT)
                response = self._route(request)
            except HttpError as error:
                response = _text(error.status, error.text)
            except Exception:
                LOGGER.exception("console: request failed")
                response = _text(500, "internal error; see the agent's journal")
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(write_response(writer, response), REQUEST_TIMEOUT)
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError, OSError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _route(self, request: Request) -> Response:
        if not self._host_ok(request.header("host") or ""):
            return _text(421, "this console does not answer to that Host name")
        path, method = request.path, request.method
        routes: dict[str, dict[str, Callable[[Request], Response]]] = {
            "/": {"GET": self._page},
            "/login": {"GET": self._login_page, "POST": self._login},
            "/logout": {"POST": self._logout},
            "/api/status": {"GET": self._status},
            "/api/command": {"POST": self._command},
        }
        if path in ASSETS:
            routes[path] = {"GET": _static}
        if path not in routes:
            return _text(404, "no such page")
        handler = routes[path].get(method)
        if handler is None:
            response = _text(405, f"{method} not allowed here")
            response.headers.append(("Allow", ", ".join(routes[path])))
            return response
        return handler(request)

    # ---- checks ------------------------------------------------------------

    def _host_ok(self, host: str) -> bool:
        name, port = host.lower(), ""
        if name.startswith("["):
            inside, bracket, rest = name[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                return False
            name, port = inside, rest[1:]
        elif ":" in name:
            name, _, port = name.rpartition(":")
        if port != str(self.port) and not (port == "" and self.port == 80):
            return False
        if name in self._names:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _same_origin(self, request: Request) -> bool:
        origin = request.header("origin")
        site = request.header("sec-fetch-site")
        if site is not None and site != "same-origin":
            return False
        return origin is not None and origin.lower() == "http://" + (request.header("host") or "")

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies().get(COOKIE))

    # ---- pages -------------------------------------------------------------

    def _page(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        page = _asset("page.html").decode()
        page = page.replace("{{csrf}}", html.escape(session.csrf, quote=True))
        return Response(200, page.encode(), "text/html; charset=utf-8")

    def _login_page(self, request: Request, status: int = 200, message: str = "") -> Response:
        if status == 200 and self._session(request) is not None:
            return _redirect("/")
        page = _asset("login.html").decode()
        page = page.replace("{{message}}", html.escape(message))
        return Response(status, page.encode(), "text/html; charset=utf-8")

    def _login(self, request: Request) -> Response:
        if not self._same_origin(request):
            return _text(403, "login refused: the form must come from this console's own page")
        wait = self.limiter.wait(request.client)
        if wait > 0:
            response = self._login_page(
                request, 429, f"Too many failed logins: wait {wait:.0f} s and try again."
            )
            response.headers.append(("Retry-After", str(int(wait) + 1)))
            return response
        if not _is_form(request):
            return _text(415, "login needs an url-encoded form")
        offered = request.form().get("token", "")
        try:
            good = self.tokens.check(offered)
        except ConsoleAuthError as error:
            self._note(f"web console: login impossible: {error}", 3)
            return self._login_page(request, 503, "The console's token file is unusable.")
        if not good:
            self.limiter.failed(request.client)
            self._note(f"web console: failed login from {request.client}", 4)
            return self._login_page(request, 401, "Wrong token.")
        self.limiter.succeeded(request.client)
        session_id, _ = self.sessions.open(request.client)
        self._note(f"web console: login from {request.client}", 5)
        response = _redirect("/")
        response.headers.append(
            ("Set-Cookie", f"{COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict")
        )
        return response

    def _logout(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        offered = request.header("x-csrf-token")
        if offered is None and _is_form(request):
            offered = request.form().get("csrf")
        if not self._same_origin(request) or not csrf_ok(session, offered):
            return _text(403, "logout refused: missing or wrong CSRF token or origin")
        self.sessions.close(request.cookies().get(COOKIE))
        response = _redirect("/login")
        response.headers.append(
            ("Set-Cookie", f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
        )
        return response

    def _status(self, request: Request) -> Response:
        if self._session(request) is None:
            return _json(401, {"ok": False, "error": "log in first", "login": "/login"})
        reply = self._control({"command": "status"})
        return _json(
            200,
            {
                "ok": bool(reply.get("ok")),
                "status": reply.get("status"),
                "resources": self.watch.snapshot(),
                "commands": list(COMMANDS),
            },
        )

    def _command(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _json(401, {"ok": False, "error": "log in first"})
        if not self._same_origin(request):
            return _json(403, {"ok": False, "error": "cross-origin request refused"})
        if not csrf_ok(session, request.header("x-csrf-token")):
            return _json(403, {"ok": False, "error": "missing or wrong CSRF token"})
        if (request.header("content-type") or "").split(";")[0].strip().lower() != JSON:
            return _json(415, {"ok": False, "error": "send application/json"})
        try:
            body = json.loads(request.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _json(400, {"ok": False, "error": "body is not JSON"})
        name = body.get("command") if isinstance(body, dict) else None
        if name not in COMMANDS:
            return _json(
                400, {"ok": False, "error": f"command must be one of {', '.join(COMMANDS)}"}
            )
        reply = self._control({"command": name})
        outcome = "done" if reply.get("ok") else "refused"
        self._note(f"web console: {name} asked from {request.client}: {outcome}", 5)
        return _json(200, reply)


def _is_form(request: Request) -> bool:
    kind = (request.header("content-type") or "").split(";")[0].strip().lower()
    return kind == "application/x-www-form-urlencoded"


def _static(request: Request) -> Response:
    name, kind = ASSETS[request.path]
    return Response(200, _asset(name), kind)


def _text(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode())


def _json(status: int, data: dict[str, Any]) -> Response:
    return Response(status, json.dumps(data).encode(), JSON)


def _redirect(where: str) -> Response:
    return Response(303, b"", headers=[("Location", where)])
