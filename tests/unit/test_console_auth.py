"""Console sessions, CSRF tokens and the failed-login throttle, on a fake clock."""

from __future__ import annotations

from mosqit_failover.console.auth import (
    MAX_CLIENTS,
    MAX_SESSIONS,
    LoginLimiter,
    Sessions,
    csrf_ok,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_idle_and_after_their_lifetime() -> None:
    clock = Clock()
    sessions = Sessions(clock, idle=60, lifetime=300)
    sid, session = sessions.open("127.0.0.1")
    assert sessions.get(sid) is session
    clock.now += 59
    assert sessions.get(sid) is session  # use keeps it alive
    clock.now += 61
    assert sessions.get(sid) is None
    sid, _ = sessions.open("127.0.0.1")
    for _ in range(5):
        clock.now += 50
        assert sessions.get(sid) is not None
    clock.now += 51
    assert sessions.get(sid) is None  # 301 s > lifetime, however busy


def test_sessions_are_bounded_and_ids_and_csrf_tokens_are_unguessable() -> None:
    sessions = Sessions(Clock())
    ids = [sessions.open("c") for _ in range(MAX_SESSIONS + 5)]
    assert len(sessions) == MAX_SESSIONS
    assert sessions.get(ids[0][0]) is None and sessions.get(ids[-1][0]) is ids[-1][1]
    assert len({sid for sid, _ in ids}) == len(ids)
    assert all(len(sid) >= 43 and len(s.csrf) >= 43 for sid, s in ids)
    assert (
        sessions.get("x" * 500) is None and sessions.get("") is None and sessions.get(None) is None
    )


def test_csrf_check() -> None:
    _, session = Sessions(Clock()).open("c")
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, None) and not csrf_ok(session, "")
    assert not csrf_ok(session, session.csrf + "x") and not csrf_ok(session, "é" * 10)


def test_failed_logins_are_throttled_per_client_and_overall() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock, per_client=3, overall=5, window=60)
    for _ in range(3):
        assert limiter.wait("a") == 0
        limiter.failed("a")
    assert 59 < limiter.wait("a") <= 60
    assert limiter.wait("b") == 0
    limiter.failed("b")
    limiter.failed("c")
    assert limiter.wait("d") > 0  # five failures from anywhere: everybody waits
    clock.now += 61
    assert limiter.wait("a") == 0 and limiter.wait("d") == 0
    limiter.failed("a")
    limiter.succeeded("a")
    assert limiter.wait("a") == 0


def test_the_throttle_remembers_a_bounded_number_of_clients() -> None:
    limiter = LoginLimiter(Clock(), overall=10**6)
    for n in range(MAX_CLIENTS + 100):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._clients) == MAX_CLIENTS
