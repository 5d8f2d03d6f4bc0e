"""Every change the wizards make on a node goes through `Changes`.

Guarantees: in dry-run mode nothing is changed, each change is only
described ("would write ..."); otherwise each change is recorded, in order,
with how to undo it, *before* the wizard moves on. `rollback` undoes them in
reverse order (a file gets its old content and mode back, or is removed if it
did not exist) and returns one line per change saying whether it was undone,
so the operator always learns exactly what is left changed. A write or command
cut off by a dropped connection, a timeout or Ctrl-C (SIGTERM, SIGHUP) is
recorded as "perhaps" done (the rename may have happened: the file is whole,
old or new; the command may have taken effect), so it is undone and named too.
A rollback itself interrupted stops, and names every change it did not undo.

`Changes.hook`, when set, runs after each change is made and recorded (tests
use it to break a connection between two nodes' writes); None normally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from mosqit_failover.wizards.ssh import OutcomeUnknown, Session, SshError, TimedOut


@dataclass
class Change:
    node: str
    what: str
    undo: Callable[[], None] | None


def _command(session: Session, command: str) -> Callable[[], None]:
    """An undo step: run ``command`` on the node."""

    def undo() -> None:
        session.run(command, check=True, timeout=120)

    return undo


NOT_UNDONE = ": NOT undone: "  # in a rollback's line for a change it could not undo
STOPPED = "the rollback was interrupted before it undid this"


def left_changed(lines: list[str]) -> list[str]:
    """The nodes a rollback's ``lines`` say are left changed, sorted."""
    return sorted({line.split(":", 1)[0] for line in lines if NOT_UNDONE in line})


class Changes:
    hook: ClassVar[Callable[[Change], None] | None] = None

    def __init__(self, dry_run: bool = False, say: Callable[[str], None] = print) -> None:
        self.dry_run = dry_run
        self.done: list[Change] = []
        self.planned: list[str] = []
        self._say = say

    def plan(self, session: Session, what: str) -> bool:
        """True when the change must really be made (a dry run only lists it)."""
        if self.dry_run:
            line = f"{session.label}: would {what}"
            self.planned.append(line)
            self._say(f"  [dry-run] {line}")
            return False
        return True

    def write_file(self, session: Session, path: str, text: str, mode: int = 0o644) -> None:
        """Atomically replace a file; undo restores the old content and mode (or removes it)."""
        old = session.read(path)
        if old == text and session.mode(path) == mode:
            return
        if not self.plan(session, f"write {path} ({len(text)} bytes, mode {mode:04o})"):
            return
        old_mode = session.mode(path) if old is not None else None

        def undo() -> None:
            if old is None:
                session.remove(path)
            else:
                session.write_atomic(path, old, old_mode or 0o644)

        with self.cut_off(session, f"wrote {path}", undo, "during the write"):
            session.write_atomic(path, text, mode)
        self.record(Change(session.label, f"wrote {path}", undo))

    def run(self, session: Session, command: str, what: str, undo: str | None = None) -> None:
        """Run a command that changes the node; ``undo`` is the command that reverses it."""
        if not self.plan(session, what):
            return
        undo_fn = _command(session, undo) if undo is not None else None
        # Ctrl-C, a dropped connection or a timeout while it ran: it may have taken effect
        # (an agent started), and a rollback that skipped it left that agent running
        # (helpers' findings)
        with self.cut_off(session, what, undo_fn, "while it ran"):
            session.run(command, check=True, timeout=120)
        self.record(Change(session.label, what, undo_fn))

    @contextmanager
    def cut_off(
        self, session: Session, what: str, undo: Callable[[], None] | None, during: str
    ) -> Iterator[None]:
        """Record ``what`` as perhaps done when the block is cut off midway: by Ctrl-C (or
        SIGTERM/SIGHUP), a dropped connection or a timeout (the rename may have happened:
        the file is whole, old or new; the command may have taken effect). The exception
        goes on."""
        try:
            yield
        except KeyboardInterrupt:
            self.perhaps(session, what, "interrupted", undo)
            raise
        except SshError as error:
            if isinstance(error, TimedOut):
                self.perhaps(session, what, "it did not finish in time", undo)
            elif isinstance(error, OutcomeUnknown) or not session.alive:
                self.perhaps(session, what, f"the connection dropped {during}", undo)
            raise

    def perhaps(
        self, session: Session, what: str, why: str, undo: Callable[[], None] | None
    ) -> None:
        """Record a change cut off midway, which may have taken effect: undone too."""
        self.done.append(Change(session.label, f"perhaps {what} ({why})", undo))

    def on_undo(self, session: Session, what: str, undo: str) -> None:
        """Record a step that only a rollback runs (``undo``), at this point of the order:
        e.g. recorded before a node's files are written, the agent is told to reload
        after they were put back."""
        if not self.dry_run:
            self.done.append(Change(session.label, what, _command(session, undo)))

    def record(self, change: Change) -> None:
        self.done.append(change)
        if Changes.hook is not None:
            Changes.hook(change)

    def rollback(self) -> list[str]:
        """Undo everything in reverse order; one line per change saying what happened.

        Ctrl-C (or SIGTERM/SIGHUP) during the rollback stops it: the step it cut off and
        every step not tried yet are named NOT undone (a helper's finding: a second Ctrl-C
        left config, secret and an enabled unit on both nodes, and the report said nothing
        was changed)."""
        lines: list[str] = []
        stopped = False
        for change in reversed(self.done):
            said = len(lines)
            try:
                if change.undo is None:
                    lines.append(f"{change.node}: {change.what} (nothing to undo)")
                elif stopped:
                    lines.append(f"{change.node}{NOT_UNDONE}{change.what} ({STOPPED})")
                else:
                    change.undo()
                    lines.append(f"{change.node}: undone: {change.what}")
            except SshError as error:
                lines.append(f"{change.node}{NOT_UNDONE}{change.what} ({error})")
            except KeyboardInterrupt:
                stopped = True
                if len(lines) == said:  # not said yet: cut off before it was undone
                    lines.append(f"{change.node}{NOT_UNDONE}{change.what} ({STOPPED})")
        self.done.clear()
        return lines

    def summary(self) -> list[str]:
        return [f"{c.node}: {c.what}" for c in self.done]
