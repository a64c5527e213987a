"""Label spaces: emotion, sentiment and your own class names, with synonyms and a label map."""

import pytest

from emoclip.data.labels import LabelSpace
from emoclip.errors import ConfigError, DataError


def test_emotion_synonyms_and_the_kept_classes_in_order():
    space = LabelSpace("emotion", ["sad", "Happy", "anger"])
    assert space.classes == ("sadness", "happiness", "anger")
    assert space.canonical("joy") == "happiness" and space.canonical(" ANGRY ") == "anger"
    assert space.index("happiness") == 1 and "love" not in space


def test_sentiment_names_and_synonyms():
    space = LabelSpace("sentiment", ["negative", "neutral", "positive"])
    assert [space.canonical(x) for x in ("pos", "NEG", "neu", "Positive")] == [
        "positive",
        "negative",
        "neutral",
        "positive",
    ]


def test_an_unknown_label_names_the_label_space_the_file_and_the_fix():
    with pytest.raises(DataError) as error:
        LabelSpace("sentiment").canonical("mixed", "tweets.csv:7")
    message = str(error.value)
    assert "unknown sentiment label 'mixed' in tweets.csv:7" in message
    assert "The sentiment label space knows: negative, neutral, positive" in message
    assert "data.label_map" in message and "data.label_space" in message
    with pytest.raises(ConfigError, match="unknown emotion label 'positive' in data.classes"):
        LabelSpace("emotion", ["positive", "negative"])


def test_custom_classes_are_their_own_names_and_need_a_list():
    space = LabelSpace("custom", ["cat", "dog"])
    assert space.classes == ("cat", "dog") and space.canonical("Dog") == "dog"
    with pytest.raises(DataError, match="unknown custom label 'bird'.*knows: cat, dog"):
        space.canonical("bird")
    with pytest.raises(ConfigError, match="data.label_space=custom takes its class names"):
        LabelSpace("custom")


def test_a_label_map_renames_file_labels_before_the_names():
    space = LabelSpace("emotion", ["anger", "happiness"], label_map={"grr": "angry", "yay": "joy"})
    assert space.canonical("GRR") == "anger" and space.canonical("yay") == "happiness"
    custom = LabelSpace("custom", ["cat", "dog"], label_map={"kitten": "cat"})
    assert custom.canonical("kitten") == "cat"
    with pytest.raises(ConfigError, match="unknown emotion label 'meh' in data.label_map"):
        LabelSpace("emotion", label_map={"x": "meh"})


def test_unknown_label_space_and_bad_class_lists():
    with pytest.raises(ConfigError, match="data.label_space='mood' is not known.*custom"):
        LabelSpace("mood")
    with pytest.raises(ConfigError, match="names a class twice"):
        LabelSpace("emotion", ["happy", "joy"])
    with pytest.raises(ConfigError, match="at least two classes"):
        LabelSpace("sentiment", ["positive"])


def test_classes_found_in_the_data_follow_the_label_spaces_order():
    space = LabelSpace("emotion")
    assert space.classes is None
    space.keep(space.order({"surprise", "anger", "love"}))
    assert space.classes == ("anger", "surprise", "love")
    assert space.describe() == {
        "name": "emotion",
        "classes": ["anger", "surprise", "love"],
        "label_map": {},
    }
