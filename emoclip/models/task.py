"""What a network needs to know about the study it is built for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskSpec:
    classes: tuple[str, ...]
    vocab_size: int = 0  # 0 for a study without text
    pad_token_id: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    max_text_length: int = 77
    # The study's text tokenizer, for a network that encodes text of its own (zero-shot
    # prompts: Network.needs_tokenizer); None otherwise.
    tokenizer: Any = field(default=None, compare=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)
