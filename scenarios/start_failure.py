"""The protected service fails to start on the standby during a failover."""

import time

from mosqit_failover.lab import deploy
from mosqit_failover.lab.scenarios.harness import LabScenario, Run

DROP_IN = "/etc/systemd/system/{unit}.d/broken.conf"


def play(run: Run) -> None:
    old, new = run.active, run.standby
    standby = run.lab[new]
    path = DROP_IN.format(unit=run.plan.demo_unit)
    standby.write_file(path, "[Service]\nExecStartPre=/bin/false\n")
    standby.systemctl("daemon-reload")
    try:
        run.cut_off(old)
        run.wait(4)
        kinds = run.kinds(new)
        run.expect("promote" in kinds and "plan-failed" in kinds, f"{new} decided {kinds}")
        run.expect(run.roles()[new] != "ACTIVE", f"{new} claims to be active")
        run.expect(not deploy.holds_vip(standby, run.plan), f"{new} kept the VIP")
        alerts = [
            e
            for e in standby.journal(identifier="mosqit-failover", since=run.started)
            if e.get("ALERT") == "start-failed"
        ]
        run.expect(bool(alerts), "no start-failed alert")
    finally:
        standby.run(["rm", "-f", path])
        standby.systemctl("daemon-reload")
    run.reconnect(old)
    # the failed node is no candidate for a while: the returning node takes over
    run.wait_roles({old: "ACTIVE"}, timeout=30)
    deadline = time.time() + 20
    while not deploy.status(standby)["candidate"] and time.time() < deadline:
        time.sleep(0.5)  # start_failure_backoff: a candidate again afterwards
    run.expect(bool(deploy.status(standby)["candidate"]), f"{new} never became a candidate")


SCENARIO = LabScenario(
    "start-failure",
    "the active is cut off; the standby's service fails to start: roll back, alert, wait",
    play,
    expected=frozenset({"promote", "plan-failed", "demote-isolated"}),
)
