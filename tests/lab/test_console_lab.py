"""The web console on a real lab pair, driven by a real headless Chromium.

Both agents serve the console on every address of their node (the config is
identical on both: listen 0.0.0.0:8405); the browser runs in the lab's client
namespace on switch A and opens the active node's console at its lab address.
It logs in with the token from the 0600 token file, reads both nodes' state
off the page, survives a CSRF attempt from a foreign page, and clicks
switchover; then the VIP must have moved: the other node holds it and answers
the client. Skipped (with the reason) only when chromium, chromedriver or
selenium is missing (`make install` installs them).

The page's alarms (peer messages failing authentication) are shown by the same
Chromium against a console on the host's 127.0.0.1 with a stand-in agent, as no
healthy lab pair reports them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.authkeys import generate_secret_text
from mosqit_failover.lab import deploy, faults
from mosqit_failover.lab.client import Probe
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.netns import LabError
from mosqit_failover.lab.topology import LabPlan
from tests.lab.console_browser import CHROMEDRIVER, CHROMIUM, FLAGS, wait_for
from tests.unit.test_console import make_server, run_in

pytestmark = pytest.mark.lab

PORT = 8405
TOKEN_PATH = "/etc/mosqit-failover/console_token"
CONSOLE_TABLE = f'\n[console]\nlisten = "0.0.0.0:{PORT}"\ntoken_file = "{TOKEN_PATH}"\n'
BROWSER_FILES = ("/usr/bin/chromium", "/usr/bin/chromedriver")


def browser_unavailable() -> str | None:
    missing = [f for f in BROWSER_FILES if not Path(f).exists()]
    if missing:
        return f"{', '.join(missing)} missing (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium missing (pip install -e '.[dev]')"
    return None


@dataclass
class ConsolePair:
    lab: Lab
    plan: LabPlan
    probe: Probe
    token: str

    def url(self, node: str) -> str:
        return f"http://{self.plan.node(node).addr('a')}:{PORT}"

    def client(self, mode: str, node: str, shots: Path | None = None) -> dict[str, Any]:
        """Run tests/lab/console_browser.py in the client namespace; its JSON answer."""
        argv = [
            "ip",
            "netns",
            "exec",
            self.plan.client_ns,
            self.plan.python,
            "-m",
            "tests.lab.console_browser",
            mode,
            "--url",
            self.url(node),
            "--token",
            self.token,
        ]
        if shots is not None:
            argv += ["--shots", str(shots)]
        proc = subprocess.run(
            argv,
            cwd=self.plan.project_dir,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        lines = proc.stdout.strip().splitlines()
        assert lines, f"no answer from the browser driver: {proc.stderr[-2000:]}"
        result: dict[str, Any] = json.loads(lines[-1])
        assert "error" not in result, f"{result['error']}\n{proc.stderr[-2000:]}"
        return result

    def roles(self) -> dict[str, str]:
        return deploy.wait_pair(self.lab.nodes, timeout=40)


@pytest.fixture(scope="module")
def console_pair(lab: Lab, lab_plan: LabPlan) -> Iterator[ConsolePair]:
    reason = browser_unavailable()
    if reason:
        pytest.skip(f"console browser test skipped: {reason}")
    deploy.install(lab.nodes, lab_plan)
    secret = generate_secret_text()
    for node in lab.nodes.values():
        node.write_file(deploy.CONFIG_PATH, deploy.lab_config(lab_plan) + CONSOLE_TABLE)
        node.write_file(TOKEN_PATH, secret, mode=0o600)
    try:
        deploy.start(lab.nodes)
    except LabError as error:
        journals = {
            name: node.run(
                ["journalctl", "--no-pager", "-n", "15", "-u", deploy.UNIT], check=False
            ).stdout
            for name, node in lab.nodes.items()
        }
        raise LabError(
            f"{error}\n" + "\n".join(f"{n}:\n{j}" for n, j in journals.items())
        ) from None
    deploy.wait_pair(lab.nodes, timeout=30)
    probe = Probe(lab_plan, duration=900)
    try:
        yield ConsolePair(lab, lab_plan, probe, secret.split()[-1])
    finally:
        probe.stop()
        faults.clear_all(lab_plan)
        for node in lab.nodes.values():
            node.systemctl("stop", deploy.UNIT, check=False, timeout=150)


def test_bad_input_from_the_client_changes_nothing(console_pair: ConsolePair) -> None:
    roles = console_pair.roles()
    active = next(n for n, r in roles.items() if r == "ACTIVE")
    t0 = time.time()
    result = console_pair.client("bad-input", active)
    assert result == {
        "page_without_session": 303,
        "status_without_session": 401,
        "command_without_session": 401,
        "wrong_token": 401,
        "good_token": 303,
        "csrf_missing": 403,
        "csrf_wrong": 403,
        "cross_origin_with_csrf": 403,
        "foreign_host": 421,
    }
    assert deploy.roles(console_pair.lab.nodes) == roles
    kinds = [e["DECISION"] for e in deploy.decisions(console_pair.lab[active], since=t0)]
    assert "switchover" not in kinds
    notes = console_pair.lab[active].journal(identifier="mosqit-failover", since=t0)
    assert any("web console: failed login from" in e.get("MESSAGE", "") for e in notes)


def test_the_page_shows_both_nodes_and_its_switchover_moves_the_vip(
    console_pair: ConsolePair, tmp_path: Path
) -> None:
    pair = console_pair
    roles = pair.roles()
    active = next(n for n, r in roles.items() if r == "ACTIVE")
    standby = next(n for n, r in roles.items() if r == "STANDBY")
    pair.probe.wait_answer_from(active, after=time.time(), timeout=10)
    t0 = time.time()

    result = pair.client("browser", active, shots=tmp_path)

    assert result["redirected_to"].endswith("/login")
    assert result["wrong_token_message"] == "Wrong token."
    assert result["cookie"] == [{"name": "mqconsole", "httpOnly": True, "sameSite": "Strict"}]
    before = result["before"]
    assert before["self"]["name"] == active and before["self"]["role"] == "ACTIVE"
    assert before["peer"]["name"] == standby and before["peer"]["role"] == "STANDBY"
    assert before["self"]["mode"] == "AUTO" and before["peer"]["mode"] == "AUTO"
    assert before["vip"] == f"{pair.plan.vip}/{pair.plan.prefix_len}"
    assert before["freshness"] == "live"
    assert [row[0] for row in before["networks"]] == ["a", "b"]
    assert all(row[1] == "healthy" and row[2] == "healthy" for row in before["networks"])
    assert before["resources"][0][:2] == ["demo", "running"]
    assert before["sync_summary"]  # the lab pair syncs nothing: the page says so
    assert before["recent"], "the recent decision lines are on the page"

    # the foreign page's auto-submitted switchover changed nothing
    assert result["after_csrf_attempt"]["self"]["role"] == "ACTIVE"

    # the click: the page shows the hand-over, and the VIP moved
    assert result["confirm_text"].startswith("Hand the service over")
    assert "switchover done" in result["command_result"]
    assert result["after"]["self"]["role"] == "STANDBY"
    assert result["after"]["peer"]["role"] == "ACTIVE"
    deploy.wait_roles(pair.lab.nodes, {standby: "ACTIVE", active: "STANDBY"}, timeout=20)
    assert deploy.holds_vip(pair.lab[standby], pair.plan)
    assert not deploy.holds_vip(pair.lab[active], pair.plan)
    pair.probe.wait_answer_from(standby, after=result["clicked_at"], timeout=10)

    kinds = [e["DECISION"] for e in deploy.decisions(pair.lab[active], since=t0)]
    assert kinds.count("switchover") == 1, kinds  # the CSRF attempt did not add one
    notes = [e.get("MESSAGE", "") for e in pair.lab[active].journal(since=t0)]
    assert any("web console: switchover asked from" in m and m.endswith("done") for m in notes)
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 10_000


def test_the_page_shows_a_red_banner_while_peer_messages_fail_authentication(
    tmp_path: Path,
) -> None:
    reason = browser_unavailable()
    if reason:
        pytest.skip(f"console browser test skipped: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    console = make_server(tmp_path, loop)
    agent = console.agent
    agent.peer_extra["unauthenticated"] = "bad-mac: the secrets differ <b>not bold</b>"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="mqconsole-chromium-", dir=tmp_path)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver: Any = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(20)
        driver.get(console.origin + "/")
        driver.find_element(By.ID, "token").send_keys(console.token)
        driver.find_element(By.ID, "login").click()
        banner = wait_for(
            "the banner",
            lambda: (b := driver.find_element(By.ID, "peer-auth")).is_displayed() and b,
            20,
        )
        assert banner.text == (
            "Peer messages fail authentication: bad-mac: the secrets differ <b>not bold</b>"
        )
        assert banner.value_of_css_property("background-color") == "rgba(176, 0, 32, 1)"
        assert driver.find_elements(By.CSS_SELECTOR, "#peer-auth b") == []  # text, not HTML
        assert not driver.find_element(By.CSS_SELECTOR, "#peer .fence").is_displayed()
        banner_box, first_box = (
            driver.find_element(By.CSS_SELECTOR, css).rect for css in ("#peer-auth", ".nodes")
        )
        assert banner_box["y"] < first_box["y"]  # above the nodes: the first thing seen
        driver.save_screenshot(str(tmp_path / "banner.png"))

        # the peer's messages authenticate again: the banner goes, and a fence shows
        agent.peer_extra.update(unauthenticated=None, fence="powered off at 12:00:01")
        wait_for(
            "the banner gone",
            lambda: not driver.find_element(By.ID, "peer-auth").is_displayed(),
            10,
        )
        fence = wait_for(
            "the fence line",
            lambda: (
                (f := driver.find_element(By.CSS_SELECTOR, "#peer .fence")).is_displayed() and f
            ),
            10,
        )
        assert fence.text == "powered off at 12:00:01"

        # an agent that does not report the field at all: no banner, nothing broken
        agent.peer_extra.clear()
        agent.mode = "MAINTENANCE"  # seen on the page = a poll after the change
        wait_for(
            "the next poll",
            lambda: driver.find_element(By.CSS_SELECTOR, "#self .mode").text == "MAINTENANCE",
            10,
        )
        assert not driver.find_element(By.ID, "peer-auth").is_displayed()
        assert not driver.find_element(By.CSS_SELECTOR, "#peer .fence").is_displayed()
        assert driver.find_element(By.ID, "freshness").text == "live"
    finally:
        driver.quit()
        run_in(loop, console.server.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_the_page_shows_every_peer_and_switches_over_to_the_chosen_one(tmp_path: Path) -> None:
    """A three-node status from a stand-in agent: the Other nodes table, the per-standby
    sync rows, and switchover to the standby chosen in the select."""
    reason = browser_unavailable()
    if reason:
        pytest.skip(f"console browser test skipped: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.unit.test_console_peers import THREE, peer

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    console = make_server(tmp_path, loop, nodes=["alpha", "beta", "gamma"])
    agent = console.agent
    agent.peers = {
        **THREE,
        "gamma": peer("gamma", "STANDBY", 2, 2, unauthenticated="bad-mac", fence="off"),
    }
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="mqconsole-chromium-", dir=tmp_path)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver: Any = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(20)
        driver.get(console.origin + "/")
        driver.find_element(By.ID, "token").send_keys(console.token)
        driver.find_element(By.ID, "login").click()
        wait_for(
            "the Other nodes table", lambda: driver.find_element(By.ID, "others").is_displayed(), 20
        )
        rows = [
            [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, "#peers tbody tr")
        ]
        assert rows == [
            ["beta", "STANDBY", "AUTO", "3", "3", "no. 2", "50 ms ago", "a up, b up", "ok", "-"],
            [
                "gamma",
                "STANDBY",
                "AUTO",
                "2",
                "2",
                "no. 3",
                "50 ms ago",
                "a up, b up",
                "FAILING: bad-mac",
                "off",
            ],
        ]
        assert not driver.find_element(By.ID, "peer").is_displayed()
        assert driver.find_element(By.ID, "peer-auth").text == (
            "Peer messages fail authentication: gamma: bad-mac"
        )
        select = Select(driver.find_element(By.ID, "switchover-to"))
        assert [o.text for o in select.options] == ["best candidate", "beta", "gamma"]
        select.select_by_value("gamma")
        driver.execute_script("window.confirm = function () { return true; };")
        driver.find_element(By.ID, "switchover").click()
        wait_for(
            "the command's answer",
            lambda: "done" in driver.find_element(By.ID, "command-result").text,
            10,
        )
        assert agent.requests == [{"command": "switchover", "to": "gamma"}]
        driver.save_screenshot(str(tmp_path / "peers.png"))
    finally:
        driver.quit()
        run_in(loop, console.server.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
