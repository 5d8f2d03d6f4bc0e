"""The config text: written fresh by the deploy wizard, edited by the resource wizard.

Edits work on the text, table by table, so the operator's comments and layout
survive: a `[[resources]]` or `[[sync]]` table is appended, removed or moved
as a block (its header line down to the next header). Every function returns
new text that `mosqit_failover.config.parse` accepts, or raises `EditError`
(or the `ConfigError` naming what the edit would break); nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mosqit_failover import config as configuration
from mosqit_failover.wizards.checks import Network

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?\s*(#.*)?$")


class EditError(Exception):
    """The edit cannot be made; the message says why and what to do."""


def toml_value(value: Any) -> str:
    """A TOML literal for a string, number, bool or list of strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise EditError(f"cannot write {value!r} into the config")


def render_table(header: str, values: Mapping[str, Any]) -> str:
    lines = [f"[[{header}]]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v not in ("", None, [])]
    return "\n".join(lines) + "\n"


def render_config(
    cluster: str,
    networks: Sequence[Network],
    vip: ipaddress.IPv4Interface,
    vip_interface: str,
    nodes: Sequence[str],
    preferred: str = "",
    secret_file: str = "/etc/mosqit-failover/secret",
    vip_interfaces: Mapping[str, str] | None = None,
    order: Sequence[str] = (),
) -> str:
    """The config file the deploy wizard writes to every node (validated).

    ``vip_interfaces`` (by node) gives a node whose VIP interface is not
    ``vip_interface`` its own ``nodes.NAME.vip_interface``. A pair says
    ``preferred`` (``preferred``, else the first node); three nodes or more say
    ``order`` (``order``, else the nodes as given), which they must."""
    if len(nodes) == 2:
        head = (
            "# mosqit-failover pair, written by `mosqit-failover wizard deploy`.\n"
            "# Identical on both nodes; change resources with `mosqit-failover wizard resources`.\n"
        )
        first = f"preferred = {toml_value(preferred or (order or nodes)[0])}"
    else:
        head = (
            f"# mosqit-failover cluster of {len(nodes)} nodes, written by "
            "`mosqit-failover wizard deploy`.\n"
            "# Identical on every node; change resources with `mosqit-failover wizard resources`.\n"
        )
        first = f"order = {toml_value(list(order or nodes))}"
    parts = [
        head,
        "[cluster]",
        f"name = {toml_value(cluster)}",
        first,
        f"secret_file = {toml_value(secret_file)}",
        "",
        "[vip]",
        f"address = {toml_value(str(vip))}",
        f"interface = {toml_value(vip_interface)}",
        "",
    ]
    for net in networks:
        parts += [f"[networks.{net.name}]", f"subnet = {toml_value(str(net.subnet))}"]
        if net.switch is not None:
            parts.append(f"switch = {toml_value(str(net.switch))}")
        parts.append("")
    for node in nodes:
        parts.append(f"[nodes.{node}]")
        own = (vip_interfaces or {}).get(node, vip_interface)
        if own != vip_interface:
            parts.append(f"vip_interface = {toml_value(own)}")
        for net in networks:
            port = net.ports[node]
            parts.append(
                f"{net.name} = {{ interface = {toml_value(port.interface)}, "
                f"address = {toml_value(str(port.address.ip))} }}"
            )
        parts.append("")
    text = "\n".join(parts)
    configuration.parse(text, "the new config")
    return text


@dataclass
class Block:
    header: str  # "" for the part before the first table
    array: bool  # [[x]] rather than [x]
    text: str

    def data(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.text).get(self.header, [{}])[0] if self.array else {}
        except tomllib.TOMLDecodeError as error:
            raise EditError(f"cannot read the [[{self.header}]] table: {error}") from None


def split_blocks(text: str) -> list[Block]:
    """The text cut into blocks, one per table header (joined back gives the text)."""
    blocks = [Block("", False, "")]
    for line in text.splitlines(keepends=True):
        match = _HEADER.match(line)
        if match:
            blocks.append(Block(match.group(2), match.group(1) == "[[", line))
        else:
            blocks[-1].text += line
    return blocks


def join_blocks(blocks: Sequence[Block]) -> str:
    return "".join(b.text for b in blocks)


def _validated(text: str) -> str:
    configuration.parse(text, "the edited config")
    return text


def _key(block: Block) -> tuple[str, str] | None:
    """('resources', name) or ('sync', path) for the tables the wizard edits."""
    if not block.array or block.header not in ("resources", "sync"):
        return None
    data = block.data()
    if block.header == "resources":
        return ("resources", str(data.get("name", "")))
    return ("sync", str(data.get("path", "")).rstrip("/"))


def append(text: str, header: str, values: Mapping[str, Any]) -> str:
    """Add one [[resources]] or [[sync]] table at the end."""
    sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return _validated(text + sep + render_table(header, values))


def remove(text: str, kind: str, ident: str) -> str:
    """Remove the resource named ``ident`` (kind 'resources') or the synced dir (kind 'sync')."""
    blocks = split_blocks(text)
    wanted = (kind, ident.rstrip("/") if kind == "sync" else ident)
    kept = [b for b in blocks if _key(b) != wanted]
    if len(kept) == len(blocks):
        raise EditError(f"no {'resource' if kind == 'resources' else 'synced dir'} {ident!r}")
    for i, block in enumerate(kept[:-1]):  # keep one blank line between tables
        if not block.text.endswith("\n\n") and kept[i + 1].header:
            block.text += "\n"
    return _validated(join_blocks(kept).rstrip("\n") + "\n")


def move(text: str, name: str, position: int) -> str:
    """Put resource ``name`` at ``position`` (1 = started first) in the start order."""
    blocks = split_blocks(text)
    slots = [i for i, b in enumerate(blocks) if _key(b) and b.header == "resources"]
    order = [blocks[i] for i in slots]
    names = [k[1] for b in order if (k := _key(b))]
    if name not in names:
        raise EditError(f"no resource {name!r}; resources: {', '.join(names) or 'none'}")
    if not 1 <= position <= len(order):
        raise EditError(f"position must be from 1 to {len(order)}")
    moving = order.pop(names.index(name))
    order.insert(position - 1, moving)
    for block in order:
        block.text = block.text.rstrip("\n") + "\n\n"
    for slot, block in zip(slots, order, strict=True):
        blocks[slot] = block
    return _validated(join_blocks(blocks).rstrip("\n") + "\n")
