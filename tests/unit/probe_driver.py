"""Runs one probe for a bounded time and prints JSON lines; used by test_probes.py.

Run inside a network namespace::

    python probe_driver.py link a=pa,b=ghost SECONDS
    python probe_driver.py echo SOURCE TARGET INTERVAL SECONDS [TIMEOUT [RETRIES [EVERY
        [each-slot|- [CALM_EVERY]]]]]
    python probe_driver.py echo-multi SOURCE INTERVAL SECONDS TARGET,TARGET,... [STAGGER]
    python probe_driver.py echo-demand SOURCE TARGET INTERVAL TIMEOUT ON_AT OFF_AT SECONDS

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
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mosqit_failover.probes import EchoProber, LinkMonitor, echo


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


def _reporter(index: int) -> Callable[[bool], None]:
    return lambda ok: emit(t=time.monotonic(), ok=ok, prober=index)


_packets_seen: dict[str, int] = {}  # source address -> packets its shared socket read


async def _staggered(probers: list[EchoProber], stagger: float) -> None:
    """Run every prober (the next one ``stagger`` s after the previous) until cancelled."""
    tasks: list[asyncio.Task[None]] = []
    channels: dict[int, Any] = {}
    try:
        for prober in probers:
            if tasks:
                await asyncio.sleep(stagger)
            tasks.append(asyncio.create_task(prober.run()))
            await asyncio.sleep(0)  # run() has started: the prober is on its channel
            channels.update((id(ch), ch) for ch in echo._channels.values())
        assert len(channels) == 1, f"{len(channels)} sockets for one source address"
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels.values():
            _packets_seen[channel.source] = channel.packets


def _prober(
    source: str,
    target: str,
    interval: float,
    timeout: float | None,
    retries: int = 0,
    every: int = 1,
    retry_each_slot: bool = False,
    calm_every: int | None = None,
) -> EchoProber:
    """A prober that prints each report as a line."""
    report = lambda ok: emit(t=time.monotonic(), ok=ok)  # noqa: E731
    return EchoProber(
        "test",
        source,
        target,
        interval,
        report,
        timeout=timeout,
        retries=retries,
        every=every,
        retry_each_slot=retry_each_slot,
        calm_every=calm_every,
    )


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
        retries = int(argv[6]) if len(argv) > 6 else 0
        every = int(argv[7]) if len(argv) > 7 else 1
        each_slot = len(argv) > 8 and argv[8] == "each-slot"
        calm_every = int(argv[9]) if len(argv) > 9 else None
        prober = _prober(source, target, interval, timeout, retries, every, each_slot, calm_every)
        crash = await bounded(prober.run(), seconds)
        summary = {
            "sent": prober.sent,
            "answered": prober.answered,
            "last_rtt": prober.last_rtt,
            "consecutive_misses": prober.consecutive_misses,
            "errors": prober.errors,
            "skipped": prober.skipped,
            "retried": prober.retried,
        }
    elif mode == "echo-demand":
        # probing off from the start, on at ON_AT (between slots), off again at OFF_AT
        source, target, interval, timeout = argv[1], argv[2], float(argv[3]), float(argv[4])
        on_at, off_at, seconds = float(argv[5]), float(argv[6]), float(argv[7])
        prober = _prober(source, target, interval, timeout)
        prober.set_active(False)
        loop = asyncio.get_running_loop()

        def switch(active: bool) -> None:
            emit(t=time.monotonic(), active=active)
            prober.set_active(active)

        loop.call_later(on_at, switch, True)
        loop.call_later(off_at, switch, False)
        emit(t=time.monotonic(), started=True)
        crash = await bounded(prober.run(), seconds)
        summary = {"sent": prober.sent, "answered": prober.answered}
    elif mode == "echo-multi":
        # several probers on one source address, started ``stagger`` s apart
        source, interval, seconds = argv[1], float(argv[2]), float(argv[3])
        targets, stagger = argv[4].split(","), float(argv[5]) if len(argv) > 5 else 0.0
        probers = [
            EchoProber(f"p{i}", source, target, interval, _reporter(i))
            for i, target in enumerate(targets)
        ]
        crash = await bounded(_staggered(probers, stagger), seconds)
        summary = {
            "probers": [
                {"sent": p.sent, "answered": p.answered, "errors": p.errors, "ident": p.ident}
                for p in probers
            ],
            "channels_left": len(echo._channels),
            "cadences_left": len(echo._cadences),
            "packets": _packets_seen,
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
