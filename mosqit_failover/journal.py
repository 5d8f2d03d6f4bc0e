"""Decision lines to the journal, with structured fields; stderr without a journal.

Each kind of decision has a fixed MESSAGE_ID (derived from its name), so
`journalctl MESSAGE_ID=...` finds every failover, and the catalog can explain it.
Fields: STATE, OLD_STATE, EPOCH, PEER_STATE, REASON, DECISION, NODE.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

from mosqit_failover.actions import Decision
from mosqit_failover.kinds import DecisionKind

_NAMESPACE = uuid.UUID("6d6f7371-6974-2d66-6169-6c6f76657221")
LOGGER = logging.getLogger("mosqit_failover")


def message_id(kind: str) -> str:
    """The journal MESSAGE_ID of a kind of decision (32 hex digits), from its name."""
    return uuid.uuid5(_NAMESPACE, str(kind)).hex


def _journal_available() -> bool:
    return os.path.exists("/run/systemd/journal/socket")


class DecisionLog:
    """Writes each decision once; never raises (a logging failure must not stop the agent)."""

    def __init__(self, use_journal: bool | None = None) -> None:
        self._journal = None
        if use_journal if use_journal is not None else _journal_available():
            try:
                from systemd import journal

                self._journal = journal
            except ImportError:
                self._journal = None

    def write(self, decision: Decision) -> None:
        priority = DecisionKind(decision.kind).priority  # warnings for what operators must see
        try:
            if self._journal is not None:
                self._journal.send(
                    decision.text,
                    MESSAGE_ID=message_id(decision.kind),
                    PRIORITY=str(priority),
                    SYSLOG_IDENTIFIER="mosqit-failover",
                    NODE=decision.node,
                    STATE=decision.role.value,
                    OLD_STATE=decision.old_role.value,
                    EPOCH=str(decision.epoch),
                    PEER_STATE=decision.peer_role,
                    REASON=decision.reason,
                    DECISION=decision.kind,
                )
            else:
                print(f"<{priority}>{decision.text}", file=sys.stderr, flush=True)
        except OSError as error:
            LOGGER.warning("could not log a decision (%s): %s", error, decision.text)

    def note(self, text: str, priority: int = 6, **fields: str) -> None:
        """A line that is not a decision: probe trouble, dropped packets, effects."""
        try:
            if self._journal is not None:
                self._journal.send(
                    text, PRIORITY=str(priority), SYSLOG_IDENTIFIER="mosqit-failover", **fields
                )
            else:
                print(f"<{priority}>{text}", file=sys.stderr, flush=True)
        except OSError:
            pass
