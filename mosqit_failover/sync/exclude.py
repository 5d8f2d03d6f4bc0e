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
only; ``dir/***`` the directory and everything in it; ``[[:digit:]]`` and the other
POSIX classes; a pattern with no ``*``, ``?`` or ``[`` is compared as it is (its
backslashes too); an unclosed ``[`` matches nothing, as does a reversed range; a lone
``!`` clears the rules before it. Checked against a dry run of the real rsync
(tests/unit/test_sync_exclude.py). Pure: no I/O.
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
    directory_regex: re.Pattern[str] | None = None  # matches directories only

    def matches(self, path: str, is_dir: bool | None) -> bool:
        if is_dir is False and self.directories_only:
            return False
        name = "/" + path
        if self.regex.match(name):
            return True
        return is_dir is not False and bool(
            self.directory_regex and self.directory_regex.match(name + "/")
        )


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
        if rule.matches(path, is_dir):
            return not rule.include
    return False


@functools.lru_cache(maxsize=64)
def _rules(patterns: tuple[str, ...]) -> tuple[_Rule, ...]:
    rules: list[_Rule] = []
    for raw in patterns:
        if raw == "!":  # rsync: clears the rules before it
            rules = []
        else:
            rules.append(_rule(raw))
    return tuple(rules)


def _rule(raw: str) -> _Rule:
    include = raw.startswith("+ ")
    pattern = raw[2:] if raw[:2] in ("+ ", "- ") else raw
    directories_only = pattern.endswith("/")
    if directories_only:
        pattern = pattern[:-1]  # one: "tmp//" keeps a "/" no path ends with
    if pattern.endswith("/***"):  # "dir/***": what is below dir, and dir as a directory
        below, itself = pattern[:-1], pattern[:-3]  # "dir/**", and "dir/" for "dir" + "/"
        return _Rule(include, directories_only, _compile(below), _compile(itself))
    return _Rule(include, directories_only, _compile(pattern))


def _compile(pattern: str) -> re.Pattern[str]:
    """The regex for ``"/" + path`` (``"/" + path + "/"`` for a directory's own match of
    ``dir/***``): an anchored pattern matches from the leading slash, one that starts
    with ``**`` anywhere from it (so ``**/b`` matches a top-level ``b``), any other
    after a slash."""
    body = _translate(pattern)
    if body is None:  # an unclosed class or an unknown [:class:]: rsync matches nothing
        return re.compile(r"(?!)")
    free = not pattern.startswith(("/", "**"))
    try:
        return re.compile(("/(?:.*/)?" if free else "") + body + r"\Z", re.DOTALL)
    except re.error:  # a class this translation got wrong: rsync's would match nothing
        return re.compile(r"(?!)")


_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


def _translate(pattern: str) -> str | None:
    """rsync's wildmatch as a regex body; None if the pattern can match nothing."""
    if not any(char in pattern for char in "*?["):
        return re.escape(pattern)  # no wildcard: rsync compares it as it is, backslashes too
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            while i < len(pattern) and pattern[i] == "*":
                i += 1
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "\\":  # escapes the next character; a last one matches nothing
            if i + 1 == len(pattern):
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif char == "[":
            parsed = _character_class(pattern, i)
            if parsed is None:
                return None
            regex, i = parsed
            out.append(regex)
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def _character_class(pattern: str, start: int) -> tuple[str, int] | None:
    """The class opened at ``start`` as a regex that never matches ``/``, and the index
    after it; None if it is not closed or names an unknown [:class:]."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    i += negate
    members: list[str] = []
    first = True
    while True:
        if i >= len(pattern):
            return None
        char = pattern[i]
        if char == "]" and not first:
            break
        first = False
        if pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end < 0 or pattern[i + 2 : end] not in _POSIX_CLASSES:
                return None
            members.append(_POSIX_CLASSES[pattern[i + 2 : end]])
            i = end + 2
            continue
        if char == "\\" and i + 1 < len(pattern):
            i += 1
            char = pattern[i]
        low, i = char, i + 1
        if i + 1 < len(pattern) and pattern[i] == "-" and pattern[i + 1] != "]":
            high = pattern[i + 1]
            i += 2
            if high == "\\" and i < len(pattern):
                high, i = pattern[i], i + 1
            if low <= high:  # a reversed range matches nothing
                members.append(f"{_in_class(low)}-{_in_class(high)}")
        else:
            members.append(_in_class(low))
    body = "".join(members)
    if negate:
        return f"[^/{body}]", i + 1
    return (f"(?!/)[{body}]" if body else "(?!)"), i + 1


def _in_class(char: str) -> str:
    return "\\" + char if char in "\\]^-[" else char
