"""Echo on demand (peer_echo = "auto", commit b3ad3ba) against peer_echo = "always".

Each test here runs one simulated world per mode with the same seed and the same
faults, and asserts what the feature claims (docs/timing.md "Echo on demand"):
no false failover that probing every interval did not have, and the quiet path
still answering every event as the full rules do (tests/unit/test_core_quiet.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mosqit_failover.actions import Action
from mosqit_failover.core import Core
from mosqit_failover.events import Event
from mosqit_failover.sim_scenarios import sim_config
from mosqit_failover.simulation import World
from tests.unit.worlds import promotions, sim_world


@pytest.mark.parametrize("seed", [4, 19])
def test_a_blackout_shorter_than_a_calm_heartbeat_fails_over_no_more_than_with_echo_always(
    seed: int,
) -> None:
    """Breaker round 3, fixed since (the threshold is now 110 ms, and a last probe goes
    out 190 ms into a silence). As found: both networks drop everything for 90 ms
    (less than one calm heartbeat period),
    six times, 6 s apart (each time the pair is calm again, echo off). With echo
    always, no failover; with echo on demand the standby promotes: the active, whose
    own echo to the standby is off too, notices nothing until its silence reaches
    140 ms and keeps its calm 100 ms heartbeat, while the standby's probes started
    at 140 ms of silence and their quick retries all fall inside the blackout. The
    heartbeat that would have ended the silence comes after echo_window (220 ms)."""
    blackout = 0.09
    promoted = {}
    for mode in ("always", "auto"):
        world = sim_world(seed, peer_echo=mode)
        for k in range(6):
            start = 20.0 + 6.0 * k + (seed * 0.0173) % 0.1
            for network in ("a", "b"):
                world.set_loss(network, 1.0, start)
                world.set_loss(network, 0.0, start + blackout)
        world.run_until(56.5)
        promoted[mode] = promotions(world, 15.0)
    assert promoted["always"] == [], promoted
    assert promoted["auto"] == [], f"false failover from a {blackout * 1000:.0f} ms blackout"


Record = tuple[float, str, str, tuple[Action, ...]]


def _recorded(quiet: bool, monkeypatch: pytest.MonkeyPatch) -> list[Record]:
    """Every event each core handled and its answer: alpha's agent stops (SIGSTOP, its
    kernel still answers ICMP) at a calm moment for 150 ms, then again 3 s later (echo
    still on from the first) for 180 ms: beta hears nothing for 140-220 ms each time."""
    records: list[Record] = []
    handle = Core.handle

    def recording(core: Core, event: Event, now: float) -> list[Action]:
        actions = handle(core, event, now)
        records.append((now, core.node, repr(event), tuple(actions)))
        return actions

    with monkeypatch.context() as patch:
        patch.setattr(Core, "handle", recording)
        if not quiet:
            patch.setattr(Core, "_steady", lambda core, now: False)
        world = sim_world(1, peer_echo="auto")
        world.freeze("alpha", 30.0, 0.15, agent_only=True)
        world.freeze("alpha", 33.0, 0.18, agent_only=True)
        world.run_until(40.0)
    return records


def test_the_quiet_path_counts_a_late_heartbeat_as_trouble_as_the_full_rules_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Breaker round 3, fixed since (`_steady` ends at echo_on_demand_after, which is
    always a deadline). As found: `_troubled` now calls a peer silent for
    echo_on_demand_after (140 ms) trouble,
    but `_steady` still lets routine events take the quiet path until echo_window
    (220 ms), which never notes trouble. With echo already on (no 140 ms deadline)
    a heartbeat 180 ms late is no trouble at all on the quiet path: beta turns echo
    off and slows its heartbeat at 35.1 s instead of 38.2 s with the full rules."""
    quiet = _recorded(True, monkeypatch)
    full = _recorded(False, monkeypatch)
    for i, (a, b) in enumerate(zip(quiet, full, strict=False)):
        assert a == b, f"event {i}: quiet path {a}, full rules {b}"
    assert len(quiet) == len(full)


@pytest.mark.parametrize(("changed", "value"), [("misses", 5), ("echo_timeout", 0.01)])
def test_after_a_timing_reload_a_dead_active_is_taken_over_as_fast_as_with_echo_always(
    changed: str, value: float
) -> None:
    """A reload may change the timing in place (`Core.reconfigure`; timing is not in
    daemon.RELOAD_FIXED), but the agent's echo probers keep the timeout and retries
    they were made with. The simulation models that with node_configs: each core has
    the reloaded timing, the world's probing the old one. With echo always a dead
    active is still taken over at the new echo_window; echo on demand computes its
    first probe (echo_on_demand_after) from the new misses and echo_timeout, which
    the probers do not follow: misses 5 promotes ~80 ms late (~500 ms instead of
    420), echo_timeout 10 ms 20 ms late (230 ms instead of 210)."""
    delays = {}
    changes: dict[str, Any] = {changed: value}
    for mode in ("always", "auto"):
        config = sim_config()
        old = replace(config, timing=replace(config.timing, peer_echo=mode))
        reloaded = replace(old, timing=replace(old.timing, **changes))
        world = World(old, seed=1, node_configs={"alpha": reloaded, "beta": reloaded})
        world.boot("alpha", 0.0)
        world.boot("beta", 1.0)
        world.run_until(30.0)
        world.power_off("alpha", 30.0)
        world.run_until(30.0005)
        beta = world.nodes["beta"].core
        assert beta is not None
        heard = beta.peers["alpha"].heard_at
        world.run_until(35.0)
        promoted = promotions(world, 30.0)
        assert promoted and promoted[0][1] == "beta", promoted
        delays[mode] = promoted[0][0] - heard
    window = reloaded.timing.echo_window
    assert delays["always"] == pytest.approx(window), delays
    assert delays["auto"] <= delays["always"] + 1e-9, delays
