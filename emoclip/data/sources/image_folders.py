"""`data=image_folders`: any image set in one folder per class, ROOT/<label>/<image>.

Folder names are the labels (the label space maps them: happy/ = happiness). File names say
nothing about people unless `group_pattern` is given: a regular expression searched in each
file name whose first group (or whole match) is the subject or group id, e.g. '^(S\\d+)_' for
S010_004_00000017.png or '^(\\w+)-' for anna-3.jpg. Without one, photos of one person can land
in both training and test; a warning says so at every run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from emoclip.data.readers import IMAGE_EXTENSIONS, TextDecoder, class_folders
from emoclip.data.records import Record
from emoclip.data.sources.base import Source
from emoclip.errors import ConfigError, DataError


class ImageFolders(Source):
    """One folder per class; optional subject ids from file names."""

    modalities = ("image",)
    location = "a folder with one subfolder of images per class"
    group_hint = (
        "If the file names carry a subject id, give a regular expression for it with "
        "data.dataset.group_pattern='^(S\\d+)_' (its first group is the id)"
    )

    def __init__(self, name: str = "image_folders", group_pattern: str | None = None):
        super().__init__(name)
        try:
            self.group_pattern = re.compile(group_pattern) if group_pattern else None
        except re.error as error:
            raise ConfigError(
                f"data.dataset.group_pattern={group_pattern!r} is not a regular expression "
                f"({error})"
            ) from None

    def group_description(self) -> str | None:
        return groups_from_pattern(self.group_pattern and self.group_pattern.pattern)

    @classmethod
    def groups_in_config(cls, source: Mapping) -> str | None:
        return groups_from_pattern(source.get("group_pattern"))

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        from emoclip.demo.examples import drawer, write_image_folders

        root = write_image_folders(folder, per_class=12, drawer=drawer())
        return {
            "root": root,
            "dataset.group_pattern": "^(p[0-9]+)-",
            "val_fraction": 0.2,
            "test_fraction": 0.2,
        }

    def read(self, root: Path, decoder: TextDecoder) -> list[Record]:
        expected = (
            "expected one folder per class, ROOT/<label>/<image> (e.g. ROOT/anger/0001.png), "
            f"with images ending in {', '.join(sorted(IMAGE_EXTENSIONS))}; "
            "set the folder with data.root=PATH"
        )
        if not root.is_dir():
            raise DataError(f"image folder {root} does not exist; {expected}")
        folders = class_folders(root)
        if not folders:
            raise DataError(f"image folder {root} has no class folders with images; {expected}")
        return [
            Record(
                id=file.relative_to(root).as_posix(),
                label=folder.name,
                image=file,
                group=self._group(file),
                origin=str(file),
            )
            for folder, files in folders
            for file in files
        ]

    def _group(self, file: Path) -> str | None:
        if self.group_pattern is None:
            return None
        match = self.group_pattern.search(file.name)
        if match is None:
            raise DataError(
                f"{file}: its name does not match data.dataset.group_pattern="
                f"{self.group_pattern.pattern!r}, so its subject is unknown; expected every "
                "file name to carry the id"
            )
        return match.group(1) if match.groups() else match.group(0)


def groups_from_pattern(pattern: str | None) -> str | None:
    return f"file-name pattern {pattern!r}" if pattern else None
