"""Fixtures shared by the unit tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

# Modules that drive only the pure core and the simulation: no third-party library
# and no I/O (`test_pure_modules.py` checks it). `make test` runs the unit tests on
# Debian's libraries and again on PyPI's; these give the same answer on both, so the
# second pass leaves them out (`-m "not pure"`) and keeps the suite under CI's limit.
PURE_MODULES = frozenset(
    {
        "test_calm_heartbeat_networks",
        "test_calm_heartbeats_breaker",
        "test_config_order",
        "test_core_commit_freshness",
        "test_core_data_epoch",
        "test_core_multi",
        "test_core_multi_lab_findings",
        "test_core_properties",
        "test_core_properties_multi",
        "test_core_protocol",
        "test_core_quiet",
        "test_core_rules",
        "test_core_unlisted",
        "test_core_safety",
        "test_echo_blocked",
        "test_echo_loss",
        "test_echo_on_demand_breaker",
        "test_inbox",
        "test_sim_scenarios",
        "test_simulation_metrics",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pure: drives only the pure core and the simulation")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in PURE_MODULES:
            item.add_marker(pytest.mark.pure)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, for servers the test talks to."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
