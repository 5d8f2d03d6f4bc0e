"""One change the tree watcher reports (see :mod:`mosqit_failover.sync.watch`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """kind: "path" (one entry), "new" (a file just created: one entry the peer has
    not had since), "tree" (a directory and all below it), "full" (events were lost:
    rescan all), "limit" (watch limit hit: poll instead), "unwatchable" (a directory
    inotify cannot watch, its path too long: poll instead), "lost" (the root itself
    went away), "move" (``path`` renamed to ``dest`` inside the tree; ``tree``: it is a
    directory), "mount" (a filesystem mounted or unmounted at ``path``: what is there
    now, which the peer must get without losing what it had there). For "full",
    "limit", "unwatchable" and "lost", ``path`` says why."""

    kind: str
    path: str = ""
    dest: str = ""
    tree: bool = False
