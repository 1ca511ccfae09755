"""Checkpoints, kill-and-resume, the train/evaluate commands, and DDP on CPU (gloo, 2 processes)."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from noiseadaptor import QuantConfig, evaluate, fit, prepare
from noiseadaptor.checkpoint import load_checkpoint, save_checkpoint
from noiseadaptor.cli import main
from noiseadaptor.data import digits
from noiseadaptor.models import create_model


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("small-cnn", num_classes=10, in_channels=1, width=8)


class Killed(Exception):
    pass


class DieAtEpoch:
    """A loader that raises at the start of epoch `die_at` (as if the process were killed there)."""

    def __init__(self, loader, die_at):
        self.loader, self.die_at, self.epoch = loader, die_at, 0
        self.sampler = loader.sampler

    def __iter__(self):
        self.epoch += 1
        if self.epoch == self.die_at:
            raise Killed
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    train, _ = digits().loaders(64, seed=0)
    straight = prepare(_model(), QuantConfig(p=2))
    torch.manual_seed(1)
    fit(straight, train, 3, progress=False)

    ckpt = tmp_path / "ckpt.pt"
    killed = prepare(_model(), QuantConfig(p=2))
    torch.manual_seed(1)
    with pytest.raises(Killed):
        fit(killed, DieAtEpoch(train, 3), 3, progress=False, checkpoint=ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed = prepare(_model(seed=5), QuantConfig(p=2))  # other init: everything must come from the checkpoint
    history = fit(resumed, train, 3, progress=False, checkpoint=ckpt, resume=True)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_bad_checkpoints_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(broken)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(ValueError, match="not a noiseadaptor checkpoint"):
        load_checkpoint(other)
    ckpt = tmp_path / "ok.pt"
    save_checkpoint(ckpt, _model(), epoch=1, config={"model": "small-cnn", "p": 2})
    train, _ = digits().loaders(64)
    with pytest.raises(ValueError, match="other settings.*p: checkpoint 2 vs now 3"):
        fit(_model(), train, 2, checkpoint=ckpt, resume=True, config={"p": 3}, progress=False)
    with pytest.raises(ValueError, match="does not fit this model"):
        fit(create_model("small-cnn", 10, 1, width=4), train, 2, checkpoint=ckpt, resume=True, progress=False)
    assert json.loads(ckpt.with_suffix(".json").read_text())["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from noiseadaptor.distributed import init_from_env

    init_from_env("cpu")
    splits = digits()
    train, test = splits.loaders(32, seed=0)
    model = _model()
    before = evaluate(model, test)
    fit(model, train, 2, progress=False)
    after = evaluate(model, test)
    if rank == 0:
        torch.save({"before": before, "after": after}, out)
    torch.distributed.destroy_process_group()


def test_ddp_on_cpu_matches_one_process(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    splits = digits()
    train, test = splits.loaders(64, seed=0)  # one process, the same global batch
    model = _model()
    # evaluation shards without padding: 359 test images, each counted once -> identical accuracy
    assert ddp["before"] == evaluate(model, test)
    fit(model, train, 2, progress=False)
    assert ddp["after"] == pytest.approx(evaluate(model, test), abs=0.05)


def test_every_recipe_is_valid():
    from pathlib import Path

    from noiseadaptor.cli import build_parser, run_config

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
    assert "asgl" in capsys.readouterr().out


def test_noise_schedule_is_refused_for_methods_without_spike_noise(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "digits", "--method", "na", "--noise-decay", "0.5", "--out", str(tmp_path)])
    assert "--noise-decay: not a setting of method na" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "digits", "--method", "asgl", "--noise-decay", "0.5", "--out", str(tmp_path)])
    assert "needs both noise_decay" in capsys.readouterr().err


def test_spread_subset_keeps_every_class_of_a_class_sorted_set():
    from torch.utils.data import TensorDataset

    from noiseadaptor.data import spread_subset

    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, as an image-folder tree is
    subset = spread_subset(TensorDataset(torch.zeros(1000, 1), labels), 50)
    assert len(subset) == 50 and set(labels[subset.indices].tolist()) == set(range(10))
    with pytest.raises(ValueError, match="at least one"):
        spread_subset(TensorDataset(torch.zeros(3, 1)), 0)


def test_device_loader_augments_like_torchvision_and_repeats_per_epoch():
    from torchvision import transforms

    from noiseadaptor.data import DeviceLoader

    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    reference = transforms.Normalize(mean, std)(images.float() / 255)
    loader = DeviceLoader(images, labels, 16, mean, std, "cpu", train=True, seed=3)
    assert len(loader) == 2
    batches = [(x.clone(), y.clone()) for x, y in loader]
    for x, y in batches:
        assert x.shape == (16, 3, 32, 32) and len(set(y.tolist())) == 16
        for xi, yi in zip(x, y):  # a 32x32 window of the zero-padded image, maybe mirrored
            source = torch.nn.functional.pad(images[yi].float(), (4, 4, 4, 4))
            source = transforms.Normalize(mean, std)(source / 255)
            windows = [source[:, r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
            assert any(torch.allclose(xi, w, atol=1e-5) or torch.allclose(xi, w.flip(-1), atol=1e-5) for w in windows)
    again = [(x, y) for x, y in loader]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))[1], batches[0][1])
    evaluation = DeviceLoader(images, labels, 16, mean, std, "cpu", train=False)
    x, y = torch.cat([b[0] for b in evaluation]), torch.cat([b[1] for b in evaluation])
    assert len(evaluation) == 3 and torch.equal(y, labels) and torch.allclose(x, reference, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(images.float(), labels, 16, mean, std, "cpu")


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


def test_a_threshold_driven_negative_stops_training_with_one_line_and_keeps_the_checkpoint(tmp_path):
    from noiseadaptor import quantizers
    from noiseadaptor.train import TrainingDiverged

    train, _ = digits().loaders(64, seed=0)
    q = prepare(_model(), QuantConfig.qcfs(p=2))
    ckpt = tmp_path / "q.pt"
    fit(q, train, 1, progress=False, checkpoint=ckpt)
    good = load_checkpoint(ckpt)["model"]
    first = quantizers(q)[0][1]

    def push_negative(epoch):
        if epoch == 1:
            first.scale.data.fill_(-1.0)  # what an overshooting scale step does

    with pytest.raises(TrainingDiverged, match="epoch 2: quantizer 2 has threshold -[0-9.]+ <= 0"):
        fit(q, train, 2, progress=False, checkpoint=tmp_path / "q2.pt", on_epoch_start=push_negative)
    assert all(torch.equal(a, b) for a, b in zip(good.values(), load_checkpoint(ckpt)["model"].values()))
    with pytest.raises(TrainingDiverged, match="loss is nan"):
        fit(prepare(_model(), QuantConfig(p=2)), train, 1, lr=1e6, progress=False)
