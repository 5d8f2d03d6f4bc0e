"""Run scenarios in a lab of their own: up, install the agents, play, report, down."""

from __future__ import annotations

from mosqit_failover.lab import deploy, sshkeys
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import down, up
from mosqit_failover.lab.scenarios import all_scenarios
from mosqit_failover.lab.scenarios.harness import SYNCED, Report, play
from mosqit_failover.lab.topology import DEFAULT_PLAN, LabPlan


def run_scenarios(names: list[str], plan: LabPlan = DEFAULT_PLAN) -> list[Report]:
    known = all_scenarios()
    chosen = [known[n] for n in (list(known) if names == ["all"] else names)]
    reports = []
    deploy.package_file(plan.project_dir)  # no package, or a stale one: say so before building
    try:
        lab = up(plan)
        sshkeys.setup(lab.nodes, plan)
        sshkeys.install_config(lab.nodes, plan, [SYNCED])
        deploy.start(lab.nodes)
        deploy.wait_pair(lab.nodes, timeout=40)
        with Probe(plan, duration=24 * 3600) as probe:
            for scenario in chosen:
                report = play(lab, plan, probe, scenario)
                for line in report.lines():
                    print(line, flush=True)
                reports.append(report)
    finally:
        down(plan)
    return reports
