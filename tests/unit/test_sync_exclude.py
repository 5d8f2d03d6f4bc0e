"""``excludes`` as rsync's full sync reads them (sync/exclude.py), checked against the
real rsync: what a dry run of a full sync sends is what :func:`excluded` lets through.

The engine asks it before it lists names for a batch (rsync checks a listed name's own
rules only: ``cache/x`` goes although ``cache`` is excluded) and before it replays a
rename. Before, a pattern was matched with fnmatch, which erred on the side of yes
(``/logs/old`` also matched ``deep/logs/old``)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from mosqit_failover.sync.exclude import excluded

DIRECTORIES = ["cache/sessions", "a/cache/x", "logs/old", "deep/logs/old", "x.d/y", "tmp/a.tmp"]
DIRECTORIES += ["b/c/d", "app/cache/sessions"]
FILES = ["cache/f", "cache/sessions/s", "a/cache/x/f", "a/b.tmp", "a/c.txt", "logs/old/f"]
FILES += ["deep/logs/old/g", "x.d/y/z", "tmp/a.tmp/in", "b/c/d/e.gz", "b/c/e.gz", "cachex"]
FILES += ["keep.tmp", ".f.swp", "we[ir]d", "weid", "app/cache/sessions/s", "app/main"]

PATTERNS = [
    ("*.tmp",),
    ("cache/",),
    ("cache",),
    ("/cache",),
    ("/logs/old",),
    ("logs/old",),
    ("*.d",),
    ("b/*.gz",),
    ("b/**.gz",),
    ("**/cache/**",),
    ("cache/***",),
    ("+ keep.tmp", "*.tmp"),
    ("- *.swp",),
    ("a/cache/",),
    ("app/cache",),
    ("we[ir]d",),
    ("we\\[ir]d",),
    ("tmp/",),
    ("*/old",),
    ("?ache",),
    ("[!c]ache",),
    ("+ app/", "+ app/main", "- app/*"),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exclude") / "src"
    for directory in DIRECTORIES:
        (root / directory).mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (root / name).write_text(name)
    return root


def _sent_by_rsync(src: Path, patterns: Sequence[str]) -> set[str]:
    """What a full sync of ``src`` with these excludes sends (a dry run)."""
    excludes = [f"--exclude={p}" for p in patterns]
    dry_run = subprocess.run(
        ["rsync", "-a", "-n", "--out-format=%n", *excludes, f"{src}/", f"{src.parent}/nowhere/"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.rstrip("/") for line in dry_run.stdout.splitlines() if line not in ("", "./")}


@pytest.mark.parametrize("patterns", PATTERNS, ids=" ".join)
def test_a_path_is_excluded_exactly_when_a_full_sync_leaves_it_out(
    tree: Path, patterns: tuple[str, ...]
) -> None:
    sent = _sent_by_rsync(tree, patterns)
    every = {str(p.relative_to(tree)): p.is_dir() for p in tree.rglob("*")}
    wrong = sorted(
        f"{path}: rsync {'sends' if path in sent else 'leaves it out'}"
        for path, is_dir in every.items()
        if excluded(path, patterns, is_dir) == (path in sent)
    )
    assert wrong == []


# One path each (its directories made above it), from a second breaker's fuzz against
# rsync 3.5: POSIX classes, backslashes (literal in a pattern without wildcards), "***",
# "**/" at the start and in the middle, "!", unclosed and reversed classes, slashes.
ONE_PATH = [  # (patterns, path, is_dir)
    (["[[:digit:]]*.log"], "1.log", False),  # POSIX class
    (["/data[[:digit:]]/"], "data1", True),
    (["a\\b"], "a\\b", False),  # backslash, no wildcard: literal in rsync
    (["a\\b"], "ab", False),
    (["\\#tmp"], "#tmp", False),
    (["my\\ dir/"], "my dir", True),
    (["+ keep[!x]me", "- me"], "keep/me", False),  # [!x] crosses '/' in excluded()
    (["*[!.]bak"], "x/bak", False),
    (["cache/***"], "cache", False),  # dir/*** and a file named cache
    (["/logs/***"], "logs", False),
    (["a/**/b"], "a/b", False),  # ** / in the middle: zero dirs?
    (["a/**/b"], "a/x/b", False),
    (["**/b"], "b", False),
    (["cache", "!"], "cache", True),  # "!" clears the rules
    (["- !"], "!", False),
    (["[ab]]"], "a]", False),
    (["[\\]]x"], "]x", False),  # backslash in a class
    (["[a-\\]]"], "b", False),
    (["[z-a]"], "x", False),
    (["[b-a]x", "y"], "y", False),
    (["foo["], "foo[", False),  # unclosed class
    (["tmp//"], "tmp", True),  # doubled slashes
    (["//tmp"], "tmp", True),
    (["tmp/***/"], "tmp", True),
    (["/"], "x", False),
    (["/***"], "x", False),
    (["*/"], "x", True),
    (["**"], "x", False),
    (["+ *", "x"], "x", False),
    (["x "], "x", False),  # trailing space kept?
    (["+  x", "x"], "x", False),
    (["-  x"], " x", False),
    (["- x", "+ x"], "x", False),
    (["a/b/"], "a/b", False),
    (["*.d/"], "x.d/f", False),
    (["[!]]"], "a", False),
    (["[^]]"], "]", False),
    (["[]-a]"], "b", False),
    (["a**b"], "xa/yb", False),
    (["a**b"], "a/b", False),
    (["a*/b"], "ax/y/b", False),
    (["*/b"], "x/y/b", False),
    (["**/x/***"], "x", False),
    (["\\*"], "*", False),
    (["\\*"], "a", False),
    (["\\\\*"], "\\a", False),
]


@pytest.mark.parametrize(("patterns", "path", "is_dir"), ONE_PATH)
def test_one_path_is_excluded_exactly_when_rsync_leaves_it_out(
    tmp_path: Path, patterns: list[str], path: str, is_dir: bool
) -> None:
    src = tmp_path / "src"
    (src / path if is_dir else (src / path).parent).mkdir(parents=True, exist_ok=True)
    if not is_dir:
        (src / path).write_text("")
    sent = _sent_by_rsync(src, patterns)
    assert excluded(path, patterns, is_dir) == (path not in sent)


def test_a_pattern_for_directories_counts_when_the_type_is_not_known() -> None:
    assert excluded("x/cache", ["cache/"]) and excluded("x/cache", ["cache/"], is_dir=True)
    assert not excluded("x/cache", ["cache/"], is_dir=False)
    assert excluded("x/cache/f", ["cache/"], is_dir=False)  # below it: a directory
