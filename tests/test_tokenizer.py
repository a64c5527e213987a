import logging

from emoclip.data.tokenizer import (
    char_limit,
    encode_texts,
    tokenizer_from_json,
    tokenizer_to_json,
    train_word_tokenizer,
)

TEXTS = ["I feel so happy today!", "Such a sad, sad day.", "happy happy joy"]


def test_vocabulary_is_deterministic_and_frequency_ranked():
    a, b = train_word_tokenizer(TEXTS), train_word_tokenizer(list(TEXTS))
    assert a.get_vocab() == b.get_vocab()
    vocab = a.get_vocab()
    assert vocab["happy"] < vocab["today"]  # 3 occurrences before 1


def test_bos_eos_unknown_and_truncation():
    tok = train_word_tokenizer(TEXTS, max_length=5)
    ids = tok("I feel blorp happy happy happy happy", truncation=True)["input_ids"]
    assert len(ids) == 5
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.unk_token_id in ids


def test_json_round_trip_tokenizes_identically():
    tok = train_word_tokenizer(TEXTS)
    again = tokenizer_from_json(tokenizer_to_json(tok))
    text = "so happy, such a day"
    assert tok(text)["input_ids"] == again(text)["input_ids"]
    assert again.pad_token_id == tok.pad_token_id


def test_emoji_and_other_scripts_are_words_not_unknown():
    texts = ["so happy😀 today", "我很高兴", "Я очень рад", "أنا سعيد جدا", "ok 👍🏽 fine ❤️"]
    tok = tokenizer_from_json(tokenizer_to_json(train_word_tokenizer(texts)))
    words = [tok.convert_ids_to_tokens(tok(t)["input_ids"])[1:-1] for t in texts]
    assert words == [
        ["so", "happy", "😀", "today"],
        ["我", "很", "高", "兴"],  # no spaces between Chinese words: one character each
        ["я", "очень", "рад"],
        ["أنا", "سعيد", "جدا"],
        ["ok", "👍🏽", "fine", "❤️"],  # skin tone and variation selector stay on their emoji
    ]
    # A new sentence reuses the characters and emoji it shares with the training texts.
    unseen = tok.convert_ids_to_tokens(tok("高兴😀")["input_ids"])[1:-1]
    assert unseen == ["高", "兴", "😀"]


class Recording:
    """A tokenizer that records the longest text it was handed."""

    def __init__(self, tokenizer):
        self.tokenizer, self.longest = tokenizer, 0
        self.model_max_length = tokenizer.model_max_length

    def __call__(self, texts, **kwargs):
        self.longest = max([self.longest, *(len(t) for t in texts)])
        return self.tokenizer(texts, **kwargs)


def test_a_huge_text_is_cut_to_a_bounded_length_before_tokenizing(caplog):
    """One 49 MB line once took 8 GB: the tokenizer held all its tokens before truncating."""
    huge = "happy " * 200_000  # 1.2 MB here; the bound does not depend on the size
    tokenizer = Recording(train_word_tokenizer([*TEXTS, huge], max_length=77))
    with caplog.at_level(logging.WARNING):
        encoded = encode_texts(tokenizer, ["so sad", huge], what="train")
    assert tokenizer.longest <= char_limit(77) == 10_000
    assert encoded[1] == tokenizer.tokenizer(huge[:10_000], truncation=True)["input_ids"]
    assert len(encoded[1]) == 77 and encoded[0] == tokenizer.tokenizer("so sad")["input_ids"]
    assert "train: 1 of 2 texts were longer than 10000 characters" in caplog.text
