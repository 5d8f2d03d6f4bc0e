"""Runs one probe for a bounded time and prints JSON lines; used by test_probes.py.

Run inside a network namespace::

    python probe_driver.py link a=pa,b=ghost SECONDS
    python probe_driver.py echo SOURCE TARGET INTERVAL SECONDS [TIMEOUT]

Each report is one line ``{"t": <monotonic>, ...}``; the run ends after
SECONDS or when stdin is closed, with a line ``{"end": true, ...counters}``.
An exception out of the probe prints ``{"crash": "..."}`` and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mosqit_failover.probes import EchoProber, LinkMonitor


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def bounded(probe: Coroutine[Any, Any, None], seconds: float) -> str | None:
    """Run ``probe`` for ``seconds`` or until stdin closes; the crash text, if any."""
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096) and not stdin_closed.done():
            stdin_closed.set_result(None)

    with contextlib.suppress(OSError):  # stdin a file (/dev/null): only the time bound
        loop.add_reader(sys.stdin.fileno(), on_stdin)
    task = asyncio.create_task(probe)
    await asyncio.wait([task, stdin_closed], timeout=seconds, return_when="FIRST_COMPLETED")
    loop.remove_reader(sys.stdin.fileno())
    if task.done():
        exc = task.exception()
        return repr(exc) if exc else "run() returned"
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        return repr(exc)
    return None


async def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    mode = argv[0]
    if mode == "link":
        interfaces = dict(pair.split("=", 1) for pair in argv[1].split(","))
        monitor = LinkMonitor(
            interfaces, lambda net, up: emit(t=time.monotonic(), network=net, carrier=up)
        )
        crash = await bounded(monitor.run(), float(argv[2]))
        summary: dict[str, Any] = {"reconnects": monitor.reconnects, "events": monitor.events}
    elif mode == "echo":
        source, target, interval, seconds = argv[1], argv[2], float(argv[3]), float(argv[4])
        timeout = float(argv[5]) if len(argv) > 5 else None
        prober = EchoProber(
            "test",
            source,
            target,
            interval,
            lambda ok: emit(t=time.monotonic(), ok=ok),
            timeout=timeout,
        )
        crash = await bounded(prober.run(), seconds)
        summary = {
            "sent": prober.sent,
            "answered": prober.answered,
            "last_rtt": prober.last_rtt,
            "consecutive_misses": prober.consecutive_misses,
            "errors": prober.errors,
            "skipped": prober.skipped,
        }
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    if crash is not None:
        emit(crash=crash)
        return 1
    emit(end=True, **summary)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
