"""The source contract: what every data set emoclip reads provides.

A source is one data set: a format on disk (or a generator) and what its labels and groups
mean. Each lives in one module of this package with one config, conf/data/<name>.yaml, and
`emoclip-train data=<name>` reads it. To add one:

1. subclass `Source`, set the class attributes below that differ from the defaults, and
   implement `read(root, decoder)`, returning Records with the files' own label names (and
   `group` = the subject or other id that must not cross splits, where the data has one);
2. write conf/data/<name>.yaml (copy one: it sets `_target_`, `name` and the source's options).

Everything else is emoclip's, the same for every source (`Source.load`): the label space maps
the labels; a source with its own train/val/test keeps them; any other is split by
`GroupedSplit`, with its group ids and its duplicates (identical images, identical texts)
joined into groups, so that nothing crosses splits. The DataModule, resume and the report
ask the source (its class attributes and methods here) and know no source by name.

Where the files are is the data config's `root` (one place; a paired study has one per
part), never a key of the source: a checkpoint's study can then be evaluated on data moved
elsewhere with `data.root=...`.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from emoclip.data.duplicates import describe_counts, join_duplicates, shared_across
from emoclip.data.labels import LabelSpace
from emoclip.data.readers import TextDecoder, absolute
from emoclip.data.records import SPLITS, Record, Splits
from emoclip.data.splits import GroupedSplit
from emoclip.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """A source's splits, and what happened on the way (for the log and splits.json)."""

    splits: Splits
    notes: dict = field(default_factory=dict)
    split_here: bool = True  # split by emoclip (GroupedSplit), not given by the data set


class Source(ABC):
    """One data set. Class attributes describe it; `read` is its reader."""

    # What its records carry: ("text",), ("image",) or ("text", "image").
    modalities: ClassVar[tuple[str, ...]]
    # What data.root must point at, for messages ("" for a source that reads no files).
    location: ClassVar[str]
    # Its usual folder name under paths.data_dir, the default of data.root; None: no default.
    folder: ClassVar[str | None] = None
    # The label space its files' labels are in (data.label_space=null takes this one).
    label_space: ClassVar[str] = "emotion"
    # Its usual classes (data.classes=null keeps these); None: the classes found in the data.
    classes: ClassVar[tuple[str, ...] | None] = None
    # Its text files' encoding (data.encoding=null takes this one): utf-8, a codec, or auto.
    encoding: ClassVar[str] = "utf-8"
    # True: it ships its own train/val/test; False: emoclip splits it; None: its files say.
    gives_splits: ClassVar[bool | None] = False
    # What its records' group ids are ("subject"), or None when its files have none.
    groups_by: ClassVar[str | None] = None
    # For a source without group ids: how a user can give it some (named in the warning).
    group_hint: ClassVar[str] = ""
    # Whether identical images and texts are joined into groups (and counted across given
    # splits). Off only for generated data, whose template texts repeat by design.
    joins_duplicates: ClassVar[bool] = True

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def read(self, root: Path | None, decoder: TextDecoder) -> list[Record] | Splits:
        """The records, with the files' own label names: a list, or {"train", "val", "test"}
        for a data set that ships its own splits. Problems are DataErrors naming the file."""

    # ------------------------------------------------------------ what emoclip does with it

    def locate(self, root: Any, data_dir: str | None) -> Any:
        """The location `read` gets: data.root, or the usual folder under paths.data_dir."""
        if not self.location:
            if root is not None:
                raise ConfigError(
                    f"data={self.name} reads no files, so data.root={root} does not apply; "
                    "remove it"
                )
            return None
        if isinstance(root, Mapping):
            raise ConfigError(
                f"data.root is a mapping ({', '.join(root)}), but data={self.name} reads one "
                f"location: set data.root to {self.location}"
            )
        if root is not None:
            return absolute(root)
        if self.folder is None or data_dir is None:
            raise ConfigError(
                f"data.root is not set: point it at {self.location}, e.g. data.root=/data/path"
            )
        default = absolute(Path(data_dir) / self.folder)
        if not default.exists():
            raise ConfigError(
                f"data.root is not set and the default location {default} (paths.data_dir/"
                f"{self.folder}) does not exist: set data.root to {self.location}, or set "
                f"EMOCLIP_DATA_DIR (paths.data_dir) to the folder that holds {self.folder}/"
            )
        return default

    def load(
        self, root: Any, labels: LabelSpace, encoding: str | None, split: GroupedSplit
    ) -> Loaded:
        """Read, map the labels, and split: the data set's own splits, or grouped ones."""
        decoder = TextDecoder(encoding or self.encoding)
        read = self.read(root, decoder)
        if decoder.summary():
            log.info("%s: %s", self.name, decoder.summary())
        if isinstance(read, dict):
            return self._given(read, labels)
        records = self._relabel(read, labels)
        if not records:
            raise DataError(f"data={self.name} at {root}: no examples found ({self.location})")
        notes: dict = {"split": "grouped", "groups": self.group_description()}
        if notes["groups"] is None:
            log.warning(
                "%s: the records carry no subject or group ids, so examples of one person or "
                "author can land in both training and test, which makes test scores look "
                "better than they are; only identical images and texts are kept together. %s",
                self.name,
                self.group_hint,
            )
        if self.joins_duplicates:
            records, counts = join_duplicates(records)
            log.info("%s: %s", self.name, describe_counts(counts))
            notes["duplicates"] = counts
        return Loaded(split(records), notes)

    def train_text_pool(self) -> tuple[dict[str, list[Record]], int] | None:
        """Texts by class that training draws afresh each epoch for each example, and the seed
        of the draws; None (every source but a pairing by label): each example keeps its text."""
        return None

    def group_description(self) -> str | None:
        """What the group ids of this source's records are, or None: `groups_by` unless an
        option of the instance decides (a file-name pattern)."""
        return self.groups_by

    @classmethod
    def split_protocol(cls, data: Mapping, source: Mapping, folds: Sequence[int] = ()) -> str:
        """How a run's data became train/val/test, from its data config (for reports)."""
        if cls.gives_splits is True:
            return "given split"
        grouped = grouped_protocol(data, cls.groups_in_config(source), folds)
        if cls.gives_splits is None:
            return f"given split if its files have one, else {grouped}"
        return grouped

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict[str, Any]:
        """Write a few small files in this source's own format under `folder` and return the
        data config values that read them, as keys under `data` (e.g. {"root": folder}, or
        {"root": folder / "x.csv", "dataset.text_column": "post"}); a source that reads no
        files returns small settings. `source`: the option's composed data.dataset node. The
        contract tests train every source of the catalogue on these with debug=fdr."""
        raise NotImplementedError(
            f"{cls.__name__}.write_examples: a source writes small example files of its format"
        )

    @classmethod
    def groups_in_config(cls, source: Mapping) -> str | None:
        """`group_description` as a run's config tells it (override with it)."""
        return cls.groups_by

    def _given(self, read: Splits, labels: LabelSpace) -> Loaded:
        unknown = set(read) - set(SPLITS)
        if unknown:
            raise DataError(f"data={self.name}: unknown split(s) {sorted(unknown)}")
        splits = {name: self._relabel(read.get(name, []), labels) for name in SPLITS}
        notes: dict = {"split": "given"}
        if self.joins_duplicates:
            notes["duplicates"] = shared_across(splits)
            images, texts = notes["duplicates"].values()
            if images or texts:
                log.warning(
                    "%s: its own train/val/test share %d identical images and %d identical "
                    "texts (it gives its splits, so emoclip keeps them as they are)",
                    self.name,
                    images,
                    texts,
                )
        return Loaded(splits, notes, split_here=False)

    @staticmethod
    def _relabel(records: Sequence[Record], labels: LabelSpace) -> list[Record]:
        return [replace(r, label=labels.canonical(r.label, r.origin or r.id)) for r in records]


def grouped_protocol(data: Mapping, groups: str | None, folds: Sequence[int] = ()) -> str:
    by = f"by {groups}" if groups else "grouped by duplicates only (no subject ids)"
    num_folds = data.get("num_folds")
    if num_folds:
        ran = ", ".join(str(f) for f in sorted(set(folds)))
        return f"{num_folds} folds {by} (folds run: {ran})"
    if not groups:
        return by
    return f"{groups}-grouped" if " " not in groups else f"grouped by {groups}"


# ---------------------------------------------------------------- asking a config's sources


def source_class(node: Any) -> type[Source] | None:
    """The Source class a config node names, or None. Only emoclip's own classes are
    imported: a run folder's config is data, and its `_target_` is not run."""
    target = node.get("_target_") if isinstance(node, Mapping) else None
    if not isinstance(target, str) or not target.startswith("emoclip.data."):
        return None
    module, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return found if isinstance(found, type) and issubclass(found, Source) else None


def split_protocol(data: Mapping, folds: Sequence[int] = (), find=source_class) -> str:
    """How a run's data became train/val/test, asked of the source its data config names
    (`find`: which classes may be imported for it; the report's also takes the catalogue's)."""
    source = data.get("dataset") if isinstance(data, Mapping) else None
    kind = find(source)
    if kind is None:
        return "unknown (no data source in the config)"
    return kind.split_protocol(data, source, folds)


# The keys of a data config that say where its files are: every source reads under data.root
# (data.data_dir holds the data sets' folder). Resume lets them change between launches.
LOCATION_KEYS = frozenset({"data.root", "data.data_dir"})
