"""Questions: asked at the terminal, or answered up front (answers file, flags).

An answers file is TOML with the same keys as the questions (see
``examples/wizard-answers.toml``). Given answers are validated exactly like
typed ones; in unattended mode a missing answer is an `AnswerError` naming the
key and how to give it. Ctrl-C or end of input at a prompt raises
`KeyboardInterrupt`, which the wizards turn into "interrupted, this was (not)
changed".
"""

from __future__ import annotations

import getpass
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO, TypeVar

from mosqit_failover.terminal import terminal_safe

T = TypeVar("T")


class AnswerError(Exception):
    """A given answer is invalid or a needed one is missing; the message names the key."""


def load_answers(path: Path) -> dict[str, Any]:
    """Read an answers file (TOML). Raises AnswerError naming the problem."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise AnswerError(f"cannot read the answers file {path}: {error.strerror}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise AnswerError(f"{path} begins with a byte-order mark; save it as UTF-8 without BOM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise AnswerError(
            f"{path} is not UTF-8 text (byte {raw[error.start]:#04x} on line {line}); save "
            "it as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise AnswerError(f"{path}: not valid TOML ({error}); fix the syntax there") from None
    if "password" in data and path.stat().st_mode & 0o077:
        raise AnswerError(f"{path} holds a password but others may read it: chmod 600 {path}")
    check_actions(data.get("actions", []), path)
    return data


UNATTENDED_ACTIONS = ("add", "remove", "move")


def check_actions(actions: Any, source: object) -> None:
    """Refuse a malformed ``actions`` before anything is changed: a wrong one was found
    only after the pair was deployed (a helper's finding: and a string was a traceback)."""
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise AnswerError(
            f"{source}: actions must be tables, one per action: [[actions]] then "
            'action = "add", kind = "systemd", unit = "postgresql.service"'
        )
    for number, action in enumerate(actions, 1):
        if action.get("action") not in UNATTENDED_ACTIONS:
            raise AnswerError(
                f"{source}: action {number} is {action.get('action')!r}: use one of "
                f"{', '.join(UNATTENDED_ACTIONS)}"
            )


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


class Asker:
    """Asks questions, taking given answers first. Interactive only when told so."""

    def __init__(
        self,
        answers: Mapping[str, Any],
        interactive: bool,
        out: TextIO | None = None,
        read: Callable[[str], str] = input,
        read_secret: Callable[[str], str] = getpass.getpass,
    ) -> None:
        self.answers = dict(answers)
        self.interactive = interactive
        self.out = out or sys.stdout
        self._read = read
        self._read_secret = read_secret

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def given(self, key: str) -> bool:
        return key in self.answers and self.answers[key] is not None

    def _prompt(self, text: str, secret: bool = False) -> str:
        # input() on a terminal and getpass write the prompt past sys.stdout, and a
        # question may name what a node said (its interfaces)
        try:
            return (self._read_secret if secret else self._read)(terminal_safe(text))
        except EOFError:
            raise KeyboardInterrupt from None

    def ask(
        self,
        key: str,
        question: str,
        check: Callable[[str], T],
        default: str | None = None,
        secret: bool = False,
    ) -> T:
        """The checked answer to one question (check raises ValueError with the fix)."""
        if self.given(key):
            value = self.answers[key]
            try:
                return check(value if isinstance(value, str) else str(value))
            except ValueError as error:
                raise AnswerError(f"answer {key} = {value!r}: {error}") from None
        if not self.interactive:
            if default is not None:
                return check(default)
            raise AnswerError(
                f"no answer for {key} ({question}): add {key} = ... to the answers file "
                f"or pass {flag_name(key)}"
            )
        hint = f" [{default}]" if default is not None and not secret else ""
        while True:
            text = self._prompt(f"{question}{hint}: ", secret).strip()
            if not text and default is not None:
                text = default
            try:
                result = check(text)
            except ValueError as error:
                self.say(f"  {error}")
                continue
            self.answers[key] = text
            return result

    def confirm(self, key: str, question: str, default: bool = False) -> bool:
        """yes/no; given answers may be true/false or yes/no."""
        value = self.answers.get(key)
        if isinstance(value, bool):
            return value
        return self.ask(key, f"{question} (yes/no)", yes_no, "yes" if default else "no")

    def choose(self, key: str, question: str, choices: list[str], default: str | None) -> str:
        """One of ``choices`` (offered in the question)."""

        def check(text: str) -> str:
            if text not in choices:
                raise ValueError(f"choose one of: {', '.join(choices)}")
            return text

        return self.ask(key, f"{question} ({', '.join(choices)})", check, default)


def yes_no(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("y", "yes", "true"):
        return True
    if lowered in ("n", "no", "false"):
        return False
    raise ValueError("answer yes or no")


def non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("an answer is needed")
    return text.strip()
