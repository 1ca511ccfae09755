"""fit's checkpoints: kill-and-resume to the same weights, bad checkpoints, a diverged run."""

import json

import pytest
import torch

from noiseadaptor import QuantConfig, fit, prepare
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import digits
from noiseadaptor.io.checkpoint import load_checkpoint, save_checkpoint


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


def test_killed_run_resumes_to_the_same_weights(tmp_path, small_cnn):
    train, _ = digits().loaders(64, seed=0)
    straight = prepare(small_cnn(), QuantConfig(p=2))
    torch.manual_seed(1)
    fit(straight, train, 3, progress=False)

    ckpt = tmp_path / "ckpt.pt"
    killed = prepare(small_cnn(), QuantConfig(p=2))
    torch.manual_seed(1)
    with pytest.raises(Killed):
        fit(killed, DieAtEpoch(train, 3), 3, progress=False, checkpoint=ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed = prepare(small_cnn(seed=5), QuantConfig(p=2))  # other init: everything must come from the checkpoint
    history = fit(resumed, train, 3, progress=False, checkpoint=ckpt, resume=True)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_bad_checkpoints_are_clear(tmp_path, small_cnn):
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
    save_checkpoint(ckpt, small_cnn(), epoch=1, config={"model": "small-cnn", "p": 2})
    train, _ = digits().loaders(64)
    with pytest.raises(ValueError, match="other settings.*p: checkpoint 2 vs now 3"):
        fit(small_cnn(), train, 2, checkpoint=ckpt, resume=True, config={"p": 3}, progress=False)
    with pytest.raises(ValueError, match="does not fit this model"):
        fit(create_model("small-cnn", 10, 1, width=4), train, 2, checkpoint=ckpt, resume=True, progress=False)
    assert json.loads(ckpt.with_suffix(".json").read_text())["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_a_threshold_driven_negative_stops_training_with_one_line_and_keeps_the_checkpoint(tmp_path, small_cnn):
    from noiseadaptor import quantizers
    from noiseadaptor.training import TrainingDiverged

    train, _ = digits().loaders(64, seed=0)
    q = prepare(small_cnn(), QuantConfig.qcfs(p=2))
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
        fit(prepare(small_cnn(), QuantConfig(p=2)), train, 1, lr=1e6, progress=False)


def test_progress_bars_do_not_change_the_numbers(small_cnn):
    # a bar must not touch the RNG stream (tqdm.auto's iterator calls iter() twice: a DataLoader draws a seed)
    train, _ = digits().loaders(128, seed=0)
    runs = []
    for progress in (False, True):
        model = prepare(small_cnn(), QuantConfig(p=2))
        torch.manual_seed(1)
        fit(model, train, 1, progress=progress)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
