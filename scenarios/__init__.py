"""The failure scenarios, one module each, runnable against the lab.

`mosqit-failover lab scenario NAME` runs one (or `all`) in a fresh lab;
tests/lab/test_scenarios.py runs them all under pytest.
"""

from __future__ import annotations

import importlib

from mosqit_failover.lab.scenarios.harness import LabScenario

MODULES = (
    "switch_failure",
    "manual_active_lost",
    "active_cut_off",
    "split_brain",
    "standby_failure",
    "active_frozen",
    "agent_frozen",
    "agent_killed",
    "peer_link_one",
    "peer_link_both",
    "uplink_flapping",
    "packet_loss",
    "boots",
    "start_failure",
    "operator",
    "mismatched_secrets",
    "package_upgrade",  # last: the nodes keep the newer package for the scenarios after it
)


def all_scenarios() -> dict[str, LabScenario]:
    found: dict[str, LabScenario] = {}
    for name in MODULES:
        module = importlib.import_module(f"mosqit_failover.lab.scenarios.{name}")
        for scenario in getattr(module, "SCENARIOS", [getattr(module, "SCENARIO", None)]):
            if scenario is not None:
                found[scenario.name] = scenario
    return found
