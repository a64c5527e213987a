"""Early stopping waits for the model to leave one-class output; small validation splits are
named before training."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from torch.utils.data import DataLoader, TensorDataset

from emoclip.runs.early_stopping import EarlyStopping, predicts_one_class, small_validation_warning
from tests.conftest import compose_train

# Per epoch: the classes the toy model predicts on its 6 validation examples (true labels
# 0,0,1,1,2,2). It predicts class 0 only for 6 epochs (macro-F1 flat at 0.222, as a model
# stuck at one class does), then learns, then stops improving.
TRUE = [0, 0, 1, 1, 2, 2]
ONE_CLASS = [0, 0, 0, 0, 0, 0]
SCHEDULE = [ONE_CLASS] * 6 + [[0, 0, 1, 0, 2, 0], [0, 0, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2]]
SCHEDULE += [[0, 0, 1, 1, 2, 2]] * 10


class ScheduledPredictions(L.LightningModule):
    """Predicts SCHEDULE[epoch] on validation, keeping the confusion matrix where emoclip's
    EmotionClassifier keeps it (results["val"]["val/confusion_matrix"])."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.results = {}
        self.history = []

    def on_train_epoch_end(self):
        self.history.append({"epoch": self.current_epoch + 1})  # as emoclip's module

    def training_step(self, batch, batch_idx):
        return (self.weight**2).sum()

    def validation_step(self, batch, batch_idx):
        predicted = SCHEDULE[self.current_epoch]
        confusion = [[0] * 3 for _ in range(3)]
        for t, p in zip(TRUE, predicted, strict=True):
            confusion[t][p] += 1
        f1 = []
        for c in range(3):
            tp, fp = confusion[c][c], sum(confusion[r][c] for r in range(3)) - confusion[c][c]
            fn = sum(confusion[c]) - tp
            f1.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        self.log("val/f1_macro", sum(f1) / 3)
        self.results["val"] = {"val/confusion_matrix": confusion}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=2)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(6, 1)), batch_size=6)


def epochs_run(callback) -> tuple[int, list[dict]]:
    trainer = L.Trainer(
        max_epochs=len(SCHEDULE),
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    module = ScheduledPredictions()
    trainer.fit(module)
    return trainer.current_epoch, module.history


def test_one_class_epochs_do_not_use_up_the_patience():
    settings = {"monitor": "val/f1_macro", "mode": "max", "patience": 3}
    # Lightning's own stops while the model still predicts one class...
    assert epochs_run(LightningEarlyStopping(**settings))[0] == 4
    # ...emoclip's counts from the first epoch with more than one class: it learns (epochs
    # 6-8), then stops after 3 epochs without improvement, and marks where it stopped.
    epochs, history = epochs_run(EarlyStopping(**settings))
    assert epochs == 12
    assert [row for row in history if "stopped_early" in row] == [
        {"epoch": 12, "stopped_early": True}
    ]


def test_predicts_one_class():
    assert predicts_one_class([[3, 0], [2, 0]])
    assert not predicts_one_class([[3, 0], [1, 1]])
    assert not predicts_one_class(None)


def test_a_small_validation_split_is_named_with_the_options(tmp_path):
    cfg = compose_train(["model=image_cnn", "data=ckplus", "data.root=/x"], tmp_path)
    message = small_validation_warning(cfg, val_size=20, num_classes=7)
    assert message.startswith("the validation split has 20 examples for 7 classes")
    for option in (
        "data.val_fraction=",
        "callbacks.early_stopping.patience (now 5)",
        "trainer.min_epochs=",
        "callbacks.early_stopping=null",
        "data.num_folds=",
    ):
        assert option in message
    assert max(len(line) for line in message.splitlines()) < 120  # no 500-character line
    assert small_validation_warning(cfg, val_size=70, num_classes=7) is None


@pytest.mark.parametrize(
    "overrides", [["callbacks.early_stopping=null"], ["debug=fdr"], ["callbacks=none"]]
)
def test_no_warning_without_early_stopping(overrides, tmp_path):
    cfg = compose_train(overrides, tmp_path)
    assert small_validation_warning(cfg, val_size=5, num_classes=7) is None
