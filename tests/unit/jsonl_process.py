"""A child process that prints one JSON record per line (the unit tests' drivers).

The records are read by a thread into a queue, so a test can wait for the next
record matching a predicate with a deadline, and see the last ones when it fails.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]


class JsonLinesProcess:
    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.records: list[Record] = []
        self.stderr = ""
        self._lines: queue.Queue[Record | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            record = json.loads(line)
            self.records.append(record)
            self._lines.put(record)
        self._lines.put(None)

    def read_stderr(self) -> str:
        if self.proc.poll() is not None and self.proc.stderr is not None and not self.stderr:
            self.stderr = self.proc.stderr.read()
        return self.stderr

    def check(self, record: Record) -> None:
        """Called on every record before the predicate (a subclass may fail on some)."""

    def wait_for(self, pred: Callable[[Record], bool], timeout: float) -> Record:
        """The next record matching ``pred``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                record = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if record is None:
                self.proc.wait(timeout=5)
                raise AssertionError(f"driver exited: {self.records[-5:]} {self.read_stderr()}")
            self.check(record)
            if pred(record):
                return record
        raise AssertionError(f"no matching record in {timeout}s: {self.records[-10:]}")
