"""One change the tree watcher reports (see :mod:`mosqit_failover.sync.watch`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """kind: "path" (one entry), "tree" (a directory and all below it), "full",
    "limit" (watch limit hit: poll instead), "lost" (the root itself went away),
    "move" (``path`` renamed to ``dest`` inside the tree; ``tree``: it is a directory)."""

    kind: str
    path: str = ""
    dest: str = ""
    tree: bool = False
