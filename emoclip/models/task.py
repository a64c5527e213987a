"""What a network needs to know about the study it is built for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    classes: tuple[str, ...]
    vocab_size: int = 0  # 0 for a study without text
    pad_token_id: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    max_text_length: int = 77

    @property
    def num_classes(self) -> int:
        return len(self.classes)
