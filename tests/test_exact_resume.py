"""Ctrl-C at any training step, then `ckpt_path=last`: the run ends bit-equal to a straight one."""

from __future__ import annotations

import json
import logging
import signal

import pytest

from emoclip.data.resumable import ResumableSampler, ShuffleSampler
from emoclip.train import train
from tests.conftest import QUIET, compose_train
from tests.test_resume import paired_study  # noqa: F401 (a fixture)

# 70 training examples in batches of 16: 5 batches an epoch; dropout 0.3 draws random numbers.
TINY = [
    "model=text_lstm",
    "data.dataset.train_size=70",
    "data.dataset.val_size=35",
    "data.dataset.test_size=35",
    "data.batch_size=16",
    "data.eval_batch_size=16",
    "trainer.max_epochs=3",
    "callbacks.early_stopping=null",
    *QUIET,
]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    return train(compose_train(TINY, tmp_path_factory.mktemp("straight")))


def interrupt_at(step: int, hook: str) -> list[str]:
    return [
        "+callbacks.interrupt._target_=tests.fault_injection.InterruptAtStep",
        f"+callbacks.interrupt.step={step}",
        f"+callbacks.interrupt.hook={hook}",
    ]


def interrupted_then_resumed(overrides: list[str], run_dir, step: int, hook: str) -> dict:
    try:
        with pytest.raises(SystemExit):  # Lightning's exit after Ctrl-C
            train(compose_train([*overrides, *interrupt_at(step, hook)], run_dir))
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores it after
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    resumed = ["ckpt_path=last", "allow_targets=[tests]"]
    return train(compose_train([*overrides, *resumed], run_dir))


def comparable(metrics: dict) -> dict:
    # The files differ (the resumed run's stored config names ckpt_path); the epoch does not.
    metrics = dict(metrics)
    metrics["checkpoint"] = metrics["checkpoint"]["epoch"]
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "hook", "checkpoint"),
    [
        # epoch 2 (1-based), batch 3 of 5, within its step: from batch 3 again
        (7, "on_before_backward", "interrupted.ckpt"),
        (7, "on_train_batch_end", "interrupted.ckpt"),  # after its step: from batch 4 on
        (4, "on_before_backward", "interrupted.ckpt"),  # epoch 1's last batch, within its step
        (4, "on_train_batch_end", "last.ckpt"),  # after it: the end of the last epoch (none)
        (9, "on_validation_batch_end", "last.ckpt"),  # within epoch 2's validation
    ],
)
def test_a_run_interrupted_at_any_step_resumes_to_the_straight_runs_metrics(
    tmp_path, caplog, straight, step, hook, checkpoint
):
    caplog.set_level(logging.INFO, logger="emoclip.study.resume")
    run_dir = tmp_path / "resumed"
    resumed = interrupted_then_resumed(TINY, run_dir, step, hook)
    assert comparable(resumed) == comparable(straight)
    continued = [r.getMessage() for r in caplog.records if "continuing from" in r.getMessage()]
    if step == 4 and checkpoint == "last.ckpt":  # no epoch had ended: started again
        assert not continued
    else:
        assert continued and continued[-1].startswith(
            f"continuing from {run_dir}/checkpoints/{checkpoint}"
        )
    # The interrupted run's checkpoint is gone once the resumed run has finished.
    assert not (run_dir / "checkpoints" / "interrupted.ckpt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_images_with_augmentation_and_fresh_text_draws_resume_exactly_mid_epoch(
    paired_study,  # noqa: F811 (the fixture)
    tmp_path,
    caplog,
    workers,
):
    # Faces augmented per image and epoch where batches are collated (in the loader workers,
    # when there are any), a text drawn per image per epoch (the EpochSampler), dropout:
    # interrupted within epoch 2's third batch.
    caplog.set_level(logging.INFO, logger="emoclip.study.resume")
    study = [*paired_study, f"data.num_workers={workers}"]
    straight = train(compose_train(study, tmp_path / "straight"))
    resumed = interrupted_then_resumed(study, tmp_path / "resumed", 7, "on_before_backward")
    assert "interrupted.ckpt (in epoch 2, from its training batch 3; global step 7)" in caplog.text
    assert comparable(resumed) == comparable(straight)


def test_the_sampler_continues_an_epoch_where_its_state_stood():
    sampler = ResumableSampler(ShuffleSampler(10))
    sampler.set_epoch(3)
    order = list(sampler)
    state = sampler.state_dict(items_done=4)
    again = ResumableSampler(ShuffleSampler(10))
    again.resume_at(state)
    again.set_epoch(3)
    assert list(again) == order[4:]
    assert len(list(again)) == 10  # the next epoch: a whole new order
    other_epoch = ResumableSampler(ShuffleSampler(10))
    other_epoch.resume_at(state)
    other_epoch.set_epoch(4)
    assert len(list(other_epoch)) == 10  # a state of another epoch is not applied
