"""Text tokenizers: a pretrained one by hub id or local folder, CLIP's BPE from an open_clip
vocabulary file, or one trained on the study's texts. Which one a study uses its text tower
declares (emoclip.contract.TokenizerSpec; `build_tokenizer` below builds it).

A trained tokenizer is word-level and deterministic: the vocabulary is every lower-cased word
seen at least `min_frequency` times in the training texts, most frequent first. Words split at
whitespace and punctuation; each emoji (with its modifiers) and each Chinese or Japanese
character (those scripts use no spaces) is a word of its own. It is wrapped as a Hugging Face
`PreTrainedTokenizerFast`, so it saves and loads like a hub tokenizer, and its JSON travels
inside checkpoints so a model evaluates with the tokenizer it was trained with.
"""

from __future__ import annotations

import gzip
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, CLIPTokenizer, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from emoclip.contract import TokenizerSpec
from emoclip.errors import BackboneLoadError
from emoclip.system.offline import check_model_folder

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
# A tokenizer holds every token of a text in memory before truncating, so one 49 MB line would
# take gigabytes: texts are cut before tokenizing, to 64 characters per token of the limit but
# never below 10,000 nor above 1,000,000 characters. No real token is that long, so the first
# max_length tokens stay the same.
CHARS_PER_TOKEN, MIN_TEXT_CHARS, MAX_TEXT_CHARS = 64, 10_000, 1_000_000
# One CJK ideograph or kana, or one emoji (a symbol, its skin tone and variation selectors,
# and further symbols joined by zero-width joiners, as in family emoji).
_OWN_WORDS = Regex(
    r"[\p{Han}\p{Hiragana}\p{Katakana}]|\p{So}[\p{Sk}\p{Mn}]*(?:\x{200D}\p{So}[\p{Sk}\p{Mn}]*)*"
)


def train_word_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 1, max_length: int = 77
) -> PreTrainedTokenizerFast:
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(),
            pre_tokenizers.Split(_OWN_WORDS, behavior="isolated"),
        ]
    )
    counts = Counter(
        word
        for text in cut_long_texts(list(texts), max_length, "training texts (vocabulary)")
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    ranked = sorted(
        (w for w, n in counts.items() if n >= min_frequency), key=lambda w: (-counts[w], w)
    )
    specials = [PAD, UNK, BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(specials + ranked[: max(vocab_size - 4, 0)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return _wrap(backend, max_length)


def char_limit(max_tokens: int) -> int:
    return min(max(CHARS_PER_TOKEN * max_tokens, MIN_TEXT_CHARS), MAX_TEXT_CHARS)


def cut_long_texts(texts: Sequence[str], max_tokens: int, what: str = "texts") -> list[str]:
    """Each text cut to char_limit(max_tokens) characters before it is tokenized; how many
    were cut is logged."""
    limit = char_limit(max_tokens)
    long = [len(t) for t in texts if len(t) > limit]
    if not long:
        return list(texts)
    log.warning(
        "%s: %d of %d texts were longer than %d characters (the longest %d) and were cut to "
        "that length before tokenizing",
        what,
        len(long),
        len(texts),
        limit,
        max(long),
    )
    return [t[:limit] for t in texts]


def encode_texts(tokenizer, texts: Sequence[str], what: str = "texts") -> list[list[int]]:
    """Token ids of each text, cut at the tokenizer's limit (model_max_length, which
    the text tower's tokenizer.max_length sets); how many texts were cut is logged. Very long texts are
    cut to a bounded number of characters first (cut_long_texts)."""
    texts = cut_long_texts(texts, tokenizer.model_max_length, what)
    encoded = tokenizer(texts, verbose=False)["input_ids"]
    limit = tokenizer.model_max_length
    too_long = [i for i, ids in enumerate(encoded) if len(ids) > limit]
    if too_long:
        longest = max(len(encoded[i]) for i in too_long)
        cut = tokenizer([texts[i] for i in too_long], truncation=True)["input_ids"]
        for i, ids in zip(too_long, cut, strict=True):
            encoded[i] = ids
        log.warning(
            "%s: %d of %d texts were longer than the tokenizer's limit of %d tokens (the "
            "longest %d) and were truncated",
            what,
            len(too_long),
            len(encoded),
            limit,
            longest,
        )
    return encoded


def tokenizer_from_json(json_str: str, max_length: int = 77) -> PreTrainedTokenizerFast:
    return _wrap(Tokenizer.from_str(json_str), max_length)


def tokenizer_to_json(tokenizer: PreTrainedTokenizerFast) -> str:
    return tokenizer.backend_tokenizer.to_str()


def _wrap(backend: Tokenizer, max_length: int) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=max_length,
    )


def build_tokenizer(
    spec: TokenizerSpec, train_texts: Callable[[], Iterable[str]], saved: str | None = None
):
    """The tokenizer a text tower declares (emoclip.contract.TokenizerSpec): `saved` (the JSON
    of a tokenizer trained for a checkpoint) if given, else by the spec's kind: the pretrained
    one at `name_or_path`, CLIP's BPE from open_clip's vocabulary file `bpe_vocab`, or a
    word-level one trained on `train_texts()`."""
    if saved is not None:
        return tokenizer_from_json(saved, spec.max_length or 77)
    if spec.kind == "pretrained":
        return load_pretrained_tokenizer(spec.name_or_path, spec.max_length)
    if spec.kind == "clip_bpe":
        return clip_bpe_tokenizer(spec.bpe_vocab, spec.max_length or 77)
    return train_word_tokenizer(
        train_texts(),
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        max_length=spec.max_length or 77,
    )


# The files a Hugging Face tokenizer keeps its vocabulary in, by kind of tokenizer.
VOCABULARY_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json + merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def load_pretrained_tokenizer(name_or_path: str, max_length: int | None = None):
    """The tokenizer saved with a model: a hub id or a local folder, the same call. Texts are
    cut at `max_length` tokens (None: the tokenizer's own limit)."""
    check_model_folder(name_or_path, "model.tokenizer.name_or_path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise BackboneLoadError(
            f"could not load the tokenizer of {name_or_path!r}: {err}\n"
            f"{_tokenizer_files_note(name_or_path)}Point the model at a local folder made with "
            "save_pretrained (the model's and its tokenizer's), or download "
            f"{name_or_path!r} into the Hugging Face cache on a machine with internet (HF_HOME "
            "sets its place)."
        ) from err
    # transformers builds a tokenizer of special tokens only when the vocabulary file is
    # missing; that would turn every word into [UNK].
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise BackboneLoadError(
            f"the tokenizer of {name_or_path!r} has no vocabulary, only its "
            f"{len(tokenizer)} special tokens: {_tokenizer_files_note(name_or_path)}it needs "
            f"one of {', '.join(VOCABULARY_FILES)} (save the tokenizer with save_pretrained "
            "into the model's folder)"
        )
    if max_length:
        tokenizer.model_max_length = max_length
    return tokenizer


def _tokenizer_files_note(name_or_path: str) -> str:
    folder = Path(name_or_path)
    if not folder.is_dir():
        return ""
    present = sorted(p.name for p in folder.iterdir() if p.is_file())
    return f"the folder {folder} holds {present}; "


# open_clip reads this many merges of its BPE file (the rest of the file is unused).
OPEN_CLIP_MERGES = 49152 - 256 - 2


def clip_bpe_tokenizer(bpe_vocab: str | Path, max_length: int = 77) -> CLIPTokenizer:
    """CLIP's tokenizer from open_clip's vocabulary file (bpe_simple_vocab_16e6.txt.gz: a
    header line, then one merge per line), with open_clip's ids: the 256 byte symbols, the
    same with the end-of-word mark, one token per merge, then start and end of text. Texts are
    lower-cased; open_clip also runs ftfy's mojibake repair first, which this does not."""
    path = Path(bpe_vocab)
    try:
        with gzip.open(path) as f:
            lines = f.read().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise BackboneLoadError(
            f"cannot read the open_clip BPE vocabulary {path} ({err}); expected a gzipped "
            "text file like open_clip's bpe_simple_vocab_16e6.txt.gz"
        ) from err
    merges = [tuple(line.split()) for line in lines[1 : OPEN_CLIP_MERGES + 1] if line.strip()]
    if any(len(m) != 2 for m in merges):
        raise BackboneLoadError(f"{path}: expected one merge (two symbols) per line")
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)
    tokenizer.model_max_length = max_length
    return tokenizer
