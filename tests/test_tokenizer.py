from emoclip.data.tokenizer import tokenizer_from_json, tokenizer_to_json, train_word_tokenizer

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
