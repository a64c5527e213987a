"""What emoclip can compose, read from its config folders: emoclip's conf/, each installed
plugin's conf/ (entry points, emoclip.plugins) and, in a running entry, its `hydra.searchpath`:
each config group's options, the classes (`_target_`) each option names, and a display name.

The files' `_target_` stays the single truth: the catalogue reads the YAML and imports
nothing until asked for a class it lists (`listed_class`). Every reader asks it:

- a stored study (a checkpoint's, a run folder's) is rebuilt from these options only
  (emoclip.study.stored_study): a group choice read from a file must name one of them, and an older
  file without recorded choices is matched to them by the `_target_` strings it holds;
- the report names models, towers and fusions from it, and asks a listed source class how its
  data was split;
- the tests are generated from `entries()`: every source, tower, fusion and network.

`python -m emoclip.catalogue` prints the list.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from emoclip.cli.entry import config_dir
from emoclip.plugins import ConfigFolder, plugin_folders, running_searchpath, searchpath_folders

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
    origin: str = "emoclip"  # the folder it comes from: emoclip, plugin <name>, hydra.searchpath


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


def config_folders() -> tuple[ConfigFolder, ...]:
    """The folders Hydra composes from, in its order: emoclip's conf/, each plugin's, then the
    running entry's hydra.searchpath (emoclip.plugins)."""
    return (
        ConfigFolder(Path(config_dir()), "emoclip"),
        *plugin_folders(),
        *searchpath_folders(running_searchpath()),
    )


def catalogue() -> dict[str, dict[str, Option]]:
    """group -> option name -> Option, for every group folder of the config folders (Hydra's
    own aside); an option of an earlier folder hides one of the same name in a later one."""
    return _read(config_folders())


@cache
def _read(folders: tuple[ConfigFolder, ...]) -> dict[str, dict[str, Option]]:
    groups: dict[str, dict[str, Option]] = {}
    for folder in folders:
        for path in sorted(folder.path.rglob("*.yaml")):
            group = path.parent.relative_to(folder.path).as_posix()
            if group == "." or group.split("/")[0] in NOT_STUDY_GROUPS:
                continue
            if path.stem in groups.get(group, {}):
                continue  # Hydra takes the first folder's
            groups.setdefault(group, {})[path.stem] = _option(path, group, folder.origin)
    return groups


def _option(path: Path, group: str, origin: str) -> Option:
    text = path.read_text(encoding="utf-8")
    content = yaml.safe_load(text) or {}  # a config file of an installed package
    content = content if isinstance(content, dict) else {}
    name = content.get("name")
    targets = _targets(content)
    for entry in content.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
            sibling = path.parent / f"{entry}.yaml"  # another option of the same group
            if sibling.is_file():
                targets |= _targets(yaml.safe_load(sibling.read_text(encoding="utf-8")))
    return Option(
        group=group,
        name=path.stem,
        package=_package(group, text),
        targets=frozenset(targets),
        display=name if isinstance(name, str) and "${" not in name else path.stem,
        main_target=content.get("_target_"),
        content=content,
        subgroups=frozenset(_subgroups(group, content)),
        origin=origin,
    )


def options(group: str) -> list[str]:
    return sorted(catalogue().get(group, {}))


def is_option(group: str, name: object) -> bool:
    return isinstance(name, str) and name in catalogue().get(group, {})


def shipped_targets() -> frozenset[str]:
    """Every _target_ the config folders name: their options', and the base files every option
    of a group starts from (conf/base_*.yaml: the optimizer, the Trainer, the DataModule)."""
    return _all_targets(config_folders())


@cache
def _all_targets(folders: tuple[ConfigFolder, ...]) -> frozenset[str]:
    found = {t for group in _read(folders).values() for o in group.values() for t in o.targets}
    for path in folders[0].path.glob("base_*.yaml"):
        found |= _targets(yaml.safe_load(path.read_text(encoding="utf-8")))
    return frozenset(found)


def display_name(group: str, target: str) -> str | None:
    """The display name of the option of `group` whose file names `target`; None if none does."""
    for option in catalogue().get(group, {}).values():
        if target in option.targets:
            return option.display
    return None


# ---------------------------------------------------------------- what ships, by kind

# The groups whose options are the parts a study is built of, and what each part is.
KINDS = {
    "data": "source",
    "model/text_tower": "text tower",
    "model/image_tower": "image tower",
    "model/fusion": "fusion",
    "model": "network",
}


@dataclass(frozen=True)
class Entry:
    """One option of a part's group: `emoclip-train <group>=<option>` builds `target`."""

    kind: str  # source, text tower, image tower, fusion, network
    group: str
    option: str
    target: str | None  # the class its config names (a source: data.dataset's)
    display: str  # its name in the report
    origin: str  # emoclip, plugin <name> (<package>), hydra.searchpath
    declared_modalities: tuple[str, ...] = ()  # a network's `modalities`, a tower's own

    @property
    def override(self) -> str:
        return f"{self.group}={self.option}"

    def load(self) -> type | None:
        """The class (imported: the catalogue lists it), or None where the option names none."""
        return listed_class(self.target) if self.target else None

    def modalities(self) -> tuple[str, ...]:
        """What it reads: a tower its modality, a network its config's `modalities`, a source
        its class's `modalities` (imported); a fusion () (whatever the towers give)."""
        if self.kind == "source":
            return tuple(getattr(self.load(), "modalities", ()))
        return self.declared_modalities


def entries(kind: str | None = None) -> list[Entry]:
    """The sources, towers, fusions and networks the config folders offer (or one kind)."""
    found = []
    for group, kind_of_group in KINDS.items():
        if kind is not None and kind_of_group != kind:
            continue
        for option in catalogue().get(group, {}).values():
            found.append(_entry(kind_of_group, option))
    return found


def _entry(kind: str, option: Option) -> Entry:
    content = option.content
    target = option.main_target
    modalities: tuple[str, ...] = ()
    if kind == "source" and target is None:  # a config at data (a pair): its dataset's class
        target = _target_of(content.get("dataset"))
    elif kind == "network":
        target = _target_of(content.get("network"))
        declared = content.get("modalities")
        modalities = tuple(declared) if isinstance(declared, list) else ()
    elif kind.endswith("tower"):
        modalities = (kind.split()[0],)
    return Entry(
        kind=kind,
        group=option.group,
        option=option.name,
        target=target if isinstance(target, str) else None,
        display=option.display,
        origin=option.origin,
        declared_modalities=modalities,
    )


def _target_of(node: Any) -> Any:
    return node.get("_target_") if isinstance(node, dict) else None


def listed_class(target: Any) -> type | None:
    """The class a `_target_` names, imported only where an option of the config folders
    names it (a file's `_target_` alone never imports anything); None otherwise, or if it
    does not import."""
    if not isinstance(target, str) or target not in shipped_targets():
        return None
    module, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def main(argv: list[str] | None = None) -> None:
    """`python -m emoclip.catalogue`: what can be composed, one line each."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.split(":")[1].strip())
    parser.add_argument("kind", nargs="?", choices=sorted(set(KINDS.values())))
    args = parser.parse_args(argv)
    for folder in config_folders():
        print(f"# {folder.origin}: {folder.path}")
    header = ("kind", "option", "name", "modalities", "class", "from")
    rows = [
        (e.kind, e.override, e.display, ",".join(e.modalities()) or "-", e.target or "-", e.origin)
        for e in entries(args.kind)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
