"""open_clip checkpoints as towers, converted to Hugging Face CLIP without importing open_clip.

The tiny checkpoints here carry open_clip's own parameter names and shapes (those of its
`CLIP` class: visual.conv1, visual.transformer.resblocks.N.attn.in_proj_weight, ...); the
converted towers must compute what open_clip's forward pass computes, checked against a
direct transcription of that pass. Where open_clip's source is at hand (an installed
open_clip_torch, or EMOCLIP_OPEN_CLIP_SRC=/path/to/open_clip), the last test also checks the
names, the outputs and the tokenizer against open_clip's own code."""

import gzip
import importlib
import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from emoclip.data.tokenizer import clip_bpe_tokenizer
from emoclip.errors import BackboneLoadError, ConfigError
from emoclip.models.task import TaskSpec
from emoclip.models.towers.open_clip import (
    OpenClipImageTower,
    OpenClipTextTower,
    open_clip_package_file,
)
from emoclip.train import train
from tests.conftest import QUIET, compose_train

WORDS = ["happy", "sad", "angry", "afraid", "surprised", "feel", "face", "i", "am", "so"]


def bpe_merges(words) -> list[str]:
    """Merges that build each word left to right, open_clip's format (`a b`, end of word `</w>`)."""
    merges = []
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            merge = f"{symbols[0]} {symbols[1]}"
            if merge not in merges:
                merges.append(merge)
            symbols = [symbols[0] + symbols[1], *symbols[2:]]
    return merges


MERGES = bpe_merges(WORDS)
VOCAB = 512 + len(MERGES) + 2
CONFIG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": VOCAB, "width": 32, "heads": 2, "layers": 2},
}


def block_shapes(prefix: str, width: int, mlp: int) -> dict:
    return {
        f"{prefix}ln_1.weight": (width,),
        f"{prefix}ln_1.bias": (width,),
        f"{prefix}attn.in_proj_weight": (3 * width, width),
        f"{prefix}attn.in_proj_bias": (3 * width,),
        f"{prefix}attn.out_proj.weight": (width, width),
        f"{prefix}attn.out_proj.bias": (width,),
        f"{prefix}ln_2.weight": (width,),
        f"{prefix}ln_2.bias": (width,),
        f"{prefix}mlp.c_fc.weight": (mlp, width),
        f"{prefix}mlp.c_fc.bias": (mlp,),
        f"{prefix}mlp.c_proj.weight": (width, mlp),
        f"{prefix}mlp.c_proj.bias": (width,),
    }


def open_clip_shapes(cfg: dict) -> dict:
    """The state dict of open_clip's CLIP(**cfg): names and shapes."""
    v, t, embed = cfg["vision_cfg"], cfg["text_cfg"], cfg["embed_dim"]
    grid = (v["image_size"] // v["patch_size"]) ** 2
    shapes = {
        "positional_embedding": (t["context_length"], t["width"]),
        "text_projection": (t["width"], embed),
        "logit_scale": (),
        "visual.class_embedding": (v["width"],),
        "visual.positional_embedding": (grid + 1, v["width"]),
        "visual.proj": (v["width"], embed),
        "visual.conv1.weight": (v["width"], 3, v["patch_size"], v["patch_size"]),
        "visual.ln_pre.weight": (v["width"],),
        "visual.ln_pre.bias": (v["width"],),
        "visual.ln_post.weight": (v["width"],),
        "visual.ln_post.bias": (v["width"],),
        "token_embedding.weight": (t["vocab_size"], t["width"]),
        "ln_final.weight": (t["width"],),
        "ln_final.bias": (t["width"],),
    }
    for i in range(v["layers"]):
        shapes.update(
            block_shapes(f"visual.transformer.resblocks.{i}.", v["width"], 4 * v["width"])
        )
    for i in range(t["layers"]):
        shapes.update(block_shapes(f"transformer.resblocks.{i}.", t["width"], 4 * t["width"]))
    return shapes


def random_state(cfg: dict, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(shape, generator=generator) * (0.2 if len(shape) > 1 else 0.1)
        + (
            1.0
            if name.endswith(
                ("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")
            )
            else 0.0
        )
        for name, shape in open_clip_shapes(cfg).items()
    }


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_clip")
    (root / "tiny.json").write_text(json.dumps(CONFIG))
    with gzip.open(root / "bpe.txt.gz", "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    state = random_state(CONFIG)
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}},
        root / "epoch_3.pt",
    )
    return root, state


def towers(root: Path, **kwargs):
    task = TaskSpec(classes=("a", "b"), vocab_size=VOCAB)
    common = {
        "model_name": "tiny",
        "checkpoint": str(root / "epoch_3.pt"),
        "model_config": str(root / "tiny.json"),
    }
    return OpenClipTextTower(task, **common, **kwargs), OpenClipImageTower(task, **common)


def layer_norm(x, state, name):
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], 1e-5)


def open_clip_blocks(x, state, prefix, layers, heads, mask=None):
    """open_clip's ResidualAttentionBlock: x + attn(ln_1(x)), then x + mlp(ln_2(x)), with
    torch's multi-head attention on the fused in_proj, and QuickGELU."""
    for i in range(layers):
        p = f"{prefix}{i}."
        h = layer_norm(x, state, p + "ln_1").transpose(0, 1)
        attended, _ = F.multi_head_attention_forward(
            h,
            h,
            h,
            x.shape[-1],
            heads,
            state[p + "attn.in_proj_weight"],
            state[p + "attn.in_proj_bias"],
            None,
            None,
            False,
            0.0,
            state[p + "attn.out_proj.weight"],
            state[p + "attn.out_proj.bias"],
            need_weights=False,
            attn_mask=mask,
        )
        x = x + attended.transpose(0, 1)
        h = F.linear(
            layer_norm(x, state, p + "ln_2"),
            state[p + "mlp.c_fc.weight"],
            state[p + "mlp.c_fc.bias"],
        )
        x = x + F.linear(
            h * torch.sigmoid(1.702 * h),
            state[p + "mlp.c_proj.weight"],
            state[p + "mlp.c_proj.bias"],
        )
    return x


def open_clip_encode_text(state, ids):
    """open_clip's CLIP.encode_text on the full 77-token context, padded with 0."""
    t = CONFIG["text_cfg"]
    padded = torch.zeros(ids.shape[0], t["context_length"], dtype=torch.long)
    padded[:, : ids.shape[1]] = ids
    x = state["token_embedding.weight"][padded] + state["positional_embedding"]
    causal = torch.full((77, 77), float("-inf")).triu(1)
    x = layer_norm(
        open_clip_blocks(x, state, "transformer.resblocks.", t["layers"], t["heads"], causal),
        state,
        "ln_final",
    )
    return x[torch.arange(x.shape[0]), padded.argmax(-1)] @ state["text_projection"]


def open_clip_encode_image(state, pixels):
    v = CONFIG["vision_cfg"]
    x = (
        F.conv2d(pixels, state["visual.conv1.weight"], stride=v["patch_size"])
        .flatten(2)
        .transpose(1, 2)
    )
    cls = state["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + state["visual.positional_embedding"]
    x = layer_norm(x, state, "visual.ln_pre")
    heads = v["width"] // v["head_width"]
    x = layer_norm(
        open_clip_blocks(x, state, "visual.transformer.resblocks.", v["layers"], heads),
        state,
        "visual.ln_post",
    )
    return x[:, 0] @ state["visual.proj"]


def test_the_bpe_tokenizer_has_open_clips_ids(tiny_open_clip):
    root, _ = tiny_open_clip
    tokenizer = clip_bpe_tokenizer(root / "bpe.txt.gz")
    assert len(tokenizer) == VOCAB
    ids = tokenizer("I am so Happy")["input_ids"]
    # Start of text, one token per word (lower-cased), end of text; a merged word's id is
    # 512 + its last merge's line.
    assert ids[0] == VOCAB - 2 and ids[-1] == VOCAB - 1 and len(ids) == 6
    assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == ["i</w>", "am</w>", "so</w>", "happy</w>"]
    assert ids[4] == 512 + MERGES.index("happ y</w>")


def test_the_converted_towers_compute_what_open_clip_computes(tiny_open_clip):
    root, state = tiny_open_clip
    text, image = towers(root)
    tokenizer = clip_bpe_tokenizer(root / "bpe.txt.gz")
    encoded = tokenizer(["i feel happy", "so sad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = text.eval()(dict(encoded)).pooled
        pixels = torch.randn(2, 3, 32, 32)
        ours_image = image.eval()({"pixel_values": pixels}).pooled
    torch.testing.assert_close(
        ours, open_clip_encode_text(state, encoded["input_ids"]), atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        ours_image, open_clip_encode_image(state, pixels), atol=1e-5, rtol=1e-4
    )
    assert image.preprocessing.size == 32
    assert image.preprocessing.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_a_checkpoint_lacking_a_weight_or_holding_an_unknown_one_is_refused(
    tiny_open_clip, tmp_path
):
    root, state = tiny_open_clip
    (tmp_path / "tiny.json").write_text(json.dumps(CONFIG))
    lacking = {k: v for k, v in state.items() if k != "visual.ln_post.bias"}
    torch.save(lacking, tmp_path / "epoch_3.pt")
    OpenClipTextTower(
        TaskSpec(classes=("a",), vocab_size=VOCAB),
        "tiny",
        str(tmp_path / "epoch_3.pt"),
        str(tmp_path / "tiny.json"),
    )
    with pytest.raises(BackboneLoadError, match="1 weights missing.*post_layernorm"):
        towers(tmp_path)
    torch.save(
        {**state, "visual.transformer.resblocks.0.ls_1.gamma": torch.ones(32)},
        tmp_path / "epoch_3.pt",
    )
    with pytest.raises(BackboneLoadError, match="unexpected"):
        towers(tmp_path)
    (tmp_path / "epoch_3.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneLoadError, match="cannot read"):
        towers(tmp_path)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"vision_cfg": {**CONFIG["vision_cfg"], "layers": [3, 4, 6, 3]}}, "ResNet"),
        (
            {"vision_cfg": {**CONFIG["vision_cfg"], "ls_init_value": 1e-5}},
            "vision_cfg.ls_init_value",
        ),
        (
            {"text_cfg": {**CONFIG["text_cfg"], "hf_model_name": "roberta-base"}},
            "model/text_tower=hf",
        ),
        ({"multimodal_cfg": {"width": 8}}, "multimodal_cfg"),
    ],
)
def test_an_architecture_that_does_not_convert_is_refused_by_name(
    tiny_open_clip, tmp_path, change, named
):
    root, _ = tiny_open_clip
    (tmp_path / "tiny.json").write_text(json.dumps({**CONFIG, **change}))
    (tmp_path / "epoch_3.pt").symlink_to(root / "epoch_3.pt")
    with pytest.raises(ConfigError, match=named):
        towers(tmp_path)


def test_a_tokenizer_of_another_vocabulary_is_refused(tiny_open_clip):
    root, _ = tiny_open_clip
    with pytest.raises(ConfigError, match="bpe_vocab"):
        OpenClipTextTower(
            TaskSpec(classes=("a",), vocab_size=VOCAB - 1),
            "tiny",
            str(root / "epoch_3.pt"),
            str(root / "tiny.json"),
        )


def test_open_clip_towers_train_through_the_entry_point(tiny_open_clip, tmp_path):
    root, _ = tiny_open_clip
    overrides = [
        "model/text_tower=open_clip",
        "model/image_tower=open_clip",
        "model.text_tower.model_name=tiny",
        f"model.text_tower.checkpoint={root / 'epoch_3.pt'}",
        f"model.text_tower.model_config={root / 'tiny.json'}",
        f"model.text_tower.tokenizer.bpe_vocab={root / 'bpe.txt.gz'}",
        "debug=fdr",
        *QUIET,
    ]
    cfg = compose_train(overrides, tmp_path)
    assert cfg.model.image_tower.checkpoint == str(root / "epoch_3.pt")
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0


def open_clip_source() -> Path | None:
    given = os.environ.get("EMOCLIP_OPEN_CLIP_SRC")
    if given:
        return Path(given)
    found = open_clip_package_file("model.py")
    return found.parent if found else None


def import_open_clip(src: Path):
    """open_clip's model and tokenizer modules without its package __init__ (which imports
    torchvision): torchvision's one class it names and ftfy are stubbed while they import."""
    stubs = {
        name: types.ModuleType(name)
        for name in ("torchvision", "torchvision.ops", "torchvision.ops.misc", "ftfy")
    }
    stubs["torchvision.ops.misc"].FrozenBatchNorm2d = type(
        "FrozenBatchNorm2d", (torch.nn.Module,), {}
    )
    stubs["ftfy"].fix_text = lambda text: text
    package = types.ModuleType("open_clip")
    package.__path__ = [str(src)]
    saved = {name: sys.modules.get(name) for name in [*stubs, "open_clip"]}
    sys.modules.update({**stubs, "open_clip": package})
    try:
        return importlib.import_module("open_clip.model"), importlib.import_module(
            "open_clip.tokenizer"
        )
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name in [n for n in sys.modules if n.startswith("open_clip.")]:
            sys.modules.pop(name)


def test_against_open_clips_own_code(tmp_path):
    src = open_clip_source()
    if src is None or not (src / "model.py").is_file():
        pytest.skip("open_clip's source is not at hand (EMOCLIP_OPEN_CLIP_SRC or open_clip_torch)")
    model_module, tokenizer_module = import_open_clip(src)
    cfg = {**CONFIG, "text_cfg": {**CONFIG["text_cfg"], "vocab_size": 49408}}
    torch.manual_seed(0)
    reference = model_module.CLIP(**cfg).eval()
    reference_state = reference.state_dict()
    assert {k: tuple(v.shape) for k, v in reference_state.items()} == open_clip_shapes(cfg)
    (tmp_path / "tiny.json").write_text(json.dumps(cfg))
    torch.save(reference_state, tmp_path / "open_clip_pytorch_model.bin")
    task = TaskSpec(classes=("a",), vocab_size=49408)
    common = {
        "model_name": "tiny",
        "checkpoint": str(tmp_path / "open_clip_pytorch_model.bin"),
        "model_config": str(tmp_path / "tiny.json"),
    }
    text, image = (
        OpenClipTextTower(task, **common).eval(),
        OpenClipImageTower(task, **common).eval(),
    )
    tokenizer = clip_bpe_tokenizer(src / "bpe_simple_vocab_16e6.txt.gz")
    texts = ["I can't stop smiling!", "so sad, so tired...", "what a surprise: 3 cats"]
    reference_ids = tokenizer_module.SimpleTokenizer()(texts)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    lengths = encoded["attention_mask"].sum(1).tolist()
    for row, ids, n in zip(reference_ids, encoded["input_ids"], lengths, strict=True):
        assert row[:n].tolist() == ids[:n].tolist() and not row[n:].any()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            text(dict(encoded)).pooled, reference.encode_text(reference_ids), atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(
            image({"pixel_values": pixels}).pooled,
            reference.encode_image(pixels),
            atol=1e-5,
            rtol=1e-4,
        )
