"""Every in-memory scenario (`mosqit-failover simulate NAME`) meets its own expectations."""

from __future__ import annotations

import pytest

from mosqit_failover.sim_scenarios import SCENARIOS, run


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scenario_meets_its_expectations(name: str, seed: int) -> None:
    world, problems = run(name, seed)
    assert problems == [], "\n".join(line.text for line in world.timeline[-40:])
