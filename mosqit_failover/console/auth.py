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
- `LoginLimiter` allows `per_client` failed logins per client address and
  `overall` failed logins in total within `window` seconds; beyond that it
  answers how long to wait. Memory is bounded (`MAX_CLIENTS` addresses).
No function here does I/O except `Tokens.load()`/`check()` reading the file.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mosqit_failover.authkeys import Keyring, SecretFileError, load_keyring

MAX_SESSIONS = 64
MAX_CLIENTS = 1024
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


@dataclass
class LoginLimiter:
    """Failed-login throttle per client address and overall (see the module doc)."""

    clock: Callable[[], float]
    per_client: int = 5
    overall: int = 30
    window: float = 60.0
    _clients: collections.OrderedDict[str, collections.deque[float]] = field(
        default_factory=collections.OrderedDict
    )
    _all: collections.deque[float] = field(default_factory=collections.deque)

    def wait(self, client: str) -> float:
        """Seconds this client must wait before the next try (0 = may try now)."""
        now = self.clock()
        self._trim(self._all, now)
        mine = self._clients.get(client)
        if mine is not None:
            self._trim(mine, now)
        waits = [0.0]
        if mine is not None and len(mine) >= self.per_client:
            waits.append(mine[0] + self.window - now)
        if len(self._all) >= self.overall:
            waits.append(self._all[0] + self.window - now)
        return max(waits)

    def failed(self, client: str) -> None:
        now = self.clock()
        mine = self._clients.pop(client, None) or collections.deque()
        mine.append(now)
        self._clients[client] = mine  # most recent last
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        self._all.append(now)
        while len(mine) > self.per_client:
            mine.popleft()
        while len(self._all) > self.overall:
            self._all.popleft()

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _trim(self, times: collections.deque[float], now: float) -> None:
        while times and now - times[0] > self.window:
            times.popleft()
