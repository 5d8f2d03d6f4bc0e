"""Which paths a synced directory's ``excludes`` leave out, as rsync's full sync does.

rsync reads the patterns as its filter rules (``--exclude=PATTERN``; a pattern that
starts with ``"+ "`` includes, ``"- "`` excludes), and in a recursive walk the first
rule that matches a name decides; an excluded directory is not entered, so nothing
below it goes. A batch (``--files-from``) is different: rsync checks each listed name
alone, so ``cache/sessions/x`` goes out although ``cache`` is excluded, and a batch
mirroring ``cache/sessions/.`` would delete the standby's own files there. The engine
therefore asks :func:`excluded` before it lists or replays anything.

Pattern syntax, as rsync's: ``*`` matches within one name, ``**`` across ``/``, ``?``
one character but ``/``, ``[...]`` a class, ``\\`` escapes; a leading ``/`` anchors at
the synced directory, a pattern with a ``/`` inside (or ``**``) matches the end of the
whole path, one without matches the last name; a trailing ``/`` matches directories
only; ``dir/***`` the directory and everything in it. Pure: no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class _Rule:
    include: bool
    directories_only: bool
    regex: re.Pattern[str]


def excluded(path: str, patterns: Sequence[str], is_dir: bool | None = None) -> bool:
    """Whether a full sync leaves ``path`` (relative) out: a directory above it, or the
    path itself, meets an exclude rule before any include rule. ``is_dir`` says what the
    path is, for the patterns that end in ``/``; None (not known) lets them match."""
    parts = path.split("/")
    return any(
        excluded_here("/".join(parts[:depth]), patterns, True if depth < len(parts) else is_dir)
        for depth in range(1, len(parts) + 1)
    )


def excluded_here(path: str, patterns: Sequence[str], is_dir: bool | None = None) -> bool:
    """Whether ``path``'s own name meets an exclude rule before any include rule (the
    directories above it not looked at: a walk that did not enter excluded ones)."""
    for rule in _rules(tuple(patterns)):
        if rule.directories_only and is_dir is False:
            continue
        if rule.regex.match(path):
            return not rule.include
    return False


@functools.lru_cache(maxsize=64)
def _rules(patterns: tuple[str, ...]) -> tuple[_Rule, ...]:
    return tuple(_rule(raw) for raw in patterns)


def _rule(raw: str) -> _Rule:
    include = raw.startswith("+ ")
    pattern = raw[2:] if raw[:2] in ("+ ", "- ") else raw
    everything_below = pattern.endswith("/***")
    if everything_below:
        pattern = pattern[: -len("/***")]
    directories_only = pattern.endswith("/") and not everything_below
    pattern = pattern.rstrip("/")
    anchored = pattern.startswith("/")
    body = _translate(pattern.lstrip("/"))
    tail = "(?:/.*)?" if everything_below else ""
    regex = ("" if anchored else "(?:.*/)?") + body + tail + r"\Z"
    return _Rule(include, directories_only, re.compile(regex, re.DOTALL))


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):  # as in rsync's wildmatch: zero directories too
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
            while i < len(pattern) and pattern[i] == "*":
                i += 1
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif char == "[" and (end := _class_end(pattern, i)) > 0:
            inside = pattern[i + 1 : end]
            negate = inside[:1] in ("!", "^")
            inside = inside[1:] if negate else inside
            escaped = inside.replace("\\", "\\\\").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{escaped}]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """The index of the ``]`` closing the class opened at ``start``; -1 if none."""
    i = start + 1
    if i < len(pattern) and pattern[i] in "!^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":  # a leading ] is a member
        i += 1
    end = pattern.find("]", i)
    return end
