"""The two nodes hold different shared secrets.

A datagram from the peer's address that fails authentication proves its agent
alive: no node promotes because the peer seems silent, both log
`peer-auth-failed` after 1 s, `status` shows `peer.unauthenticated` and
check_mosqit_failover says CRITICAL (2). The agent reads the secret at start and
on every reload (`mosqit-failover reload`, `systemctl reload`: SIGHUP). With the
secrets equal again the pair settles with one ACTIVE.
"""

from __future__ import annotations

import time

from mosqit_failover.lab import deploy
from mosqit_failover.lab.scenarios.harness import LabScenario, Run

COLD_WATCH = 20.0  # seconds the cold-started pair is watched with different secrets
RUNNING_WATCH = 6.0  # twice service_timeout: the standby would have promoted by now
AUTH = frozenset({"peer-auth-failed", "peer-auth-ok"})


def _check_unauthenticated(run: Run, node: str) -> None:
    run.expect("peer-auth-failed" in run.kinds(node), f"{node} did not log peer-auth-failed")
    text = run.status(node)["peer"].get("unauthenticated")
    run.expect(
        bool(text) and "bad-mac" in str(text),
        f"{node}'s status does not show the authentication failure: {text!r}",
    )
    code, line = run.nagios(node)
    run.expect(code == 2, f"check_mosqit_failover on {node} exited {code}: {line}")


def _check_settled(run: Run, restored: float) -> None:
    """After the secrets match again: no authentication failure said or shown."""
    for node in run.lab.nodes:
        # the restarted agent's first datagrams are unconfirmed (the restart
        # handshake): within AUTH_GRACE (1 s) they are no authentication failure
        late = run.kinds(node, since=restored)
        run.expect(
            "peer-auth-failed" not in late,
            f"{node} logged peer-auth-failed after the secrets matched again: "
            + "; ".join(
                str(e["MESSAGE"])
                for e in run.decisions(node, since=restored)
                if e["DECISION"] == "peer-auth-failed"
            ),
        )
        deadline = time.time() + 10
        while (code := run.nagios(node))[0] == 2 and time.time() < deadline:
            time.sleep(0.5)
        run.expect(code[0] != 2, f"check_mosqit_failover on {node} still CRITICAL: {code[1]}")
        run.expect(
            not run.status(node)["peer"].get("unauthenticated"),
            f"{node}'s status still shows an authentication failure",
        )


def _cold(run: Run) -> None:
    alpha, beta = (spec.name for spec in run.plan.nodes)
    run.change_secret(beta)
    run.fault(f"both agents started; {beta} has another secret")
    run.start_agents()
    deadline = time.time() + COLD_WATCH
    while time.time() < deadline:  # the VIP sampler of the harness checks every 50 ms
        time.sleep(1.0)
    for node in (alpha, beta):
        _check_unauthenticated(run, node)
    print(f"   with different secrets for {COLD_WATCH:g} s: {run.roles()}", flush=True)
    run.restore_secret(beta)
    restored = time.time()
    run.restart_agent(beta)
    roles = deploy.wait_pair(run.lab.nodes, timeout=30)
    print(f"   secrets equal again, {beta} restarted: {roles}", flush=True)
    run.expect("peer-auth-ok" in run.kinds(alpha, since=restored), f"{alpha}: no peer-auth-ok")
    _check_settled(run, restored)


def _running(run: Run) -> None:
    active, standby = run.active, run.standby
    run.change_secret(standby)
    # a rotation done on one node only: reload re-reads the secret file
    out = run.command(standby, "reload")
    run.expect("read again" in out, f"mosqit-failover reload said: {out}")
    rotated = time.time()
    run.wait(RUNNING_WATCH)
    _check_running_pair(run, rotated)
    run.fault(f"{standby}'s agent restarted with the other secret")
    restarted = time.time()
    run.restart_agent(standby)
    run.wait(RUNNING_WATCH)
    _check_running_pair(run, restarted)
    run.restore_secret(standby)
    restored = time.time()
    unit = run.lab[standby].systemctl("reload", deploy.UNIT, check=False)  # SIGHUP
    run.expect(unit.returncode == 0, f"systemctl reload failed: {unit.stderr}")
    run.wait_roles({active: "ACTIVE", standby: "STANDBY"}, timeout=30)
    deadline = time.time() + 10
    while "peer-auth-ok" not in run.kinds(active, since=restored) and time.time() < deadline:
        time.sleep(0.5)
    run.expect("peer-auth-ok" in run.kinds(active, since=restored), f"{active}: no peer-auth-ok")
    _check_settled(run, restored)
    run.expect(run.probe.longest_gap_ms(rotated) < 500, "the client lost the service")


def _check_running_pair(run: Run, since: float) -> None:
    """The active serves on alone, the standby neither promotes nor fences."""
    active, standby = run.active, run.standby
    for node in (active, standby):
        _check_unauthenticated(run, node)
    run.expect(run.roles()[active] == "ACTIVE", f"{active} stopped being ACTIVE")
    run.expect("promote" not in run.kinds(standby), f"{standby} promoted")
    run.expect("fence" not in run.kinds(standby), f"{standby} fenced its alive peer")
    gap = run.probe.longest_gap_ms(since)
    run.expect(gap < 500, f"the client lost the service for {gap:.0f} ms")
    others = set(run.probe.who_answered(since)) - {active}
    run.expect(not others, f"{others} answered at the VIP")


SCENARIOS = [
    LabScenario(
        "mismatched-secrets",
        f"both agents start with different secrets: {COLD_WATCH:g} s with at most one VIP "
        "holder, peer-auth-failed, CRITICAL; the secret restored, the pair settles",
        _cold,
        expected=AUTH | {"promote", "agent-stop"},
        fresh=True,
    ),
    LabScenario(
        "mismatched-secrets-running",
        "the standby's secret rotated alone (reload, then restart): the active serves on, "
        "the standby never promotes, peer-auth-failed on both; restored by systemctl reload",
        _running,
        expected=AUTH | {"reconfigure", "agent-stop"},
    ),
]
