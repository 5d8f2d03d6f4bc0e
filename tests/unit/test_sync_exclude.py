"""``excludes`` as rsync's full sync reads them (sync/exclude.py), checked against the
real rsync: what a dry run of a full sync sends is what :func:`excluded` lets through.

The engine asks it before it lists names for a batch (rsync checks a listed name's own
rules only: ``cache/x`` goes although ``cache`` is excluded) and before it replays a
rename. Before, a pattern was matched with fnmatch, which erred on the side of yes
(``/logs/old`` also matched ``deep/logs/old``)."""

from __future__ import annotations

import subprocess
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


@pytest.mark.parametrize("patterns", PATTERNS, ids=" ".join)
def test_a_path_is_excluded_exactly_when_a_full_sync_leaves_it_out(
    tree: Path, patterns: tuple[str, ...]
) -> None:
    excludes = [f"--exclude={p}" for p in patterns]
    dry_run = subprocess.run(
        ["rsync", "-a", "-n", "--out-format=%n", *excludes, f"{tree}/", f"{tree.parent}/nowhere/"],
        capture_output=True,
        text=True,
        check=True,
    )
    sent = {line.rstrip("/") for line in dry_run.stdout.splitlines() if line not in ("", "./")}
    every = {str(p.relative_to(tree)): p.is_dir() for p in tree.rglob("*")}
    wrong = sorted(
        f"{path}: rsync {'sends' if path in sent else 'leaves it out'}"
        for path, is_dir in every.items()
        if excluded(path, patterns, is_dir) == (path in sent)
    )
    assert wrong == []


def test_a_pattern_for_directories_counts_when_the_type_is_not_known() -> None:
    assert excluded("x/cache", ["cache/"]) and excluded("x/cache", ["cache/"], is_dir=True)
    assert not excluded("x/cache", ["cache/"], is_dir=False)
    assert excluded("x/cache/f", ["cache/"], is_dir=False)  # below it: a directory
