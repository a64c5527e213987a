"""A file never chooses what code runs: a checkpoint or run folder is rebuilt from emoclip's
own configs (emoclip.study.stored_study), taking only plain values from the file. Crafted files
carrying code in every way we know of (a chain of `_target_`s under any key, special or not; an
interpolation; a resolver; an emoclip function that writes files; a method reached through a
class; code in the checkpoint's other entries) are refused by every entry that reads one,
before anything is written or imported; and a property test over every shipped study checks
the rule, not the list."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from emoclip.errors import ConfigError
from emoclip.evaluate import evaluate
from emoclip.explain import explain
from emoclip.output.explanation_page import example_html
from emoclip.predict import predict
from emoclip.report import main as report_main
from emoclip.study.build import config_dir
from emoclip.study.stored_study import SPECIAL_KEYS, read_stored_study
from emoclip.study.trust import GUARD_ONLY, Trust
from emoclip.train import train
from tests.conftest import QUIET, compose_train

SECRET = "EMOCLIP_TEST_SECRET"
SECRET_VALUE = "s3cr3t-value-never-shown"


class Chain:
    """Three `_target_` nodes that, instantiated in order, write a module, put its folder on
    sys.path and build a class from it (whose construction writes a marker file)."""

    def __init__(self, tmp_path: Path):
        self.folder = tmp_path / "payload"
        self.folder.mkdir(exist_ok=True)
        self.module = f"payload_{uuid.uuid4().hex[:8]}"
        self.source = self.folder / f"{self.module}.py"
        self.marker = tmp_path / "payload_ran"
        code = (
            "class Payload:\n"
            "    def __init__(self, *args, **kwargs):\n"
            f"        open({str(self.marker)!r}, 'w').write('ran')\n"
        )
        self.nodes = [
            {
                "_target_": "pathlib.Path.write_text",
                "_args_": [{"_target_": "pathlib.Path", "_args_": [str(self.source)]}, code],
            },
            {"_target_": "sys.path.insert", "_args_": [0, str(self.folder)]},
            {"_target_": f"{self.module}.Payload"},
        ]

    def assert_nothing_ran(self) -> None:
        assert not self.source.exists()
        assert not self.marker.exists()
        assert self.module not in sys.modules
        assert str(self.folder) not in sys.path


def _put(config: dict, place: str, value) -> None:
    *parents, last = place.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


# Each: the key path the refusal names, and how the stored study is changed. They cover a
# chain under a new key, under each special key (whose values the old guard never walked), an
# interpolation that would copy it anywhere, a new special key, a resolver reading a secret,
# an emoclip function that writes files, and a method reached through a class.
def attacks(chain: Chain) -> dict:
    return {
        "new key": (
            "model.network.payload",
            lambda c: _put(c, "model.network.payload", chain.nodes),
        ),
        "_convert_": (
            "model.network._convert_",
            lambda c: _put(c, "model.network._convert_", chain.nodes[2]),
        ),
        "_recursive_": (
            "model.fusion._recursive_",
            lambda c: _put(c, "model.fusion._recursive_", chain.nodes[2]),
        ),
        "_partial_": (
            "model.optimizer._partial_",
            lambda c: _put(c, "model.optimizer._partial_", chain.nodes[2]),
        ),
        "new special key": ("data._hook_", lambda c: _put(c, "data._hook_", chain.nodes)),
        "interpolation": (
            "model.network.dropout",
            lambda c: (
                _put(c, "notes", {"_convert_": chain.nodes[2]}),
                _put(c, "model.network.dropout", "${notes._convert_}"),
            ),
        ),
        "resolver": ("data.root", lambda c: _put(c, "data.root", f"${{oc.env:{SECRET}}}")),
        "emoclip function that writes": (
            "data.dataset._target_",
            lambda c: _put(
                c,
                "data.dataset",
                {"_target_": "emoclip.demo.examples.write_examples", "folder": str(chain.folder)},
            ),
        ),
        "method through a class": (
            "data.dataset._target_",
            lambda c: _put(
                c,
                "data.dataset",
                {
                    "_target_": "emoclip.data.readers.TextDecoder.read",
                    "self": {},
                    "path": "/etc/hostname",
                },
            ),
        ),
    }


def study(tmp_path: Path, overrides=("model=text_lstm",)) -> dict:
    cfg = compose_train([*overrides, *QUIET], tmp_path / "original")
    return OmegaConf.to_container(cfg, resolve=True)


def crafted_checkpoint(
    tmp_path: Path, hparams: dict, emoclip_entry: dict | None = None, **extra
) -> Path:
    """Shaped like an emoclip checkpoint (no weights: every refusal comes before them)."""
    path = tmp_path / f"crafted_{uuid.uuid4().hex[:6]}" / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    checkpoint = {
        "hyper_parameters": hparams,
        "emoclip": emoclip_entry or {"classes": ["anger", "happiness"]},
        "state_dict": {},
        "optimizer_states": [],
        "epoch": 0,
        "global_step": 0,
        **extra,
    }
    torch.save(checkpoint, path)
    return path


def compose_entry(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose(name, overrides=overrides)


def entries(ckpt: Path, out: Path) -> dict:
    """Every entry that reads a checkpoint, run on it."""
    return {
        "eval": lambda: evaluate(
            compose_entry("eval", [f"ckpt_path={ckpt}", f"paths.output_dir={out}"])
        ),
        "cross-data eval": lambda: evaluate(
            compose_entry(
                "eval", [f"ckpt_path={ckpt}", "data=synthetic", f"paths.output_dir={out}"]
            )
        ),
        "predict": lambda: predict(compose_entry("predict", [f"ckpt_path={ckpt}", "text=hi"])),
        "explain": lambda: explain(
            compose_entry("explain", [f"ckpt_path={ckpt}", f"paths.output_dir={out}"])
        ),
        "train ckpt_path=": lambda: train(
            compose_train(["model=text_lstm", f"ckpt_path={ckpt}"], out)
        ),
    }


def test_the_chain_runs_code_where_nothing_checks_it(tmp_path):
    """Without emoclip's reader, Hydra's instantiate runs the chain: the threat stopped here."""
    chain = Chain(tmp_path)
    script = (
        "import json, sys\n"
        "from hydra.utils import instantiate\n"
        "instantiate({'payload': json.loads(sys.argv[1])})\n"
    )
    subprocess.run([sys.executable, "-c", script, json.dumps(chain.nodes)], check=True)
    assert chain.source.is_file() and chain.marker.read_text() == "ran"


def test_every_entry_refuses_a_checkpoint_carrying_code(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET, SECRET_VALUE)
    chain = Chain(tmp_path)
    base = study(tmp_path)
    for attack, (where, change) in attacks(chain).items():
        hparams = copy.deepcopy(base)
        change(hparams)
        ckpt = crafted_checkpoint(tmp_path, hparams)
        out = tmp_path / "out"
        for entry, run in entries(ckpt, out).items():
            with pytest.raises(ConfigError, match="refused the config stored in") as refusal:
                run()
            message = str(refusal.value)
            assert where in message, (attack, entry, message)
            assert SECRET_VALUE not in message
            chain.assert_nothing_ran()
            assert not out.exists(), (attack, entry)  # refused before anything was written


@pytest.mark.parametrize(
    ("entry_change", "why"),
    [
        ({"classes": [f"${{oc.env:{SECRET}}}", "joy"]}, "classes"),
        ({"classes": [{"_target_": "os.system", "command": "true"}]}, "classes"),
        ({"classes": ["anger", "\x1b[31mred"]}, "control characters"),
        ({"classes": "anger"}, "expected a list of names"),
        ({"label_space": ["emotion"]}, "label_space is a list"),
        ({"label_space": {"name": f"${{oc.env:{SECRET}}}"}}, "label_space name"),
        (
            {"label_space": {"name": "emotion", "label_map": {"a": {"_target_": "os.system"}}}},
            "label_map",
        ),
        ({"tokenizer": "garbage, not JSON"}, "not a tokenizer's JSON"),
        ({"choices": {"model": "../../etc/passwd"}}, "recorded choice model="),
        ({"choices": {"hydra/launcher": "x", "model": "text_lstm", "nonsense": "x"}}, "nonsense"),
    ],
)
def test_the_checkpoints_other_entries_are_checked_plain_values(
    entry_change, why, tmp_path, monkeypatch
):
    monkeypatch.setenv(SECRET, SECRET_VALUE)
    entry = {"classes": ["anger", "happiness"], **entry_change}
    ckpt = crafted_checkpoint(tmp_path, study(tmp_path), entry)
    for name, run in entries(ckpt, tmp_path / "out").items():
        if name in ("eval", "explain") and "choices" not in entry_change:
            continue  # the same reader as predict and cross-data eval
        with pytest.raises(ConfigError, match=why) as refusal:
            run()
        assert SECRET_VALUE not in str(refusal.value)
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"state_dict": [1, 2, 3]}, "state_dict is not a mapping"),
        ({"hyper_parameters": "data:\n  _target_: os.system\n"}, "not an emoclip checkpoint"),
        ({"state_dict": {"network.x": torch.tensor([float("nan")])}}, "NaN or infinite"),
    ],
)
def test_hostile_checkpoint_shapes_are_one_line(change, why, tmp_path):
    hparams = change.pop("hyper_parameters", study(tmp_path))
    ckpt = crafted_checkpoint(tmp_path, hparams, **change)
    with pytest.raises(ConfigError, match=why):
        predict(compose_entry("predict", [f"ckpt_path={ckpt}", "text=hi"]))


def test_a_very_deep_config_is_one_line(tmp_path):
    deep: dict = {}
    node = deep
    for _ in range(3000):  # deeper than Python's recursion limit
        node["d"] = {}
        node = node["d"]
    ckpt = tmp_path / "deep.ckpt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        hparams = {**study(tmp_path), "notes": deep}
        torch.save(
            {"hyper_parameters": hparams, "emoclip": {"classes": ["a"]}, "state_dict": {}}, ckpt
        )
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(ConfigError, match="nested more than 48 levels"):
        predict(compose_entry("predict", [f"ckpt_path={ckpt}", "text=hi"]))
    folder = tmp_path / "run"
    write_run_folder(folder, {"seed": 1})
    (folder / ".hydra" / "config.yaml").write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
    with pytest.raises(SystemExit, match="nested more than 64 levels"):
        report_main([str(folder)])


def test_a_huge_config_is_refused_quickly(tmp_path):
    hparams = {**study(tmp_path), "notes": {f"k{i}": i for i in range(1_000_000)}}
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="more than 50000 values"):
        read_stored_study(hparams, "big.ckpt")
    assert time.perf_counter() - started < 5


def write_run_folder(run_dir: Path, config: dict) -> None:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    metrics = {"status": "finished", "classes": ["a", "b"], "test/acc": 1.0, "test/f1_macro": 1.0}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_report_refuses_a_run_folder_carrying_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(SECRET, SECRET_VALUE)
    chain = Chain(tmp_path)
    for attack, (where, change) in attacks(chain).items():
        config = study(tmp_path)
        change(config)
        sweep = tmp_path / f"sweep_{attack.replace(' ', '_')}"
        write_run_folder(sweep / "0", config)
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(SystemExit, match=r"^emoclip: refused the config stored in") as refusal:
            report_main([str(sweep)])
        assert where in str(refusal.value), attack
        assert SECRET_VALUE not in str(refusal.value) + capsys.readouterr().out
        chain.assert_nothing_ran()
        assert not (sweep / "report.md").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # no folder created


def test_report_refuses_a_yaml_alias_bomb_and_a_linked_config_at_once(tmp_path):
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    bomb += [
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    write_run_folder(tmp_path / "bomb", {"seed": 1})
    (tmp_path / "bomb" / ".hydra" / "config.yaml").write_text("\n".join(bomb) + "\n")
    started = time.perf_counter()
    with pytest.raises(SystemExit, match="refused: an anchor"):
        report_main([str(tmp_path / "bomb")])
    assert time.perf_counter() - started < 5
    write_run_folder(tmp_path / "linked", {"seed": 1})
    target = tmp_path / "elsewhere.yaml"
    target.write_text("seed: 1\n")
    config = tmp_path / "linked" / ".hydra" / "config.yaml"
    config.unlink()
    config.symlink_to(target)
    with pytest.raises(SystemExit, match="is a symbolic link"):
        report_main([str(tmp_path / "linked")])


def test_explains_page_escapes_class_names_from_the_checkpoint():
    import numpy as np

    from emoclip.output.attribution import Attribution

    classes = ("<script>alert(1)</script>", "joy")
    result = Attribution(
        predicted=0,
        probabilities=np.array([0.6, 0.4]),
        image=None,
        image_delta=None,
        tokens=None,
        token_scores=None,
        text_delta=None,
    )
    page = example_html(0, "<img src=x>", "joy", classes, result, None)
    assert "<script>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---------------------------------------------------------------- the property, not the list

MARKER = "emoclip_never_imported_marker"
STUDIES = [
    ["model=text_lstm"],
    [],
    ["model=image_cnn", "data=ckplus"],
    ["model=clip_zeroshot"],
    ["model/finetune=frozen", "model/text_tower=hf", "model/fusion=gated", "trainer=ddp"],
    ["data=ckplus_dair", "experiment=paper", "logger=many"],
]


def _paths(node, prefix=""):
    """Every key path of a stored config: its mappings, lists and values, special keys too."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, f"{prefix}[{i}]")
    return found


def _replace(config, path: str, value) -> None:
    parts = path.replace("[", ".[").split(".")
    node = config
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value


@pytest.fixture(scope="module")
def shipped_studies(tmp_path_factory):
    """Each representative study as a checkpoint stores it (resolved, with its recorded
    choices) and as a run folder holds it (unresolved, its choices inferred)."""
    out = tmp_path_factory.mktemp("studies")
    forms = []
    for overrides in STUDIES:
        cfg = compose_train([*overrides, *QUIET], out)
        choices = {
            o.split("=")[0]: o.split("=")[1] for o in overrides if "." not in o.split("=")[0]
        }
        forms.append((OmegaConf.to_container(cfg, resolve=True), choices or None))
        forms.append((OmegaConf.to_container(cfg, resolve=False), None))
    for stored, choices in forms:
        read_stored_study(stored, "a shipped study", choices=choices)  # unchanged: accepted
    return forms


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_value_replaced_by_a_mapping_with_a_target_is_refused(shipped_studies, data):
    stored, choices = data.draw(st.sampled_from(shipped_studies))
    path = data.draw(st.sampled_from(_paths(stored)))
    key = data.draw(st.sampled_from([*SPECIAL_KEYS, "_other_", "payload", "name", "x"]))
    depth = data.draw(st.integers(0, 3))
    payload = {"_target_": f"{MARKER}.Payload"}
    for _ in range(depth):
        payload = {key: payload}
    if depth:
        payload = (
            {**payload, "_target_": f"{MARKER}.Outer"} if data.draw(st.booleans()) else payload
        )
    mutated = copy.deepcopy(stored)
    _replace(
        mutated,
        path,
        payload if depth == 0 or "_target_" in payload else {**payload, "_target_": f"{MARKER}.P"},
    )
    with pytest.raises(ConfigError, match="refused the config stored in"):
        read_stored_study(mutated, "crafted", choices=choices)
    assert MARKER not in sys.modules


# ---------------------------------------------------------------- the user's own code


def test_the_file_cannot_widen_trust_only_the_command_line(tmp_path):
    config = study(tmp_path)
    config["model"]["network"]["_target_"] = "mylab.nets.MyNet"
    with pytest.raises(ConfigError, match="model.network._target_"):
        read_stored_study(config, "x.ckpt")
    read_stored_study(config, "x.ckpt", Trust(prefixes=("mylab",)))
    read_stored_study(config, "x.ckpt", Trust(everything=True))
    with pytest.raises(ConfigError, match="model.network._target_"):
        read_stored_study(config, "x.ckpt", Trust(prefixes=("mylabs", "mylab.other")))
    # The file cannot allow itself: the flags are read from the entry's own config.
    config["trust_config"], config["allow_targets"] = True, ["mylab"]
    with pytest.raises(ConfigError, match="mylab.nets.MyNet|trust_config"):
        read_stored_study(config, "x.ckpt", Trust.from_entry(compose_entry("eval", [])))
    assert Trust.from_entry(compose_entry("eval", ["allow_targets=[mylab]"])).allows("mylab.X")
    assert Trust.from_entry(compose_entry("eval", ["allow_targets=mylab"])).allows("mylab.X")
    with pytest.raises(ConfigError, match="allow_targets: '' is not a module name"):
        Trust.from_entry(compose_entry("eval", ["allow_targets=['']"]))
    assert Trust() == GUARD_ONLY


def test_the_report_flag_lets_the_users_own_targets_through(tmp_path):
    config = study(tmp_path)
    config["model"]["network"]["_target_"] = "mylab.nets.MyNet"
    write_run_folder(tmp_path / "run", config)
    with pytest.raises(SystemExit, match="mylab.nets.MyNet"):
        report_main([str(tmp_path / "run")])
    report_main([str(tmp_path / "run"), "--allow-targets", "mylab"])
    assert (tmp_path / "run" / "report.md").is_file()


def test_a_checkpoint_with_the_users_own_code_evaluates_with_the_flag(tmp_path, monkeypatch):
    """A run whose network is the user's own class trains; its checkpoint is refused by eval
    unless allow_targets (on the command line) names the user's module, or trust_config."""
    module = f"mylab_{uuid.uuid4().hex[:8]}"
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / f"{module}.py").write_text(
        "from emoclip.models.tower_fusion import TowerFusion\n\nclass MyNet(TowerFusion):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))
    brief = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", *QUIET]
    mine = ["model=text_lstm", f"model.network._target_={module}.MyNet", *brief]
    trained = train(compose_train(mine, tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    with pytest.raises(ConfigError, match="refused the config stored in") as refusal:
        evaluate(
            compose_entry("eval", [f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path}/refused"])
        )
    assert f"{module}.MyNet" in str(refusal.value)
    assert "allow_targets=[<module>]" in str(refusal.value)
    assert not (tmp_path / "refused").exists()
    for flag, out in ((f"allow_targets=[{module}]", "e1"), ("trust_config=true", "e2")):
        evaluated = evaluate(
            compose_entry("eval", [f"ckpt_path={ckpt}", flag, f"paths.output_dir={tmp_path}/{out}"])
        )
        assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


def test_a_checkpoint_never_chooses_paths(tmp_path):
    """The feature cache and every other path come from the command's own config."""
    from emoclip.study.restore import study_config

    hparams = study(tmp_path)
    hparams["paths"]["cache_dir"] = str(tmp_path / "chosen_by_the_file")
    entry = compose_entry("eval", ["ckpt_path=x.ckpt", f"paths.output_dir={tmp_path}/e"])
    cfg = study_config({"hyper_parameters": hparams, "emoclip": {}}, "x.ckpt", paths=entry.paths)
    assert cfg.paths.cache_dir == entry.paths.cache_dir != hparams["paths"]["cache_dir"]
    bare = study_config({"hyper_parameters": hparams, "emoclip": {}}, "x.ckpt")
    assert "chosen_by_the_file" not in str(bare.paths.cache_dir)


def test_the_report_escapes_what_it_shows_from_files(tmp_path):
    """Class names and config values from a run folder reach report.md and report.html inert."""
    markup = "<img src=x onerror=alert(1)>"
    config = study(tmp_path)
    config["data"]["dataset"]["train_size"] = 99
    write_run_folder(tmp_path / "run", config)
    metrics = {
        "status": "finished",
        "classes": [markup, "[link](http://x)"],
        "test/acc": 0.5,
        "test/f1_macro": 0.5,
        f"test/f1_{markup}": 0.5,
    }
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    write_run_folder(tmp_path / "bad", study(tmp_path))
    bad = {**metrics, "classes": ["a\x1b[31m"], "test/acc": "0.9"}
    (tmp_path / "bad" / "metrics.json").write_text(json.dumps(bad))
    report_main([str(tmp_path)])
    md = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert markup not in md and "](http://x)" not in md.replace("\\](http://x)", "")
    assert "<img src=x" not in page and 'href="http://x"' not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "\x1b" not in md and "\x1b" not in page  # the folder is set aside, its name safe
