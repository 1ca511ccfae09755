"""The train and evaluate commands: recipes, direct training, data on the device, clear errors."""

import json

import numpy as np
import pytest

from noiseadaptor.cli import main
from noiseadaptor.io.checkpoint import load_checkpoint


def test_train_then_evaluate_commands(tmp_path, capsys):
    common = ["--dataset", "digits", "--model", "small-cnn", "--workers", "0", "--no-progress", "--batch-size", "64"]
    assert main(["train", *common, "--method", "float", "--epochs", "2", "--out", str(tmp_path / "f")]) == 0
    recipe = tmp_path / "na.yaml"
    recipe.write_text(f"method: na\np: 2\nepochs: 1\ninit: {tmp_path / 'f' / 'checkpoint.pt'}\n")
    assert main(["train", "--recipe", str(recipe), *common, "--out", str(tmp_path / "q")]) == 0
    assert (tmp_path / "q" / "model.safetensors").exists() and (tmp_path / "q" / "log.csv").exists()
    with pytest.raises(SystemExit):  # the same --out again without --resume
        main(["train", "--recipe", str(recipe), *common, "--out", str(tmp_path / "q")])
    assert "--resume" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "q" / "checkpoint.pt"), "--T", "8", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "T=8" in printed and (tmp_path / "q" / "accuracy_vs_T.png").exists()
    result = json.loads((tmp_path / "q" / "evaluation.json").read_text())["results"]["na"]
    assert set(result["snn_accuracy"]) == {str(t) for t in range(1, 9)}
    # a run-time correction names its row, as a study's variants do
    assert main(["evaluate", str(tmp_path / "q" / "checkpoint.pt"), "--T", "2", "--negative-spikes",
                 "--offset-spikes", "2", "--no-progress"]) == 0  # fmt: skip
    assert "\nna+negative+cos2 " in capsys.readouterr().out
    # a method spelled with its settings, p among them: trained, recorded and rebuilt at its own p
    spelled = ["--method", "na[p=3,noise=gaussian]", "--epochs", "1", "--init", str(tmp_path / "f" / "checkpoint.pt")]
    assert main(["train", *common, *spelled, "--out", str(tmp_path / "s")]) == 0
    config = load_checkpoint(tmp_path / "s" / "checkpoint.pt")["config"]
    assert (config["method"], config["p"]) == ("na[noise=gaussian,p=3]", 3)
    assert main(["evaluate", str(tmp_path / "s" / "checkpoint.pt"), "--T", "2", "--no-progress"]) == 0
    assert "small-cnn, p=3" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --p and the spelling's p disagree
        main(["train", *common, *spelled, "--p", "2", "--out", str(tmp_path / "t")])
    assert "--p 2 and method na[p=3,noise=gaussian] (p=3) disagree" in capsys.readouterr().err


def test_recipe_with_unknown_key_is_refused(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("learning_rate: 0.1\n")
    with pytest.raises(SystemExit):
        main(["train", "--recipe", str(recipe)])
    assert "unknown keys ['learning_rate']" in capsys.readouterr().err


def test_missing_data_folder_is_one_clear_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "train/<class>" in err and "Traceback" not in err


def test_every_recipe_is_valid():
    from pathlib import Path

    from noiseadaptor.cli import build_parser
    from noiseadaptor.cli.train import run_config

    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    assert len(recipes) >= 10
    train = build_parser()[1]["train"]
    for recipe in recipes:
        args = train.parse_args(["--recipe", str(recipe)])
        run = run_config(args)
        assert args.out.name == recipe.stem and run.epochs > 0, recipe
        assert run_config(train.parse_args(["--recipe", str(recipe), "--epochs", "3"])).epochs == 3  # flags win


def test_direct_training_through_the_cli(tmp_path, capsys):
    out = tmp_path / "asgl"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "small-cnn",
                "--workers",
                "0",
                "--no-progress",
                "--method",
                "asgl",
                "--time-steps",
                "2",
                "--alpha",
                "2.5",
                "--epochs",
                "1",
                "--noise-decay",
                "0.5",
                "--noise-milestones",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["config"]["time_steps"] == 2 and state["config"]["alpha"] == 2.5
    assert state["config"]["noise_decay"] == 0.5 and state["config"]["noise_milestones"] == [0]
    assert main(["evaluate", str(out / "checkpoint.pt"), "--no-progress"]) == 0
    printed = capsys.readouterr().out  # an SNN at its T, read out after every step, not an "ANN"
    assert "directly trained SNN, T=2" in printed and "T=1" in printed and "T=2" in printed
    measured = json.loads((out / "evaluation.json").read_text())["results"]["asgl"]
    trained = json.loads((out / "results.json").read_text())["ann_accuracy"]  # train's readout: the mean of T
    assert "ann_accuracy" not in measured and measured["snn_accuracy"]["2"] == pytest.approx(trained)
    with pytest.raises(SystemExit):  # a correction of converted networks is not silently ignored
        main(["evaluate", str(out / "checkpoint.pt"), "--negative-spikes", "--no-progress"])
    assert "correct a converted network" in capsys.readouterr().err
    nir = pytest.importorskip("nir")  # written as it is: LIF nodes
    assert main(["export", str(out / "checkpoint.pt")]) == 0
    kinds = [type(n).__name__ for n in nir.read(out / "model.nir").nodes.values()]
    assert kinds.count("LIF") == 3 and "IF" not in kinds  # small-cnn: three ReLUs
    with pytest.raises(SystemExit):
        main(["export", str(out / "checkpoint.pt"), "--format", "onnx"])
    assert "written as NIR LIF nodes" in capsys.readouterr().err


def test_noise_schedule_is_refused_for_methods_without_spike_noise(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "digits", "--method", "na", "--noise-decay", "0.5", "--out", str(tmp_path)])
    assert "--noise-decay: not a setting of method na" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "digits", "--method", "asgl", "--noise-decay", "0.5", "--out", str(tmp_path)])
    assert "needs both noise_decay" in capsys.readouterr().err


def test_train_with_data_on_device_reads_an_image_folder_tree(tmp_path, capsys):
    from PIL import Image

    from noiseadaptor.cli import main

    rng = np.random.default_rng(0)
    for split, per_class in (("train", 8), ("test", 2)):
        for c in range(10):
            folder = tmp_path / "data" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    args = [
        "train",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(tmp_path / "data"),
        "--model",
        "small-cnn",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-progress",
        "--data-on-device",
    ]
    assert main(args + ["--out", str(tmp_path / "run")]) == 0
    assert "test accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(args + ["--out", str(tmp_path / "run2"), "--cutout", "8"])
    assert "--data-on-device" in capsys.readouterr().err


def test_image_reconstruction_through_the_cli(tmp_path, capsys):
    pytest.importorskip("torchmetrics")
    import json

    from noiseadaptor.cli import build_parser
    from noiseadaptor.cli import evaluate as evaluate_module
    from noiseadaptor.training.reconstruct import reconstruction_quality

    common = ["train", "--dataset", "digits", "--task", "reconstruct", "--model", "mlp-autoencoder", "--workers", "0",
              "--no-progress", "--method", "sg", "--surrogate", "sigmoid", "--steepness", "2.5", "--time-steps", "2",
              "--optimizer", "adam", "--lr", "0.003", "--weight-decay", "0", "--batch-size", "64"]  # fmt: skip
    assert main([*common, "--epochs", "0", "--out", str(tmp_path / "untrained")]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "ae")]) == 0
    assert "test PSNR" in capsys.readouterr().out
    before, after = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("untrained", "ae"))
    assert after["psnr"] > before["psnr"] + 3 and 0 < after["ssim"] <= 1 and "ann_accuracy" not in after
    assert after["config"]["num_classes"] == 64  # the autoencoder's output: one value per pixel of 8x8 digits
    # the checkpoint rebuilds, and what results.json says is what it reconstructs
    from noiseadaptor.data import digits, reconstruction
    from noiseadaptor.runconfig import load_run

    model = load_run(tmp_path / "ae" / "checkpoint.pt").model
    test = reconstruction(digits()).loaders(64)[1]
    assert reconstruction_quality(model, test, (1, 8, 8))["psnr"] == pytest.approx(after["psnr"], abs=1e-4)
    evaluate = build_parser()[1]["evaluate"]
    with pytest.raises(ValueError, match="reconstruction run"):  # one line, not a classification of pixels
        evaluate_module.main(evaluate.parse_args([str(tmp_path / "ae" / "checkpoint.pt")]))
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "digits", "--task", "reconstruct", "--model", "mlp-autoencoder", "--method", "na",
              "--epochs", "1", "--out", str(tmp_path / "na")])  # fmt: skip
    assert "--task reconstruct trains a float or directly trained" in capsys.readouterr().err
