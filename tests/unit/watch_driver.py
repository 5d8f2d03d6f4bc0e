"""Run a TreeWatcher in this process, for tests that stop it, limit it or unmount under it.

    python watch_driver.py ROOT [--late-reader SECONDS]

Prints JSON lines: {"ready": true} once watching (or {"start_error": ERRNO,
"message": TEXT} and exit), then one {"kind", "path", "dest", "tree"} per
change. Reads commands on stdin: "umount" unmounts ROOT, "mount PATH" mounts a
tmpfs on PATH, "bind SOURCE TARGET" bind-mounts (all in this process's mount
namespace), "write PATH" writes a
file; end of input stops the watcher and prints {"end": true}.

``--late-reader`` starts the watcher's reader thread that much later, as a loaded
machine may: what happens in the meantime must be seen all the same.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mosqit_failover.sync.watch import TreeWatcher

_print_lock = threading.Lock()


def emit(record: dict[str, object]) -> None:
    with _print_lock:
        print(json.dumps(record), flush=True)


def _start_reader_late(seconds: float) -> None:
    read = TreeWatcher._read

    def late(self: TreeWatcher, *args: object) -> None:
        time.sleep(seconds)
        read(self, *args)  # type: ignore[arg-type]

    TreeWatcher._read = late  # type: ignore[method-assign,assignment]


def main() -> int:
    root = sys.argv[1]
    if sys.argv[2:3] == ["--late-reader"]:
        _start_reader_late(float(sys.argv[3]))
    woke = threading.Event()
    watcher = TreeWatcher(root, woke.set)
    try:
        watcher.start()
    except OSError as error:
        emit({"start_error": error.errno, "message": str(error)})
        return 0
    done = threading.Event()

    def forward() -> None:
        while not done.is_set():
            woke.wait(0.1)
            woke.clear()
            for change in watcher.drain():
                emit(dataclasses.asdict(change))

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    emit({"ready": True})
    for line in sys.stdin:
        command, _, path = line.strip().partition(" ")
        if command == "umount":
            subprocess.run(["umount", root], check=True)
        elif command == "mount":  # a tmpfs on a directory of the tree
            subprocess.run(["mount", "-t", "tmpfs", "mqwatch", path], check=True)
        elif command == "bind":  # PATH is "SOURCE TARGET"
            subprocess.run(["mount", "--bind", *path.split(" ")], check=True)
        elif command == "write":  # from here: the mount is in this namespace only
            Path(path).write_text("written")
    watcher.stop()
    done.set()
    thread.join(5)
    for change in watcher.drain():
        emit(dataclasses.asdict(change))
    emit({"end": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
