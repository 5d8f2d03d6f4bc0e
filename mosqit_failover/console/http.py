"""A small, strict HTTP/1.1 server side for the console, on asyncio streams.

One request per connection (every response says ``Connection: close``), so
there is no pipelining, keep-alive or chunked state to get wrong.

Guarantees of `read_request` (the side-effect interface: it reads a socket):
- it reads at most `MAX_HEAD` bytes of request line and headers and at most
  `MAX_BODY` bytes of body, and gives up after `timeout` seconds in total;
- it raises `HttpError` (with the status to answer) on anything it does not
  fully understand: a method other than GET/POST, a target not in origin form,
  a version other than HTTP/1.0 or 1.1, bare LF or control characters, header
  folding, malformed or duplicate Host/Content-Length/Origin/Cookie headers,
  any Transfer-Encoding, a POST without Content-Length, a body over the limit;
- on success the whole body has been read and nothing more.
`write_response` writes one response with the security headers of every
console answer and closes nothing itself (the caller closes the writer).
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from dataclasses import dataclass, field

from mosqit_failover.deadlines import within

MAX_HEAD = 8192
MAX_BODY = 4096
MAX_HEADERS = 48
SINGLE = ("host", "content-length", "origin", "cookie", "content-type", "x-csrf-token")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TARGET = re.compile(r"^/[\x21-\x7e]*$")
_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on POST
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
REASONS = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    421: "Misdirected Request",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request we refuse; `status` is what to answer."""

    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.text = text
        super().__init__(f"{status} {text}")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    client: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookies(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in (self.headers.get("cookie") or "").split(";"):
            name, eq, value = part.strip().partition("=")
            if eq and name and name not in out:
                out[name] = value
        return out

    def form(self) -> dict[str, str]:
        """An application/x-www-form-urlencoded body (first value of each name)."""
        try:
            text = self.body.decode("ascii")
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "form body is not url-encoded ASCII") from None
        out: dict[str, str] = {}
        for name, value in pairs:
            out.setdefault(name, value)
        return out


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader, client: str, timeout: float) -> Request:
    """Read one request (see the module doc for what is refused)."""
    try:
        return await within(_read(reader, client), timeout)
    except TimeoutError:
        raise HttpError(408, "request not received in time") from None


async def _read(reader: asyncio.StreamReader, client: str) -> Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head over {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError:
        raise HttpError(400, "connection closed before the request head ended") from None
    if len(head) > MAX_HEAD:
        raise HttpError(431, f"request head over {MAX_HEAD} bytes")
    try:
        text = head[:-4].decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    lines = text.split("\r\n")
    if any("\n" in line or "\r" in line for line in lines):
        raise HttpError(400, "bare CR or LF in the request head")
    method, path, query = _request_line(lines[0])
    headers = _headers(lines[1:])
    if "transfer-encoding" in headers:
        raise HttpError(501, "Transfer-Encoding is not supported; send Content-Length")
    if "host" not in headers:
        raise HttpError(400, "Host header missing")
    length_text = headers.get("content-length")
    if length_text is None:
        if method == "POST":
            raise HttpError(411, "POST needs Content-Length")
        length = 0
    else:
        if not length_text.isdigit() or len(length_text) > 9:
            raise HttpError(400, "bad Content-Length")
        length = int(length_text)
    if length > MAX_BODY:
        raise HttpError(413, f"body over {MAX_BODY} bytes")
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise HttpError(400, "connection closed before the body ended") from None
    return Request(method, path, query, headers, body, client)


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, "only HTTP/1.1 and 1.0")
    if method not in ("GET", "POST"):
        raise HttpError(501 if _TOKEN.match(method) else 400, f"method {method[:16]} not allowed")
    if len(target) > 2048 or not _TARGET.match(target) or "#" in target:
        raise HttpError(400, "request target must be a path")
    path, _, query = target.partition("?")
    return method, path, query


def _headers(lines: list[str]) -> dict[str, str]:
    if len(lines) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines:
        if line[:1] in (" ", "\t"):
            raise HttpError(400, "header folding is not allowed")
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name):
            raise HttpError(400, "malformed header line")
        value = value.strip(" \t")
        if _VALUE_BAD.search(value):
            raise HttpError(400, "control character in a header value")
        key = name.lower()
        if key in headers:
            if key in SINGLE:
                raise HttpError(400, f"{name} given twice")
            headers[key] += ", " + value
        else:
            headers[key] = value
    return headers


async def write_response(writer: asyncio.StreamWriter, response: Response) -> None:
    """Write one response (status line, security headers, body) and drain."""
    reason = REASONS.get(response.status, "Unknown")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in SECURITY_HEADERS]
    lines += [
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in response.headers]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    writer.write(response.body)
    await writer.drain()
