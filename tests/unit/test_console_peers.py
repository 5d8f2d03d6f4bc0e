"""The web console with several peers (multi-server mode): status.peers reaches the page,
and switchover may name its target, which the server checks against the config's nodes
before anything reaches the agent. The rendering itself: tests/lab/test_console_lab.py."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_console import Served, make_server, run_in

NODES = ["alpha", "beta", "gamma"]


def peer(name: str, role: str, epoch: int, rank: int, **extra: Any) -> dict[str, Any]:
    return {
        "node": name,
        "role": role,
        "epoch": epoch,
        "mode": "AUTO",
        "uplinks": {"a": True, "b": True},
        "heard_ago": 0.05,
        "heard_ago_by_network": {"a": 0.05, "b": 0.05},
        "echo_misses": {"a": 0, "b": 0},
        "unauthenticated": None,
        "fence": None,
        "data_epoch": epoch,
        "heard": ["alpha"],
        "in_sync": [],
        "rank": rank,
        **extra,
    }


THREE = {"beta": peer("beta", "STANDBY", 3, 1), "gamma": peer("gamma", "STANDBY", 2, 2)}


@pytest.fixture(params=["nodes-from-the-config", "nodes-from-the-status"])
def console(
    request: pytest.FixtureRequest, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> Iterator[Served]:
    """A console of a three-node cluster: told the config's nodes, or left to the status."""
    nodes = NODES if request.param == "nodes-from-the-config" else None
    c = make_server(tmp_path, loop, nodes=nodes)
    c.agent.peers = dict(THREE)
    yield c
    run_in(loop, c.server.close())


def post(console: Served, body: str | bytes) -> tuple[int, dict[str, Any]]:
    cookie, csrf = console.session()
    headers = {
        "Cookie": cookie,
        "Content-Type": "application/json",
        "Origin": console.origin,
        "X-CSRF-Token": csrf,
    }
    status, _, answer = console.request("POST", "/api/command", body, headers)
    return status, json.loads(answer) if answer.startswith(b"{") else {}


def test_switchover_to_a_node_reaches_the_agent_with_its_name_and_is_noted(
    console: Served,
) -> None:
    status, reply = post(console, json.dumps({"command": "switchover", "to": "gamma"}))
    assert status == 200 and reply == {"ok": True, "decisions": ["switchover done"]}
    assert console.agent.requests == [{"command": "switchover", "to": "gamma"}]
    noted = [text for text, _ in console.notes if "asked from" in text]
    assert noted == ["web console: switchover to gamma asked from 127.0.0.1: done"]


def test_switchover_without_to_sends_no_to(console: Served) -> None:
    status, reply = post(console, json.dumps({"command": "switchover"}))
    assert status == 200 and reply["ok"]
    assert console.agent.requests == [{"command": "switchover"}]


BAD_TARGETS: dict[str, tuple[object, str]] = {
    "unknown": ("delta", "switchover refused: delta is not a node of this cluster"),
    "null": (None, '"to" must be a node name'),
    "number": (2, '"to" must be a node name'),
    "list": (["beta"], '"to" must be a node name'),
    "object": ({"node": "beta"}, '"to" must be a node name'),
    "empty": ("", '"to" must be a node name'),
    "space": ("be ta", '"to" must be a node name'),
    "newline": ("beta\n", '"to" must be a node name'),
    "case": ("Beta", "switchover refused: Beta is not a node of this cluster"),
    "long": ("b" * 3000, '"to" must be a node name'),
}


@pytest.mark.parametrize("kind", sorted(BAD_TARGETS))
def test_a_bad_target_is_refused_with_400_and_nothing_reaches_the_agent(
    console: Served, kind: str
) -> None:
    target, message = BAD_TARGETS[kind]
    status, reply = post(console, json.dumps({"command": "switchover", "to": target}))
    assert status == 400 and reply["ok"] is False
    assert reply["error"].startswith(message)
    assert console.agent.commands == [] and console.agent.requests == []
    assert not [text for text, _ in console.notes if "asked from" in text]


def test_the_refusal_of_an_unknown_node_names_the_nodes(console: Served) -> None:
    _, reply = post(console, json.dumps({"command": "switchover", "to": "delta"}))
    assert reply["error"] == (
        "switchover refused: delta is not a node of this cluster (alpha, beta, gamma)"
    )


def test_a_10_kb_target_is_refused_before_it_is_read(console: Served) -> None:
    status, _ = post(console, json.dumps({"command": "switchover", "to": "x" * 10240}))
    assert status == 413
    assert console.agent.commands == []


@pytest.mark.parametrize("name", ["maintenance-on", "maintenance-off"])
def test_only_switchover_takes_a_target(console: Served, name: str) -> None:
    status, reply = post(console, json.dumps({"command": name, "to": "beta"}))
    assert status == 400 and reply["error"] == f'only switchover takes "to", not {name}'
    assert console.agent.commands == []


def test_the_config_s_nodes_decide_not_the_status(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """Told the config's nodes, the server does not trust a status naming others."""
    c = make_server(tmp_path, loop, nodes=["alpha", "beta"])
    try:
        c.agent.peers = dict(THREE)  # gamma: in the status, not in the config given
        status, reply = post(c, json.dumps({"command": "switchover", "to": "gamma"}))
        assert status == 400 and "(alpha, beta)" in reply["error"]
        assert c.agent.commands == []
    finally:
        run_in(loop, c.server.close())


def test_the_status_api_passes_every_peer_on_in_takeover_order(console: Served) -> None:
    cookie, _ = console.session()
    _, _, body = console.request("GET", "/api/status", headers={"Cookie": cookie})
    peers = json.loads(body)["status"]["peers"]
    assert list(peers) == ["beta", "gamma"]
    assert peers["gamma"]["rank"] == 2 and peers["gamma"]["data_epoch"] == 2


def test_the_page_has_the_other_nodes_table_and_a_target_select_hidden_until_needed(
    console: Served,
) -> None:
    cookie, _ = console.session()
    _, _, page = console.request("GET", "/", headers={"Cookie": cookie})
    others = re.search(rb'<section id="others"[^>]*>', page)
    assert others is not None and b" hidden" in others.group(0)
    head = re.search(rb'<table id="peers">\s*<thead>(.*?)</thead>', page, re.S)
    assert head is not None
    columns = re.findall(rb"<th>([^<]+)</th>", head.group(1))
    assert columns == [
        b"node",
        b"role",
        b"mode",
        b"epoch",
        b"data epoch",
        b"takeover place",
        b"last heard",
        b"uplinks (its report)",
        b"authentication",
        b"fence",
    ]
    label = re.search(rb'<label id="switchover-target"[^>]*>', page)
    assert label is not None and b" hidden" in label.group(0)
    assert b'<option value="">best candidate</option>' in page
    assert b"<script>" not in page and b"onclick" not in page.lower()  # CSP: no inline
    _, _, js = console.request("GET", "/static/console.js")
    assert b"s.peers" in js and b"request.to = select.value" in js
