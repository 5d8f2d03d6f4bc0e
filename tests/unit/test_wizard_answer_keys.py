"""An answers file's keys and types are checked when it is read (a careless
operator's attack: a misspelt key fell back to its default without a word, and a
string where a list belongs was searched as text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mosqit_failover.wizards import deploy
from mosqit_failover.wizards.prompts import (
    ACTION_KEYS,
    ANSWER_KEYS,
    ANSWER_PATTERNS,
    AnswerError,
    Asker,
    load_answers,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "wizard-answers.toml"


def _load(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "answers.toml"
    path.write_text(text)
    path.chmod(0o600)
    return load_answers(path)


def test_the_example_loads_and_names_every_key() -> None:
    answers = load_answers(EXAMPLE)
    assert answers["nodes"] == ["10.0.1.11", "10.0.1.12"]
    text = EXAMPLE.read_text()
    assert "[[actions]]" in text
    keys = [*ANSWER_KEYS, *(k for kinds in ACTION_KEYS.values() for k in kinds)]
    for key in (k for k in keys if k != "actions"):
        assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), key
    for pattern in ANSWER_PATTERNS:
        assert re.search(rf'^#? ?"?{pattern} = ', text, re.MULTILINE), pattern


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('vip_interfce = "eth0"\n', "unknown answer 'vip_interfce' (did you mean vip_interface?)"),
        ('swtich_a = "10.0.1.1"\n', "unknown answer 'swtich_a' (did you mean switch_a?)"),
        ("accept_new_host_key = true\n", "(did you mean accept_new_host_keys?)"),
        ('xyzzy = "blue"\n', "unknown answer 'xyzzy': rename or remove it; the keys are"),
        # a string is searched as text: "10.0.1.1" in "10.0.1.11" accepted a changed key
        (
            'accept_changed_host_keys = "10.0.1.11"\n',
            "accept_changed_host_keys = '10.0.1.11': give a list of text, like",
        ),
        ('host_fingerprints = "SHA256:abc"\n', "host_fingerprints = 'SHA256:abc': give a list"),
        ("host_fingerprints = [1]\n", "give a list of text"),
        ('accept_new_host_keys = "yes"\n', "accept_new_host_keys = 'yes': give true or false"),
        ("user = true\n", "user = True: give text in quotes"),
        ("port = true\n", "port = True: give a number, like 22"),
        ("vip = 10\n", "vip = 10: give text in quotes"),
        ("switch_a = [1]\n", "switch_a = [1]: give text in quotes"),
        ('[[actions]]\naction = "add"\nkind = "systemd"\nunti = "x"\n', "(did you mean unit?)"),
        (
            '[[actions]]\naction = "remove"\nremove = "db"\nstop = true\n',
            "action 1 (remove): unknown answer 'stop'",
        ),
        ('[[actions]]\naction = "move"\nmove = "db"\nposition = 1.5\n', "position = 1.5"),
    ],
)
def test_a_key_no_question_reads_or_a_wrong_type_is_refused(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(AnswerError) as caught:
        _load(tmp_path, text)
    assert says in str(caught.value), caught.value
    assert str(tmp_path / "answers.toml") in str(caught.value)


def test_keys_named_after_nodes_networks_and_hosts_are_taken(tmp_path: Path) -> None:
    answers = _load(
        tmp_path,
        'node3 = "10.0.1.13"\nvip_interface_beta = "lan0"\nswitch_b = "10.0.2.1"\n'
        '"accept_key_10.0.1.11" = true\n"accept_changed_10.0.1.12" = "no"\nport = "2222"\n',
    )
    assert answers["vip_interface_beta"] == "lan0"


def test_a_list_answer_reads_as_the_list_typed_at_the_prompt() -> None:
    asker = Asker({"excludes": ["*.tmp", "cache/"]}, interactive=False)
    assert asker.ask("excludes", "Exclude", lambda t: t) == "*.tmp, cache/"


def test_a_host_key_answer_for_one_host_counts_unattended() -> None:
    # accept_key_HOST was read only at the terminal: unattended it was never used
    decide = deploy.host_key_decider(
        Asker({"accept_key_10.0.1.11": True, "accept_changed_10.0.1.12": True}, False)
    )
    assert decide("10.0.1.11", "SHA256:new", None)
    assert not decide("10.0.1.13", "SHA256:new", None)
    assert decide("10.0.1.12", "SHA256:now", "SHA256:old")
    assert not decide("10.0.1.11", "SHA256:now", "SHA256:old")


def test_a_changed_key_of_a_host_whose_name_is_part_of_another_is_not_accepted() -> None:
    decide = deploy.host_key_decider(
        Asker({"accept_changed_host_keys": ["10.0.1.11"]}, interactive=False)
    )
    assert not decide("10.0.1.1", "SHA256:now", "SHA256:old")
    assert decide("10.0.1.11", "SHA256:now", "SHA256:old")
