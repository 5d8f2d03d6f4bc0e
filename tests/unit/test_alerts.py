"""Alerts: real hook executables and a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from mosqit_failover.actions import Decision
from mosqit_failover.alerts import Alerter, known_kinds
from mosqit_failover.config import Alerts, ConfigError, parse
from mosqit_failover.events import Role
from mosqit_failover.sim_scenarios import SIM_CONFIG

T = TypeVar("T")


def promote(epoch: int = 7, kind: str = "promote") -> Decision:
    return Decision(
        kind, "beta", Role.STANDBY, Role.PROMOTING, epoch, "UNKNOWN", "peer alpha gone: echo lost"
    )


def hook(tmp_path: Path, body: str, name: str = "hook") -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


RECORDER = (
    'echo "start $MOSQIT_SEQ" >> {log}\n'
    "cat > {dir}/stdin-$MOSQIT_SEQ.json\nenv | grep ^MOSQIT_ | sort > {dir}/env-$MOSQIT_SEQ\n"
    "sleep {pause}\n"
    'echo "end $MOSQIT_SEQ" >> {log}'
)


def recorder(tmp_path: Path, pause: float = 0.0) -> Path:
    return hook(
        tmp_path, RECORDER.format(log=tmp_path / "log", dir=tmp_path, pause=pause), "recorder"
    )


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


async def with_worker(alerter: Alerter, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(alerter.run())
    try:
        await body()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_hook_gets_the_event_in_its_environment_and_as_json(tmp_path: Path) -> None:
    settings = Alerts(hooks=(str(recorder(tmp_path)),))
    alerter = Alerter(settings, "billing", "beta", clock=lambda: 1_800_000_000.0)

    async def body() -> None:
        alerter.decision(promote())
        alerter.failure("start-failed", "beta: promotion failed", state="PROMOTING", epoch=7)
        assert await alerter.drain(5)

    run(lambda: with_worker(alerter, body))
    env = dict(line.split("=", 1) for line in (tmp_path / "env-1").read_text().splitlines())
    assert env == {
        "MOSQIT_EVENT": "promote",
        "MOSQIT_CATEGORY": "decision",
        "MOSQIT_CLUSTER": "billing",
        "MOSQIT_NODE": "beta",
        "MOSQIT_STATE": "PROMOTING",
        "MOSQIT_OLD_STATE": "STANDBY",
        "MOSQIT_EPOCH": "7",
        "MOSQIT_PEER_STATE": "UNKNOWN",
        "MOSQIT_REASON": "peer alpha gone: echo lost",
        "MOSQIT_TEXT": "beta STANDBY -> PROMOTING: peer alpha gone: echo lost [epoch 7]",
        "MOSQIT_TIME": "2027-01-15T08:00:00Z",
        "MOSQIT_SEQ": "1",
        "MOSQIT_DROPPED": "0",
    }
    sent = json.loads((tmp_path / "stdin-2.json").read_text())
    assert sent["kind"] == "start-failed" and sent["category"] == "alert"
    assert sent["text"] == "beta: promotion failed" and sent["seq"] == 2
    assert alerter.counters() == {
        f"hook {tmp_path}/recorder": {"delivered": 2, "failed": 0, "dropped": 0}
    }


def test_a_nul_in_a_failure_text_still_reaches_the_hook(tmp_path: Path) -> None:
    """A resource's stderr (in a start-failed text) may hold a NUL, which no environment
    can: the hook did not run at all (a helper's attack, 2026-12-06)."""
    settings = Alerts(hooks=(str(recorder(tmp_path)),))
    alerter = Alerter(settings, "billing", "beta", clock=lambda: 1_800_000_000.0)

    async def body() -> None:
        alerter.failure(
            "start-failed", "resource db: start failed (oo\x00ps)", state="PROMOTING", epoch=7
        )
        assert await alerter.drain(5)

    run(lambda: with_worker(alerter, body))
    env = dict(line.split("=", 1) for line in (tmp_path / "env-1").read_text().splitlines())
    assert env["MOSQIT_TEXT"] == "resource db: start failed (oo\\0ps)"
    sent = json.loads((tmp_path / "stdin-1.json").read_text())
    assert sent["text"] == "resource db: start failed (oo\x00ps)"  # JSON holds it as it is
    assert alerter.counters()[f"hook {tmp_path}/recorder"]["delivered"] == 1


def test_events_reach_a_hook_in_order_one_at_a_time_without_blocking(tmp_path: Path) -> None:
    settings = Alerts(hooks=(str(recorder(tmp_path, pause=0.05)),))
    alerter = Alerter(settings, "billing", "beta")

    async def body() -> None:
        started = time.monotonic()
        for epoch in range(1, 6):
            alerter.decision(promote(epoch))
        assert time.monotonic() - started < 0.01  # the agent never waits for a hook
        assert await alerter.drain(10)

    run(lambda: with_worker(alerter, body))
    lines = (tmp_path / "log").read_text().split("\n")[:-1]
    assert lines == [f"{what} {n}" for n in range(1, 6) for what in ("start", "end")]


def test_a_hanging_hook_is_killed_at_its_timeout_and_the_next_event_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hang = hook(tmp_path, 'if [ "$MOSQIT_SEQ" = 1 ]; then sleep 60; fi\ntouch ' + str(tmp_path))
    # Bounds far apart, so a loaded machine cannot flip the result: the other hook's
    # event must arrive well before the hanging one's timeout (3 s), and the hanging
    # hook must be killed long before its own sleep (60 s) would end.
    settings = Alerts(hooks=(str(hang), str(recorder(tmp_path))), hook_timeout=3.0)
    alerter = Alerter(settings, "billing", "beta")

    async def body() -> None:
        started = time.monotonic()
        alerter.decision(promote(1))
        alerter.decision(promote(2))
        await until(lambda: (tmp_path / "env-2").exists(), timeout=2.5)
        assert await alerter.drain(30)
        assert time.monotonic() - started < 30

    with caplog.at_level(logging.ERROR, "mosqit_failover.alerts"):
        run(lambda: with_worker(alerter, body))
    assert f"alert hook {hang} did not finish within 3s for event 1 (promote)" in caplog.text
    counts = alerter.counters()[f"hook {hang}"]
    assert counts == {"delivered": 1, "failed": 1, "dropped": 0}


def test_a_failing_or_missing_hook_is_logged_and_the_agent_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = hook(tmp_path, 'echo "pager gateway refused" >&2; exit 3')
    missing = tmp_path / "no-such-hook"
    not_executable = tmp_path / "plain"
    not_executable.write_text("#!/bin/sh\n")
    settings = Alerts(hooks=(str(failing), str(missing), str(not_executable)))
    alerter = Alerter(settings, "billing", "beta")

    async def body() -> None:
        alerter.decision(promote())
        alerter.decision(promote(8))
        assert await alerter.drain(5)

    with caplog.at_level(logging.ERROR, "mosqit_failover.alerts"):
        run(lambda: with_worker(alerter, body))
    assert (
        f"alert hook {failing} exited with code 3 for event 1 (promote); "
        "stderr: pager gateway refused" in caplog.text
    )
    assert f"alert hook {missing} cannot be run (No such file or directory)" in caplog.text
    assert f"alert hook {not_executable} cannot be run (Permission denied)" in caplog.text
    assert all(c["failed"] == 2 for c in alerter.counters().values())


def test_a_full_queue_drops_the_oldest_and_tells_the_next_delivered_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Alerts(hooks=(str(recorder(tmp_path)),), queue=2)
    alerter = Alerter(settings, "billing", "beta")
    with caplog.at_level(logging.WARNING, "mosqit_failover.alerts"):
        for epoch in range(1, 6):  # the worker is not running yet: all five wait
            alerter.decision(promote(epoch))

    async def body() -> None:
        assert await alerter.drain(5)

    run(lambda: with_worker(alerter, body))
    assert (tmp_path / "log").read_text().split() == [
        "start",
        "4",
        "end",
        "4",
        "start",
        "5",
        "end",
        "5",
    ]
    assert json.loads((tmp_path / "stdin-4.json").read_text())["dropped"] == 3
    assert json.loads((tmp_path / "stdin-5.json").read_text())["dropped"] == 0
    assert "queue full (2), dropped event 1 (promote); 1 dropped so far" in caplog.text
    assert next(iter(alerter.counters().values()))["dropped"] == 3


def test_the_events_filter_sends_only_the_named_kinds(tmp_path: Path) -> None:
    settings = Alerts(hooks=(str(recorder(tmp_path)),), events=("promote", "stop-failed"))
    alerter = Alerter(settings, "billing", "beta")

    async def body() -> None:
        alerter.decision(promote(kind="standby"))
        alerter.decision(promote(kind="promote"))
        alerter.failure("start-failed", "x", state="PROMOTING", epoch=7)
        alerter.failure("stop-failed", "y", state="DEMOTING", epoch=7)
        assert await alerter.drain(5)

    run(lambda: with_worker(alerter, body))
    kinds = [json.loads((tmp_path / f"stdin-{n}.json").read_text())["kind"] for n in (1, 2)]
    assert kinds == ["promote", "stop-failed"]
    assert not (tmp_path / "stdin-3.json").exists()


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


async def smtp_server(inbox: Inbox) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTPServer(inbox, hostname="mail.test"), "127.0.0.1", 0
    )
    port: int = server.sockets[0].getsockname()[1]
    return server, port


def test_mail_goes_through_a_real_smtp_server_in_order() -> None:
    inbox = Inbox()

    async def main() -> None:
        server, port = await smtp_server(inbox)
        settings = Alerts(
            mail_to=("ops@example.com", "noc@example.com"),
            mail_from="failover@example.com",
            smtp=f"127.0.0.1:{port}",
        )
        alerter = Alerter(settings, "billing", "beta")

        async def body() -> None:
            alerter.decision(promote())
            alerter.failure(
                "escalate", "stopping failed 4 times", state="DEMOTING", epoch=7, escalation=True
            )
            assert await alerter.drain(10)

        await with_worker(alerter, body)
        server.close()

    asyncio.run(main())
    assert len(inbox.envelopes) == 2
    first = inbox.envelopes[0]
    assert first.mail_from == "failover@example.com"
    assert first.rcpt_tos == ["ops@example.com", "noc@example.com"]
    assert isinstance(first.content, bytes)
    message = email.message_from_bytes(first.content)
    assert message["Subject"] == "[billing] beta: STANDBY -> PROMOTING (promote), epoch 7"
    body = message.get_payload()
    assert isinstance(body, str)
    assert "peer alpha gone: echo lost" in body and "MOSQIT_EPOCH=7" in body
    assert isinstance(inbox.envelopes[1].content, bytes)
    second = email.message_from_bytes(inbox.envelopes[1].content)
    assert second["Subject"] == "[billing] beta: ESCALATION (escalate), epoch 7"


def test_an_unreachable_smtp_server_is_logged_and_the_next_mail_still_tried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Alerts(mail_to=("ops@example.com",), smtp=f"127.0.0.1:{port}", smtp_timeout=2)
    alerter = Alerter(settings, "billing", "beta")

    async def body() -> None:
        alerter.decision(promote(1))
        alerter.decision(promote(2))
        assert await alerter.drain(10)

    with caplog.at_level(logging.ERROR, "mosqit_failover.alerts"):
        run(lambda: with_worker(alerter, body))
    assert f"alert mail for event 1 (promote) via 127.0.0.1:{port} failed" in caplog.text
    assert "event 2 (promote)" in caplog.text
    assert next(iter(alerter.counters().values()))["failed"] == 2


def test_no_sinks_means_nothing_is_queued() -> None:
    alerter = Alerter(Alerts(), "billing", "beta")
    alerter.decision(promote())
    assert alerter.counters() == {}


def _config(table: str) -> Any:
    return parse(SIM_CONFIG + "\n" + table)


def test_the_alerts_table_is_read_with_defaults() -> None:
    assert _config("").alerts == Alerts()
    alerts = _config(
        '[alerts]\nhooks = ["/usr/local/sbin/page"]\nhook_timeout = "5s"\n'
        'mail_to = ["ops@example.com"]\nsmtp = "mail.example.com:587"\nevents = ["promote"]\n'
    ).alerts
    assert alerts.hooks == ("/usr/local/sbin/page",) and alerts.hook_timeout == 5.0
    assert (alerts.smtp_host, alerts.smtp_port) == ("mail.example.com", 587)
    assert alerts.events == ("promote",)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('hooks = ["page.sh"]', "alerts.hooks = ['page.sh']: 'page.sh' must be an absolute path"),
        ('hook_timeout = "10"', "alerts.hook_timeout = '10': must be a duration with a unit"),
        ('mail_to = ["ops"]', "alerts.mail_to = ['ops']: 'ops' is not a mail address"),
        ('smtp = "localhost"', "alerts.smtp = 'localhost': must be \"HOST:PORT\""),
        ('events = ["promotion"]', "'promotion' is no event kind; known: adopt, "),
        ("hook = 1", "alerts.hook: unknown key; allowed here: events, hook_timeout, hooks"),
    ],
)
def test_bad_alerts_config_names_key_value_and_fix(table: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(f"[alerts]\n{table}\n")
    assert any(expected in p for p in caught.value.problems), caught.value.problems


def test_known_kinds_include_decisions_and_failures() -> None:
    kinds = known_kinds()
    assert {"promote", "handover", "start-failed", "stop-failed", "escalate"} <= set(kinds)
