"""A config read from a file is data: what may be in it before it is resolved or instantiated.

A checkpoint's stored study config, a run folder's .hydra/config.yaml and a sweep folder's jobs
come from files anyone could have written. Hydra's `instantiate` calls whatever a `_target_`
names (`pathlib.Path.write_text`, `sys.path.insert`, then a class in the module just written),
and OmegaConf runs a resolver whenever an interpolation is read. So before emoclip resolves or
builds anything from such a config, `check_untrusted` walks it and refuses:

- a `_target_` that is not one emoclip can name: an emoclip class, by the name it is defined
  under; a public function of emoclip.data or emoclip.models (the packages that build studies;
  emoclip's other functions write files); or one of LIBRARY_TARGETS, the library classes that
  the shipped configs use. Add a library class to that list when a shipped config names it.
- `_args_` anywhere, and `_partial_` on a target other than an emoclip class or a torch
  optimizer or scheduler (the ones shipped configs call later with more arguments);
- an interpolation through a resolver other than SAFE_RESOLVERS (emoclip.run_dir creates
  folders; unknown ones could do anything), and `oc.env` of a variable outside ENV_VARIABLES
  (a report would show a secret);
- anything but plain config values (str, int, float, bool, None, lists, string-keyed maps).

Only the user, on the entry's command line, widens this: `allow_targets=[mylab]` lets targets
under the module mylab through (with `_partial_` and `_args_`), and `trust_config=true` turns
the guard off, for files the user made or trusts. A file never sets either for itself: they are
read from the entry's own config, not from the file's.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from antlr4 import ParserRuleContext
from omegaconf import DictConfig, ListConfig, OmegaConf, grammar_parser
from omegaconf.errors import GrammarParseError
from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

from emoclip.errors import ConfigError

OPTIMIZERS = frozenset(
    f"torch.optim.{name}"
    for name in (
        "Adadelta",
        "Adagrad",
        "Adam",
        "Adamax",
        "AdamW",
        "NAdam",
        "RAdam",
        "RMSprop",
        "SGD",
    )
)
SCHEDULERS = frozenset(
    f"torch.optim.lr_scheduler.{name}"
    for name in (
        "ConstantLR",
        "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts",
        "ExponentialLR",
        "LinearLR",
        "MultiStepLR",
        "OneCycleLR",
        "PolynomialLR",
        "ReduceLROnPlateau",
        "StepLR",
    )
)
LIBRARY_TARGETS = (
    OPTIMIZERS
    | SCHEDULERS
    | {
        "lightning.pytorch.Trainer",
        "lightning.pytorch.callbacks.EarlyStopping",
        "lightning.pytorch.callbacks.LearningRateMonitor",
        "lightning.pytorch.callbacks.ModelCheckpoint",
        "lightning.pytorch.callbacks.TQDMProgressBar",
        "lightning.pytorch.loggers.CSVLogger",
        "lightning.pytorch.loggers.TensorBoardLogger",
        "lightning.pytorch.loggers.WandbLogger",
    }
)
PARTIAL_TARGETS = OPTIMIZERS | SCHEDULERS  # besides emoclip's classes
# Packages whose public functions may be named: they build studies and write no files.
FUNCTION_PACKAGES = ("emoclip.data.", "emoclip.models.")
SAFE_RESOLVERS = frozenset({"hydra", "now", "oc.select", "oc.env"})
ENV_VARIABLES = frozenset({"WANDB_MODE", "EMOCLIP_DATA_DIR"})  # the only variables oc.env may read
PLAIN = (str, int, float, bool, type(None))
SPECIAL_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")


@dataclass(frozen=True)
class Trust:
    """What the user allows beyond the guard, from the entry's command line."""

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


GUARD_ONLY = Trust()  # nothing allowed beyond the guard's own lists


def allowed_prefixes(names: Sequence[Any]) -> tuple[str, ...]:
    """allow_targets: module names such as mylab or mylab.nets."""
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


def check_untrusted(config: Any, where: str, trust: Trust = GUARD_ONLY) -> None:
    """Raise ConfigError naming every refused key of a config read from the file `where`."""
    if trust.everything:
        return
    if isinstance(config, DictConfig | ListConfig):
        config = OmegaConf.to_container(config, resolve=False)  # reads, resolves nothing
    if not isinstance(config, dict):
        raise ConfigError(f"refused the config stored in {where}: expected a mapping of keys")
    problems = list(_problems(config, "", trust))
    if problems:
        raise ConfigError(
            f"refused the config stored in {where}: {'; '.join(problems)}. A config read from "
            "a file is data: it may name emoclip's classes and the library classes emoclip's "
            "own configs use, nothing else. If you made or trust this file, allow its code on "
            "the command line: allow_targets=[<module>] (targets under that module) or "
            "trust_config=true (everything in the file)"
        )


def _problems(node: Any, path: str, trust: Trust) -> Iterator[str]:
    if isinstance(node, dict):
        if any(not isinstance(k, str) for k in node):
            yield f"{path or '<top>'}: keys must be strings"
            return
        if "_target_" in node:
            yield from _target_problems(node, path, trust)
        else:
            for key in ("_args_", "_partial_"):
                if key in node:
                    yield f"{_join(path, key)}: {key} without a _target_"
        for key, value in node.items():
            if key not in SPECIAL_KEYS:
                yield from _problems(value, _join(path, key), trust)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _problems(value, f"{path}[{i}]", trust)
    elif isinstance(node, str):
        if "${" in node:
            yield from _interpolation_problems(node, path)
    elif not isinstance(node, PLAIN):
        yield f"{path}: a {type(node).__name__}, not a plain config value"


def _target_problems(node: dict, path: str, trust: Trust) -> Iterator[str]:
    target = node["_target_"]
    where = _join(path, "_target_")
    if not isinstance(target, str) or "${" in target:
        yield f"{where}: {target!r} is not a literal dotted name"
        return
    if trust.allows(target):  # the user's own code, allowed by name on the command line
        yield from _problems(node.get("_args_", []), _join(path, "_args_"), trust)
        return
    why = target_refusal(target)
    if why:
        yield f"{where}: {target} {why}"
    if "_args_" in node:
        yield f"{_join(path, '_args_')} (on {target}): positional arguments are not allowed"
    if node.get("_partial_") and not (_is_emoclip_class(target) or target in PARTIAL_TARGETS):
        yield f"{_join(path, '_partial_')} (on {target}): _partial_ is not allowed here"


def target_refusal(target: str) -> str | None:
    """Why `target` may not be named by a file, or None when it may."""
    if target in LIBRARY_TARGETS:
        return None
    if not target.startswith("emoclip."):
        return "is not emoclip's, nor one of the library classes its configs use"
    if any(part.startswith("_") for part in target.split(".")):
        return "is private"
    found = _resolve_emoclip(target)
    if found is None:
        return None  # names nothing (an old checkpoint's renamed class): building it fails
    if inspect.ismodule(found):
        return "is a module, not a class or function"
    if f"{getattr(found, '__module__', '')}.{getattr(found, '__qualname__', '')}" != target:
        return "is not defined under that name in emoclip (it reaches into another module)"
    if inspect.isclass(found):
        return None
    if inspect.isfunction(found) and target.startswith(FUNCTION_PACKAGES):
        return None
    if inspect.isfunction(found):
        return "is a function outside emoclip.data and emoclip.models (those may write files)"
    return "is not a class or function"


def _resolve_emoclip(target: str) -> Any | None:
    """The object an emoclip.* name leads to, importing emoclip's own modules only; None if it
    names nothing."""
    parts = target.split(".")
    module, i = None, len(parts)
    while i > 1 and module is None:
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            i -= 1
    if module is None:
        return None
    found: Any = module
    for part in parts[i:]:
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


def _is_emoclip_class(target: str) -> bool:
    return target.startswith("emoclip.") and inspect.isclass(_resolve_emoclip(target))


def _interpolation_problems(value: str, path: str) -> Iterator[str]:
    try:
        tree = grammar_parser.parse(value, parser_rule="singleElement", lexer_mode="VALUE_MODE")
    except GrammarParseError:
        yield f"{path}: {value!r} is not a valid interpolation"
        return
    for resolver in _resolvers(tree):
        name = resolver.resolverName().getText()
        if name not in SAFE_RESOLVERS:
            why = "creates folders" if name == "emoclip.run_dir" else "is not a resolver it may use"
            yield f"{path}: {value!r}: the resolver {name} {why}"
        elif name == "oc.env":
            sequence = resolver.sequence()
            variable = sequence.element(0).getText() if sequence is not None else ""
            if variable not in ENV_VARIABLES:
                yield f"{path}: {value!r} reads the environment variable {variable or '?'}"


def _resolvers(
    tree: ParserRuleContext,
) -> Iterator[OmegaConfGrammarParser.InterpolationResolverContext]:
    if isinstance(tree, OmegaConfGrammarParser.InterpolationResolverContext):
        yield tree
    for child in tree.getChildren() if isinstance(tree, ParserRuleContext) else ():
        yield from _resolvers(child)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
