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
