"""cluster.order and 2..8 nodes: which node takes over first is always written down."""

from __future__ import annotations

import pytest

from mosqit_failover.config import ConfigError, parse, pick_node
from mosqit_failover.sim_scenarios import SIM_CONFIG

GAMMA = """
[nodes.gamma]
a = { interface = "eth0", address = "10.231.1.13" }
b = { interface = "eth1", address = "10.231.2.13" }
"""


def with_nodes(count: int, cluster_extra: str = "", preferred: bool = True) -> str:
    """SIM_CONFIG with `count` nodes (alpha, beta, then n3, n4, ...)."""
    text = SIM_CONFIG if preferred else SIM_CONFIG.replace('preferred = "alpha"\n', "")
    text = text.replace('name = "sim"\n', f'name = "sim"\n{cluster_extra}', 1)
    extra = "".join(
        GAMMA.replace("gamma", f"n{i}").replace(".13", f".{10 + i}") for i in range(3, count + 1)
    )
    return text.replace("[[resources]]", extra + "\n[[resources]]", 1)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value.problems


def test_two_nodes_keep_working_unchanged_with_preferred() -> None:
    config = parse(SIM_CONFIG)
    assert config.order == ("alpha", "beta") and config.preferred == "alpha"
    assert not config.multi_server
    assert config.peer_of("alpha").name == "beta"
    assert [n.name for n in config.peers_of("beta")] == ["alpha"]


def test_two_nodes_without_preferred_order_by_name() -> None:
    assert parse(with_nodes(2, preferred=False)).order == ("alpha", "beta")


def test_preferred_beta_puts_beta_first() -> None:
    config = parse(SIM_CONFIG.replace('preferred = "alpha"', 'preferred = "beta"'))
    assert config.order == ("beta", "alpha") and config.rank("alpha") == 1


def test_three_nodes_with_an_order() -> None:
    config = parse(with_nodes(3, 'order = ["n3", "alpha", "beta"]\n', preferred=False))
    assert config.order == ("n3", "alpha", "beta") and config.preferred == "n3"
    assert config.multi_server
    assert [n.name for n in config.peers_of("alpha")] == ["n3", "beta"]
    assert config.rank("beta") == 2


def test_eight_nodes_are_allowed_and_nine_are_not() -> None:
    names = ["alpha", "beta", *(f"n{i}" for i in range(3, 9))]
    order = "order = [" + ", ".join(f'"{n}"' for n in names) + "]\n"
    assert len(parse(with_nodes(8, order, preferred=False)).nodes) == 8
    found = problems(with_nodes(9, order, preferred=False))
    assert "nodes: need 2 to 8 tables (9 given)" in found[0]


def test_three_nodes_need_an_order() -> None:
    (found,) = problems(with_nodes(3, preferred=False))
    assert found.startswith("cluster.order: missing; with 3 nodes write the order")
    assert 'order = ["alpha", "beta", "n3"]' in found


@pytest.mark.parametrize(
    ("order", "said"),
    [
        ('["alpha", "beta"]', "missing n3"),
        ('["alpha", "beta", "n3", "alpha"]', "twice alpha"),
        ('["alpha", "beta", "gamma", "n3"]', "unknown 'gamma'"),
        ('["alpha.example.com", "beta", "n3"]', "unknown 'alpha.example.com'; missing alpha"),
        ('"alpha, beta, n3"', "list every node once"),
        ("[1, 2, 3]", "list every node once"),
    ],
)
def test_a_wrong_order_names_the_problem_and_the_fix(order: str, said: str) -> None:
    (found,) = problems(with_nodes(3, f"order = {order}\n", preferred=False))
    assert found.startswith("cluster.order = ") and said in found
    assert 'like order = ["alpha", "beta", "n3"]' in found


def test_preferred_must_agree_with_the_order() -> None:
    found = problems(with_nodes(3, 'order = ["beta", "alpha", "n3"]\n'))
    assert found == [
        "cluster.preferred = 'alpha': contradicts cluster.order, which puts beta first; "
        "keep only order"
    ]


def test_preferred_that_is_no_node_is_named() -> None:
    (found,) = problems(SIM_CONFIG.replace('preferred = "alpha"', 'preferred = "gamma"'))
    assert found.startswith("cluster.preferred = 'gamma': must be one of the nodes")


def test_an_address_used_by_two_of_three_nodes_is_refused() -> None:
    text = with_nodes(3, 'order = ["alpha", "beta", "n3"]\n', preferred=False)
    text = text.replace('address = "10.231.1.13"', 'address = "10.231.1.12"')
    assert any("already used by nodes.beta.a.address" in p for p in problems(text))


def test_peer_of_is_only_for_pairs() -> None:
    config = parse(with_nodes(3, 'order = ["alpha", "beta", "n3"]\n', preferred=False))
    with pytest.raises(ValueError, match="3 nodes"):
        config.peer_of("alpha")


ALPHA_AGAIN = GAMMA.replace("gamma", "Alpha").replace(".13", ".14")


def test_node_names_equal_but_for_case_are_refused_in_one_line() -> None:
    """Host names ignore case (DNS, and pick_node matching `uname -n`): [nodes.alpha]
    and [nodes.Alpha] would be one server with two entries."""
    text = SIM_CONFIG.replace("[[resources]]", ALPHA_AGAIN + "\n[[resources]]", 1)
    assert problems(text) == [
        "nodes.alpha and nodes.Alpha: node names must differ by more than case (host names "
        "ignore it, so both would be the same server); rename or remove one"
    ]


def test_an_order_naming_a_node_in_another_case_says_how_it_is_spelled() -> None:
    (found,) = problems(with_nodes(3, 'order = ["Alpha", "beta", "n3"]\n', preferred=False))
    assert "unknown 'Alpha' (the node is spelled alpha); missing alpha" in found


def test_the_host_name_matches_a_node_ignoring_case_and_gives_its_spelling() -> None:
    config = parse(with_nodes(3, 'order = ["alpha", "beta", "n3"]\n', preferred=False))
    assert pick_node(config, None, "ALPHA") == "alpha"
    assert pick_node(config, None, "Beta.Example.NET") == "beta"
    assert pick_node(config, None, "N3") == "n3"
    with pytest.raises(ConfigError, match="'Alpha' is not a node"):  # --node is spelled out
        pick_node(config, "Alpha", "whatever")


def test_an_fqdn_node_name_matches_the_host_name_ignoring_case() -> None:
    text = SIM_CONFIG.replace("[nodes.alpha]", '[nodes."alpha.example.net"]')
    config = parse(text.replace('preferred = "alpha"', 'preferred = "alpha.example.net"'))
    assert pick_node(config, None, "Alpha.Example.Net") == "alpha.example.net"
