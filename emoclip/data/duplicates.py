"""Duplicates as groups: records that share a subject, an image or a text stay in one split.

Records with byte-identical images (the same file under two names, or the same pixels in a
csv) and records with identical normalised texts are joined with each other and with the
records of their subject or group id (union-find), so that no duplicate lands in training
and test at once. What was joined is counted, logged and written into splits.json.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from emoclip.data.file_hashes import file_digest
from emoclip.data.records import Record, Splits


def normalise_text(text: str) -> str:
    """What makes two texts the same: Unicode NFKC, case-folded, runs of spaces as one."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def image_digest(image: Path | np.ndarray) -> str:
    """A digest of an image file's bytes (remembered across runs, emoclip.data.file_hashes),
    or of an in-memory array's shape and pixels."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(image, np.ndarray):
        digest.update(repr((image.shape, str(image.dtype))).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()
    return file_digest(image)


class _UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, members: Sequence[int]) -> None:
        root = self.find(members[0])
        for m in members[1:]:
            other = self.find(m)
            if other != root:
                self.parent[max(root, other)] = min(root, other)
                root = min(root, other)


def _keys(records: Sequence[Record]) -> dict[str, dict[str, list[int]]]:
    """For each kind (group, image, text), the records sharing each value."""
    shared: dict[str, dict[str, list[int]]] = {"group": {}, "image": {}, "text": {}}
    for i, record in enumerate(records):
        if record.group is not None:
            shared["group"].setdefault(record.group, []).append(i)
        if record.image is not None:
            shared["image"].setdefault(image_digest(record.image), []).append(i)
        if record.text is not None:
            shared["text"].setdefault(normalise_text(record.text), []).append(i)
    return shared


def join_duplicates(records: Sequence[Record]) -> tuple[list[Record], dict]:
    """The records with `group` set so that every record sharing a group id, an image or a
    normalised text with another is in its group; and the counts of what was joined.

    A joined group is named by the group ids it holds ("S010", or "S010+S011" when a duplicate
    ties two subjects), else "duplicates:<first id>". Records that share nothing keep None.
    """
    shared = _keys(records)
    sets = _UnionFind(len(records))
    for by_value in shared.values():
        for members in by_value.values():
            if len(members) > 1:
                sets.union(members)
    components: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        components[sets.find(i)].append(i)
    joined = list(records)
    for members in components.values():
        if len(members) == 1:
            continue
        ids = sorted({records[i].group for i in members if records[i].group is not None})
        name = "+".join(ids) if ids else f"duplicates:{min(records[i].id for i in members)}"
        for i in members:
            joined[i] = replace(records[i], group=name)
    return joined, _counts(records, shared, components)


def _counts(records, shared, components) -> dict:
    counts: dict = {"records": len(records)}
    for kind, label in (("image", "identical_images"), ("text", "identical_texts")):
        groups = [m for m in shared[kind].values() if len(m) > 1]
        counts[label] = {
            "groups": len(groups),
            "records": sum(len(m) for m in groups),
            "with_conflicting_labels": sum(
                1 for m in groups if len({records[i].label for i in m}) > 1
            ),
        }
    # Groups that duplicates tied together beyond the source's own group ids.
    counts["joined_groups"] = sum(
        1
        for members in components.values()
        if len(members) > 1
        and len({records[i].group if records[i].group is not None else i for i in members}) > 1
    )
    return counts


def describe_counts(counts: dict) -> str:
    """One line for the log."""
    images, texts = counts["identical_images"], counts["identical_texts"]
    return (
        f"{images['groups']} groups of identical images ({images['records']} records, "
        f"{images['with_conflicting_labels']} with conflicting labels) and {texts['groups']} "
        f"groups of identical texts ({texts['records']} records, "
        f"{texts['with_conflicting_labels']} with conflicting labels) are each kept within one "
        f"split ({counts['joined_groups']} groups joined in all)"
    )


def shared_across(splits: Splits) -> dict:
    """Given splits: how many images and normalised texts appear in more than one split."""
    where: dict[str, dict[str, set[str]]] = {"image": {}, "text": {}}
    for split, records in splits.items():
        for record in records:
            if record.image is not None:
                where["image"].setdefault(image_digest(record.image), set()).add(split)
            if record.text is not None:
                where["text"].setdefault(normalise_text(record.text), set()).add(split)
    return {
        "identical_images_in_several_splits": sum(1 for s in where["image"].values() if len(s) > 1),
        "identical_texts_in_several_splits": sum(1 for s in where["text"].values() if len(s) > 1),
    }
