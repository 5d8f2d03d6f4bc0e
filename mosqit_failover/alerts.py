"""Alerts: hooks and mail on every decision and failure, in order, never blocking the agent.

Configured by the `[alerts]` table (`config.Alerts`):

    [alerts]
    hooks = ["/usr/local/sbin/page-oncall"]   # executables, run once per event
    hook_timeout = "10s"
    mail_to = ["ops@example.com"]
    mail_from = "failover@example.com"        # default: mosqit-failover@<FQDN>
    smtp = "127.0.0.1:25"
    events = ["promote", "force-active", "start-failed", "stop-failed", "escalate"]  # default: all

Guarantees of `Alerter` (the side-effect interface):

- `decision()` and `failure()` return at once and never raise: they put the
  event on one bounded queue per sink (each hook, and the mail). A full queue
  drops its oldest event, counts it (`dropped`) and logs it; the next event
  delivered to that sink says how many were dropped before it
  (MOSQIT_DROPPED, "dropped" in the JSON).
- Each sink delivers its events one at a time, in the order they happened
  (like keepalived's notify, but ordered). Sinks do not wait for each other.
- A hook runs with the event in its environment (MOSQIT_EVENT, MOSQIT_CATEGORY,
  MOSQIT_CLUSTER, MOSQIT_NODE, MOSQIT_STATE, MOSQIT_OLD_STATE, MOSQIT_EPOCH,
  MOSQIT_PEER_STATE, MOSQIT_REASON, MOSQIT_TEXT, MOSQIT_TIME, MOSQIT_SEQ,
  MOSQIT_DROPPED) and the same as one JSON object on its stdin, in its own
  process group. After `hook_timeout` the whole group is killed. A timeout, a
  non-zero exit (with the end of its stderr) or a hook that cannot be run is
  logged, counted (`failed`), and the next event goes on. Nothing is retried.
- Mail: one message per event, sent with smtplib in a worker thread, bounded
  by `smtp_timeout`; a failure is logged and counted, not retried.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from mosqit_failover import config
from mosqit_failover.actions import Decision
from mosqit_failover.effects.resources import CommandTimeout, run_command
from mosqit_failover.kinds import AlertKind, DecisionKind
from mosqit_failover.kinds import known_kinds as known_kinds  # where config.py looks for it

if TYPE_CHECKING:  # smtplib and email are imported by the mail sink only: most agents send none
    from email.message import EmailMessage

LOGGER = logging.getLogger("mosqit_failover.alerts")
# the alert kinds that are no decision kind (reconfigure-failed is both)
ALERT_KINDS = tuple(k.value for k in AlertKind if k.value not in set(DecisionKind))


@dataclass(frozen=True)
class AlertEvent:
    """One thing to tell the operator: a decision, an alert (a failed plan) or an escalation."""

    category: str  # "decision" | "alert" | "escalation"
    kind: str  # the decision kind (promote, handover, ...) or the alert kind
    cluster: str
    node: str
    state: str
    old_state: str
    epoch: int
    peer_state: str
    reason: str
    text: str
    time: float  # wall clock, seconds since the epoch
    seq: int  # 1, 2, ... per agent run
    dropped: int = 0  # events this sink dropped (queue full) since the last delivered one

    def environ(self) -> dict[str, str]:
        """The MOSQIT_* variables. An environment cannot hold a NUL (a resource's output
        in the text may): it is shown as \\0, or the hook would not run at all."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time))
        values = {
            "MOSQIT_EVENT": self.kind,
            "MOSQIT_CATEGORY": self.category,
            "MOSQIT_CLUSTER": self.cluster,
            "MOSQIT_NODE": self.node,
            "MOSQIT_STATE": self.state,
            "MOSQIT_OLD_STATE": self.old_state,
            "MOSQIT_EPOCH": str(self.epoch),
            "MOSQIT_PEER_STATE": self.peer_state,
            "MOSQIT_REASON": self.reason,
            "MOSQIT_TEXT": self.text,
            "MOSQIT_TIME": when,
            "MOSQIT_SEQ": str(self.seq),
            "MOSQIT_DROPPED": str(self.dropped),
        }
        return {key: value.replace("\x00", "\\0") for key, value in values.items()}

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()[:60000] + b"\n"

    @property
    def subject(self) -> str:
        if self.category == "decision" and self.old_state != self.state:
            what = f"{self.old_state} -> {self.state}"
        elif self.category == "decision":
            what = self.state
        else:
            what = self.category.upper()
        return f"[{self.cluster}] {self.node}: {what} ({self.kind}), epoch {self.epoch}"


class Sink(abc.ABC):
    """One destination with its own bounded queue, delivering one event at a time in order."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self._size = size
        self._queue: collections.deque[AlertEvent] = collections.deque()
        self._wake = asyncio.Event()
        self._busy = False
        self._dropped_since = 0
        self.dropped = 0
        self.delivered = 0
        self.failed = 0

    def put(self, event: AlertEvent) -> None:
        if len(self._queue) >= self._size:
            lost = self._queue.popleft()
            self.dropped += 1
            self._dropped_since += 1
            LOGGER.warning(
                "alert %s: queue full (%d), dropped event %d (%s); %d dropped so far",
                self.name,
                self._size,
                lost.seq,
                lost.kind,
                self.dropped,
            )
        self._queue.append(event)
        self._wake.set()

    @property
    def idle(self) -> bool:
        return not self._queue and not self._busy

    async def run(self) -> None:
        """Deliver queued events until cancelled; a failed delivery is logged, never raised."""
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            event = replace(self._queue.popleft(), dropped=self._dropped_since)
            self._dropped_since = 0
            self._busy = True
            try:
                if await self.deliver(event):
                    self.delivered += 1
                else:
                    self.failed += 1
            except Exception:
                self.failed += 1
                LOGGER.exception("alert %s: delivering event %d failed", self.name, event.seq)
            finally:
                self._busy = False

    @abc.abstractmethod
    async def deliver(self, event: AlertEvent) -> bool:
        """Deliver one event; True on success. Logs its own failures."""


class HookSink(Sink):
    """Runs one executable per event: env MOSQIT_*, JSON on stdin, killed after `timeout`."""

    def __init__(self, path: str, timeout: float, size: int) -> None:
        super().__init__(f"hook {path}", size)
        self.path = path
        self.timeout = timeout

    async def deliver(self, event: AlertEvent) -> bool:
        try:
            outcome = await run_command(
                (self.path,), self.timeout, env=event.environ(), stdin=event.to_json()
            )
        except CommandTimeout:
            LOGGER.error(
                "alert hook %s did not finish within %gs for event %d (%s) and was killed; "
                "make it faster or raise alerts.hook_timeout",
                self.path,
                self.timeout,
                event.seq,
                event.kind,
            )
            return False
        except OSError as error:
            LOGGER.error(
                "alert hook %s cannot be run (%s): fix alerts.hooks or `chmod +x` it",
                self.path,
                error.strerror or error,
            )
            return False
        if outcome.code != 0:
            LOGGER.error(
                "alert hook %s exited with code %d for event %d (%s); %s",
                self.path,
                outcome.code,
                event.seq,
                event.kind,
                outcome.tail(),
            )
            return False
        return True


class MailSink(Sink):
    """Sends one mail per event through an SMTP server (smtplib in a worker thread)."""

    def __init__(self, settings: config.Alerts, size: int) -> None:
        super().__init__(f"mail to {', '.join(settings.mail_to)}", size)
        self.settings = settings
        self.sender = settings.mail_from or f"mosqit-failover@{socket.getfqdn()}"

    def message(self, event: AlertEvent) -> EmailMessage:
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["Subject"] = event.subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.settings.mail_to)
        fields = "\n".join(f"{k}={v}" for k, v in event.environ().items())
        msg.set_content(f"{event.text}\n\n{fields}\n")
        return msg

    async def deliver(self, event: AlertEvent) -> bool:
        import smtplib

        msg = self.message(event)
        try:
            await asyncio.to_thread(self._send, msg)
        except (OSError, smtplib.SMTPException) as error:
            LOGGER.error(
                "alert mail for event %d (%s) via %s failed: %s; check alerts.smtp",
                event.seq,
                event.kind,
                self.settings.smtp,
                error,
            )
            return False
        return True

    def _send(self, msg: EmailMessage) -> None:
        import smtplib

        s = self.settings
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout) as smtp:
            smtp.send_message(msg)


class Alerter:
    """Turns decisions and failures into events for every configured sink (see the module doc)."""

    def __init__(
        self,
        settings: config.Alerts,
        cluster: str,
        node: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.cluster = cluster
        self.node = node
        self._clock = clock
        self._seq = 0
        self.sinks: list[Sink] = [
            HookSink(path, settings.hook_timeout, settings.queue) for path in settings.hooks
        ]
        if settings.mail_to:
            self.sinks.append(MailSink(settings, settings.queue))

    def wanted(self, kind: str) -> bool:
        return not self.settings.events or kind in self.settings.events

    def decision(self, decision: Decision) -> None:
        """A decision line: queue it for every sink (returns at once)."""
        self._put(
            "decision",
            decision.kind,
            decision.role.value,
            decision.old_role.value,
            decision.epoch,
            decision.peer_role,
            decision.reason,
            decision.text,
        )

    def failure(
        self,
        kind: str,
        text: str,
        *,
        state: str,
        epoch: int,
        peer_state: str = "UNKNOWN",
        escalation: bool = False,
    ) -> None:
        """An Alert (kind start-failed, stop-failed) or an Escalate (kind escalate) action."""
        category = "escalation" if escalation else "alert"
        self._put(category, kind, state, state, epoch, peer_state, text, text)

    def _put(
        self,
        category: str,
        kind: str,
        state: str,
        old_state: str,
        epoch: int,
        peer_state: str,
        reason: str,
        text: str,
    ) -> None:
        if not self.sinks or not self.wanted(kind):
            return
        self._seq += 1
        event = AlertEvent(
            category,
            kind,
            self.cluster,
            self.node,
            state,
            old_state,
            epoch,
            peer_state,
            reason,
            text,
            self._clock(),
            self._seq,
        )
        for sink in self.sinks:
            sink.put(event)

    async def run(self) -> None:
        """Deliver until cancelled (one worker per sink); never raises anything else."""
        if not self.sinks:
            await asyncio.Event().wait()
        await asyncio.gather(*(sink.run() for sink in self.sinks))

    async def drain(self, timeout: float) -> bool:
        """Wait (at most timeout) until every queued event was delivered; True if all were.

        Needs `run()` to be running. For a clean stop: the agent's last lines get out.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(sink.idle for sink in self.sinks):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def counters(self) -> dict[str, dict[str, int]]:
        """Per sink: delivered, failed, dropped (for status and metrics)."""
        return {
            s.name: {"delivered": s.delivered, "failed": s.failed, "dropped": s.dropped}
            for s in self.sinks
        }
