"""Config folders beyond emoclip's own conf/: installed plugins, and a user's own folder.

- **A plugin package** declares itself with an entry point in the group `emoclip.plugins`
  whose value is the package's import name:

      [project.entry-points."emoclip.plugins"]
      my_plugin = "my_plugin"

  Its configs are the `conf/` folder inside that package, laid out as emoclip's conf/ is
  (`conf/data/<source>.yaml`, `conf/model/text_tower/<tower>.yaml`, `conf/model/fusion/...`);
  its classes live in the package. The folder is found without importing the package.
- **A user's own folder** of config groups is Hydra's `hydra.searchpath`, given on the
  command line: `emoclip-train hydra.searchpath=[file:///home/me/emoclip_conf] data=mine`.

Hydra composes from emoclip's conf/ first, then each plugin's folder (a Hydra
SearchPathPlugin, `PluginConfigs`, registered by `register`), then `hydra.searchpath`; an
option found in an earlier folder hides one of the same name in a later folder. The
catalogue (emoclip.catalogue) reads the same folders in the same order, so what it lists is
what Hydra composes, and a stored study that used a plugin's option is rebuilt from the
plugin's config.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "emoclip.plugins"
PLUGIN_CONFIGS = "conf"  # the config folder inside a plugin package
_warned: set[str] = set()


@dataclass(frozen=True)
class ConfigFolder:
    """One folder of config groups, and where it came from (for listings and messages)."""

    path: Path
    origin: str  # "emoclip", "plugin <name> (<package>)", "hydra.searchpath"


def plugin_folders() -> list[ConfigFolder]:
    """The config folder of each installed plugin (entry point group `emoclip.plugins`), in
    the order of their names. A plugin whose folder is missing is skipped with one warning.
    Read once per import path (sys.path): a plugin installed while a process runs is seen by
    the next one."""
    return list(_plugin_folders(tuple(sys.path)))


@functools.lru_cache(maxsize=8)
def _plugin_folders(import_path: tuple[str, ...]) -> tuple[ConfigFolder, ...]:
    found = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        folder = _package_folder(point.value)
        configs = folder / PLUGIN_CONFIGS if folder else None
        if configs is None or not configs.is_dir():
            _warn_once(
                f"emoclip plugin {point.name!r} (entry point {point.name} = {point.value!r} in "
                f"the group {ENTRY_POINT_GROUP}): expected the name of an importable package "
                f"with a {PLUGIN_CONFIGS}/ folder inside; skipped"
            )
            continue
        found.append(ConfigFolder(configs.resolve(), f"plugin {point.name} ({point.value})"))
    return tuple(found)


def searchpath_folders(searchpath: list[str] | tuple[str, ...]) -> list[ConfigFolder]:
    """The folders of `hydra.searchpath` entries (file://DIR, pkg://package.folder, or DIR)."""
    found = []
    for entry in searchpath:
        if entry.startswith("pkg://"):
            module, _, sub = entry.removeprefix("pkg://").replace("/", ".").partition(".")
            base = _package_folder(module)
            folder = base.joinpath(*sub.split(".")) if base and sub else base
        else:
            folder = Path(entry.removeprefix("file://")).expanduser()
        if folder is not None and folder.is_dir():
            found.append(ConfigFolder(folder.resolve(), "hydra.searchpath"))
    return found


def running_searchpath() -> list[str]:
    """The `hydra.searchpath` of the running Hydra app (given on its command line), or []."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(entry) for entry in HydraConfig.get().searchpath or []]


def _package_folder(name: str) -> Path | None:
    """The folder of the package `name`, found without importing it (None if there is none)."""
    if not all(part.isidentifier() for part in name.split(".")):
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


class PluginConfigs(SearchPathPlugin):
    """Hydra's hook for config folders: each installed emoclip plugin's conf/, after emoclip's."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for folder in plugin_folders():
            search_path.append(provider=folder.origin, path=f"file://{folder.path}")


def register() -> None:
    """Put `PluginConfigs` on Hydra's search path (once per process; idempotent): every later
    composition (the entry points, emoclip.study.stored_study, Hydra's compose API) sees the
    plugins' configs."""
    Plugins.instance().register(PluginConfigs)
