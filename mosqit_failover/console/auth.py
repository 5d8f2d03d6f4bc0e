"""Who may use the console: the token file, sessions, CSRF tokens, login rate limit.

The token file is read with `authkeys.load_keyring`, so it gets exactly the
secret file's checks (regular file, not a symlink, owned by root, mode 0600 or
0400) and its format: ``KEYID HEX`` lines, one or two of them. Every key
listed is a valid console token (two lines = rotation without locking anyone
out). `mosqit-failover gen-secret /etc/mosqit-failover/console_token` writes one.
The file is read again at every login, so a changed token takes effect at
once (sessions already open stay until they expire or log out).

Guarantees:
- `Tokens.check()` compares the offered token with every listed key using
  `hmac.compare_digest` (no early exit on the first key); it never raises for
  a bad offer and never logs token material.
- `Sessions` keeps at most `MAX_SESSIONS` sessions in memory (the oldest is
  dropped), each with an idle and an absolute lifetime; session ids and CSRF
  tokens are 32 random bytes (`secrets`), sessions are looked up by the SHA-256
  of the id, CSRF tokens compared in constant time.
- `LoginLimiter` allows `per_client` failed logins per client within `window`
  seconds (a sliding window); beyond that it answers how long that client must
  wait. There is no overall limit: failures from one client never lock out
  another. A client is an IPv4 address or an IPv6 /64 (`client_key`: one host
  commonly holds a whole /64). Memory is bounded: at most `MAX_CLIENTS` clients
  are remembered, the one that failed longest ago is forgotten first.
No function here does I/O except `Tokens.load()`/`check()` reading the file.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mosqit_failover.authkeys import Keyring, SecretFileError, load_keyring

MAX_SESSIONS = 64
MAX_CLIENTS = 4096
MAX_TOKEN_TEXT = 512


class ConsoleAuthError(Exception):
    """The token file is unusable; the message names the file, the problem and the fix."""


class Tokens:
    """The console tokens of one 0600 file (see the module doc)."""

    def __init__(self, path: Path, owner_uid: int = 0) -> None:
        self.path = path
        self.owner_uid = owner_uid

    def load(self) -> Keyring:
        """Read and check the file; raise ConsoleAuthError (no token material in it)."""
        try:
            return load_keyring(self.path, owner_uid=self.owner_uid)
        except SecretFileError as error:
            raise ConsoleAuthError(
                f"console token file {error.path}: {error.problem}; fix: {error.fix}"
            ) from None

    def check(self, offered: str) -> bool:
        """Whether `offered` is one of the file's tokens; False on any problem.

        The operator may paste the hex token alone or the whole ``KEYID HEX`` line.
        """
        keyring = self.load()  # ConsoleAuthError propagates: the caller reports 503
        text = offered.strip()[:MAX_TOKEN_TEXT]
        text = text.split()[-1] if text.split() else ""
        try:
            candidate = bytes.fromhex(text) if text.isascii() else b""
        except ValueError:
            candidate = b""
        match = False
        for key in keyring.keys:  # every key, no early exit
            match |= hmac.compare_digest(candidate, key.secret)
        return match and bool(candidate)


@dataclass
class Session:
    csrf: str
    created: float
    seen: float
    client: str


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).digest()


@dataclass
class Sessions:
    """Logged-in browsers, in memory only (an agent restart logs everybody out)."""

    clock: Callable[[], float]
    idle: float = 3600.0
    lifetime: float = 12 * 3600.0
    _by_digest: collections.OrderedDict[bytes, Session] = field(
        default_factory=collections.OrderedDict
    )

    def open(self, client: str) -> tuple[str, Session]:
        """A new session: (the id for the cookie, the session with its CSRF token)."""
        self._expire()
        while len(self._by_digest) >= MAX_SESSIONS:
            self._by_digest.popitem(last=False)
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), now, now, client)
        self._by_digest[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value (and mark it used), or None."""
        if not session_id or len(session_id) > 128:
            return None
        self._expire()
        session = self._by_digest.get(_digest(session_id))
        if session is not None:
            session.seen = self.clock()
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._by_digest.pop(_digest(session_id), None)

    def __len__(self) -> int:
        return len(self._by_digest)

    def _expire(self) -> None:
        now = self.clock()
        dead = [
            d
            for d, s in self._by_digest.items()
            if now - s.seen > self.idle or now - s.created > self.lifetime
        ]
        for digest in dead:
            del self._by_digest[digest]


def csrf_ok(session: Session, offered: str | None) -> bool:
    """The synchronizer-token check, in constant time."""
    if not offered:
        return False
    return hmac.compare_digest(offered.encode("utf-8", "replace"), session.csrf.encode())


def client_key(address: str) -> str:
    """The client a per-client limit counts: the IPv4 address (also when written as
    an IPv4-mapped IPv6 address), the /64 of an IPv6 address, else the text itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class LoginLimiter:
    """Failed-login throttle per client, a sliding window each (see the module doc)."""

    clock: Callable[[], float]
    per_client: int = 5
    window: float = 60.0
    # client key -> times of its recent failures; the client that failed last is last
    _clients: collections.OrderedDict[str, collections.deque[float]] = field(
        default_factory=collections.OrderedDict
    )

    def wait(self, client: str) -> float:
        """Seconds this client must wait before the next try (0 = may try now)."""
        key = client_key(client)
        mine = self._clients.get(key)
        if mine is None:
            return 0.0
        now = self.clock()
        while mine and now - mine[0] > self.window:
            mine.popleft()
        if not mine:
            del self._clients[key]
            return 0.0
        if len(mine) < self.per_client:
            return 0.0
        return max(0.0, mine[0] + self.window - now)

    def failed(self, client: str) -> None:
        key = client_key(client)
        mine = self._clients.pop(key, None) or collections.deque(maxlen=self.per_client)
        mine.append(self.clock())
        self._clients[key] = mine
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client_key(client), None)

    def __len__(self) -> int:
        """How many clients are remembered."""
        return len(self._clients)
