"""What emoclip ships, read from conf/: each config group's options, the classes (`_target_`)
each option names, and a display name.

A stored study (a checkpoint's, a run folder's) is rebuilt from these options only
(emoclip.study.stored_study): a group choice read from a file must name one of them, and an older
file without recorded choices is matched to them by the `_target_` strings it holds (a lookup
in this table; nothing is imported). The report names models and towers from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from emoclip.cli.entry import config_dir

# Groups whose options are composed by Hydra itself, never by a stored study.
NOT_STUDY_GROUPS = ("hydra", "local")
OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Option:
    group: str  # e.g. model/text_tower
    name: str  # e.g. lstm
    package: str  # where it lands in the composed config, e.g. model.text_tower ("" at the top)
    targets: frozenset[str]  # every _target_ the option's own file names
    display: str  # the option's `name` value, else its file name
    main_target: str | None = None  # the `_target_` at the option's own top, if it has one
    content: dict = field(default_factory=dict, compare=False)  # the option's file, as read
    subgroups: frozenset[str] = frozenset()  # groups its defaults list pulls in (model/...)


def _package(group: str, text: str) -> str:
    match = re.search(r"^# @package (\S+)", text, re.M)
    package = match.group(1) if match else group.replace("/", ".")
    package = package.replace("_group_", group.replace("/", "."))
    return "" if package == "_global_" else package.removeprefix("_global_.")


def _targets(node: Any) -> set[str]:
    found = set()
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            found.add(node["_target_"])
        for value in node.values():
            found |= _targets(value)
    elif isinstance(node, list):
        for value in node:
            found |= _targets(value)
    return found


def _subgroups(group: str, content: Any) -> set[str]:
    """The groups under `group` an option's defaults list pulls in (model=clip_fusion pulls in
    model/text_tower, model/fusion, ...)."""
    found = set()
    for entry in (content.get("defaults") or []) if isinstance(content, dict) else []:
        if isinstance(entry, dict):
            found |= {f"{group}/{k.split('@')[0]}" for k in entry if not k.startswith("/")}
    return found


@cache
def catalogue() -> dict[str, dict[str, Option]]:
    """group -> option name -> Option, for every group folder of conf/ (Hydra's own aside)."""
    root = Path(config_dir())
    groups: dict[str, dict[str, Option]] = {}
    for path in sorted(root.rglob("*.yaml")):
        group = path.parent.relative_to(root).as_posix()
        if group == "." or group.split("/")[0] in NOT_STUDY_GROUPS:
            continue
        text = path.read_text(encoding="utf-8")
        content = yaml.safe_load(text) or {}  # emoclip's own files
        name = content.get("name") if isinstance(content, dict) else None
        targets = _targets(content)
        for entry in (content.get("defaults") or []) if isinstance(content, dict) else []:
            if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
                sibling = path.parent / f"{entry}.yaml"  # another option of the same group
                if sibling.is_file():
                    targets |= _targets(yaml.safe_load(sibling.read_text(encoding="utf-8")))
        groups.setdefault(group, {})[path.stem] = Option(
            group=group,
            name=path.stem,
            package=_package(group, text),
            targets=frozenset(targets),
            display=name if isinstance(name, str) and "${" not in name else path.stem,
            main_target=content.get("_target_") if isinstance(content, dict) else None,
            content=content if isinstance(content, dict) else {},
            subgroups=frozenset(_subgroups(group, content)),
        )
    return groups


def options(group: str) -> list[str]:
    return sorted(catalogue().get(group, {}))


def is_option(group: str, name: object) -> bool:
    return isinstance(name, str) and name in catalogue().get(group, {})


@cache
def shipped_targets() -> frozenset[str]:
    """Every _target_ conf/ names: its options', and the base files every option of a group
    starts from (conf/base_*.yaml: the optimizer, the Trainer, the DataModule)."""
    found = {t for group in catalogue().values() for o in group.values() for t in o.targets}
    for path in Path(config_dir()).glob("base_*.yaml"):
        found |= _targets(yaml.safe_load(path.read_text(encoding="utf-8")))
    return frozenset(found)


def display_name(group: str, target: str) -> str | None:
    """The display name of the option of `group` whose file names `target`; None if none does."""
    for option in catalogue().get(group, {}).values():
        if target in option.targets:
            return option.display
    return None
