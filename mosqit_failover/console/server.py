"""The console's HTTP server, in the agent's own event loop.

Routes (every answer carries the security headers of `http.SECURITY_HEADERS`):

    GET  /                 the console page (session needed, else 303 to /login)
    GET  /login            the login form;  POST /login  token=... -> session cookie
    POST /logout           ends the session (CSRF token needed)
    GET  /api/status       the live state as JSON (session needed, else 401)
    POST /api/command      {"command": "switchover" | "maintenance-on" | "maintenance-off"},
                           switchover may name its target: {"command": "switchover", "to": NODE}
                           (a node of the config, else 400 and nothing reaches the agent)
                           (session, same Origin, X-CSRF-Token and application/json needed)
    GET  /static/console.js, /static/console.css

Every request must name this server in Host: an IP address literal, localhost,
or one of `[console] server_names`, with the listening port (this is what keeps
DNS rebinding out; behind a TLS proxy any port, as the proxy's port is not
ours to know). Every POST must come from this origin: an Origin header equal
to SCHEME://HOST, and Sec-Fetch-Site, when sent, "same-origin". SCHEME is https
when the console does TLS itself (`tls_cert`, `tls_key`) or sits behind a TLS
proxy (`behind_tls_proxy`), and then the session cookie is Secure too.

Abuse it stands:
- at most `MAX_PER_CLIENT` connections at a time from one client (an IPv4
  address or an IPv6 /64: `auth.client_key`) and `MAX_CONNECTIONS` from all;
  one beyond either is closed at once, before any TLS handshake. The TLS
  handshake must end within `HANDSHAKE_TIMEOUT`, the whole request (head and
  body) arrive within `REQUEST_TIMEOUT` after it, so a slow client holds a
  slot for seconds, and other clients are served meanwhile;
- failed logins are limited per client (`auth.LoginLimiter`), never for all.
  Behind a TLS proxy every connection comes from the proxy: the client there
  is the last address of X-Forwarded-For (what the proxy itself appended, as
  nginx's `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` does),
  falling back to the proxy's address. Without the proxy setting the header
  is ignored.

Guarantees of `ConsoleServer` (the side-effect interface):
- `start()` returns False and binds nothing when the token file does not exist
  (the console is off; one journal note says how to turn it on); raises
  `ConsoleAuthError` when the file exists but is unsafe or unreadable, and
  `OSError` naming the address when it cannot listen.
- `start()` raises `OSError` naming console.tls_cert / tls_key when the
  certificate and key are unusable (checked like the config does).
- `close()` stops listening and ends the connections still open.
- Requests are served by coroutines of the caller's loop, within the caps
  above (more are closed at once), one request each.
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
import dataclasses
import errno
import html
import ipaddress
import json
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from mosqit_failover.config import Console, split_host_port
from mosqit_failover.console import tls
from mosqit_failover.console.auth import (
    ConsoleAuthError,
    LoginLimiter,
    Session,
    Sessions,
    Tokens,
    client_key,
    csrf_ok,
)
from mosqit_failover.console.http import HttpError, Request, Response, read_request, write_response
from mosqit_failover.deadlines import within

LOGGER = logging.getLogger("mosqit_failover.console")
COOKIE = "mqconsole"
COMMANDS = ("switchover", "maintenance-on", "maintenance-off")
MAX_CONNECTIONS = 256  # at a time, from all clients: 32 clients at their cap
MAX_PER_CLIENT = 8  # at a time, from one client (an address, an IPv6 /64)
HANDSHAKE_TIMEOUT = 5.0  # the whole TLS handshake
REQUEST_TIMEOUT = 5.0  # the whole request, head and body (12 KiB at most)
WRITE_TIMEOUT = 10.0  # the answer (a few KiB) handed to the client
RESOURCE_PERIOD = 2.0
JSON = "application/json"
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # as config.py's node names

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
        nodes: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        """`nodes`: the config's node names (switchover's targets are checked against
        them); without it, the nodes the agent's status names (itself and its peers)."""
        self.settings = settings
        self.host, self.port = split_host_port(settings.listen)
        self._control = control
        self._note = note
        self._nodes = nodes
        self.tokens = Tokens(settings.token_file, owner_uid)
        self.sessions = Sessions(clock, idle=settings.session_idle)
        self.limiter = LoginLimiter(clock)
        self.watch = ResourceWatch(runners, clock)
        self._server: asyncio.AbstractServer | None = None
        self._tls: ssl.SSLContext | None = None
        self._open = 0
        self._per_client: dict[str, int] = {}  # client key -> connections open
        self._serving: set[asyncio.Task[Any]] = set()  # for close() to end them
        self._names = {n.lower() for n in settings.server_names} | {"localhost"}
        self._scheme = "https" if settings.https else "http"

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
        cert, key = self.settings.tls_cert, self.settings.tls_key
        if cert is not None and key is not None:
            self._tls = _tls_context(cert, key)
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=8192)
        except OSError as error:
            raise OSError(
                error.errno,
                f"console: cannot listen on {self.settings.listen}: {error.strerror}; "
                "fix console.listen",
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        how = " (TLS)" if self._tls else " (behind a TLS proxy)" if self._scheme == "https" else ""
        self._note(
            f"web console listening on {self.settings.listen.rpartition(':')[0]}:{self.port}{how}",
            5,
        )
        return True

    async def close(self) -> None:
        """Stop listening and end the connections still being served."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in self._serving:
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        await self.watch.close()

    # ---- one connection ----------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else "?"
        key = client_key(client)
        mine = self._per_client.get(key, 0)
        if self._open >= MAX_CONNECTIONS or mine >= MAX_PER_CLIENT:
            writer.transport.abort()  # no handshake, no answer: nothing to hold on to
            return
        self._open += 1
        self._per_client[key] = mine + 1
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
        try:
            # the first await of this coroutine: nothing is read before TLS takes over
            if self._tls is not None and not await self._handshake(writer):
                return
            await self._answer(reader, writer, client)
        finally:
            if task is not None:
                self._serving.discard(task)
            self._open -= 1
            left = self._per_client[key] - 1
            if left:
                self._per_client[key] = left
            else:
                del self._per_client[key]
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError, OSError):
                await within(writer.wait_closed(), 1.0)

    async def _handshake(self, writer: asyncio.StreamWriter) -> bool:
        """TLS on the accepted connection, within HANDSHAKE_TIMEOUT; False if it failed."""
        assert self._tls is not None
        try:
            # awaited directly, not through wait_for (a new task): reading pauses before
            # this coroutine yields, so the ClientHello cannot land in the plain reader
            await writer.start_tls(self._tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, TimeoutError, EOFError):  # ssl.SSLError is an OSError
            writer.transport.abort()
            return False
        return True

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
    ) -> None:
        try:
            request = await read_request(reader, client, REQUEST_TIMEOUT)
        except HttpError as error:
            response = _text(error.status, error.text)
        except OSError:  # reset, or broken TLS: nobody to answer
            return
        else:
            try:
                response = self._route(self._through_proxy(request))
            except HttpError as error:
                response = _text(error.status, error.text)
            except Exception:
                LOGGER.exception("console: request failed")
                response = _text(500, "internal error; see the agent's journal")
        with contextlib.suppress(OSError, TimeoutError):
            await within(write_response(writer, response), WRITE_TIMEOUT)

    def _through_proxy(self, request: Request) -> Request:
        """Behind a TLS proxy, the client the proxy appended to X-Forwarded-For."""
        forwarded = request.header("x-forwarded-for")
        if not self.settings.behind_tls_proxy or not forwarded:
            return request
        last = forwarded.rsplit(",", 1)[-1].strip()
        try:
            address = str(ipaddress.ip_address(last))
        except ValueError:
            return request
        return dataclasses.replace(request, client=address)

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
        default = 443 if self._scheme == "https" else 80
        if self.settings.behind_tls_proxy:
            if port and not port.isdigit():
                return False
        elif port != str(self.port) and not (port == "" and self.port == default):
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
        expected = f"{self._scheme}://" + (request.header("host") or "").lower()
        return origin is not None and origin.lower() == expected

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
        response.headers.append(("Set-Cookie", self._cookie(session_id)))
        return response

    def _cookie(self, value: str, *extra: str) -> str:
        flags = ["Path=/", "HttpOnly", "SameSite=Strict", *extra]
        if self._scheme == "https":
            flags.append("Secure")
        return "; ".join([f"{COOKIE}={value}", *flags])

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
        response.headers.append(("Set-Cookie", self._cookie("", "Max-Age=0")))
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
        command: dict[str, Any] = {"command": name}
        if isinstance(body, dict) and "to" in body:
            target = body["to"]
            problem = self._target_problem(name, target)
            if problem:
                return _json(400, {"ok": False, "error": problem})
            command["to"] = target
        reply = self._control(command)
        outcome = "done" if reply.get("ok") else "refused"
        what = f"{name} to {command['to']}" if "to" in command else name
        self._note(f"web console: {what} asked from {request.client}: {outcome}", 5)
        return _json(200, reply)

    def _target_problem(self, name: str, target: object) -> str:
        """Why `target` cannot be switchover's "to" ("" when it can)."""
        if name != "switchover":
            return f'only switchover takes "to", not {name}'
        if not isinstance(target, str) or not NODE_NAME.fullmatch(target):
            return '"to" must be a node name'
        known = self._node_names()
        if target not in known:
            listed = ", ".join(sorted(known)) or "none known"
            return f"switchover refused: {target} is not a node of this cluster ({listed})"
        return ""

    def _node_names(self) -> set[str]:
        if self._nodes is not None:
            return set(self._nodes())
        status = self._control({"command": "status"}).get("status")  # read only
        if not isinstance(status, dict):
            return set()
        names = {status.get("node")}
        peers = status.get("peers")
        if isinstance(peers, dict):
            names.update(peers)
        peer = status.get("peer")
        if isinstance(peer, dict):
            names.add(peer.get("node"))
        return {n for n in names if isinstance(n, str)}


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


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server context, after the config's own file checks (they may have changed)."""
    problems = tls.file_problems(cert, key)
    if problems:
        setting, path, problem = problems[0]
        raise OSError(errno.EINVAL, f"console.{setting} = {path!r}: {problem}")
    try:
        return tls.server_context(cert, key)
    except (ssl.SSLError, ValueError, OSError) as error:
        raise OSError(
            errno.EINVAL, f"console.tls_cert: cannot load the certificate and key: {error}"
        ) from None
