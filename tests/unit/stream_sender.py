"""A sender on a pipe, as the active's channel is: it sends a stream and keeps the pipe
open until the applier answered (an applier applies nothing a sender that already
closed its end would no longer wait for)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping, Sequence


def converse(
    argv: Sequence[str], data: bytes, answers: int, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``, send ``data``, read up to ``answers`` lines (fewer if it refuses or
    ends), then close its stdin and wait for it."""
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdin and process.stdout and process.stderr
    try:
        with contextlib.suppress(BrokenPipeError):  # it refused before reading it all
            process.stdin.write(data)
            process.stdin.flush()
        lines: list[bytes] = []
        while len(lines) < answers:
            line = process.stdout.readline()
            lines.append(line)
            if not line or line.startswith(b"refused:"):
                break
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        out, err = process.stdout.read(), process.stderr.read()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    return subprocess.CompletedProcess(list(argv), process.returncode, b"".join(lines) + out, err)
