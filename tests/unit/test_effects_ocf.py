"""OCF resource agents: ClusterLabs' real Dummy agent, a missing agent, a broken one.

The Dummy agent (Debian package resource-agents) keeps its "running" state in
a file; the tests put that file in tmp_path through OCF_RESKEY_state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from mosqit_failover.config import ConfigError, Resource, parse
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.resources import DEFAULT_OCF_ROOT, OcfRunner, make_runner
from mosqit_failover.sim_scenarios import SIM_CONFIG

T = TypeVar("T")
DUMMY = DEFAULT_OCF_ROOT / "resource.d" / "heartbeat" / "Dummy"
needs_dummy = pytest.mark.skipif(
    not DUMMY.exists(),
    reason="ClusterLabs resource agents missing: apt-get install resource-agents",
)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def dummy(state: Path, **extra: str) -> Resource:
    params = (("state", str(state)), *extra.items())
    return Resource(name="dummy1", kind="ocf", agent="ocf:heartbeat:Dummy", params=params)


@needs_dummy
def test_the_real_dummy_agent_starts_monitors_and_stops(tmp_path: Path) -> None:
    state = tmp_path / "dummy.state"
    runner = make_runner(dummy(state))
    assert isinstance(runner, OcfRunner)
    assert run(runner.running()) is False
    run(runner.start())
    assert state.exists()
    assert run(runner.running()) is True
    run(runner.start())  # idempotent: monitor says running, nothing started
    run(runner.stop())
    assert not state.exists()
    assert run(runner.running()) is False
    run(runner.stop())  # idempotent


@needs_dummy
def test_the_agent_gets_ocf_root_instance_and_parameters(tmp_path: Path) -> None:
    """The state parameter reaches the real agent; its failure is explained and quoted."""
    runner = make_runner(dummy(tmp_path / "no" / "such" / "dir" / "x.state"))
    with pytest.raises(EffectError) as caught:
        run(runner.start())
    text = str(caught.value)
    assert "resource dummy1: OCF agent ocf:heartbeat:Dummy start failed" in text
    assert "code 1 (OCF_ERR_GENERIC" in text
    assert "no/such/dir/x.state" in text  # the agent's own stderr is quoted


def test_a_missing_agent_is_named_with_the_fix(tmp_path: Path) -> None:
    resource = Resource(name="web", kind="ocf", agent="ocf:nosuch:Thing")
    runner = make_runner(resource, ocf_root=tmp_path)
    with pytest.raises(EffectError) as caught:
        run(runner.running())
    text = str(caught.value)
    assert f"OCF agent ocf:nosuch:Thing ({tmp_path}/resource.d/nosuch/Thing) not found" in text
    assert "apt-get install resource-agents" in text


def _agent(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "resource.d" / "test" / "Weird"
    path.parent.mkdir(parents=True)
    path.write_text(f'#!/bin/sh\necho "$1 $OCF_RESOURCE_INSTANCE $OCF_ROOT" >&2\n{body}\n')
    path.chmod(0o755)
    return path


def test_an_unknown_return_code_is_an_error_with_its_meaning(tmp_path: Path) -> None:
    _agent(tmp_path, "exit 42")
    runner = make_runner(
        Resource(name="weird", kind="ocf", agent="ocf:test:Weird"), ocf_root=tmp_path
    )
    for call in (runner.running(), runner.start(), runner.stop()):
        with pytest.raises(EffectError) as caught:
            run(call)
        text = str(caught.value)
        assert "monitor failed" in text and "code 42 (not an OCF return code" in text
        assert f"monitor weird {tmp_path}" in text  # environment reached the agent


def test_generic_failure_on_monitor_means_unknown_and_start_still_tries(tmp_path: Path) -> None:
    agent = _agent(
        tmp_path,
        'case "$1" in monitor) exit 1;; start) echo "cannot bind port" >&2; exit 1;; esac\nexit 0',
    )
    runner = make_runner(Resource(name="svc", kind="ocf", agent=str(agent)))
    with pytest.raises(EffectError) as caught:
        run(runner.running())
    assert "0 means running, 7 not running; 1 is OCF_ERR_GENERIC" in str(caught.value)
    with pytest.raises(EffectError) as caught:
        run(runner.start())
    assert "start failed" in str(caught.value) and "OCF_ERR_GENERIC" in str(caught.value)
    assert "cannot bind port" in str(caught.value)
    with pytest.raises(EffectError, match="does not confirm it stopped"):
        run(runner.stop())  # stop exits 0, but monitor still says failed
    assert run(runner.alive()) is False  # to the monitor, as to Pacemaker: it failed


@pytest.mark.parametrize(
    ("code", "alive"), [(0, True), (7, False), (2, False), (5, False), (6, False), (9, False)]
)
def test_the_monitor_reads_failed_and_hard_errors_as_not_running(
    tmp_path: Path, code: int, alive: bool
) -> None:
    """OCF 1 and 9 (failed) and the hard errors 2, 5, 6 (cannot run here): Pacemaker
    recovers on them; they were unknown to the monitor, so never restarted nor handed
    over (a helper's finding). 3 (unimplemented) stays an error."""
    agent = _agent(tmp_path, f"exit {code}")
    runner = make_runner(Resource(name="svc", kind="ocf", agent=str(agent)))
    assert run(runner.alive()) is alive
    unimplemented = _agent(tmp_path / "x", "exit 3")
    with pytest.raises(EffectError, match="OCF_ERR_UNIMPLEMENTED"):
        run(make_runner(Resource(name="svc", kind="ocf", agent=str(unimplemented))).alive())


@pytest.mark.parametrize(
    ("code", "meaning"),
    [(3, "OCF_ERR_UNIMPLEMENTED"), (5, "OCF_ERR_INSTALLED"), (6, "OCF_ERR_CONFIGURED")],
)
def test_configuration_codes_on_monitor_stop_everything(
    tmp_path: Path, code: int, meaning: str
) -> None:
    agent = _agent(tmp_path, f"exit {code}")
    runner = make_runner(Resource(name="svc", kind="ocf", agent=str(agent)))
    with pytest.raises(EffectError, match=f"code {code} \\({meaning}"):
        run(runner.start())


def test_a_hanging_agent_is_killed_at_the_timeout(tmp_path: Path) -> None:
    agent = _agent(tmp_path, "sleep 30")
    runner = make_runner(Resource(name="svc", kind="ocf", agent=str(agent), timeout=0.3))
    with pytest.raises(EffectError, match=r"did not finish within 0\.3s"):
        run(runner.running())


def test_config_reads_ocf_resources_with_parameters() -> None:
    text = SIM_CONFIG + (
        '\n[[resources]]\nname = "ip2"\nkind = "ocf"\nagent = "ocf:heartbeat:IPaddr2"\n'
        'params = { ip = "192.0.2.50", cidr_netmask = 24, lvs_support = false }\n'
    )
    resource = parse(text).resources[-1]
    assert resource.agent == "ocf:heartbeat:IPaddr2"
    assert resource.params == (
        ("ip", "192.0.2.50"),
        ("cidr_netmask", "24"),
        ("lvs_support", "false"),
    )


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('agent = "heartbeat:Dummy"', 'must be "ocf:PROVIDER:TYPE"'),
        ('agent = "ocf:heartbeat:Dummy"\nparams = "state=/x"', "must be a table"),
        ('agent = "ocf:heartbeat:Dummy"\nparams = { "bad-name" = "x" }', "'bad-name'"),
        ('agent = "ocf:heartbeat:Dummy"\nparams = { state = [1] }', "string, number or true"),
        ("", "resources[0].agent: missing"),
    ],
)
def test_bad_ocf_config_names_key_value_and_fix(lines: str, expected: str) -> None:
    base = SIM_CONFIG.split("[[resources]]")[0]
    text = base + f'\n[[resources]]\nname = "d"\nkind = "ocf"\n{lines}\n'
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert any(expected in p for p in caught.value.problems), caught.value.problems


def test_agent_params_on_other_kinds_are_refused() -> None:
    base = SIM_CONFIG.split("[[resources]]")[0]
    text = base + '\n[[resources]]\nname = "d"\nkind = "sysv"\nscript = "x"\nagent = "ocf:a:b"\n'
    with pytest.raises(ConfigError, match='only for kind = "ocf"'):
        parse(text)
