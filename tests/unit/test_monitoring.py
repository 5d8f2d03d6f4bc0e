"""The fleet monitoring examples: Prometheus alerting rules and the Grafana dashboard.

promtool (from Debian's prometheus package, put into .venv/bin by `make install`)
checks the rules and runs their unit tests; the metric and label names the rules
and the dashboard use are checked against a real scrape of the agent's metrics
server, not against a list kept by hand.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mosqit_failover.config import parse
from mosqit_failover.sim_scenarios import SIM_CONFIG
from mosqit_failover.sync.engine import Engine
from tests.unit.test_metrics import daemon_status, serve_and_scrape
from tests.unit.transcript import standby

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
RULES = EXAMPLES / "prometheus" / "mosqit-failover.rules.yml"
RULES_TEST = EXAMPLES / "prometheus" / "mosqit-failover.rules.test.yml"
DASHBOARD = EXAMPLES / "grafana" / "mosqit-failover.json"
# Series Prometheus makes itself, and the labels it adds to every scraped series.
PROMETHEUS_METRICS = {"up"}
TARGET_LABELS = {"job", "instance"}


def promtool(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    # where `make install` puts it (also when the tests run in another venv), then PATH
    places = (REPO / ".venv" / "bin" / "promtool", Path(sys.executable).parent / "promtool")
    found = [str(place) for place in places if place.exists()]
    path = found[0] if found else shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: run `make install` (it puts promtool from Debian's "
            "prometheus package into .venv/bin without installing the Prometheus service)"
        )
    return subprocess.run(
        [path, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.MULTILINE)


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p["targets"]]


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_in_a_unit_test_and_stays_quiet_for_a_healthy_pair() -> None:
    text = RULES_TEST.read_text()
    healthy, _, rest = text.partition("  - name: healthy pair\n")[2].partition("\n  - name: ")
    quiet = set(re.findall(r"alertname: (\w+), exp_alerts: \[\]", healthy))
    fired = {
        m.group(1)
        for case in rest.split("eval_time:")
        if "exp_labels:" in case and (m := re.search(r"alertname: (\w+)", case))
    }
    assert set(alert_names()) == quiet, "the healthy pair must check every alert"
    assert set(alert_names()) == fired, "every alert needs a unit test in which it fires"


def test_each_alert_has_a_for_a_severity_and_tells_what_to_run() -> None:
    rules = RULES.read_text().split("- alert: ")[1:]
    assert len(rules) == len(alert_names()) >= 15
    for rule in rules:
        name = rule.split("\n", 1)[0]
        assert re.search(r"severity: (critical|warning)\n", rule), name
        assert "summary:" in rule and "description:" in rule, name
        assert re.search(r"`(mosqit-failover \w|journalctl -u|systemctl)", rule) or (
            "scrape job" in rule
        ), f"{name}: the description must say what to run"
    # a fence failure and the resource monitor's acts fire on their first event;
    # everything else waits for its `for:`
    assert sum("for:" in rule for rule in rules) == len(rules) - 2


def scrape() -> str:
    """A real scrape of the metrics server: a standby whose fence failed, with two
    synced directories and every part of the agent's status filled in."""
    h = standby(fence_answer=(False, "ssh fence via 10.0.1.1: no answer"))
    h.peer = None
    h.run_until(h.now + 7)
    config = parse(SIM_CONFIG + '\n[[sync]]\npath = "/srv/logs"\n')
    engines = [Engine(d, [], 1, lambda text, priority: None) for d in config.sync]
    engines[0].dirty.add("file", h.now)
    return asyncio.run(serve_and_scrape(lambda: daemon_status(h, engines), h.decisions()))


def exported() -> dict[str, set[str]]:
    """Sample names of a real scrape and the labels each carries."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scrape()):
        for s in family.samples:
            names.setdefault(s.name, set()).update(s.labels)
    return names


def test_the_agents_exposition_passes_promtools_lint() -> None:
    result = promtool("check", "metrics", stdin=scrape())
    assert result.returncode == 0, result.stdout + result.stderr


def used_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(mosqit_failover_\w+|up)\s*[{\[)]", expr)) | set(
        re.findall(r"\bmosqit_failover_\w+", expr)
    )


def test_the_rules_and_the_dashboard_use_only_what_the_agent_exports() -> None:
    names = exported()
    allowed_labels = TARGET_LABELS.union(*names.values())
    sources = {"rules": RULES.read_text()}
    sources.update((f"dashboard query {n}", e) for n, e in enumerate(dashboard_exprs()))
    used: set[str] = set()
    for where, text in sources.items():
        for name in used_names(text):
            used.add(name)
            assert name in names or name in PROMETHEUS_METRICS, f"{where}: {name} is not exported"
        for name, matchers in re.findall(r"\b(mosqit_failover_\w+)\{([^}]*)\}", text):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                assert label in names[name] | TARGET_LABELS, f"{where}: {name} has no {label}"
        for group in re.findall(r"\b(?:by|on|without|ignoring|group_left)\s*\(([^)]*)\)", text):
            for label in re.findall(r"\w+", group):
                assert label in allowed_labels, f"{where}: no metric has the label {label}"
    assert {"up", "mosqit_failover_sync_lag_seconds", "mosqit_failover_decisions_total"} <= used


def test_the_dashboard_has_its_variables_and_every_panel_a_datasource_and_a_query() -> None:
    data = dashboard()
    assert data["schemaVersion"] >= 36
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "label_values(mosqit_failover_up, cluster)" in json.dumps(variables["cluster"])
    panels = dashboard_panels()
    assert len(panels) >= 10
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'cluster=~"$cluster"' in target["expr"], panel["title"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("role", "failover", "network", "probe", "sync lag", "pending", "auth", "fence"):
        assert topic in titles or topic in json.dumps(panels).lower(), topic


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's variables filled in)."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, expr in enumerate(dashboard_exprs()):
        concrete = expr.replace("$__rate_interval", "1m").replace("$cluster", ".*")
        lines += [f"      - record: dashboard:query_{n}", f"        expr: {json.dumps(concrete)}"]
    rules = tmp_path / "dashboard.rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
