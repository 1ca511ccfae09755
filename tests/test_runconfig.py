"""The typed run description and the method registry: one rebuild path, old checkpoints, generated CLI."""

import dataclasses
from pathlib import Path

import pytest
import torch

from noiseadaptor import evaluate
from noiseadaptor.data import digits
from noiseadaptor.methods import get_method, list_methods
from noiseadaptor.runconfig import RunConfig, load_run

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    "name, checks, correct",
    [
        # written by an early 0.1 build (`noiseadaptor train --dataset digits --model small-cnn --epochs 1
        # --batch-size 256`, optimizer state stripped): its keys T and noise_p, and the accuracy it reported
        ("v0.1-asgl.pt", {"method": "asgl", "time_steps": 2, "spike_noise_p": 0.7}, 30),
        ("v0.1-dual-phase.pt", {"method": "dual-phase", "p": 4, "quant_noise_p": 0.2}, 91),
    ],
)
def test_checkpoints_of_the_earlier_format_still_load(name, checks, correct):
    loaded = load_run(DATA / name)
    for key, value in checks.items():
        assert getattr(loaded.config, key) == value
    _, test = digits().loaders(256)
    assert round(evaluate(loaded.model, test) * 359) == correct


def test_round_trip_and_bad_settings():
    run = RunConfig(method="asgl", time_steps=3, spike_noise_p=0.8, noise_decay=0.5, noise_milestones=(2, 4))
    assert RunConfig.from_dict(run.to_dict()) == run
    with pytest.raises(ValueError, match="unknown method 'lsq'; choose from float, na"):
        RunConfig(method="lsq")
    with pytest.raises(ValueError, match="unknown keys \\['lerning_rate'\\]"):
        RunConfig.from_dict({"lerning_rate": 0.1})
    with pytest.raises(ValueError, match="quant_noise_p must be a probability"):
        RunConfig(quant_noise_p=1.5)
    with pytest.raises(ValueError, match="p must be a positive integer"):
        RunConfig(p=0)


def test_the_cli_is_generated_from_the_run_description_and_the_registry(capsys):
    from noiseadaptor.cli import build_parser

    train = build_parser()[1]["train"]
    flags = {a.dest: a for a in train._actions}
    for f in dataclasses.fields(RunConfig):
        if f.metadata["group"] != "facts":
            assert f.name in flags, f.name
    assert flags["method"].choices is None  # a method may be spelled with its settings: RunConfig checks it
    assert all(get_method(m).summary in flags["method"].help for m in list_methods())


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("- lr: 0.1\n", "expected a mapping"),
        ("lr: 0.1\nresume: 'no'\n", "resume must be true or false"),
        ("lr: [0.1, 0.2]\n", "lr must be a number, got [0.1, 0.2] (list)"),
        ("method: na\nspike_noise_p: 0.3\n", "--spike-noise-p: not a setting of method na"),
        ("lerning_rate: 0.1\n", "unknown keys"),
    ],
)
def test_bad_recipes_get_one_line(tmp_path, capsys, recipe, message):
    from noiseadaptor.cli import main

    path = tmp_path / "r.yaml"
    path.write_text(recipe)
    with pytest.raises(SystemExit) as stop:
        main(["train", "--recipe", str(path), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_one_rebuild_path_gives_the_trained_network(tmp_path):
    from noiseadaptor.cli import main

    out = tmp_path / "na"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "small-cnn",
                "--method",
                "na",
                "--epochs",
                "1",
                "--workers",
                "0",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    loaded = load_run(out / "checkpoint.pt")
    assert loaded.config.method == "na" and loaded.config.num_classes == 10 and loaded.epoch == 1
    scales = [v for k, v in loaded.model.state_dict().items() if k.endswith("scale")]
    saved = [
        v for k, v in torch.load(out / "checkpoint.pt", weights_only=False)["model"].items() if k.endswith("scale")
    ]
    assert all(torch.equal(a, b) for a, b in zip(scales, saved)) and scales


def test_review_fixes_float_checkpoints_old_optimisers_seeds_and_deprecated_reads(tmp_path, small_cnn):
    import shutil

    from noiseadaptor import fit
    from noiseadaptor.cli import build_parser
    from noiseadaptor.cli.common import study_config
    from noiseadaptor.runconfig import checkpoint_run
    from noiseadaptor.training import OptimizerConfig

    # a float network checkpointed by fit() from Python records no method: it is a float run
    train, _ = digits().loaders(256, seed=0)
    fit(small_cnn(), train, 1, progress=False, checkpoint=tmp_path / "float.pt", config={"model": "small-cnn"})
    assert checkpoint_run(torch.load(tmp_path / "float.pt", weights_only=False)["config"], "x").method == "float"
    # an early 0.1 ASGL checkpoint (one SGD group) is not resumed with today's ASGL optimiser, with one line
    old = tmp_path / "asgl.pt"
    shutil.copy(DATA / "v0.1-asgl.pt", old)
    loaded = load_run(old)
    with pytest.raises(ValueError, match="optimization"):
        fit(loaded.model, train, 1, optimizer=OptimizerConfig.asgl(), checkpoint=old, resume=True, progress=False,
            config={"method": "asgl"})  # fmt: skip
    # --seeds are the seeds themselves (one number: that seed); --num-seeds N is seeds 0..N-1
    compare = build_parser()[1]["compare"]
    assert study_config(compare.parse_args(["--seeds", "3"])).seeds == (3,)
    assert study_config(compare.parse_args(["--seeds", "4", "7"])).seeds == (4, 7)
    assert study_config(compare.parse_args(["--num-seeds", "3"])).seeds == (0, 1, 2)
    recipe = tmp_path / "study.yaml"
    recipe.write_text("seeds: [5]\n")
    assert study_config(compare.parse_args(["--recipe", str(recipe)])).seeds == (5,)
    recipe.write_text("num_seeds: 2\n")
    assert study_config(compare.parse_args(["--recipe", str(recipe)])).seeds == (0, 1)
    assert study_config(compare.parse_args(["--recipe", str(recipe), "--seeds", "6"])).seeds == (6,)  # flag wins
    with pytest.raises(ValueError, match="not both"):
        study_config(compare.parse_args(["--seeds", "1", "--num-seeds", "2"]))
    recipe.write_text("seeds: 8\n")  # a count under the seeds key: one meaning per key
    with pytest.raises(ValueError, match="seeds must be a list of whole numbers"):
        study_config(compare.parse_args(["--recipe", str(recipe)]))


def test_no_flag_is_taken_by_a_prefix_of_its_name():
    # argparse's prefix matching took a mistyped `compare --seed 3` as `--seeds 3`, silently
    from noiseadaptor.cli import build_parser

    parser, commands = build_parser()
    assert parser.allow_abbrev is False
    for name, command in commands.items():
        positionals = ["x" for a in command._actions if not a.option_strings]
        flags = {f for a in command._actions for f in a.option_strings if f.startswith("--")}
        for flag in sorted(flags):
            prefix = flag[:-1]
            if prefix not in flags and len(prefix) > 2:
                _, extras = command.parse_known_args([*positionals, prefix])
                assert extras == [prefix], f"{name} {prefix} was taken as {flag}"
    with pytest.raises(SystemExit):
        commands["compare"].parse_args(["--seed", "3"])


@pytest.mark.parametrize(
    "recipe, message",
    [
        ('method: na\namp: "no"\n', "amp must be true or false, got 'no' (str)"),
        ("method: na\nlr: 0.1\nlr: 0.2\n", "key 'lr' is written twice"),
        ("method: asgl\nnoise_milestones: 5\n", "noise_milestones must be a list of whole numbers, got 5"),
        ("model: {name: x}\n", "model must be text, got {'name': 'x'} (dict)"),
        ("method: na\nlr: .nan\n", "lr must be a finite number, got nan"),
        ("method: na\nepochs: 2.5\n", "epochs must be a whole number, got 2.5 (float)"),
        ("method: na\np: true\n", "p must be a whole number, got True (bool)"),
        ("method: [na]\n", "unknown method ['na']"),
    ],
)
def test_a_recipe_value_of_the_wrong_type_is_one_line_naming_the_key(tmp_path, capsys, recipe, message):
    from noiseadaptor.cli import main

    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    with pytest.raises(SystemExit):
        main(["train", "--recipe", str(path), "--dataset", "digits", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_run_config_checks_types_from_python_too():
    with pytest.raises(ValueError, match="amp must be true or false"):
        RunConfig(amp="no")
    with pytest.raises(ValueError, match="seed must be below 2\\*\\*63"):
        RunConfig(seed=2**64)
    assert RunConfig(lr=1).lr == 1 and RunConfig(noise_milestones=[3, 5], noise_decay=0.5).noise_milestones == (3, 5)


def test_the_default_data_workers_fit_the_cpus_this_process_may_use():
    # 4 workers on a 2-CPU machine made torch warn twice in every `train`
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= RunConfig().workers <= min(4, cpus)
