"""The active's cable to switch A flaps several times a second for 6 s."""

import time

from mosqit_failover.lab import faults
from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    run.fault(f"{run.active}'s uplink A flapping 4 times a second")
    end = time.time() + 6
    while time.time() < end:
        faults.port_down(run.plan, run.active, "a")
        time.sleep(0.1)
        faults.port_up(run.plan, run.active, "a")
        time.sleep(0.15)
    run.wait(4)
    roles = run.roles()
    run.expect(sorted(roles.values()) == ["ACTIVE", "STANDBY"], f"pair not formed: {roles}")
    handovers = run.kinds(run.active).count("handover")
    run.expect(handovers <= 1, f"{handovers} handovers: the service flapped")


SCENARIO = LabScenario(
    "uplink-flapping",
    "the active's uplink A flaps (100 ms down, 150 ms up) for 6 s: no flapping service",
    play,
    expected=frozenset({"handover", "promote"}),
)
