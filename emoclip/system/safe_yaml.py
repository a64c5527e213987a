"""YAML read from a run folder or a sweep folder: parsed as data, within limits, before OmegaConf
sees it.

Such a file may come from anyone. PyYAML's SafeLoader builds only plain values, but an alias
repeats a node (a few kilobytes of nested aliases expand to billions of values: OmegaConf.load
never ends), and a merge key (`<<`) copies one mapping into another. Neither is ever written by
emoclip or Hydra, so both are refused; so are files over MAX_BYTES, more than MAX_NODES values
and nesting deeper than MAX_DEPTH. The file is opened without following a symbolic link.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from emoclip.errors import DataError

MAX_BYTES = 8 << 20
MAX_NODES = 200_000
MAX_DEPTH = 64


class _Refused(Exception):
    pass


class _CappedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, anchors and merge keys, and counts nodes and depth."""

    def __init__(self, stream):
        super().__init__(stream)
        self.nodes, self.depth = 0, 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _Refused("an alias (*name): a file emoclip reads repeats no nodes")
        if getattr(self.peek_event(), "anchor", None):
            raise _Refused("an anchor (&name): a file emoclip reads repeats no nodes")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} values")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def flatten_mapping(self, node):
        for key, _ in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                raise _Refused("a merge key (<<)")
        super().flatten_mapping(node)


def read_file_nofollow(path: Path, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of a file, refused when it is a symbolic link or larger than max_bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        if Path(path).is_symlink():
            raise DataError(
                f"{path} is a symbolic link: a run folder's files are read only as themselves"
            ) from None
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None
    with os.fdopen(fd, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DataError(f"{path}: larger than {max_bytes >> 20} MB, not a config emoclip wrote")
    return data


def load_yaml_data(path: str | Path) -> Any:
    """The plain values a YAML file holds (mappings, lists, str, int, float, bool, None)."""
    path = Path(path)
    data = read_file_nofollow(path)
    try:
        text = data.decode("utf-8")
        return yaml.load(text, Loader=_CappedLoader)  # noqa: S506 (a SafeLoader)
    except _Refused as err:
        raise DataError(f"{path}: refused: {err}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())[:200]
        raise DataError(f"{path}: not a readable YAML file ({detail})") from None
