"""Random packet loss on both networks for minutes: no false failover.

MQ_LOSS_SECONDS sets how long (default 180 s; the test suite uses less)."""

import os

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def _lossy(percent: int) -> LabScenario:
    def play(run: Run) -> None:
        seconds = float(os.environ.get("MQ_LOSS_SECONDS", "180"))
        run.loss(percent)
        run.wait(seconds)
        run.loss(0)
        run.wait(3)
        run.expect(run.roles() == {run.active: "ACTIVE", run.standby: "STANDBY"}, "roles changed")
        run.expect("promote" not in run.kinds(run.standby), "false failover")

    return LabScenario(
        f"loss-{percent}",
        f"{percent}% random loss on both networks (every frame, both directions): "
        "no false failover",
        play,
        expected=frozenset(),
    )


SCENARIOS = [_lossy(10), _lossy(30)]
