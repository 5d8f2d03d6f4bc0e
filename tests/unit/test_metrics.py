"""Metrics: a real prometheus-client HTTP server on 127.0.0.1, scraped with urllib.

The statuses are the agent's own where a unit test can make them: the core's
snapshot from a real Core (tests/unit/transcript.py), the sync part from a real
sync Engine, and the decisions the core really took.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mosqit_failover.actions import Decision
from mosqit_failover.catalog import ENTRIES
from mosqit_failover.config import ConfigError, Metrics, parse
from mosqit_failover.events import Role
from mosqit_failover.metrics import MetricsServer, _sync_families
from mosqit_failover.sim_scenarios import SIM_CONFIG
from mosqit_failover.sync.engine import Engine
from tests.unit.transcript import Harness, standby

IDENT = {"cluster": "pair1", "node": "alpha"}


def agent_status(**extra: Any) -> dict[str, Any]:
    return {
        "cluster": "pair1",
        "node": "alpha",
        "role": "ACTIVE",
        "mode": "MANUAL",
        "epoch": 7,
        "peer": {"node": "beta", "role": "STANDBY", "heard_ago": 0.04},
        "probes": {
            "peer-a": {"sent": 120, "answered": 117, "last_rtt_ms": 0.25},
            "switch-b": {"sent": 120, "answered": 120, "last_rtt_ms": None},
        },
        "peer_link": {
            "accepted": 50,
            "dropped": {"bad-mac": 2, "replayed": 1},
            "from_strangers": 4,
            "waited_too_long": 7,
            "sent": 60,
        },
        **extra,
    }


def samples(
    text: str, ident: dict[str, str] = IDENT
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by name and labels; each must carry the pair's identity (then left out)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            assert {key: labels.pop(key, None) for key in ident} == ident, s
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def daemon_status(h: Harness, engines: list[Engine] | None = None) -> dict[str, Any]:
    """What Daemon.status() answers: the real core's snapshot and the shell's parts."""
    status = h.core.snapshot(h.now)
    status["cluster"] = h.config.cluster
    status["probes"] = {
        f"{target}-{net}": {"sent": 10, "answered": 9, "retried": 1, "last_rtt_ms": 0.3}
        for target in ("peer", "switch")
        for net in ("a", "b")
    }
    status["peer_link"] = {"accepted": 9, "dropped": {"bad-mac": 1}, "from_strangers": 0, "sent": 9}
    status["failovers"] = sum(1 for d in h.decisions() if d.role is Role.ACTIVE)
    running = engines is not None
    status["sync"] = {
        "running": running,
        "epoch": h.core.epoch,
        "dirs": [e.status(h.now) for e in engines or []],
    }
    return status


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body.decode()


async def serve_and_scrape(status: Any, decisions: list[Decision], timeout: float = 2.0) -> str:
    server = MetricsServer("127.0.0.1", 0, status, asyncio.get_running_loop(), timeout)
    server.start()
    try:
        assert server.port != 0
        for decision in decisions:
            server.decision(decision)
        return await asyncio.to_thread(scrape, server.port)
    finally:
        server.close()


def test_a_scrape_shows_state_epoch_probes_drops_and_transitions() -> None:
    decisions = [
        Decision("promote", "alpha", Role.STANDBY, Role.PROMOTING, 7, "UNKNOWN", "peer gone"),
        Decision("plan-done", "alpha", Role.PROMOTING, Role.ACTIVE, 7, "UNKNOWN", "done"),
    ]
    text = asyncio.run(serve_and_scrape(agent_status, decisions))
    got = samples(text)
    assert got[("mosqit_failover_up", ())] == 1
    assert got[("mosqit_failover_state", (("role", "ACTIVE"),))] == 1
    assert got[("mosqit_failover_state", (("role", "STANDBY"),))] == 0
    assert got[("mosqit_failover_mode", (("mode", "MANUAL"),))] == 1
    assert got[("mosqit_failover_epoch", ())] == 7
    assert got[("mosqit_failover_peer_state", (("peer", "beta"), ("role", "STANDBY")))] == 1
    assert got[("mosqit_failover_peer_heard_seconds", (("peer", "beta"),))] == pytest.approx(0.04)
    assert got[("mosqit_failover_peer_auth_failing", (("peer", "beta"),))] == 0
    peer_a = (("network", "a"), ("probe", "peer-a"), ("target", "peer"))
    assert got[("mosqit_failover_probe_sent_total", peer_a)] == 120
    assert got[("mosqit_failover_probe_lost_total", peer_a)] == 3
    assert got[("mosqit_failover_probe_rtt_seconds", peer_a)] == pytest.approx(0.00025)
    switch_b = (("network", "b"), ("probe", "switch-b"), ("target", "switch"))
    assert got[("mosqit_failover_probe_lost_total", switch_b)] == 0
    assert ("mosqit_failover_probe_rtt_seconds", switch_b) not in got  # no answer yet
    assert got[("mosqit_failover_peer_link_dropped_total", (("reason", "bad-mac"),))] == 2
    assert got[("mosqit_failover_peer_link_dropped_total", (("reason", "from-stranger"),))] == 4
    assert got[("mosqit_failover_peer_link_dropped_total", (("reason", "waited-too-long"),))] == 7
    assert got[("mosqit_failover_peer_link_accepted_total", ())] == 50
    promote = (("from_state", "STANDBY"), ("kind", "promote"), ("to_state", "PROMOTING"))
    assert got[("mosqit_failover_transitions_total", promote)] == 1
    assert not any(name.startswith("mosqit_failover_sync") for name, _ in got)


def test_a_real_standby_shows_its_role_candidacy_and_uplinks() -> None:
    h = standby()
    got = samples(asyncio.run(serve_and_scrape(lambda: daemon_status(h), [])), SIM_IDENT)
    assert got[("mosqit_failover_role", ())] == 1  # STANDBY
    assert got[("mosqit_failover_state", (("role", "STANDBY"),))] == 1
    assert got[("mosqit_failover_candidate", ())] == 1
    assert got[("mosqit_failover_uplink_healthy", (("network", "a"),))] == 1
    assert got[("mosqit_failover_uplink_healthy", (("network", "b"),))] == 1
    assert got[("mosqit_failover_peer_uplink_healthy", (("network", "b"), ("peer", "alpha")))] == 1
    assert got[("mosqit_failover_peer_candidate", (("peer", "alpha"),))] == 0  # it is active
    assert got[("mosqit_failover_peer_state", (("peer", "alpha"), ("role", "ACTIVE")))] == 1
    assert got[("mosqit_failover_failovers_total", ())] == 0
    assert got[("mosqit_failover_fence_state", (("peer", "alpha"), ("state", "failed")))] == 0
    assert got[("mosqit_failover_sync_running", ())] == 0

    h.set_carrier("b", False)  # the standby's cable on network b is pulled
    h.run_until(h.now + 5)
    got = samples(asyncio.run(serve_and_scrape(lambda: daemon_status(h), [])), SIM_IDENT)
    assert got[("mosqit_failover_uplink_healthy", (("network", "b"),))] == 0
    assert got[("mosqit_failover_uplink_healthy", (("network", "a"),))] == 1
    assert got[("mosqit_failover_candidate", ())] == 0
    assert got[("mosqit_failover_role", ())] == 0  # WAITING


SIM_IDENT = {"cluster": "sim", "node": "beta"}


def test_echo_misses_loss_and_a_filtered_network_per_peer_and_network() -> None:
    """What `status` shows beside each network (docs/timing.md), for alerting rules: the
    run of misses, the recent loss the misses must outweigh, and `echo-blocked`."""
    h = standby()
    h.echo_answers = {"a": True, "b": False}  # a firewall drops echo on b, UDP passes
    h.run_until(h.now + 12)
    got = samples(asyncio.run(serve_and_scrape(lambda: daemon_status(h), [])), SIM_IDENT)
    on = {net: (("network", net), ("peer", "alpha")) for net in ("a", "b")}
    assert got[("mosqit_failover_peer_echo_blocked", on["b"])] == 1
    assert got[("mosqit_failover_peer_echo_blocked", on["a"])] == 0
    assert got[("mosqit_failover_peer_echo_misses", on["b"])] >= 40
    assert got[("mosqit_failover_peer_echo_misses", on["a"])] == 0
    assert got[("mosqit_failover_peer_echo_loss_ratio", on["a"])] == 0

    h.echo_answers = {"a": True, "b": True}
    h.run_until(h.now + 1)
    got = samples(asyncio.run(serve_and_scrape(lambda: daemon_status(h), [])), SIM_IDENT)
    assert got[("mosqit_failover_peer_echo_blocked", on["b"])] == 0
    assert got[("mosqit_failover_peer_echo_misses", on["b"])] == 0


def test_an_older_agent_without_the_echo_fields_shows_no_such_series() -> None:
    status = agent_status(
        peers={"beta": {"node": "beta", "role": "STANDBY", "echo_misses": {"a": 1}}}
    )
    got = samples(asyncio.run(serve_and_scrape(lambda: status, [])))
    assert got[("mosqit_failover_peer_echo_misses", (("network", "a"), ("peer", "beta")))] == 1
    assert not any("echo_loss" in name or "echo_blocked" in name for name, _ in got)


def test_resource_failures_that_still_count_per_resource() -> None:
    status = agent_status(resource_failures={"db": 2, "app": 1})
    got = samples(asyncio.run(serve_and_scrape(lambda: status, [])))
    assert got[("mosqit_failover_resource_failures", (("resource", "db"),))] == 2
    assert got[("mosqit_failover_resource_failures", (("resource", "app"),))] == 1


def test_a_failed_fence_shows_in_its_state_and_its_decision_counter() -> None:
    h = standby(fence_answer=(False, "ssh fence via 10.0.1.1: no answer"))
    h.peer = None  # the peer's agent hangs while its kernel answers pings: fence first
    h.run_until(h.now + 7)
    text = asyncio.run(serve_and_scrape(lambda: daemon_status(h), h.decisions()))
    got = samples(text, SIM_IDENT)
    assert got[("mosqit_failover_fence_state", (("peer", "alpha"), ("state", "failed")))] == 1
    assert got[("mosqit_failover_fence_state", (("peer", "alpha"), ("state", "fenced")))] == 0
    assert got[("mosqit_failover_decisions_total", (("kind", "fence-failed"),))] >= 1
    assert got[("mosqit_failover_decisions_total", (("kind", "promote"),))] == 0
    assert got[("mosqit_failover_role", ())] == 1  # not taking over unfenced


def test_every_decision_kind_and_drop_reason_counts_from_zero() -> None:
    """increase() misses a counter's first event if the series is born at 1."""
    got = samples(asyncio.run(serve_and_scrape(agent_status, [])))
    for kind in ENTRIES:
        assert got[("mosqit_failover_decisions_total", (("kind", kind),))] == 0
    assert got[("mosqit_failover_peer_link_dropped_total", (("reason", "stale"),))] == 0
    assert got[("mosqit_failover_peer_link_dropped_total", (("reason", "bad-mac"),))] == 2


def test_sync_lag_pending_and_errors_per_directory_from_the_engine() -> None:
    h = standby()
    config = parse(SIM_CONFIG + '\n[[sync]]\npath = "/srv/logs"\n')
    data, logs = (Engine(d, [], 1, lambda text, priority: None) for d in config.sync)
    for n in range(3):
        data.dirty.add(f"file{n}", h.now - 4.0)
    logs._fail("retrying", "rsync exit 12: the peer's disk is full")
    got = samples(
        asyncio.run(serve_and_scrape(lambda: daemon_status(h, [data, logs]), [])), SIM_IDENT
    )
    srv, log = (("directory", "/srv/data"),), (("directory", "/srv/logs"),)
    assert got[("mosqit_failover_sync_running", ())] == 1
    assert got[("mosqit_failover_sync_pending", srv)] == 3
    assert got[("mosqit_failover_sync_lag_seconds", srv)] == pytest.approx(4.0)
    assert got[("mosqit_failover_sync_error", srv)] == 0
    assert got[("mosqit_failover_sync_pending", log)] == 0
    assert got[("mosqit_failover_sync_error", log)] == 1
    assert got[("mosqit_failover_sync_degraded", srv)] == 0  # async mode: never


def test_a_synchronous_directory_shows_whether_it_is_degraded() -> None:
    sync = {
        "running": True,
        "dirs": [
            {"path": "/srv/spool", "lag_seconds": 0.0, "pending": 0, "degraded": True},
            {"path": "/srv/bill", "lag_seconds": 0.0, "pending": 0, "degraded": False},
        ],
    }
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in _sync_families(sync)
        for s in family.samples
    }
    assert got[("mosqit_failover_sync_degraded", (("directory", "/srv/spool"),))] == 1
    assert got[("mosqit_failover_sync_degraded", (("directory", "/srv/bill"),))] == 0


def test_a_blocked_event_loop_gives_up_zero_not_a_hung_scrape() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        server = MetricsServer("127.0.0.1", 0, agent_status, loop, scrape_timeout=0.2)
        server.start()
        try:
            result: list[str] = []
            scraper = threading.Thread(target=lambda: result.append(scrape(server.port)))
            started = time.monotonic()
            scraper.start()
            scraper.join(timeout=5)  # blocks the agent's loop: the scrape must not wait for it
            assert time.monotonic() - started < 2
            return result[0]
        finally:
            server.close()

    got = samples(asyncio.run(main()))
    assert got[("mosqit_failover_up", ())] == 0
    assert ("mosqit_failover_epoch", ()) not in got


def test_a_failing_status_gives_up_zero() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("core not started")

    got = samples(asyncio.run(serve_and_scrape(broken, [])), {})  # its pair never named
    assert got[("mosqit_failover_up", ())] == 0


def test_a_busy_port_is_named_with_the_fix() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = MetricsServer("127.0.0.1", 0, agent_status, loop)
        first.start()
        try:
            second = MetricsServer("127.0.0.1", first.port, agent_status, loop)
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port}"):
                second.start()
        finally:
            first.close()
        with pytest.raises(urllib.error.URLError):
            await asyncio.to_thread(scrape, first.port)  # closed: the port is free again

    asyncio.run(main())


def test_the_metrics_table() -> None:
    assert parse(SIM_CONFIG).metrics == Metrics(listen="")
    metrics = parse(SIM_CONFIG + '\n[metrics]\nlisten = "127.0.0.1:9405"\n').metrics
    assert (metrics.host, metrics.port) == ("127.0.0.1", 9405)
    with pytest.raises(ConfigError, match=r"metrics\.listen = '9405': must be \"HOST:PORT\""):
        parse(SIM_CONFIG + '\n[metrics]\nlisten = "9405"\n')
