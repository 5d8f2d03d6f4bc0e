"""The probe cadence after commit b3ad3ba (wake-ups only for slots that send): a stall.

Runs one EchoProber in this process against 127.0.0.1 (loopback only, raw ICMP
socket: needs root or CAP_NET_RAW, skipped otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from mosqit_failover.probes import EchoProber


def _raw_icmp_allowed() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except PermissionError:
        return False
    return True


@pytest.mark.skipif(not _raw_icmp_allowed(), reason="raw ICMP sockets need root")
def test_a_stall_with_a_probe_in_flight_is_still_detected_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The loop blocks for 0.5 s right after a slot's probe went out (SIGSTOP, a slow
    callback): the reply queues in the socket. On resume the socket's reader runs
    before the cadence's timer; its `answered()` re-plans from the current time
    (`_plan`: max(slot, now_slot)), cancelling the timer armed for the missed slot,
    so `_step` never sees the lateness: no "stalled ... skipping" warning, `skipped`
    stays 0 while ten slots passed. Before b3ad3ba `answered()` kept the timer armed
    for the missed slot and the stall was logged and counted (skipped 9)."""
    interval, stall = 0.05, 0.5

    async def main() -> EchoProber:
        loop = asyncio.get_running_loop()
        slots: list[float] = []

        def on_slot() -> None:
            slots.append(loop.time())
            if len(slots) == 5:
                loop.call_soon(time.sleep, stall)  # right after this slot's probe went out

        prober = EchoProber(
            "lo", "127.0.0.1", "127.0.0.1", interval, lambda _: None, timeout=0.04, on_slot=on_slot
        )
        task = asyncio.create_task(prober.run())
        await asyncio.sleep(1.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return prober

    with caplog.at_level("WARNING", logger="mosqit_failover.probes"):
        prober = asyncio.run(main())
    assert prober.answered >= 5, "loopback answers"
    assert prober.skipped >= int(stall / interval) - 2, (prober.sent, prober.skipped)
    assert any("stalled" in r.getMessage() for r in caplog.records), caplog.text
