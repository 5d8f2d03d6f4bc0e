"""Simulated clusters for tests that compare two settings under the same seed and faults."""

from __future__ import annotations

from dataclasses import replace

from mosqit_failover.sim_scenarios import sim_config_n
from mosqit_failover.simulation import World


def sim_world(
    seed: int,
    *,
    nodes: int = 2,
    peer_echo: str = "auto",
    calm_heartbeat_networks: str = "alternate",
) -> World:
    """alpha, beta, gamma... booting a second apart from 0 s, with the simulation's
    timing as changed."""
    config = sim_config_n(nodes)
    timing = replace(
        config.timing, peer_echo=peer_echo, calm_heartbeat_networks=calm_heartbeat_networks
    )
    world = World(replace(config, timing=timing), seed=seed)
    for i, node in enumerate(config.nodes):
        world.boot(node.name, float(i))
    return world


def promotions(world: World, after: float) -> list[tuple[float, str]]:
    """(time, node) of every promotion decided from ``after`` on."""
    return [
        (line.time, line.node)
        for line in world.timeline
        if line.decision is not None and line.decision.kind == "promote" and line.time >= after
    ]
