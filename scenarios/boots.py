"""Both nodes booted at the same moment; and with the old standby holding older data."""

import json

from mosqit_failover.lab import deploy
from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def _start_both(run: Run) -> None:
    run.fault("both agents started at the same moment")
    run.start_agents()


def _simultaneous(run: Run) -> None:
    _start_both(run)
    roles = deploy.wait_pair(run.lab.nodes, timeout=30)
    preferred = run.plan.nodes[0].name
    run.expect(roles[preferred] == "ACTIVE", f"equal epochs: {preferred} should win, got {roles}")


def _older_standby(run: Run) -> None:
    alpha, beta = (spec.name for spec in run.plan.nodes)
    state = "/var/lib/mosqit-failover/state.json"
    # beta was active last (epoch 5); alpha, the preferred node, has older data (epoch 3)
    for name, epoch in ((alpha, 3), (beta, 5)):
        run.lab[name].write_file(
            state, json.dumps({"version": 1, "epoch": epoch, "role": "WAITING"}), mode=0o600
        )
    _start_both(run)
    roles = deploy.wait_pair(run.lab.nodes, timeout=30)
    run.expect(roles[beta] == "ACTIVE", f"the freshest data (epoch 5) must win, got {roles}")


SCENARIOS = [
    LabScenario(
        "simultaneous-boot",
        "both agents start at once with equal epochs: exactly one active, the preferred",
        _simultaneous,
        expected=frozenset({"promote"}),
        fresh=True,
    ),
    LabScenario(
        "older-standby-boot",
        "both start at once; the preferred node holds older data: the freshest wins",
        _older_standby,
        expected=frozenset({"promote"}),
        fresh=True,
    ),
]
