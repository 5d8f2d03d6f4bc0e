"""Questions: asked at the terminal, or answered up front (answers file, flags).

An answers file is TOML with the same keys as the questions (see
``examples/wizard-answers.toml``). Unknown keys and values of the wrong TOML
type are refused when the file is read; given answers are validated exactly like
typed ones; in unattended mode a missing answer is an `AnswerError` naming the
key and how to give it. Ctrl-C or end of input at a prompt raises
`KeyboardInterrupt`, which the wizards turn into "interrupted, this was (not)
changed".
"""

from __future__ import annotations

import difflib
import getpass
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    check_answer_keys(data, path)
    return data


UNATTENDED_ACTIONS = ("add", "remove", "move")

EXAMPLE = "wizard-answers.toml in the package's examples (/usr/share/doc/mosqit-failover/examples)"


@dataclass(frozen=True)
class Shape:
    """What a key may hold in TOML, and how to say it."""

    kinds: tuple[type, ...]
    words: str
    texts: bool = False  # a list of text
    secret: bool = False  # its value is never shown (a password)

    def fits(self, value: object) -> bool:
        if isinstance(value, bool):  # TOML true is no number, and no text
            return bool in self.kinds
        if isinstance(value, list) and self.texts:
            return all(isinstance(item, str) for item in value)
        return isinstance(value, tuple(k for k in self.kinds if k is not bool))


TEXT = Shape((str,), 'text in quotes, like "alpha"')
SECRET = Shape((str,), "text in quotes", secret=True)
TEXTS = Shape((list,), 'a list of text, like ["alpha", "beta"]', texts=True)
TEXT_OR_TEXTS = Shape((str, list), 'text or a list of text, like ["alpha", "beta"]', texts=True)
FLAG = Shape((bool,), "true or false")
YES_NO = Shape((bool, str), "true or false")
NUMBER = Shape((int, str), "a number, like 22")
TABLES = Shape((list,), "tables, one per action: [[actions]]")

# What each key may hold. A misspelt key used to be ignored (its question fell back
# to the default without a word), and a string where a list belongs was searched as
# text: accept_changed_host_keys = "10.0.1.11" accepted a changed key of 10.0.1.1
# (helpers' findings).
ANSWER_KEYS: dict[str, Shape] = {
    "nodes": TEXT_OR_TEXTS,
    "order": TEXT_OR_TEXTS,
    "user": TEXT,
    "port": NUMBER,
    "auth": TEXT,
    "password": SECRET,
    "key": TEXT,
    "host_fingerprints": TEXTS,
    "accept_new_host_keys": FLAG,
    "accept_changed_host_keys": TEXTS,
    "package": TEXT,
    "install_package": YES_NO,
    "cluster": TEXT,
    "vip": TEXT,
    "vip_interface": TEXT,
    "actions": TABLES,
}
# keys named after a node, a network or a host: the part after the prefix is free
ANSWER_PATTERNS: dict[str, Shape] = {
    r"node[0-9]+": TEXT,
    r"vip_interface_.+": TEXT,
    r"switch_.+": TEXT,
    r"accept_key_.+": YES_NO,
    r"accept_changed_.+": YES_NO,
}
ACTION_KEYS: dict[str, dict[str, Shape]] = {
    "add": {
        "action": TEXT,
        "kind": TEXT,
        "name": TEXT,
        "unit": TEXT,
        "script": TEXT,
        "start": TEXT,
        "stop": TEXT,
        "status": TEXT,
        "path": TEXT,
        "excludes": TEXT_OR_TEXTS,
    },
    "remove": {"action": TEXT, "remove": TEXT, "stop_removed": YES_NO},
    "move": {"action": TEXT, "move": TEXT, "position": NUMBER},
}


def _shape(key: str) -> Shape | None:
    if key in ANSWER_KEYS:
        return ANSWER_KEYS[key]
    return next((k for p, k in ANSWER_PATTERNS.items() if re.fullmatch(p, key)), None)


def _check_value(source: object, where: str, key: str, value: object, shape: Shape) -> None:
    if not shape.fits(value):
        if shape.secret:  # password = ["..."] printed the password (a helper's finding)
            raise AnswerError(
                f"{source}: {where}{key} is not {shape.words} (its value is not shown): "
                f"give {shape.words}"
            )
        raise AnswerError(f"{source}: {where}{key} = {value!r}: give {shape.words}")


def _unknown(source: object, where: str, key: str, known: list[str]) -> AnswerError:
    close = difflib.get_close_matches(key, known, n=1)
    meant = f" (did you mean {close[0]}?)" if close else ""
    return AnswerError(
        f"{source}: {where}unknown answer {key!r}{meant}: rename or remove it; the keys "
        f"are listed in {EXAMPLE}"
    )


def check_answer_keys(data: Mapping[str, Any], source: object) -> None:
    """Refuse a key no question reads, or a value of the wrong TOML type."""
    known = [*ANSWER_KEYS, "node1", "node2", "vip_interface_NODE", "switch_a", "switch_b"]
    for key, value in data.items():
        shape = _shape(key)
        if shape is None:
            raise _unknown(source, "", key, known)
        _check_value(source, "", key, value, shape)


def check_actions(actions: Any, source: object) -> None:
    """Refuse a malformed ``actions`` before anything is changed: a wrong one was found
    only after the pair was deployed (a helper's finding: and a string was a traceback)."""
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise AnswerError(
            f"{source}: actions must be tables, one per action: [[actions]] then "
            'action = "add", kind = "systemd", unit = "postgresql.service"'
        )
    for number, action in enumerate(actions, 1):
        name = action.get("action")
        if name not in UNATTENDED_ACTIONS:
            raise AnswerError(
                f"{source}: action {number} is {name!r}: use one of {', '.join(UNATTENDED_ACTIONS)}"
            )
        allowed = ACTION_KEYS[name]
        for key, value in action.items():
            where = f"action {number} ({name}): "
            if key not in allowed:
                raise _unknown(source, where, key, list(allowed))
            _check_value(source, where, key, value, allowed[key])


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
            if isinstance(value, list):  # order, excludes: the list as typed at the prompt
                text = ", ".join(str(item) for item in value)
            else:
                text = value if isinstance(value, str) else str(value)
            try:
                return check(text)
            except ValueError as error:
                shown = f"{key} (its value is not shown)" if secret else f"{key} = {value!r}"
                raise AnswerError(f"answer {shown}: {error}") from None
        if not self.interactive:
            if default is not None:
                try:
                    return check(default)
                except ValueError as error:  # a default made of another answer (a name)
                    raise AnswerError(
                        f"no answer for {key} ({question}), and the default {default!r} "
                        f"does not fit ({error}): add {key} = ... to the answers file or "
                        f"pass {flag_name(key)}"
                    ) from None
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
