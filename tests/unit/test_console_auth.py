"""Console sessions, CSRF tokens and the failed-login throttle, on a fake clock."""

from __future__ import annotations

from mosqit_failover.console.auth import (
    MAX_CLIENTS,
    MAX_SESSIONS,
    LoginLimiter,
    Sessions,
    client_key,
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


def test_failed_logins_are_throttled_per_client_never_for_everybody() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock, per_client=3, window=60)
    for _ in range(3):
        assert limiter.wait("a") == 0
        limiter.failed("a")
    assert 59 < limiter.wait("a") <= 60
    # a thousand failures from other clients: each of them waits, nobody else does
    for n in range(1000):
        limiter.failed(f"10.1.{n // 250}.{n % 250}")
    assert limiter.wait("a") > 0 and limiter.wait("d") == 0 and limiter.wait("10.9.9.9") == 0
    clock.now += 30
    limiter.failed("b")
    clock.now += 31  # a's failures are over a minute old, b's one is not
    assert limiter.wait("a") == 0 and limiter.wait("b") == 0
    limiter.failed("b")
    limiter.failed("b")
    assert 28 < limiter.wait("b") <= 29  # a sliding window: from b's oldest failure
    limiter.succeeded("b")
    assert limiter.wait("b") == 0


def test_the_throttle_counts_an_ipv6_slash_64_as_one_client() -> None:
    limiter = LoginLimiter(Clock(), per_client=2)
    limiter.failed("2001:db8:1:2::1")
    limiter.failed("2001:db8:1:2:ffff::9")
    assert limiter.wait("2001:db8:1:2::77") > 0
    assert limiter.wait("2001:db8:1:3::1") == 0
    limiter.failed("::ffff:192.0.2.7")
    limiter.failed("192.0.2.7")
    assert limiter.wait("192.0.2.7") > 0 and limiter.wait("192.0.2.8") == 0
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("?") == "?"


def test_the_throttle_remembers_a_bounded_number_of_clients() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock, per_client=1)
    limiter.failed("192.0.2.1")
    for n in range(MAX_CLIENTS + 100):
        clock.now += 0.001
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == MAX_CLIENTS
    assert limiter.wait("192.0.2.1") == 0  # the one that failed longest ago went first
    assert limiter.wait(f"10.0.{(MAX_CLIENTS + 99) // 256}.{(MAX_CLIENTS + 99) % 256}") > 0
