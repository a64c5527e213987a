"""What the user allows beyond emoclip's own configs, said on the entry's command line.

A study stored in a file (a checkpoint's, a run folder's) is rebuilt from conf/ and its plain
values only (emoclip.study.stored_study): no `_target_` in a file is ever instantiated. Only the user,
on the command line of the entry (never the file), widens this:

- `allow_targets=[mylab]`: a stored mapping whose `_target_` is under the module mylab (the
  user's own class, e.g. model.network._target_=mylab.MyNet) is kept as stored;
- `trust_config=true`: the file's config is taken as it is, for files the user made or trusts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from emoclip.errors import ConfigError


@dataclass(frozen=True)
class Trust:
    """What the user allows beyond the shipped configs, from the entry's command line."""

    everything: bool = False  # trust_config=true
    prefixes: tuple[str, ...] = ()  # allow_targets=[...]: module names

    @classmethod
    def from_entry(cls, cfg: DictConfig) -> Trust:
        """From the entry's own config (trust_config, allow_targets), never from a file's."""
        everything = cfg.get("trust_config", False)
        if not isinstance(everything, bool):
            raise ConfigError(f"trust_config={everything!r}: expected true or false")
        names = cfg.get("allow_targets") or []
        return cls(everything, allowed_prefixes([names] if isinstance(names, str) else names))

    def allows(self, target: str) -> bool:
        return any(target == p or target.startswith(f"{p}.") for p in self.prefixes)


GUARD_ONLY = Trust()  # the shipped configs only


def allowed_prefixes(names: Sequence[Any]) -> tuple[str, ...]:
    """allow_targets: module names such as mylab or mylab.nets (never emoclip's own: its
    classes come from conf/)."""
    prefixes = []
    for name in names:
        parts = str(name).strip().split(".") if isinstance(name, str) else []
        if not parts or not all(p.isidentifier() for p in parts):
            raise ConfigError(
                f"allow_targets: {name!r} is not a module name; expected e.g. "
                "allow_targets=[mylab] to allow the targets under the module mylab"
            )
        prefixes.append(".".join(parts))
    return tuple(prefixes)
