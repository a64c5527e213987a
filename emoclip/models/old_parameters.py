"""Parameter names of checkpoints written before towers existed (ClipFusion, TextLSTM and ImageCNN
as networks of their own), in today's layout; their configs are rewritten by emoclip.study.legacy."""

from __future__ import annotations

from emoclip.errors import ConfigError

# Old parameter-name prefix -> today's (None: dropped; CLIP's contrastive temperature, which
# classification never used).
RENAMED = (
    ("network.clip.text_model.", "network.towers.text.encoder.text_model."),
    ("network.clip.text_projection.", "network.towers.text.encoder.text_projection."),
    ("network.clip.vision_model.", "network.towers.image.encoder.vision_model."),
    ("network.clip.visual_projection.", "network.towers.image.encoder.visual_projection."),
    ("network.clip.logit_scale", None),
    ("network.fusion.text_head.", "network.fusion.heads.text."),
    ("network.fusion.image_head.", "network.fusion.heads.image."),
    ("network.embedding.", "network.towers.text.embedding."),
    ("network.lstm.", "network.towers.text.lstm."),
    ("network.features.", "network.towers.image.features."),
    ("network.head.", "network.fusion.head."),
)
REBUILD = (
    "rebuild it with this version of emoclip: train it again with the overrides its run folder "
    "lists in .hydra/overrides.yaml (emoclip-train <those overrides>)"
)


def is_legacy(state_dict: dict) -> bool:
    return any(k.startswith(tuple(old for old, _ in RENAMED)) for k in state_dict)


def upgrade_state_dict(state_dict: dict) -> dict:
    """Parameter names of an earlier layout in today's; today's names pass unchanged."""
    upgraded = {}
    for key, value in state_dict.items():
        for old, new in RENAMED:
            if key.startswith(old):
                key = None if new is None else new + key[len(old) :]
                break
        if key is not None:
            upgraded[key] = value
    return upgraded


def refuse_resuming(checkpoint: dict) -> None:
    """Resuming training needs the optimizer's state, whose parameter order the towers changed."""
    if checkpoint.get("optimizer_states") and is_legacy(checkpoint.get("state_dict", {})):
        raise ConfigError(
            "this checkpoint was written by an earlier emoclip (before towers): emoclip-eval, "
            "emoclip-predict and emoclip-explain load it, but its training cannot be resumed; "
            f"start a new run, or {REBUILD}"
        )
