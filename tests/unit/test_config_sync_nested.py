"""A synchronous directory nested with another synced one is refused in one line.

The inner mount would be reached through the outer one (each change replicated twice
by two unordered streams writing the same standby files), or, mounted the other way
round, hidden behind EXDEV; an async directory beside a live channel lets rsync
overwrite an acknowledged change.
"""

from __future__ import annotations

import pytest

from mosqit_failover.config import ConfigError, parse
from mosqit_failover.sim_scenarios import SIM_CONFIG

HEAD = '[[sync]]\npath = "/srv/data"'


@pytest.mark.parametrize(
    ("outer", "inner"),
    [
        ('mode = "synchronous"', 'mode = "synchronous"'),
        ('mode = "synchronous"', ""),
        ("", 'mode = "synchronous"'),
    ],
)
def test_nested_directories_with_a_synchronous_one_are_refused(outer: str, inner: str) -> None:
    text = SIM_CONFIG.replace(
        HEAD, f'{HEAD}\n{outer}\n\n[[sync]]\npath = "/srv/data/inner"\n{inner}\n'
    )
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert any("/srv/data/inner" in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("second", "mode"),
    [("/srv/data/inner", ""), ("/srv/database", 'mode = "synchronous"')],
)
def test_async_nesting_and_mere_name_prefixes_stay_accepted(second: str, mode: str) -> None:
    text = SIM_CONFIG.replace(HEAD, f'{HEAD}\n{mode}\n\n[[sync]]\npath = "{second}"\n{mode}\n')
    assert [d.path for d in parse(text).sync][-1] == second
