"""The one door through which a study stored in a file comes back: `read_stored_study`.

A checkpoint's study config, a run folder's .hydra/config.yaml and a sweep's jobs come from
files anyone could have written, and Hydra's `instantiate` calls whatever a `_target_` names.
So a file never chooses what code runs, and nothing read from one is resolved or instantiated:

1. The stored config says which option of each config group it used (`model=`,
   `model/text_tower=`, `data=`, ...: recorded at training, checkpoint["emoclip"]["choices"] or
   the run folder's .hydra/hydra.yaml); an older file without them is matched to the shipped
   options by the `_target_` strings it holds (emoclip.catalogue: a table lookup, no import).
2. emoclip composes those options with Hydra from the config folders the catalogue lists:
   its own conf/ and each installed plugin's (emoclip.plugins; a plugin's classes are
   instantiated because the plugin is installed and its config names them, not because a
   file does), and the entry's own `hydra.searchpath`, given on its command line.
3. The stored values are copied over it only where they are plain data the composed config
   has room for: a literal (str, int, float, bool, None; a list of them) where the composed
   config has a plain value of the same type, or none; a value equal to the composed one. A
   mapping with special keys (`_target_`, `_partial_`, ... any `_name_`), an interpolation
   (`${...}`), a key the composed config lacks, or anything else is refused, every such key
   path named in one line, before anything is imported.

So every `_target_` and special key that is instantiated comes from conf/. The user alone
widens this, on the entry's command line (emoclip.study.trust.Trust): `allow_targets=[mylab]` keeps a
stored mapping whose `_target_` lies under the module mylab as stored (the user's own class);
`trust_config=true` takes the file's config as it is (files the user made). A checkpoint never
chooses paths: the entry's own `paths` (cache_dir, output_dir, data_dir) replace the stored ones.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emoclip.catalogue import (
    OPTION_NAME,
    Option,
    catalogue,
    config_folders,
    is_option,
    options,
    shipped_targets,
)
from emoclip.errors import ConfigError
from emoclip.plugins import running_searchpath
from emoclip.runs.run_folder import running_app
from emoclip.study.trust import GUARD_ONLY, Trust

SPECIAL_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
PLAIN = (str, int, float, bool, type(None))
MAX_DEPTH = 48  # a study config is about 8 levels deep
MAX_VALUES = 50_000  # a study config holds about 300
# Groups a stored choice is taken for, in the order an older file's choices are inferred.
STUDY_GROUPS = (
    "data",
    "model",
    "model/backbone",
    "model/text_tower",
    "model/image_tower",
    "model/fusion",
    "model/finetune",
    "trainer",
    "callbacks",
    "logger",
)
# The groups a training run records (checkpoint["emoclip"]["choices"]); Hydra's own, the
# machine's (local, paths) and the sweeper's (hparams_search) are never taken from a file.
RECORDED_GROUPS = (*STUDY_GROUPS, "experiment", "debug")
IGNORED_GROUPS = ("hydra", "local", "paths", "hparams_search")
# Top-level keys never taken from a file: the entry's own (trust), or this machine's (paths).
ENTRY_KEYS = ("paths", "hydra", "trust_config", "allow_targets")
# Sections that take keys the shipped config lacks, when they hold plain literals only:
# Lightning's Trainer has dozens of arguments, added with +trainer.<key>=... .
OPEN_SECTIONS = ("trainer",)
SHOWN_PROBLEMS = 6
# Keys that earlier files hold and today's configs dropped: read, and ignored (the text tower
# declares its tokenizer since issue 20; `model.tokenizer` repeated it).
RETIRED_KEYS = (
    "model.tokenizer",
    "model.text_tower.tokenizer",
    "model.network.text_tower.tokenizer",
)
# Classes the shipped configs named before: a file naming the old one gets the new one.
RENAMED_TARGETS = {
    "lightning.pytorch.callbacks.ModelCheckpoint": "emoclip.system.checkpoint_io.RunCheckpoint",
    # The classes of the top-level modules grouped into wings (issue 20).
    "emoclip.checkpoint_io.RunCheckpoint": "emoclip.system.checkpoint_io.RunCheckpoint",
    "emoclip.checkpoint_io.SafeCheckpointIO": "emoclip.system.checkpoint_io.SafeCheckpointIO",
    "emoclip.early_stopping.EarlyStopping": "emoclip.runs.early_stopping.EarlyStopping",
    "emoclip.faults.StopOnDivergence": "emoclip.runs.faults.StopOnDivergence",
    "emoclip.faults.SaveOnInterrupt": "emoclip.runs.faults.SaveOnInterrupt",
    "emoclip.run_folder.CreatableRunFolder": "emoclip.runs.run_folder.CreatableRunFolder",
    "emoclip.sweep.WriteTrialsTable": "emoclip.runs.sweep.WriteTrialsTable",
}


def with_renamed_targets(node: Any) -> Any:
    """The stored config with each `_target_` of RENAMED_TARGETS by its class's name today."""
    if isinstance(node, dict):
        return {
            key: RENAMED_TARGETS.get(value, value)
            if key == "_target_" and isinstance(value, str)
            else with_renamed_targets(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [with_renamed_targets(value) for value in node]
    return node


def is_special(key: object) -> bool:
    """A key Hydra or a later tool could give a meaning: _target_, _partial_, any `_name_`."""
    return isinstance(key, str) and (
        key in SPECIAL_KEYS or (len(key) > 2 and key.startswith("_") and key.endswith("_"))
    )


def is_interpolation(value: object) -> bool:
    return isinstance(value, str) and "${" in value


def read_stored_study(
    stored: Any,
    where: str,
    trust: Trust = GUARD_ONLY,
    choices: Any = None,
    entry_paths: DictConfig | None = None,
) -> DictConfig:
    """The study config stored in `where`, rebuilt from conf/ (see the module's docstring).
    `choices`: the recorded group options (None: inferred); `entry_paths`: the entry's own
    `paths`, which replace the stored ones."""
    check_shape(stored, where)
    stored = with_renamed_targets(stored)
    if trust.everything:
        rebuilt = OmegaConf.create(stored)
    else:
        chosen = checked_choices(choices, where) if choices else infer_choices(stored, where, trust)
        shipped = copy.deepcopy(_composed(tuple(chosen.items()), where))
        problems: list[str] = []
        deferred: list[tuple[str, Any]] = []
        merged = _merge(stored, shipped, "", problems, deferred, trust)
        for key in ENTRY_KEYS:
            if key in shipped:
                merged[key] = shipped[key]
        refuse(problems, where)
        rebuilt = OmegaConf.create(merged)
        for path, value in deferred:
            problems += _compare_resolved(rebuilt, path, value)
        refuse(problems, where)
    if entry_paths is not None:
        rebuilt.paths = OmegaConf.create(OmegaConf.to_container(entry_paths, resolve=False))
    elif not trust.everything:  # outside an entry (Python): conf/'s paths, no run folder
        for key in list(rebuilt.paths):
            try:
                rebuilt.paths[key] = OmegaConf.select(rebuilt, f"paths.{key}")
            except OmegaConfBaseException:  # only a running Hydra app resolves it
                rebuilt.paths[key] = None if key == "continue_in" else "."
    return rebuilt


def refuse(problems: Sequence[str], where: str) -> None:
    if not problems:
        return
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
    raise ConfigError(
        f"refused the config stored in {where}: {shown}{more}. A study read from a file is "
        "rebuilt from emoclip's own configs, taking only plain values from the file. If you "
        "made or trust this file, allow its code on the command line: allow_targets=[<module>] "
        "(its classes under that module) or trust_config=true (everything in the file)"
    )


# ---------------------------------------------------------------- the file's shape


def check_shape(stored: Any, where: str) -> None:
    """A mapping of string keys holding plain values only, at most MAX_DEPTH deep and
    MAX_VALUES in all (walked without recursion: a 20,000-deep file is one line, not a crash)."""
    if not isinstance(stored, dict):
        raise ConfigError(f"refused the config stored in {where}: expected a mapping of keys")
    stack: list[tuple[Any, str, int]] = [(stored, "", 0)]
    count = 0
    while stack:
        node, path, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(
                f"refused the config stored in {where}: more than {MAX_VALUES} values"
            )
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"refused the config stored in {where}: nested more than {MAX_DEPTH} levels "
                f"deep (at {path[:120]}...)"
            )
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise ConfigError(
                        f"refused the config stored in {where}: {path or '<top>'}: keys must "
                        "be strings"
                    )
                stack.append((value, _join(path, key), depth + 1))
        elif isinstance(node, list | tuple):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))
        elif not isinstance(node, PLAIN):
            raise ConfigError(
                f"refused the config stored in {where}: {path}: a {type(node).__name__}, not a "
                "plain config value"
            )


# ---------------------------------------------------------------- which options


def checked_choices(choices: Any, where: str) -> dict[str, str | None]:
    """Recorded group choices: each a study group and one of its shipped options (or null)."""
    if not isinstance(choices, dict):
        raise ConfigError(f"{where}: its recorded config choices are not a mapping")
    chosen = {}
    known = catalogue()
    for group, option in choices.items():
        if not isinstance(group, str) or group.startswith("hydra/") or group in IGNORED_GROUPS:
            continue  # Hydra's own groups, and the machine's settings: never from a file
        if group not in known or group not in RECORDED_GROUPS:
            raise ConfigError(f"{where}: recorded choice {group!r}: not a config group of emoclip")
        if option is None:
            continue
        if not (
            isinstance(option, str) and OPTION_NAME.fullmatch(option) and is_option(group, option)
        ):
            raise ConfigError(
                f"{where}: recorded choice {group}={str(option)[:60]!r}: expected one of "
                f"{', '.join(options(group))} (a plugin's option needs the plugin installed; "
                "one of your own config folder, its hydra.searchpath=[...] on the command line)"
            )
        chosen[group] = option
    return chosen


def recorded_choices(cfg: DictConfig) -> dict[str, str | None] | None:
    """The group options of the running Hydra app, for a checkpoint of `cfg`; None outside
    one, or when `cfg` is not that app's config (run_folder.running_app)."""
    hydra = running_app(cfg)
    if hydra is None:
        return None
    choices = hydra.runtime.choices
    return {g: choices.get(g) for g in RECORDED_GROUPS if g in choices}


def _at(node: Any, package: str) -> Any:
    for key in package.split(".") if package else ():
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _shallow_targets(node: Any) -> set[str]:
    """The `_target_`s of a node and of its direct children."""
    if not isinstance(node, dict):
        return set()
    found = [
        node.get("_target_"),
        *(v.get("_target_") for v in node.values() if isinstance(v, dict)),
    ]
    return {t for t in found if isinstance(t, str)}


def _leaves(node: Any, prefix: str = "", keep_all: bool = False) -> dict[str, Any]:
    """Dotted key -> value of the non-mapping values (interpolations left out unless keep_all)."""
    if isinstance(node, dict) and (node or not keep_all):
        flat = {}
        for key, value in node.items():
            if key != "defaults":
                flat.update(_leaves(value, _join(prefix, key), keep_all))
        return flat
    return {} if is_interpolation(node) and not keep_all else {prefix: node}


def _key_mismatch(option_leaves: dict[str, Any], stored: Any) -> int:
    """How many keys one of (the option's file, the stored node) has and the other lacks."""
    stored_keys = set(_leaves(stored, keep_all=True)) if isinstance(stored, dict) else set()
    option_keys = set(option_leaves)

    def covered(key: str, keys: set[str]) -> bool:
        return any(key == k or key.startswith(f"{k}.") or k.startswith(f"{key}.") for k in keys)

    return sum(not covered(k, stored_keys) for k in option_keys) + sum(
        not covered(k, option_keys) for k in stored_keys
    )


def infer_choices(stored: dict, where: str, trust: Trust = GUARD_ONLY) -> dict[str, str]:
    """The shipped option of each group that a file without recorded choices used: the one
    whose `_target_`s the file holds at its place, then the one whose keys and values it
    shares most (emoclip.catalogue: a lookup, nothing imported)."""
    chosen: dict[str, str] = {}
    problems = []
    for group in STUDY_GROUPS:
        if group.startswith("model/"):
            model = catalogue()["model"].get(chosen.get("model", ""))
            if model is None or group not in model.subgroups:
                continue  # the chosen model option does not pull this group in
        shipped_options = catalogue().get(group, {})
        best, best_score = None, None
        for option in shipped_options.values():
            score = _match(option, stored, trust)
            if score is not None and (best_score is None or score > best_score):
                best, best_score = option.name, score
        if best is not None:
            chosen[group] = best
        elif any(o.targets for o in shipped_options.values()):
            problems += _unmatched(group, stored, trust)
    refuse(problems, where)
    return chosen


def _match(option: Option, stored: dict, trust: Trust) -> tuple | None:
    """How well a stored config fits an option (higher is better), None if it cannot be it."""
    node = _at(stored, option.package)
    if not isinstance(node, dict):
        return None
    stored_targets = _shallow_targets(node)
    overlap = len(option.targets & stored_targets)
    users_own = any(trust.allows(t) for t in stored_targets)
    if option.targets and not overlap and not users_own:
        return None
    if option.main_target and not users_own and node.get("_target_") != option.main_target:
        return None
    leaves = _leaves(option.content)
    values = {k: _leaf(node, k) for k in leaves}
    agree = sum(1 if values[k] == v else -1 for k, v in leaves.items() if values[k] is not _MISSING)
    named = node.get("name") == option.display
    # Keys matter where the option has a place of its own; one at the top sets a few keys.
    mismatch = _key_mismatch(_leaves(option.content, keep_all=True), node) if option.package else 0
    return (overlap, named, -mismatch, agree)


def _unmatched(group: str, stored: dict, trust: Trust) -> list[str]:
    """Why no shipped option of `group` fits the stored config (none when its place is empty,
    or holds a class of the user's that the command line allows)."""
    place = next(iter(catalogue()[group].values())).package
    node = _at(stored, place)
    if node is None:
        return []
    if not isinstance(node, dict):
        return [f"{place}: a {type(node).__name__}, expected a mapping"]
    targets = sorted(_shallow_targets(node))
    if any(trust.allows(t) for t in targets):
        return []  # the user's own class, allowed on the command line: the default option
    positions = [(place, node)] + [
        (_join(place, k), v) for k, v in node.items() if isinstance(v, dict)
    ]
    unknown = [
        f"{at}._target_: {_short(n['_target_'])} is not a class emoclip's configs name"
        for at, n in positions
        if isinstance(n.get("_target_"), str) and n["_target_"] not in shipped_targets()
    ]
    return unknown or [
        f"{place}._target_: {', '.join(targets) or '(none)'} is none of the shipped "
        f"{group}= options ({', '.join(options(group))})"
    ]


def _leaf(node: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


_MISSING = object()


_COMPOSED: dict[tuple, dict] = {}


def _composed(chosen: tuple[tuple[str, str], ...], where: str) -> dict:
    """compose_study's config as plain containers, composed once per process per choice (and
    config folders)."""
    key = (chosen, tuple(f.path for f in config_folders()))
    if key not in _COMPOSED:
        _COMPOSED[key] = OmegaConf.to_container(compose_study(dict(chosen), where))
    return _COMPOSED[key]


def compose_study(chosen: Mapping[str, str], where: str) -> DictConfig:
    """The train config of emoclip's conf/ with these group options (Hydra's config loader,
    outside any running Hydra app), without its hydra section."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.errors import HydraException
    from hydra.types import RunMode

    from emoclip.cli.entry import config_dir

    overrides = [f"{group}={option}" for group, option in chosen.items()]
    # The config folders the catalogue lists: conf/ and the installed plugins' (on Hydra's
    # search path, emoclip.plugins), and the entry's own hydra.searchpath, given by the user.
    searchpath = [f"'{entry}'" for entry in running_searchpath() if "'" not in entry]
    if searchpath:
        overrides.append(f"hydra.searchpath=[{','.join(searchpath)}]")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(config_dir()))
    try:
        cfg = loader.load_configuration("train", overrides, RunMode.RUN, from_shell=False)
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"{where}: its config choices ({' '.join(overrides)}) do not compose: {first}"
        ) from None
    with_hydra = OmegaConf.to_container(cfg, resolve=False)
    with_hydra.pop("hydra", None)
    return OmegaConf.create(with_hydra)


# ---------------------------------------------------------------- the stored values


def _merge(stored: Any, shipped: Any, path: str, problems: list, deferred: list, trust: Trust):
    """The value at `path`: the shipped one, or the stored one where it is plain data that fits."""
    if stored == shipped and type(stored) is type(shipped):
        return shipped
    if is_interpolation(stored):
        problems.append(f"{path}: {_short(stored)} is an interpolation")
        return shipped
    if is_interpolation(shipped):
        if isinstance(stored, PLAIN):
            return stored  # a literal in place of what conf/ computes: fits
        deferred.append((path, stored))  # a resolved copy, never used: must equal what conf/ makes
        return shipped
    if isinstance(stored, dict) and _users_own(stored, shipped, trust):
        return _checked_users_own(stored, path, problems, trust)
    if isinstance(shipped, dict):
        if stored is None:
            return None
        if not isinstance(stored, dict):
            problems.append(f"{path}: a {type(stored).__name__}, expected a mapping")
            return shipped
        merged = dict(shipped)
        open_keys = _is_open(shipped, path)
        for key, value in stored.items():
            where = _join(path, key)
            if is_special(key):
                if key not in shipped or value != shipped[key]:
                    problems.append(f"{where}: {_short(value)} is not the shipped config's")
            elif key in shipped:
                merged[key] = _merge(value, shipped[key], where, problems, deferred, trust)
            elif isinstance(value, dict) and _users_own(value, None, trust):
                merged[key] = _checked_users_own(value, where, problems, trust)
            elif open_keys and _is_pure(value, where, problems):
                merged[key] = value
            elif not open_keys and where not in RETIRED_KEYS:
                problems.append(f"{where}: not a key of the shipped config")
        return merged
    if shipped is None or isinstance(shipped, list):
        if _is_pure(stored, path, problems):
            return stored
        return shipped
    # a shipped scalar
    if stored is None:
        return None
    if isinstance(stored, PLAIN) and _fits(stored, shipped):
        return stored
    problems.append(f"{path}: {_short(stored)}, expected a {type(shipped).__name__}")
    return shipped


def _fits(stored: Any, shipped: Any) -> bool:
    if isinstance(shipped, bool) or isinstance(stored, bool):
        return isinstance(shipped, bool) and isinstance(stored, bool)
    if isinstance(shipped, float):
        return isinstance(stored, int | float)
    if isinstance(shipped, str):
        return isinstance(stored, str | int | float)  # Hydra reads `16` as an int
    return isinstance(stored, type(shipped))


def _is_open(shipped: dict, path: str) -> bool:
    """A mapping whose keys are data (an empty one, a table of words), or an open section."""
    if path in OPEN_SECTIONS:
        return True
    if not shipped:
        return True
    return "_target_" not in shipped and all(isinstance(v, str) for v in shipped.values())


def _is_pure(value: Any, path: str, problems: list) -> bool:
    """Plain data only: literals, lists, mappings of ordinary keys; no special key or
    interpolation at any depth (each found is named)."""
    found = []
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if is_special(key):
                    found.append(f"{_join(where, key)}: a special key in a stored value")
                else:
                    stack.append((child, _join(where, key)))
        elif isinstance(node, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node))
        elif is_interpolation(node):
            found.append(f"{where}: {_short(node)} is an interpolation")
    problems += found
    return not found


def _users_own(stored: dict, shipped: Any, trust: Trust) -> bool:
    target = stored.get("_target_")
    shipped_target = shipped.get("_target_") if isinstance(shipped, dict) else None
    return isinstance(target, str) and target != shipped_target and trust.allows(target)


def _checked_users_own(stored: dict, path: str, problems: list, trust: Trust) -> dict:
    """A mapping naming the user's own class (allow_targets): kept as stored, provided every
    `_target_` in it is allowed too and it holds no interpolation."""
    stack = [(stored, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            target = node.get("_target_")
            if target is not None and not (
                isinstance(target, str) and (trust.allows(target) or target in shipped_targets())
            ):
                problems.append(f"{_join(where, '_target_')}: {_short(target)} is not allowed")
            stack.extend((v, _join(where, k)) for k, v in node.items() if k != "_target_")
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
        elif is_interpolation(node):
            problems.append(f"{where}: {_short(node)} is an interpolation")
    return stored


def _compare_resolved(rebuilt: DictConfig, path: str, stored: Any) -> list[str]:
    """A stored copy of what an interpolation of conf/ makes (the resolved config a checkpoint
    holds) must be that; everything resolved here comes from conf/ or is a literal."""
    try:
        value = OmegaConf.select(rebuilt, path, throw_on_resolution_failure=True)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
    except OmegaConfBaseException:
        return [f"{path}: a stored value where the shipped config computes one"]
    if _within(stored, value):
        return []
    return [f"{path}: differs from what the shipped config makes it"]


def _within(stored: Any, made: Any) -> bool:
    """Whether every key of `stored` holds what `made` holds there (a file older than a key
    lacks it)."""
    if isinstance(stored, dict) and isinstance(made, dict):
        return all(k in made and _within(v, made[k]) for k, v in stored.items())
    return (
        stored == made
        and type(stored) is type(made)
        or (
            isinstance(stored, int | float)
            and isinstance(made, int | float)
            and not isinstance(stored, bool)
            and not isinstance(made, bool)
            and stored == made
        )
    )


def _short(value: Any) -> str:
    text = repr(value)
    text = re.sub(r"[\x00-\x1f\x7f]", "?", text)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
