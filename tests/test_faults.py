"""Faults caused, not assumed: a SIGKILL in the middle of a checkpoint write, a non-finite run, bad devices,
output that is not a terminal. (More cases: tests/test_runconfig.py for recipes, tests/test_training.py
for a threshold driven negative.)"""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from noiseadaptor import QuantConfig, fit, prepare
from noiseadaptor.ann.models import create_model
from noiseadaptor.cli import main
from noiseadaptor.data import digits
from noiseadaptor.io.checkpoint import load_checkpoint, save_checkpoint
from noiseadaptor.io.files import InUse

KILL_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys, torch
    from noiseadaptor.io.checkpoint import save_checkpoint
    from noiseadaptor.ann.models import create_model

    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"PK half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dies_half_way
    save_checkpoint(sys.argv[1], create_model("small-cnn", 10, 1, width=4), epoch=2, config={})
    """
)


@pytest.mark.parametrize("name", ["checkpoint.pt", "na[p=4]-seed0.pt"])  # a study names it by the method's spelling
def test_sigkill_during_a_checkpoint_write_keeps_the_old_one_and_the_next_start_cleans_up(tmp_path, name):
    path = tmp_path / name
    model = create_model("small-cnn", 10, 1, width=4)
    save_checkpoint(path, model, epoch=1, config={})
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(path)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(f".{name}.")]
    assert leftovers  # the half-written temporary file, hidden beside the checkpoint
    assert load_checkpoint(path)["epoch"] == 1  # the checkpoint itself is intact
    train, _ = digits().loaders(256, seed=0)
    fit(model, train, 2, progress=False, checkpoint=path, resume=True, config={})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")] and load_checkpoint(path)["epoch"] == 2


def test_a_nan_run_stops_with_one_line_and_writes_valid_json(tmp_path, capsys):
    out = tmp_path / "nan"
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "digits", "--model", "small-cnn", "--method", "na", "--epochs", "2",
              "--lr", "1e6", "--workers", "0", "--no-progress", "--out", str(out)])  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err
    *before, last = err.strip().splitlines()  # a warning (random start) may come first
    assert "epoch 1: the training loss is nan" in last and not any("error:" in line for line in before)
    assert not (out / "checkpoint.pt").exists()  # no non-finite checkpoint
    from noiseadaptor.io.files import write_json

    write_json({"loss": float("nan"), "x": [float("inf"), 1.0]}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"loss": None, "x": [None, 1.0]}


@pytest.mark.parametrize(
    "device, message",
    [("foo", "not a device name"), ("cuda:7", "CUDA"), ("meta", "holds no values"), ("mps", "no mps device")],
)
def test_bad_devices_get_one_line(tmp_path, capsys, device, message):
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an mps device")
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "digits", "--model", "small-cnn", "--epochs", "1", "--device", device,
              "--out", str(tmp_path)])  # fmt: skip
    assert stop.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # compare refuses it before writing anything into --out
        main(["compare", "--dataset", "digits", "--device", device, "--out", str(tmp_path / "study")])
    assert stop.value.code == 2 and message in capsys.readouterr().err and not (tmp_path / "study").exists()


def test_off_a_terminal_train_prints_one_line_per_epoch(tmp_path):
    out = tmp_path / "r"
    run = subprocess.run(
        [sys.executable, "-m", "noiseadaptor.cli", "train", "--dataset", "digits", "--model", "small-cnn",
         "--method", "float", "--epochs", "2", "--workers", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("[float] epoch")]  # stderr: progress
    assert len(lines) == 2 and "train_loss" in lines[0] and lines[1].startswith("[float] epoch 2/2")
    assert "\r" not in run.stderr and "s/epoch, about" in lines[0]  # no bars in a log; time and what is left
    assert "test_acc" in lines[0] and "test_acc" in (out / "log.csv").read_text().splitlines()[0]


def test_quantized_training_from_random_weights_is_refused_or_said(tmp_path):
    # a quantized method from random weights drove scales negative with exit 0 (issue 15): now training
    # stops at the first epoch whose threshold is <= 0, naming it
    torch.manual_seed(0)
    q = prepare(create_model("small-cnn", 10, 1, width=4), QuantConfig(p=2))
    for _, p in q.named_parameters():
        if p.dim() == 0:
            p.data.fill_(-0.5)
    from noiseadaptor.training import TrainingDiverged

    train, _ = digits().loaders(256, seed=0)
    with pytest.raises(TrainingDiverged, match="threshold"):
        fit(q, train, 1, progress=False)


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_mid_run_and_resume_is_bit_identical(tmp_path, workers):
    import time

    from noiseadaptor.runconfig import load_run

    command = [sys.executable, "-m", "noiseadaptor.cli", "train", "--dataset", "digits", "--model", "small-cnn",
               "--method", "na", "--epochs", "4", "--batch-size", "32", "--workers", str(workers),
               "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"  # beside the killed run, one thread each: the same numbers, half the wait
    uninterrupted = subprocess.Popen([*command, "--out", str(straight)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)  # fmt: skip
    meta = killed / "checkpoint.json"
    while process.poll() is None:  # kill it as soon as epoch 2 is saved, in the middle of epoch 3
        if meta.exists() and json.loads(meta.read_text() or "{}").get("epoch", 0) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    subprocess.run([*command, "--out", str(killed), "--resume"], check=True, capture_output=True, env=env, timeout=600)
    assert uninterrupted.wait(timeout=600) == 0
    a, b = (
        load_run(straight / "checkpoint.pt").model.state_dict(),
        load_run(killed / "checkpoint.pt").model.state_dict(),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_api_misuse_gets_one_clear_error(small_cnn, monkeypatch):
    from torch.utils.data import DataLoader, TensorDataset

    model = small_cnn()
    with pytest.raises(ValueError, match="yielded no batches"):
        fit(model, [], 1, progress=False)
    wrong = DataLoader(TensorDataset(torch.randn(8, 1, 8, 8), torch.full((8,), 12)), batch_size=4)
    with pytest.raises(ValueError, match="labels run from 12 to 12 but the network has 10 outputs"):
        fit(model, wrong, 1, progress=False)
    # an optional extra that is not installed: the pip line, not a ModuleNotFoundError
    from noiseadaptor import convert
    from noiseadaptor.io.export import export_nir

    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ValueError, match='pip install "noiseadaptor\\[nir\\]"'):
        export_nir(convert(prepare(model, QuantConfig(p=2))), torch.zeros(1, 1, 8, 8))


def test_bad_calibration_batches_nan_checkpoints_and_wrong_export_shapes(tmp_path, small_cnn, capsys):
    from noiseadaptor import init_scales
    from noiseadaptor.runconfig import load_run

    q = prepare(small_cnn(), QuantConfig(p=2))
    with pytest.raises(ValueError, match="non-empty calibration batch"):
        init_scales(q, torch.empty(0, 1, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        init_scales(q, torch.full((4, 1, 8, 8), float("nan")))
    out = tmp_path / "na"
    assert main(["train", "--dataset", "digits", "--model", "small-cnn", "--method", "na", "--epochs", "0",
                 "--workers", "0", "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    pytest.importorskip("nir")
    with pytest.raises(SystemExit):
        main(["export", str(out / "checkpoint.pt"), "--input-shape", "3,8,8"])
    assert "--input-shape 3,8,8 does not fit this network" in capsys.readouterr().err
    state = load_checkpoint(out / "checkpoint.pt")
    good = {k: v.clone() for k, v in state["model"].items()}
    next(iter(state["model"].values())).fill_(float("nan"))
    torch.save(state, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="non-finite weights"):
        load_run(out / "checkpoint.pt")
    # NaN BatchNorm running statistics, weights all finite: refused too (they gave 10 % without a word)
    state["model"] = {k: v.fill_(float("nan")) if k.endswith("running_var") else v for k, v in good.items()}
    torch.save(state, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="non-finite weights or statistics .*running_var"):
        load_run(out / "checkpoint.pt")
    for key in ("config", "epoch"):  # a checkpoint missing an entry: one line, not a KeyError
        torch.save({k: v for k, v in state.items() if k != key}, out / "broken.pt")
        with pytest.raises(ValueError, match=f"has no {key} entry: not one noiseadaptor wrote"):
            load_run(out / "broken.pt")


def _image_tree(root, rng, per_class=(("train", 3), ("test", 1))):
    from PIL import Image

    for split, n in per_class:
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype="uint8")).save(folder / f"{i}.png")


def _idx(path, data, magic):
    import gzip
    import struct

    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in data.shape) + data.tobytes())


def test_data_folders_a_broken_image_and_mnist_as_distributed(tmp_path, capsys, monkeypatch):
    import numpy as np

    from noiseadaptor.data import get_dataset

    rng = np.random.default_rng(0)
    _image_tree(tmp_path / "cifar", rng)
    (tmp_path / "cifar" / "train" / "class3" / "1.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit):  # raised in a DataLoader worker: one line still, naming the file
        main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"), "--model", "small-cnn",
              "--method", "float", "--epochs", "1", "--workers", "2", "--no-progress",
              "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class3/1.png is not a readable image" in err[0], err
    # MNIST's original *-ubyte.gz files, as distributed: unpacked into the cache, the data folder untouched
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 6), ("t10k", 4)):
        _idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype="uint8"), 0x803)
        _idx(raw / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,), dtype="uint8"), 0x801)
    before = sorted(p.name for p in raw.iterdir())
    monkeypatch.setenv("NOISEADAPTOR_DATA", str(tmp_path / "cache"))
    splits = get_dataset("mnist", tmp_path / "mnist")
    assert (len(splits.train), len(splits.test)) == (6, 4) and splits.train[0][0].shape == (1, 28, 28)
    assert sorted(p.name for p in raw.iterdir()) == before
    assert len(get_dataset("mnist", tmp_path / "mnist").train) == 6  # the second time from the cache
    # a truncated download: one line naming the file, no half-unpacked file left in the cache
    archive = raw / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:-40])
    monkeypatch.setenv("NOISEADAPTOR_DATA", str(tmp_path / "cache2"))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz is not a whole gzip file .*download it again"):
        get_dataset("mnist", tmp_path / "mnist")
    assert not list((tmp_path / "cache2").rglob("*.partial"))
    # a tree of 64x64 images under cifar10 (its transforms crop 32x32): refused before any work, named;
    # one 16x16 image among 32x32 ones: named when it is read
    from PIL import Image

    big = tmp_path / "big"
    _image_tree(big, rng, (("train", 1), ("test", 1)))
    for path in big.rglob("*.png"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype="uint8")).save(path)
    with pytest.raises(ValueError, match="0.png is 64x64; the images of this data set are 32x32"):
        get_dataset("cifar10", big)
    odd = tmp_path / "odd"
    _image_tree(odd, rng)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype="uint8")).save(odd / "train" / "class5" / "2.png")
    splits = get_dataset("cifar10", odd)
    with pytest.raises(ValueError, match="class5/2.png is 16x16"):
        [splits.train[i] for i in range(len(splits.train))]


def test_grey_images_into_a_colour_network_and_a_mismatched_checkpoint(small_cnn):
    from torch.utils.data import DataLoader, TensorDataset

    from noiseadaptor import convert, evaluate, simulate
    from noiseadaptor.io.checkpoint import restore

    colour = create_model("small-cnn", 10, 3, width=4)
    grey = DataLoader(TensorDataset(torch.randn(8, 1, 8, 8), torch.zeros(8, dtype=torch.long)), batch_size=4)
    message = "the data has 1 channels per sample but the network's first layer .* takes 3"
    for run in (lambda: fit(colour, grey, 1, progress=False), lambda: evaluate(colour, grey),
                lambda: simulate(convert(prepare(colour, QuantConfig(p=2))), grey, T=2)):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            run()
    state = {"model": create_model("cifar-resnet20", 10, 3).state_dict(), "config": {}, "epoch": 1}
    with pytest.raises(ValueError) as err:
        restore(state, small_cnn(), rng=False)
    assert len(str(err.value)) < 400 and "missing" in str(err.value) and "more" in str(err.value)


def test_resume_extends_a_finished_run_and_shared_files_are_deterministic(tmp_path):
    from noiseadaptor.io.checkpoint import load_checkpoint

    train, _ = digits().loaders(256, seed=0)
    model = create_model("small-cnn", 10, 1, width=4)
    path = tmp_path / "checkpoint.pt"
    fit(model, train, 2, lr=0.1, progress=False, checkpoint=path)
    with pytest.warns(UserWarning, match="cosine schedule continues as that of a 4-epoch run"):
        history = fit(model, train, 4, lr=0.1, progress=False, checkpoint=path, resume=True)
    assert [round(r["lr"], 6) for r in history] == [0.1, 0.05, 0.05, round(0.05 * (1 + math.cos(0.75 * math.pi)), 6)]
    assert load_checkpoint(path)["epoch"] == 4
    with pytest.raises(ValueError, match="trained 4 epochs already"):
        fit(model, train, 3, lr=0.1, progress=False, checkpoint=path, resume=True)
    # files meant for sharing: the mode open() would give (not mkstemp's 0600), and identical runs, identical bytes
    for out in ("a", "b"):
        main(["train", "--dataset", "digits", "--model", "small-cnn", "--epochs", "1", "--workers", "0",
              "--no-progress", "--out", str(tmp_path / out)])  # fmt: skip
    mask = os.umask(0)
    os.umask(mask)
    for name in ("model.safetensors", "checkpoint.pt", "results.json"):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_run_keeps_checkpoints_refuses_to_overwrite_them_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--model", "small-cnn", "--methods", "na", "--float-epochs", "1", "--epochs", "1", "--T", "4",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())["results"]
    assert (out / "float.pt").is_file() and [p.name for p in (out / "qat").glob("*.pt")] == ["na-seed0.pt"]
    with pytest.raises(SystemExit):
        main(args)
    assert "add --resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # everything trained: reloaded, simulated again, the same numbers
    again = json.loads((out / "results.json").read_text())["results"]
    assert again["na"]["snn_accuracy"] == first["na"]["snn_accuracy"] and again["float"] == first["float"]
    with pytest.raises(SystemExit):
        main(["run", "--out", str(out / "results.json")])
    assert "is a file" in capsys.readouterr().err


def test_two_runs_on_one_checkpoint_the_second_is_refused_and_a_killed_holder_frees_it(
    tmp_path, capsys, small_cnn, hold_lock
):
    out = tmp_path / "run"
    holder = hold_lock(out / "checkpoint.pt")
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "digits", "--model", "small-cnn", "--method", "float", "--epochs", "1",
              "--workers", "0", "--no-progress", "--out", str(out)])  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pid {holder.pid}" in err and "another process" in err
    assert not (out / "checkpoint.pt").exists()  # refused before any work
    train, _ = digits().loaders(256, seed=0)
    with pytest.raises(InUse):  # the library call, not only the CLI
        fit(small_cnn(), train, 1, progress=False, checkpoint=out / "checkpoint.pt")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    fit(small_cnn(), train, 1, progress=False, checkpoint=out / "checkpoint.pt")  # the kernel freed the lock
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_resume_with_nothing_to_resume_and_a_quantized_run_from_random_weights_are_said(tmp_path, capsys):
    main(["train", "--dataset", "digits", "--model", "small-cnn", "--method", "na", "--epochs", "0", "--resume",
          "--workers", "0", "--no-progress", "--out", str(tmp_path / "typo")])  # fmt: skip
    err = capsys.readouterr().err
    assert "warning: --resume: no " in err and "starting a new run" in err
    assert "warning: na from random weights (no --init, no --weights)" in err


def test_a_recipe_that_is_not_yaml_and_weights_for_a_model_without_them_get_one_line(tmp_path, capsys):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("epochs: [1, 2\nlr: 0.1\n")
    with pytest.raises(SystemExit):
        main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not valid YAML at line 2, column 3" in err
    with pytest.raises(ValueError, match="small-cnn has no pre-trained weights.*--init"):
        create_model("small-cnn", 10, 1, weights="DEFAULT")


FORK_THEN_HOLD = textwrap.dedent(
    """
    import os, sys, time
    from noiseadaptor.io.files import exclusive

    with exclusive(sys.argv[1]):
        if os.fork() == 0:  # a child, as a DataLoader worker is: it outlives a SIGKILLed parent for a while
            time.sleep(60)
            os._exit(0)
        print("holding", flush=True)
        time.sleep(300)
    """
)


def test_a_killed_runs_forked_children_do_not_keep_its_lock(tmp_path):
    # flock locks are inherited by forked children (DataLoader workers), so a resume right after a SIGKILL
    # was refused while the orphaned workers lived (caught by the SIGKILL-resume test with --workers 2)
    from noiseadaptor.io.files import exclusive

    holder = subprocess.Popen([sys.executable, "-c", FORK_THEN_HOLD, str(tmp_path / "checkpoint.pt")],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(InUse):
            with exclusive(tmp_path / "checkpoint.pt"):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with exclusive(tmp_path / "checkpoint.pt"):  # the child still sleeps; the lock is free
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the orphaned child too


def test_ctrl_c_says_one_line_and_the_run_resumes_from_its_checkpoint_alone(tmp_path):
    """SIGINT (Ctrl-C) in the middle of training: one line on stderr, no traceback, the last checkpoint kept;
    `train --out DIR --resume` alone (no other flag) continues that run with its own settings."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "noiseadaptor.cli", "train", "--dataset", "digits", "--model", "small-cnn",
               "--method", "asgl", "--time-steps", "2", "--epochs", "400", "--workers", "0", "--no-progress",
               "--out", str(out)]  # fmt: skip
    # SIGINT as a terminal delivers it, whatever ran the tests: a shell's background job (`cmd &`, nohup)
    # starts with SIGINT ignored, and a Python started so never raises KeyboardInterrupt
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        for _ in range(600):  # until the first epoch is checkpointed
            if (out / "checkpoint.json").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:  # a failed test leaves no 400-epoch run behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err
    said = f"interrupted; the last checkpoint is in {out}; continue with: noiseadaptor train --out {out} --resume"
    assert err.strip().splitlines()[-1].endswith(said)
    reached = load_checkpoint(out / "checkpoint.pt")["epoch"]
    assert main(["train", "--out", str(out), "--resume", "--epochs", str(reached + 1), "--no-progress"]) == 0
    resumed = load_checkpoint(out / "checkpoint.pt")
    assert resumed["epoch"] == reached + 1 and resumed["config"]["method"] == "asgl"
    assert resumed["config"]["time_steps"] == 2 and resumed["config"]["dataset"] == "digits"


def test_long_work_off_a_terminal_says_where_it_is_in_lines_not_bars(capsys, monkeypatch):
    """progress="lines" (the CLI's choice when stderr is a file): plain lines with elapsed time and an estimate,
    no carriage-return bars in a log file."""
    from noiseadaptor import progress

    clock = iter(range(0, 1000, 40))  # each item takes 40 s
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    assert list(progress.progress_over(range(5), "simulate T=100000", "lines")) == list(range(5))
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[0] == "[simulate T=100000] 1/5 (40 s, about 2.7 min left)"
    assert progress.duration(7.5 * 60) == "7.5 min" and list(progress.progress_over([1], "x", False)) == [1]


def test_batches_of_one_image_with_batchnorm_are_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "digits", "--model", "small-cnn", "--method", "float", "--epochs", "1",
              "--workers", "0", "--batch-size", "1", "--no-progress", "--out", str(tmp_path)])  # fmt: skip
    assert stop.value.code == 2 and "batch size 1 with BatchNorm" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists()
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # no BatchNorm: one image is fine
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 1, 8, 8), torch.arange(4)))
    assert len(fit(plain, data, 1, progress=False)) == 1


def _unshared_mount_works() -> bool:
    """Whether this machine lets a test mount a small tmpfs in its own mount namespace (root in a container)."""
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k none /mnt"],
                              capture_output=True, timeout=30).returncode == 0  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_write_failures_are_one_line_leave_nothing_and_come_before_the_work(tmp_path, capsys):
    """A size limit (RLIMIT_FSIZE) mid-export: one line, exit 1, no file and no temporary left, no crash in
    HDF5. Names too long: refused before any work. A full disk and a read-only folder (a tmpfs in a mount
    namespace of its own, where the machine allows one): the same."""
    pytest.importorskip("nir")
    out = tmp_path / "na"
    assert main(["train", "--dataset", "digits", "--model", "small-cnn", "--method", "na", "--epochs", "0",
                 "--workers", "0", "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    limited = textwrap.dedent(
        """
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # Python ignores SIGXFSZ: writes raise EFBIG
        from noiseadaptor.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    command = [sys.executable, "-c", limited, "export", str(out / "checkpoint.pt"), "--out",
               str(tmp_path / "limited" / "model.nir")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if "warning" not in line]
    assert len(lines) == 1 and "File too large" in lines[0] and "no half-written file" in lines[0], done.stderr
    assert list((tmp_path / "limited").iterdir()) == []
    long = "n" * 300
    for command in (["export", str(out / "checkpoint.pt"), "--out", str(tmp_path / f"{long}.nir")],
                    ["run", "--out", str(tmp_path / long / "run")],
                    ["evaluate", str(out / "checkpoint.pt"), "--out", str(tmp_path / long)]):  # fmt: skip
        with pytest.raises(SystemExit) as stop:
            main(command)
        assert stop.value.code == 2 and "is longer than this file system takes" in capsys.readouterr().err, command
    if not _unshared_mount_works():
        pytest.skip("no mount namespace here for the full-disk and read-only cases")
    script = textwrap.dedent(
        f"""
        set -u
        mount -t tmpfs -o size=8k none {tmp_path}/small
        {sys.executable} -m noiseadaptor.cli export {out}/checkpoint.pt --out {tmp_path}/small/model.nir
        echo "exit $?"; ls -A {tmp_path}/small; echo listed
        mount -o remount,ro {tmp_path}/small
        {sys.executable} -m noiseadaptor.cli evaluate {out}/checkpoint.pt --out {tmp_path}/small/eval --no-progress
        echo "exit $?"
        """
    )
    (tmp_path / "small").mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    stderr = [line for line in done.stderr.splitlines() if "warning" not in line]
    assert "No space left on device" in stderr[0] and "exit 1\nlisted\n" in done.stdout, done
    assert "cannot write into" in stderr[1] and "Read-only file system" in stderr[1], done
    assert done.stdout.endswith("exit 2\n") and len(stderr) == 2, done
