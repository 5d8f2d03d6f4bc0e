"""[timing] profile: named sets of timing defaults, what the file sets wins, every check
still applies to the result, and check-config says where each value came from."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover.config import (
    SWITCH_CALM_MIN_TRIES,
    TIMING_PROFILES,
    ConfigError,
    Timing,
    describe_timing,
    parse,
    timing_sources,
)
from mosqit_failover.sim_scenarios import SIM_CONFIG
from mosqit_failover.simulation import World

SETTLED = 6.0  # the pair formed and calm (5 s without trouble)


def with_timing(lines: str) -> str:
    return SIM_CONFIG.replace("[vip]", f"[timing]\n{lines}\n\n[vip]", 1)


def timing(lines: str) -> Timing:
    return parse(with_timing(lines)).timing


def problems(lines: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(with_timing(lines))
    return caught.value.problems


def test_standard_is_the_default_and_changes_nothing() -> None:
    assert timing('profile = "standard"') == Timing() == parse(SIM_CONFIG).timing
    assert parse(SIM_CONFIG).timing.profile == "standard"


def test_fast_sets_the_bfd_like_values() -> None:
    fast = timing('profile = "fast"')
    assert fast.profile == "fast"
    assert (fast.interval, fast.misses, fast.heartbeat) == (0.02, 2, 0.003)
    assert (fast.calm_heartbeat, fast.echo_timeout, fast.link_fall) == (0.02, 0.005, 0.1)
    # what the profile leaves alone keeps the standard default
    assert fast.service_timeout == Timing().service_timeout == 3.0
    assert fast.switch_timeout == Timing().switch_timeout


def test_fast_derived_values() -> None:
    fast = timing('profile = "fast"')
    assert fast.peer_gone_after == pytest.approx(0.04)
    assert fast.echo_window == pytest.approx(0.025)  # (misses - 1) x interval + echo_timeout
    assert fast.settle == pytest.approx(0.1 + 4 * 0.003)


def test_keys_the_file_sets_override_the_profile() -> None:
    fast = timing('profile = "fast"\nmisses = 3\nlink_fall = "200ms"')
    assert (fast.misses, fast.link_fall) == (3, 0.2)
    assert fast.interval == 0.02 and fast.heartbeat == 0.003
    assert fast.echo_window == pytest.approx(0.045)
    assert fast.explicit == {"misses", "link_fall"}


def test_the_profiles_follow_rules_track_an_interval_the_file_sets() -> None:
    slower = timing('profile = "fast"\ninterval = "50ms"')
    assert slower.calm_heartbeat == 0.05  # fast: the calm heartbeat is the interval
    assert slower.echo_timeout == 0.005  # the profile's, shorter than half the interval
    shorter = timing('profile = "fast"\ninterval = "10ms"')
    assert shorter.echo_timeout == pytest.approx(0.005)
    assert shorter.calm_heartbeat == 0.01
    # the standard rules are unchanged: twice the heartbeat, at most the interval
    assert timing('heartbeat = "20ms"').calm_heartbeat == pytest.approx(0.04)


def test_an_unknown_profile_names_the_choices() -> None:
    assert problems('profile = "turbo"') == [
        'timing.profile = \'turbo\': must be one of "standard", "fast" (see docs/timing.md)'
    ]
    assert problems("profile = 1") == [
        'timing.profile = 1: must be one of "standard", "fast" (see docs/timing.md)'
    ]


def test_an_unknown_profile_still_reports_the_other_problems() -> None:
    found = problems('profile = "Fast"\nmisses = 0')
    assert len(found) == 2 and found[1].startswith("timing.misses = 0")


def test_the_checks_apply_to_a_profile_with_overrides() -> None:
    # the interval the operator did not write is named with its source
    assert problems('profile = "fast"\nheartbeat = "50ms"') == [
        "timing.heartbeat = '50ms': must not be longer than timing.interval "
        "(20ms, from profile 'fast')"
    ]
    assert problems('profile = "fast"\necho_timeout = "20ms"') == [
        "timing.echo_timeout = '20ms': must be shorter than timing.interval "
        "(a reply is awaited before the next echo) (20ms, from profile 'fast')"
    ]
    assert problems('profile = "fast"\ncalm_heartbeat = "30ms"') == [
        "timing.calm_heartbeat = '30ms': must lie between timing.heartbeat and "
        "timing.interval (3ms, from profile 'fast')"
    ]
    assert problems('profile = "fast"\nservice_timeout = "100ms"\nmisses = 10') == [
        "timing.service_timeout = '100ms': must be at least interval x misses (0.2s); "
        'e.g. service_timeout = "200ms"'
    ]
    # the default in effect is named, not "None" (breaker review of 432dd33)
    assert problems('interval = "2s"\nheartbeat = "1s"') == [
        "timing.service_timeout = '3s': must be at least interval x misses (6s); "
        'e.g. service_timeout = "6s"'
    ]


def test_a_switch_timeout_shorter_than_two_intervals_is_probed_on_its_own() -> None:
    """Refused until the switch got a cadence of its own (probed once an interval, the
    simulation with a 1 s interval and a 500 ms switch_timeout promoted 119 times in 120 s
    without a fault): now probed every 62.5 ms, no decision at all in 120 s."""
    lines = 'interval = "1s"\nheartbeat = "500ms"\nswitch_timeout = "500ms"'
    short = timing(lines)
    assert (short.switch_probe_every, short.switch_probe_period) == (0, 0.0625)
    world = _pair(lines, 1)
    world.run_until(SETTLED + 2)
    settled = world.now
    world.run_until(settled + 120)
    decided = [line.text for line in world.timeline if line.decision and line.time > settled]
    assert decided == []


def test_a_heartbeat_below_ten_milliseconds_is_allowed_by_hand_too() -> None:
    assert timing('interval = "20ms"\nheartbeat = "3ms"').heartbeat == 0.003
    assert problems('heartbeat = "0.5ms"') == [
        "timing.heartbeat = '0.5ms': must be between 0.001s and 10s"
    ]


def test_sources_say_profile_set_default_or_the_rule() -> None:
    sources = timing_sources(timing('profile = "fast"\nmisses = 3\non_stop_failure = "reboot"'))
    assert sources["interval"] == "profile fast"
    assert sources["misses"] == "set"
    assert sources["on_stop_failure"] == "set"
    assert sources["service_timeout"] == "default"
    assert sources["calm_heartbeat"] == "profile fast (= interval)"
    standard = timing_sources(timing('interval = "50ms"'))
    assert standard["interval"] == "set"
    assert standard["echo_timeout"] == "default (at most interval / 2)"
    assert standard["calm_heartbeat"] == "default (2 x heartbeat, at most interval)"
    assert set(timing_sources(Timing()).values()) == {"default"}


def test_describe_shows_values_sources_and_derived_values() -> None:
    text = "\n".join(describe_timing(timing('profile = "fast"\nmisses = 3')))
    # the profile's summary no longer holds: the header says what changed and the result
    assert text.startswith(
        "timing: profile fast (changed by misses: 20ms probes, a dead peer noticed in at "
        "most 45ms; docs/timing.md)\n"
    ), text
    plain = "\n".join(describe_timing(timing('profile = "fast"')))
    assert plain.startswith("timing: profile fast (BFD-like 20 ms probes")
    assert "  interval                     20ms  profile fast" in text
    assert "  misses                          3  set" in text
    assert "  echo_window                  45ms" in text
    assert "  peer_gone_after              60ms" in text
    assert "  settle                      112ms" in text
    assert "  schedule gap                   1s" in text
    # a dead peer: the next slot's probe and its retries (20 + 3 x 5 ms), or the silence
    assert "  dead peer noticed in         45ms" in text
    assert "  switch probed every         240ms  switch_timeout / 8 in whole intervals\n" in text
    assert (
        "  answering switch every      240ms  the same: half as often would leave under 22" in text
    )
    assert "  switch echo timeout         100ms  a later reply is a miss, re-sent at once" in text
    assert "  switch tries                   22  probes sent to a silent switch before" in text


def test_a_switchs_reply_may_take_longer_than_a_fast_interval() -> None:
    """A switch's CPU answers echo in tens of milliseconds under load: with the fast
    profile's 20 ms interval as the timeout, such a switch was never heard and the uplink
    counted as lost after switch_timeout (MANUAL mode on both nodes, or a handover)."""
    assert timing('profile = "fast"').switch_echo_timeout == 0.1
    assert Timing().switch_echo_timeout == 0.1  # the standard interval, as before
    # at most a sixth of switch_timeout: a probe and its two re-sent ones in a third
    slow = timing('interval = "1s"\nheartbeat = "500ms"\nswitch_timeout = "10s"')
    assert slow.switch_echo_timeout == 1.0
    assert timing('switch_timeout = "300ms"').switch_echo_timeout == pytest.approx(0.05)


def test_a_switch_gets_eight_probes_in_switch_timeout_whatever_the_interval() -> None:
    """In the interval's slots where it allows eight probes in switch_timeout, on a
    cadence of its own where it does not: once an interval, a 200 ms switch_timeout at a
    100 ms interval (or import-heartbeat's 4 s at keepalive 2 s) left a silent switch
    one or two tries (the simulation flapped the uplinks at 10 % loss)."""
    cases = {
        "": (2, 0.2, 4, 23),
        'profile = "fast"': (12, 0.24, 12, 22),
        'switch_timeout = "2.4s"': (3, 0.3, 3, 21),
        'switch_timeout = "800ms"': (1, 0.1, 1, 18),
        'switch_timeout = "200ms"': (0, 0.025, 1, 18),
        'interval = "2s"\nheartbeat = "1s"\nswitch_timeout = "4s"\nservice_timeout = "10s"': (
            0,
            0.5,
            1,
            18,
        ),
        'profile = "fast"\nswitch_timeout = "100ms"': (0, 0.0125, 1, 18),
    }
    for text, (every, period, calm_every, tries) in cases.items():
        got = timing(text)
        assert got.switch_probe_every == every, text
        assert got.switch_probe_period == pytest.approx(period), text
        assert got.switch_calm_every == calm_every, text
        assert got.switch_tries == tries, text


def test_an_answering_switch_is_probed_half_as_often_where_a_silent_one_keeps_its_tries() -> None:
    """Half the idle probes (the switches were half the standard profile's idle packets),
    only where a switch gone silent still gets SWITCH_CALM_MIN_TRIES tries."""
    standard = Timing()
    shown = "\n".join(describe_timing(standard))
    assert "  switch probed every         200ms  switch_timeout / 8 in whole intervals; " in shown
    assert "  answering switch every      400ms  while it answers: half as often" in shown
    assert standard.switch_calm_every == 4
    assert standard.switch_calm_period == pytest.approx(0.4)
    assert standard.switch_tries == 23  # 26 at the full pace
    texts = ["", 'profile = "fast"', 'switch_timeout = "800ms"', 'switch_timeout = "200ms"']
    texts += [f'switch_timeout = "{ms}ms"' for ms in range(900, 10001, 100)]
    texts += [f'interval = "{ms}ms"\nheartbeat = "{ms // 2}ms"' for ms in range(10, 301, 10)]
    calm = 0
    for text in texts:
        got = timing(text)
        every = max(1, got.switch_probe_every)
        assert got.switch_calm_every in (every, 2 * every), text
        if got.switch_calm_every > every:
            calm += 1
            assert got.switch_tries >= SWITCH_CALM_MIN_TRIES, text
            assert got.switch_probe_every, text  # never on a cadence of its own
    assert calm >= 10
    # the fast profile stays at the full pace: 19 tries would have been too few
    assert timing('profile = "fast"').switch_calm_every == 12


def test_every_profile_passes_the_checks_on_its_own() -> None:
    for name in TIMING_PROFILES:
        assert timing(f'profile = "{name}"').profile == name


def test_check_config_prints_the_timing(tmp_path: Path) -> None:
    path = tmp_path / "fast.toml"
    path.write_text(with_timing('profile = "fast"\nmisses = 3'))
    path.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", "mosqit_failover.cli", "check-config", str(path), "--node", "a"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr  # no node "a"
    result = subprocess.run(
        [sys.executable, "-m", "mosqit_failover.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "timing: profile fast" in result.stdout
    assert "  misses                          3  set" in result.stdout
    assert "  echo_window                  45ms" in result.stdout


# ---- the fast profile in the simulation (the real core, the shell's probe model) ----


def _pair(lines: str, seed: int) -> World:
    """alpha and beta with this [timing], run until settled."""
    world = World(parse(with_timing(lines)), seed=seed)
    world.boot("alpha")
    world.boot("beta")
    world.run_until(SETTLED)
    return world


def _fast_world(seed: int) -> World:
    return _pair('profile = "fast"', seed)


def _promotions(world: World, after: float) -> list[tuple[float, str]]:
    return [
        (line.time, line.node)
        for line in world.timeline
        if line.decision is not None and line.decision.kind == "promote" and line.time > after
    ]


def test_fast_keeps_an_uplink_whose_switch_answers_slowly() -> None:
    """A switch whose CPU answers echo 60 ms late (the shell's switch prober modelled:
    every 12th slot, the switch echo timeout, two re-sent probes): no MANUAL mode, no
    handover in 20 s. Answering 150 ms late, beyond the 100 ms switch echo timeout, it
    counts as silent and both nodes go MANUAL after switch_timeout; with the interval
    (20 ms) as the timeout, as before, so did a switch answering in 25 ms."""
    for delay, manual in ((0.06, False), (0.15, True)):
        world = _fast_world(3)
        world.set_switch_delay("a", delay, SETTLED)
        world.run_until(SETTLED + 20)
        kinds = {
            (line.node, line.decision.kind)
            for line in world.timeline
            if line.decision is not None and line.time > SETTLED
        }
        went_manual = {node for node, kind in kinds if kind == "manual"}
        assert went_manual == ({"alpha", "beta"} if manual else set()), (delay, kinds)
        assert not {kind for _, kind in kinds} & {"promote", "handover"}, (delay, kinds)


def test_a_short_switch_timeout_does_not_flap_the_uplinks_under_light_loss() -> None:
    """switch_timeout 200 ms at the standard 100 ms interval, 10 % loss on both networks
    for 30 s: the switch probed eight times in it on a cadence of its own, each probe
    re-sent twice: no decision at all. Probed once an interval, with the timeout capped at
    half of switch_timeout, the simulation flapped the uplinks (WAITING and back) 138 times
    in 3 x 60 s, and once the active found every network lost and demoted."""
    for seed in (0, 1):
        world = _pair('switch_timeout = "200ms"', seed)
        for network in ("a", "b"):
            world.set_loss(network, 0.1, SETTLED)
        world.run_until(SETTLED + 30)
        decided = [line.text for line in world.timeline if line.decision and line.time > SETTLED]
        assert decided == [], (seed, decided[:3])


def test_fast_notices_a_dead_active_in_about_25_ms() -> None:
    """docs/timing.md: the next slot's probe and one retry (10-30 ms), and 25 ms of
    silence since the last heartbeat; in 30 ms at most."""
    decided = []
    for seed in range(12):
        world = _fast_world(seed)
        (active,) = world.active_nodes()
        cut = SETTLED + world.rng.uniform(0, 0.1)  # anywhere in the probe cadence
        for net in ("a", "b"):
            world.set_port(active, net, False, cut)
        world.run_until(cut + 1)
        (first, node), *_ = _promotions(world, cut)
        assert node != active
        decided.append(first - cut)
    assert statistics.median(decided) < 0.03
    assert max(decided) <= 0.031


def test_fast_takes_no_random_loss_for_death() -> None:
    """30 % loss on both networks: the 3 ms heartbeats keep 25 ms of silence away (eight
    lost in a row on both networks, 0.09^8); the echo misses alone prove nothing."""
    world = _fast_world(7)
    for net in ("a", "b"):
        world.set_loss(net, 0.3, SETTLED)
    world.run_until(SETTLED + 20)
    assert _promotions(world, SETTLED) == []
    assert len(world.active_nodes()) == 1


def test_peer_echo_on_demand_where_the_timing_allows_it() -> None:
    """Echo to a peer on demand (Timing.echo_on_demand_after): the standard and slower
    timings probe after 110 ms (1 s: 1.01 s) of silence; the fast profile, whose
    echo_window is shorter than a calm heartbeat, and peer_echo "always" every interval."""
    assert Timing().echo_on_demand_after == pytest.approx(0.11)
    slow = timing('interval = "1s"\nheartbeat = "500ms"')
    assert slow.echo_on_demand_after == pytest.approx(1.01)
    assert timing('profile = "fast"').echo_on_demand_after is None
    assert timing('peer_echo = "always"').echo_on_demand_after is None
    lines = describe_timing(Timing())
    assert any(ln.split()[:4] == ["echo", "on", "demand", "after"] for ln in lines), lines
    assert "110ms" in next(ln for ln in lines if "echo on demand after" in ln)
    fast = describe_timing(timing('profile = "fast"'))
    assert any("echo to peers" in ln and "always" in ln for ln in fast), fast
    # a dead peer is noticed as soon as with echo every interval
    noticed = next(ln for ln in lines if ln.strip().startswith("dead peer noticed in"))
    assert "220ms" in noticed, noticed


def test_peer_echo_takes_auto_or_always_only() -> None:
    found = problems('peer_echo = "sometimes"')
    assert any("timing.peer_echo" in p and '"always"' in p for p in found), found
    found = problems("peer_echo = 1")
    assert any("timing.peer_echo" in p for p in found), found
    assert timing('peer_echo = "always"').peer_echo == "always"
    assert timing_sources(timing('peer_echo = "always"'))["peer_echo"] == "set"
