"""What a checkpoint saved mid-epoch must bring back exactly: the process's random generators
and Lightning's count of the epoch's batches done (emoclip.data.resumable continues the batches
themselves)."""

from __future__ import annotations

import random

import numpy as np
import torch


def lightning_batches_done(trainer) -> int:
    """The batches of the current training epoch that a run resumed from a checkpoint saved now
    will not train on again: Lightning's own count, as its epoch loop reads it on restart."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    done, total = progress.current.completed, progress.total
    # Saved in on_train_batch_end: the step was taken, and Lightning counts the batch as done.
    if total.started == total.ready and total.processed == total.started == total.completed + 1:
        done += 1
    return done


# The process's random generators, as plain types (checkpoints stay loadable with
# torch.load(weights_only=True)).
def rng_states() -> dict:
    numpy_state = np.random.get_state(legacy=False)  # noqa: NPY002 (the global one, seeded)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    numpy_state = {**states["numpy"], "state": dict(states["numpy"]["state"])}
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
