"""Zero-shot CLIP: prompt ensembles per class, summed logits for pairs, evaluation without a
checkpoint. The tiny CLIP is random, so its accuracy means nothing: these tests check the
machinery, not the accuracy."""

import json

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from emoclip.data.tokenizer import load_pretrained_tokenizer
from emoclip.errors import ConfigError
from emoclip.evaluate import evaluate
from emoclip.models.clip_zeroshot import ClipZeroShot
from emoclip.models.task import TaskSpec
from emoclip.study.build import config_dir
from emoclip.train import train
from tests.conftest import compose_train, save_tiny_clip

IMAGE_TEMPLATES = ["a photo of a {} face.", "a face that looks {}."]
TEXT_TEMPLATES = ["i feel {}.", "so {} today.", "{}"]
TASK = TaskSpec(classes=("happiness", "sadness", "anger"))


@pytest.fixture(scope="module")
def tiny_clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-clip")
    save_tiny_clip(folder)
    return folder


def zeroshot(folder, **options) -> ClipZeroShot:
    backbone = {"name_or_path": str(folder), "image_size": 32}
    # The study hands the network its tokenizer (Network.needs_tokenizer: the class prompts).
    task = TaskSpec(classes=TASK.classes, tokenizer=load_pretrained_tokenizer(str(folder)))
    return ClipZeroShot(
        task,
        backbone,
        image_templates=options.get("image_templates", IMAGE_TEMPLATES),
        text_templates=options.get("text_templates", TEXT_TEMPLATES),
        class_words=options.get("class_words", {"happiness": "happy", "sadness": "sad"}),
    )


def test_a_class_embedding_is_the_normalised_mean_of_its_normalised_prompt_embeddings(
    tiny_clip_folder,
):
    net = zeroshot(tiny_clip_folder)
    tokenizer = load_pretrained_tokenizer(str(tiny_clip_folder))
    for buffer, templates in (
        (net.image_classes, IMAGE_TEMPLATES),
        (net.text_classes, TEXT_TEMPLATES),
    ):
        assert buffer.shape == (3, 32)
        for row, word in zip(buffer, ["happy", "sad", "anger"], strict=True):
            # Each prompt on its own (no padding), through CLIP's own text-feature call.
            prompts = [
                F.normalize(
                    net.clip.get_text_features(
                        **tokenizer(t.format(word), return_tensors="pt")
                    ).pooler_output[0],
                    dim=-1,
                )
                for t in templates
            ]
            expected = F.normalize(torch.stack(prompts).mean(0), dim=-1)
            torch.testing.assert_close(row, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(net.image_classes, net.text_classes)


def test_logits_are_clip_similarities_and_a_pair_sums_its_two(tiny_clip_folder):
    net = zeroshot(tiny_clip_folder).eval()
    tokenizer = load_pretrained_tokenizer(str(tiny_clip_folder))
    tokens = tokenizer(["i feel happy today", "so sad"], padding=True, return_tensors="pt")
    pixels = torch.randn(2, 3, 32, 32)
    labels = torch.zeros(2, dtype=torch.long)
    text = {"labels": labels, **tokens}
    image = {"labels": labels, "pixel_values": pixels}
    with torch.no_grad():
        text_logits, image_logits = net(text), net(image)
        pair_logits = net({**text, "pixel_values": pixels})
        expected_image = (
            net.clip.logit_scale.exp()
            * F.normalize(net.clip.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
            @ net.image_classes.T
        )
    assert text_logits.shape == image_logits.shape == pair_logits.shape == (2, 3)
    torch.testing.assert_close(image_logits, expected_image)
    torch.testing.assert_close(pair_logits, text_logits + image_logits)
    assert not any(p.requires_grad for p in net.parameters())


def test_refuses_random_weights_and_bad_templates(tiny_clip_folder):
    with pytest.raises(ConfigError, match="pretrained CLIP weights"):
        ClipZeroShot(
            TASK,
            {"name_or_path": None, "config": {}, "image_size": 32},
            IMAGE_TEMPLATES,
            TEXT_TEMPLATES,
        )
    with pytest.raises(ConfigError, match="image_templates"):
        zeroshot(tiny_clip_folder, image_templates=["a photo of a face"])


def compose_eval(overrides, output_dir):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("eval", overrides=[*overrides, f"paths.output_dir={output_dir}"])


def test_emoclip_eval_runs_zeroshot_without_a_checkpoint(tiny_clip_folder, tmp_path):
    cfg = compose_eval(
        [
            "model=clip_zeroshot",
            "data=synthetic",
            f"model.backbone.name_or_path={tiny_clip_folder}",
            "model.backbone.image_size=32",
            "data.dataset.train_size=14",
            "data.dataset.val_size=14",
            "data.dataset.test_size=35",
        ],
        tmp_path,
    )
    assert cfg.data.normalization == "clip"  # the model's choice: CLIP's own statistics
    metrics = evaluate(cfg)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics
    for scope in ("test", "test_text_only", "test_image_only"):
        assert 0.0 <= metrics[f"{scope}/acc"] <= 1.0
    assert sum(map(sum, metrics["test/confusion_matrix"])) == 35
    assert (tmp_path / "plots" / "confusion_test.png").is_file()
    assert len(json.loads((tmp_path / "splits.json").read_text())["test"]) == 35


def test_eval_without_a_checkpoint_refuses_a_model_that_needs_training(tmp_path):
    with pytest.raises(ConfigError, match="has to be trained"):
        evaluate(compose_eval(["model=text_lstm", "data=synthetic"], tmp_path))
    with pytest.raises(ConfigError, match="ckpt_path is not set"):
        evaluate(compose_eval([], tmp_path))


def test_train_refuses_zeroshot(tmp_path):
    with pytest.raises(ConfigError, match="emoclip-eval model=clip_zeroshot"):
        train(compose_train(["model=clip_zeroshot"], tmp_path))
