"""The journal catalog: an entry for every decision kind the core emits, with its MESSAGE_ID."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mosqit_failover import catalog, core
from mosqit_failover.journal import message_id
from mosqit_failover.kinds import DecisionKind


def _kinds_in_core() -> set[str]:
    """Every decision kind core.py names: DecisionKind.X in Verdict(_, KIND, _),
    _decision(KIND) and _warn(KIND, ...), both branches of a conditional KIND."""
    tree = ast.parse(Path(core.__file__).read_text())
    kinds: set[str] = set()

    def constants(node: ast.expr) -> list[str]:
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "DecisionKind"
        ):
            return [DecisionKind[node.attr].value]
        if isinstance(node, ast.IfExp):
            return constants(node.body) + constants(node.orelse)
        return []  # e.g. verdict.kind: that kind comes from a Verdict, counted there

    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name == "Verdict" and len(call.args) >= 2:
            kinds.update(constants(call.args[1]))
        elif name in ("_decision", "_warn") and call.args:
            kinds.update(constants(call.args[0]))
    return kinds


def _entries(text: str) -> dict[str, str]:
    parts = re.split(r"^-- ([0-9a-f]{32})\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_core_uses_the_kinds_we_expect_to_find() -> None:
    kinds = _kinds_in_core()
    assert {"promote", "plan-failed", "manual", "automatic", "refused", "adopt"} <= kinds
    assert len(kinds) >= 20


def test_every_kind_in_the_core_has_a_catalog_entry_with_its_id() -> None:
    entries = _entries(catalog.CATALOG_FILE.read_text())
    for kind in sorted(_kinds_in_core()):
        text = entries.get(message_id(kind))
        assert text is not None, f"no catalog entry for decision kind {kind!r}"
        assert f"Decision: {kind}." in text
        assert "Subject: " in text and "What to do: " in text and "Why: " in text


def test_the_catalog_has_no_entry_for_a_kind_the_core_no_longer_uses() -> None:
    assert set(catalog.ENTRIES) == _kinds_in_core()


def test_every_decision_kind_has_its_entry_and_the_core_uses_every_kind() -> None:
    assert set(catalog.ENTRIES) == set(DecisionKind)
    assert _kinds_in_core() == {k.value for k in DecisionKind}


def test_message_ids_come_from_the_kind_names_as_before() -> None:
    # journal MESSAGE_IDs are what users match on: the enum must not change them
    assert message_id(DecisionKind.PROMOTE) == message_id("promote")
    assert message_id(DecisionKind.PROMOTE) == "a7c6a51c4fae539ea3ce7d45fb60def5"


def test_the_shipped_file_is_the_generated_one() -> None:
    assert catalog.CATALOG_FILE.read_text() == catalog.render(), (
        "run: python -m mosqit_failover.catalog > units/mosqit-failover.catalog"
    )


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="journalctl not installed")
def test_journalctl_accepts_the_catalog_and_finds_each_entry(tmp_path: Path) -> None:
    installed = catalog.install(tmp_path)
    assert installed == tmp_path / "usr/lib/systemd/catalog/mosqit-failover.catalog"
    listed = subprocess.run(
        ["journalctl", f"--root={tmp_path}", "--list-catalog"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ids = {line.split()[0] for line in listed.splitlines() if " mosqit-failover: " in line}
    assert ids == {message_id(kind) for kind in catalog.ENTRIES}
    shown = subprocess.run(
        ["journalctl", f"--root={tmp_path}", "--dump-catalog", message_id("promote")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "@REASON@" in shown and "What to do:" in shown
