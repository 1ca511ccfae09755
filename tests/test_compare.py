"""The method benchmark: statistics against hand-computed values, the pairing, resume, honest T, and the
per-layer conversion error against a brute-force count."""

import dataclasses
import json
import math
import re

import pytest
import torch
from torch import nn

from noiseadaptor import QuantConfig, convert, init_scales, prepare, quantizers, simulate
from noiseadaptor.io import report
from noiseadaptor.io.report import study_table
from noiseadaptor.runconfig import RunConfig
from noiseadaptor.snn.neurons import IFNeuron
from noiseadaptor.study import study
from noiseadaptor.study.config import StudyConfig
from noiseadaptor.study.statistics import holm, paired_difference, summarize, t_interval
from noiseadaptor.study.study import load_cells, run_study


def test_t_interval_and_paired_test_by_hand():
    # [1, 2, 3, 4]: mean 2.5, sd sqrt(5/3) = 1.290994; t(0.975, 3) = 3.182446 (tables) -> 3.182446 * 1.290994 / 2
    s = t_interval([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["half_width"] == pytest.approx(2.054260, abs=1e-5)
    # differences [1, 2, 3, 3]: mean 2.25, sd 0.957427, t = 2.25 / (0.957427 / 2); two-sided p from the
    # closed-form Student-t CDF with 3 degrees of freedom: F(t) = 1/2 + (u / (1 + t^2/3) + atan u) / pi, u = t/sqrt 3
    d = paired_difference([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 1.0])
    assert d["mean"] == 2.25 and d["half_width"] == pytest.approx(3.182446 * 0.957427 / 2, abs=1e-5)
    t = 2.25 / (0.9574271 / 2)
    u = t / math.sqrt(3)
    assert d["p_value"] == pytest.approx(2 * (0.5 - (u / (1 + t * t / 3) + math.atan(u)) / math.pi), rel=1e-5)
    assert t_interval([0.7])["half_width"] is None and paired_difference([1.0], [0.5])["p_value"] is None


def _tiny(**kwargs):
    return StudyConfig.from_dict(
        {
            "dataset": "digits",
            "model": "small-cnn",
            "methods": ("na", "no-noise"),
            "seeds": (0, 1),
            "float_epochs": 1,
            "epochs": 1,
            "T": 4,
            "test_images": 60,
            "batch_size": 128,
            "variants": ("cos2",),
            **kwargs,
        }
    )


def test_methods_of_one_seed_see_the_same_batches_and_calibration_batch(tmp_path, monkeypatch):
    from noiseadaptor.study import cell as experiment

    seen = {}
    real_fit, real_init = experiment.fit, experiment.init_scales

    def fit(model, data, epochs, **kwargs):
        key = kwargs.get("desc", "")
        seen.setdefault(key, []).extend(y.sum().item() for _, y in data)
        return real_fit(model, data, epochs, **kwargs)

    def init_scales(model, batch):
        seen.setdefault("calibration", []).append(batch[1].tolist())
        return real_init(model, batch)

    monkeypatch.setattr(experiment, "fit", fit)
    monkeypatch.setattr(experiment, "init_scales", init_scales)
    run_study(_tiny(seeds=(3,), variants=()), tmp_path, log=lambda *a: None)
    assert seen["QAT na seed 3"] == seen["QAT no-noise seed 3"]
    first, second = seen["calibration"]
    assert first == second


class _Augmented(torch.utils.data.Dataset):
    """Images with a random shift drawn from the default generator, as RandomCrop/flip draw in a loader."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)

    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.roll(self.x[i], int(torch.randint(-2, 3, ())), dims=-1), self.y[i]


def _batches_seen(method: str, seed: int) -> list[torch.Tensor]:
    from noiseadaptor.study.cell import train_quantized

    torch.manual_seed(0)
    float_model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    torch.manual_seed(seed)
    data = torch.utils.data.DataLoader(_Augmented(), batch_size=16, shuffle=True)
    seen = []

    def record(module, args):
        if module.training:
            seen.append(args[0].clone())

    hook = float_model[0].register_forward_pre_hook(record)
    try:
        run = RunConfig(method=method, p=2)
        train_quantized(float_model, run.method_info.quant(run), data, None, 2, 0.05, 5e-4, seed, progress=False)
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("method", ["na", "dual-phase", "qcfs[noise=uniform]", "na[noise=gaussian]"])
def test_a_noisy_method_sees_bit_identical_batches_to_a_noiseless_one(method, monkeypatch):
    """Exact pairing: the noise draws (uniform, gaussian, Bernoulli masks) come from the quantizers' own
    stream, so the augmentation of every batch after the first is that of the method that draws none."""
    plain, noisy = _batches_seen("no-noise", 5), _batches_seen(method, 5)
    assert len(plain) == len(noisy) == 8
    assert all(torch.equal(a, b) for a, b in zip(plain, noisy))
    # the test can fail: noise drawn from the default generator shifts the augmentation
    from noiseadaptor.study import cell as experiment

    monkeypatch.setattr(experiment, "seed_noise", lambda model, seed: None)
    shifted = _batches_seen(method, 5)
    assert torch.equal(shifted[0], plain[0]) and not all(torch.equal(a, b) for a, b in zip(plain, shifted))


def test_a_killed_study_continues_where_it_stopped(tmp_path, monkeypatch):
    straight = run_study(_tiny(), tmp_path / "straight", log=lambda *a: None)
    real_cell, calls = study._cell, []

    def dies_on_the_third(*args, **kwargs):
        calls.append(args[1:3])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_cell(*args, **kwargs)

    monkeypatch.setattr(study, "_cell", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_study(_tiny(), tmp_path / "killed", log=lambda *a: None)
    monkeypatch.setattr(study, "_cell", real_cell)
    cells = sorted(p.name for p in (tmp_path / "killed" / "cells").glob("*.json"))
    assert cells == ["na-seed0.json", "no-noise-seed0.json"]
    resumed = run_study(_tiny(), tmp_path / "killed", log=lambda *a: None)
    for a, b in ((straight, resumed),):
        assert json.dumps(a["rows"], sort_keys=True) == json.dumps(b["rows"], sort_keys=True)
    # the schema: per row and T the seeds' values and interval; differences against the baseline
    row = resumed["rows"]["na+cos2"]
    assert row["pre_steps"] == 2 and row["T_total"]["4"] == 6  # honest T: main steps + pre-steps
    assert len(row["snn_accuracy"]["1"]["values"]) == 2
    assert (
        set(resumed["differences"]) == {"na", "na+cos2"}
        and "p_value" in resumed["differences"]["na"]["snn_accuracy"]["2"]
    )
    # the mechanism paired too: per seed, the row's mean per-layer conversion error minus the baseline's
    cells = {(c["method"], c["seed"]): c for c in load_cells(tmp_path / "killed")}

    def mean_error(method, row, seed):
        errors = cells[(method, seed)]["rows"][row]["layer_error"]["3"]
        return sum(errors.values()) / len(errors)

    seeds = resumed["differences"]["na+cos2"]["seeds"]
    by_hand = [mean_error("na", "na+cos2", s) - mean_error("no-noise", "no-noise", s) for s in seeds]
    assert resumed["differences"]["na+cos2"]["mean_layer_error"]["3"]["values"] == pytest.approx(by_hand)
    # and at the same energy: the row's top-1 read (linearly) at the energy the baseline spent by T
    import numpy as np

    at_energy = resumed["differences"]["na"]["snn_accuracy_at_base_energy"]
    for t in map(str, range(1, 5)):
        by_hand = []
        for s in seeds:
            ours, theirs = cells[("na", s)]["rows"]["na"], cells[("no-noise", s)]["rows"]["no-noise"]
            energy = [ours["energy_pj_per_sample"][str(k)] for k in range(1, 5)]
            target = theirs["energy_pj_per_sample"][t]
            accuracy = [ours["snn_accuracy"][str(k)] for k in range(1, 5)]
            inside = energy[0] <= target <= energy[-1]
            by_hand.append(np.interp(target, energy, accuracy) - theirs["snn_accuracy"][t] if inside else None)
        if None in by_hand:
            assert t not in at_energy
        else:
            assert at_energy[t]["values"] == pytest.approx(by_hand)
    assert at_energy  # some T inside every seed's curve
    json.loads((tmp_path / "killed" / "compare.json").read_text())  # valid JSON
    with pytest.raises(ValueError, match="other settings"):
        run_study(_tiny(T=8), tmp_path / "killed", log=lambda *a: None)


def test_layer_error_and_agreement_against_a_brute_force_count():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(30, 6)
    q = prepare(net, QuantConfig(p=2)).eval()
    init_scales(q, x)
    snn = convert(q)
    T = 5
    r = simulate(snn, [(x, torch.zeros(30, dtype=torch.long))], T=T, progress=False, reference=q)
    # brute force: step by step, each layer's outputs and the summed prediction, against the ANN
    ann, outs = {}, {name: [] for name, _ in snn.neurons()}
    hooks = [
        layer.register_forward_hook(lambda m, a, o, name=name: ann.__setitem__(name, o))
        for name, layer in quantizers(q)
    ]
    hooks += [
        n.register_forward_hook(lambda m, a, o, name=name: outs[name].append(o.clone())) for name, n in snn.neurons()
    ]
    with torch.no_grad():
        prediction = q(x).argmax(1)
        snn.reset()
        logits = [snn(x) for _ in range(T)]
    for h in hooks:
        h.remove()
    for t in range(1, T + 1):
        summed = torch.stack(logits[:t]).sum(0)
        assert r.agreement[t] == pytest.approx((summed.argmax(1) == prediction).float().mean().item())
        for name, n in snn.neurons():
            mean = torch.stack(outs[name][:t]).mean(0)
            expected = ((mean - ann[name]).abs() / n.threshold).mean().item()
            assert r.layer_error[t][name] == pytest.approx(expected, rel=1e-5)


def test_a_method_that_diverges_leaves_the_other_pairs_standing():
    config = StudyConfig(methods=("na", "no-noise", "qcfs"), seeds=(0, 1), T=2, test_images=10)
    steps = {"1": 0.5, "2": 0.6}
    row = {"snn_accuracy": steps, "agreement": steps, "layer_error": {"1": {"a": 0.1}, "2": {"a": 0.1}},
           "pre_steps": 0}  # fmt: skip
    cells = [
        {"method": m, "seed": s, "ann_accuracy": 0.7, "rows": {m: row}} for m in ("na", "no-noise") for s in (0, 1)
    ]
    cells += [{"method": "qcfs", "seed": s, "diverged": "epoch 1: threshold <= 0", "rows": {}} for s in (0, 1)]
    summary = summarize(config, cells)
    assert summary["complete_seeds"] == [] and "qcfs" not in summary["rows"]  # no seed had all three
    assert summary["differences"]["na"]["seeds"] == [0, 1] and "qcfs" not in summary["differences"]


def test_a_method_with_its_own_lr_is_trained_again_when_it_changes(tmp_path, monkeypatch):
    out = tmp_path / "study"
    run_study(_tiny(), out, log=lambda *a: None)
    trained, real_cell = [], study._cell
    monkeypatch.setattr(study, "_cell", lambda *a, **k: trained.append((a[1].method, a[1].seed)) or real_cell(*a, **k))
    config = _tiny(method_lr=("no-noise=0.01",))
    summary = run_study(config, out, log=lambda *a: None)  # only no-noise's cells are redone
    assert sorted(trained) == [("no-noise", 0), ("no-noise", 1)]
    assert json.loads((out / "cells" / "no-noise-seed0.json").read_text())["lr"] == 0.01
    assert summary["study"]["method_lrs"] == {"na": config.run.lr, "no-noise": 0.01}
    assert "no-noise 0.01" in study_table(summary)
    for bad in (("qcfs=0.1",), ("na=0",), ("na",)):
        with pytest.raises(ValueError, match="METHOD=LR"):
            _tiny(method_lr=bad)


def test_processes_sharing_a_study_split_its_cells(tmp_path, hold_lock):
    holder = hold_lock(tmp_path / "cells" / "na-seed1.json")  # another process is on this cell
    lines = []
    run_study(_tiny(variants=()), tmp_path, log=lines.append)
    holder.kill()
    holder.wait()
    assert "[na seed 1] another process is training it: skipped here" in lines
    assert not (tmp_path / "cells" / "na-seed1.json").exists() and (tmp_path / "cells" / "no-noise-seed1.json").exists()
    run_study(_tiny(variants=()), tmp_path, log=lines.append)
    assert (tmp_path / "cells" / "na-seed1.json").exists()
    assert [c["seed"] for c in load_cells(tmp_path)].count(1) == 2
    # a process that named only seed 0 still summarises every cell of the folder
    summary = run_study(_tiny(variants=(), seeds=(0,)), tmp_path, log=lines.append)
    assert summary["complete_seeds"] == [0, 1] and summary["rows"]["na"]["seeds"] == [0, 1]
    # and the folder's study.json names every seed asked for, so `--report` (which reads it) sees them all
    assert json.loads((tmp_path / "study.json").read_text())["seeds"] == [0, 1]


def test_a_method_spelled_with_its_settings_is_data():
    from noiseadaptor.methods import get_method

    variant = get_method("qcfs[ noise=uniform ,gradient_window=clip]")
    assert variant.name == "qcfs[gradient_window=clip,noise=uniform]"  # canonical: sorted, no spaces
    quant = variant.quant(RunConfigLike(p=3))
    assert (quant.p, quant.noise, quant.gradient_window, quant.scale_grad) == (3, "uniform", "clip", "qcfs")
    assert get_method("na[scale_grad=batch]") is get_method("na")  # only what differs from the preset
    old = get_method("na[scale_grad=numel,scale_decay=true]")
    assert old.quant(RunConfigLike(p=2)).scale_grad == "numel" and "scale" not in old.optimizer_preset().no_decay
    assert "scale" in get_method("qcfs[scale_decay=false]").optimizer_preset(lr=0.01).no_decay
    # p replaces the run's for this method alone, and stays in the name even where it equals the run's
    assert get_method("na[p=4]").quant(RunConfigLike(p=2)).p == 4
    assert get_method("na[p=2]").name == "na[p=2]" and get_method("na[p=2]").quant(RunConfigLike(p=3)).p == 2
    assert get_method("na[p=4]").banner(RunConfigLike(p=2)) == ", p=4"
    for bad, message in (
        ("na[scale_grad=len]", "scale_grad must be one of"),
        ("na[p=4.5]", "QuantConfig.p"),
        ("na[p=0]", "QuantConfig.p"),
        ("na[q=4]", "is not KEY=VALUE with KEY one of"),
        ("na[noise]", "is not KEY=VALUE"),
        ("asgl[noise=none]", "only quantization methods"),
        ("na[scale_decay=yes]", "scale_decay is true or false"),
        ("na[noise=none,noise=uniform]", "given twice"),
        ("nah", "unknown method"),
    ):
        with pytest.raises(ValueError, match=message):
            get_method(bad)


class RunConfigLike:
    def __init__(self, p):
        self.p, self.quant_noise_p = p, 0.1


def test_variants_join_corrections_with_a_plus():
    from noiseadaptor.study.config import variant_row

    assert variant_row("negative+cos4").options == {"negative_spikes": True, "offset_spikes": 4}
    assert variant_row("srp2+negative").options == {"srp": 2, "negative_spikes": True}
    for bad, message in (("cos4+srp4", "both two-stage"), ("cos2+cos4", "cos twice"), ("negative+phase2", "unknown")):
        with pytest.raises(ValueError, match=message):
            variant_row(bad)
    # one spelling per row, whatever the order given: a contrast names it as the study does
    config = _tiny(variants=("cos4+negative", "phase2", "negative+cos4"), contrasts=("na+negative+cos4:na",))
    assert config.variants == ("negative+cos4", "phase2")
    from noiseadaptor.study.config import split_row

    assert split_row("na[p=3]+negative+cos4") == ("na[p=3]", "negative+cos4") and split_row("na") == ("na", "")
    with pytest.raises(ValueError, match="a method, then"):
        split_row("na[p=3]negative")


def test_a_study_over_p_trains_and_converts_each_method_at_its_own_p(tmp_path):
    with pytest.raises(ValueError, match="methods na and na\\[p=2\\] train the same network here"):
        _tiny(methods=("na", "na[p=2]"), baseline="na")  # the study's p is 2: one network, trained twice
    config = _tiny(methods=("na[p=1]", "na[p=3]"), baseline="na[p=3]", seeds=(0,), variants=("negative+cos2",),
                   variant_methods=("na[p=3]",))  # fmt: skip
    summary = run_study(config, tmp_path, log=lambda *a: None)
    cells = {c["method"]: c for c in load_cells(tmp_path)}
    assert {m: c["quant"]["p"] for m, c in cells.items()} == {"na[p=1]": 1, "na[p=3]": 3}
    # its checkpoint rebuilds each at its own p (evaluate and export read it so), and the SNN's threshold is p * s
    from noiseadaptor.runconfig import load_run

    for method, p in (("na[p=1]", 1), ("na[p=3]", 3)):
        loaded = load_run(tmp_path / "qat" / f"{method}-seed0.pt")
        qs = [q for _, q in quantizers(loaded.model)]
        assert qs and {q.p for q in qs} == {p}
        neurons = [m for m in convert(loaded.model).modules() if isinstance(m, IFNeuron)]
        assert torch.allclose(neurons[0].threshold, p * qs[0].scale)
    # a joined variant is one simulation with both corrections
    cell = next(c for c in load_cells(tmp_path) if c["method"] == "na[p=3]")
    row = cell["rows"]["na[p=3]+negative+cos2"]
    corrections = row["corrections"]
    assert corrections["negative_spikes"] is True and corrections["offset_spikes_pre_steps"] == 2
    assert set(summary["differences"]) == {"na[p=1]", "na[p=3]+negative+cos2"}


def test_study_cells_record_their_settings_and_are_trained_again_under_others(tmp_path):
    config = _tiny(methods=("na", "qcfs[noise=uniform]"), baseline="na", seeds=(0,), variants=(),
                   method_lr=("qcfs[noise=uniform]=0.01",), contrasts=("qcfs[noise=uniform]:na",))  # fmt: skip
    summary = run_study(config, tmp_path, log=lambda *a: None)
    cells = {c["method"]: c for c in load_cells(tmp_path)}
    assert cells["qcfs[noise=uniform]"]["quant"]["noise"] == "uniform" and cells["qcfs[noise=uniform]"]["lr"] == 0.01
    assert cells["na"]["quant"]["scale_grad"] == "batch" and "scale" in cells["na"]["optimizer"]["no_decay"]
    assert set(summary["contrasts"]) == {"qcfs[noise=uniform] - na"}
    assert summary["contrasts"]["qcfs[noise=uniform] - na"]["snn_accuracy"]["1"]["values"] == pytest.approx(
        summary["differences"]["qcfs[noise=uniform]"]["snn_accuracy"]["1"]["values"]
    )
    # a cell whose record says other settings (here: trained with decay on s) is trained again, not reused
    path = tmp_path / "cells" / "na-seed0.json"
    cell = json.loads(path.read_text())
    cell["optimizer"]["no_decay"] = ["width"]
    path.write_text(json.dumps(cell))
    logged = []
    run_study(config, tmp_path, log=logged.append)
    assert any("other settings (optimizer)" in line for line in logged)
    assert "scale" in json.loads(path.read_text())["optimizer"]["no_decay"]


def test_holm_adjustment_by_hand():
    # sorted 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04); None is left out of the family
    assert holm([0.04, None, 0.01, 0.02]) == pytest.approx([0.04, None, 0.03, 0.04])
    assert holm([0.5, 0.6]) == [1.0, 1.0]


def test_the_plotted_accuracy_band_stays_within_what_accuracy_can_be():
    stats = {"1": {"mean": 0.99, "half_width": 0.05}, "2": {"mean": 0.01, "half_width": 0.05}}
    mean, low, high = report._band(stats, [1, 2], 100.0, (0.0, 100.0))
    assert mean == pytest.approx([99.0, 1.0]) and max(high) == 100.0 and min(low) == 0.0
    assert low[0] == pytest.approx(94.0) and high[1] == pytest.approx(6.0)


def test_run_is_a_study_of_one_seed_and_its_checkpoints_are_run_descriptions(tmp_path, capsys):
    """`run` and `compare` parse into one StudyConfig over RunConfig: the same settings give the same cell,
    bit for bit, and every checkpoint they write records a RunConfig that rebuilds the network."""
    from noiseadaptor.cli import build_parser, main
    from noiseadaptor.cli.common import study_config
    from noiseadaptor.io.checkpoint import load_checkpoint
    from noiseadaptor.runconfig import load_run

    flags = ["--model", "small-cnn", "--methods", "na", "--float-epochs", "1", "--float-lr", "0.05", "--epochs", "1",
             "--batch-size", "64", "--T", "4", "--test-images", "0", "--no-progress"]  # fmt: skip
    run_flags = [f for f in flags if f not in ("--test-images", "0", "--no-progress")]
    assert main(["run", *run_flags, "--seed", "2", "--out", str(tmp_path / "run")]) == 0
    said = capsys.readouterr().err  # off a terminal, each epoch says its time and what is left (stderr)
    assert "[float] epoch 1/1: " in said and "s/epoch)" in said and "[QAT na seed 2] epoch 1/1" in said
    assert main(["compare", "--dataset", "digits", *flags, "--baseline", "na", "--seeds", "2",
                 "--out", str(tmp_path / "compare")]) == 0  # fmt: skip
    ran, compared = (json.loads((tmp_path / d / "cells" / "na-seed2.json").read_text()) for d in ("run", "compare"))
    for cell in (ran, compared):
        cell.pop("seconds")
    assert ran == compared
    parser = build_parser()[1]["compare"]
    config = study_config(parser.parse_args(["--dataset", "digits", *flags, "--baseline", "na", "--seeds", "2"]))
    assert StudyConfig.from_dict(config.to_dict()) == config  # study.json round-trips
    for path in (tmp_path / "run" / "float.pt", tmp_path / "run" / "qat" / "na-seed2.pt"):
        state = load_checkpoint(path)
        loaded = load_run(path)
        assert loaded.config.to_dict() == state["config"]  # exactly the config, nothing added or dropped
    assert loaded.config == dataclasses.replace(config.cell_run("na", 2), num_classes=10, in_channels=1,
                                                image_size=8)  # fmt: skip


def _hand_cell(method, seed, accuracy):
    steps = {"1": accuracy, "2": accuracy}
    row = {"snn_accuracy": steps, "agreement": steps, "layer_error": {"1": {"a": 0.1}, "2": {"a": 0.1}}, "pre_steps": 0}
    return {"method": method, "seed": seed, "ann_accuracy": accuracy, "rows": {method: row}}


def test_the_report_reads_right_at_the_edges_of_its_statistics():
    """Zero variance, one seed, identical seeds and accuracy near 100 %, on hand-made studies."""
    four = StudyConfig.from_dict({"methods": ["na", "no-noise"], "seeds": [0, 1, 2, 3], "T": 2})
    one_image = [_hand_cell("na", s, 0.9 + 0.01 * s + 1 / 359) for s in range(4)]
    text = study_table(summarize(four, one_image + [_hand_cell("no-noise", s, 0.9 + 0.01 * s) for s in range(4)]))
    # one image better on every seed: a difference with no spread has no t-test; no "± 0.00", no p of 1e-42
    assert "na - no-noise   0.28 [the same on every seed]" in text and "e-" not in text
    lines = text.splitlines()
    header = lines[lines.index("") + 2]
    assert header.split() == ["difference", "T=1", "T=2"]  # every difference table has its column headers
    row = lines[lines.index("") + 3]
    assert row.index("0.28 [the same on every seed]", 20) == header.index("T=2")  # columns line up
    # identical seeds: an interval of zero width is the mean alone
    same = [_hand_cell(m, s, 0.5) for m in ("na", "no-noise") for s in range(4)]
    assert "na                         50.00           50.00           50.00" in study_table(summarize(four, same))
    # one seed: the accuracy alone, and the difference says why it has no test
    single = StudyConfig.from_dict({"methods": ["na", "no-noise"], "seeds": [0], "T": 2})
    text = study_table(summarize(single, [_hand_cell("na", 0, 0.999), _hand_cell("no-noise", 0, 0.998)]))
    assert "99.90           99.90" in text and "0.10 [one seed]" in text and not re.search(r"\d ± ", text)
    # near 100 %: an interval that would pass 100 % is shown clipped, as [low, 100.00]
    near = [_hand_cell("na", s, a) for s, a in enumerate((0.99, 1.0, 1.0, 0.98))]
    text = study_table(summarize(four, near + [_hand_cell("no-noise", s, 0.9) for s in range(4)]))
    na_row = next(line for line in text.splitlines() if line.startswith("na "))
    assert "99.25 [" in na_row and ", 100.00]" in na_row and "±" not in na_row


def test_each_network_chooses_its_exit_rule_on_training_images_no_network_trained_on(tmp_path, monkeypatch):
    from noiseadaptor.data import get_dataset, hold_out

    trained_on = []
    real_loader = study._train_loader

    def recording(run, splits, device):
        trained_on.append(set(splits.train.indices))
        return real_loader(run, splits, device)

    monkeypatch.setattr(study, "_train_loader", recording)
    rules = ("confidence=0.6", "confidence=0.9", "margin=0.5")
    config = _tiny(variants=(), exit=rules, exit_holdout=50, exit_tolerance=0.02)
    summary = run_study(config, tmp_path, log=lambda *a: None)
    held = set(hold_out(get_dataset("digits"), 50)[1].indices)
    assert len(trained_on) == 5 and all(
        not (s & held) and len(s) + 50 == len(get_dataset("digits").train) for s in trained_on
    )  # fmt: skip  the float net and every cell
    for cell in load_cells(tmp_path):
        row = cell["rows"][cell["method"]]
        choice = row["exit_choice"]
        assert choice["images"] == 50 and [e["rule"] for e in row["exits"]] == [e["rule"] for e in choice["exits"]]
        # the choice, transcribed: the smallest mean T among the rules within the tolerance of the fixed T there
        good = [e for e in choice["exits"] if e["accuracy"] >= choice["accuracy_at_T"] - 0.02]
        best = (
            min(good, key=lambda e: (e["mean_T"], -e["accuracy"]))
            if good
            else max(choice["exits"], key=lambda e: e["accuracy"])
        )
        assert choice["rule"] == best["rule"] and choice["mean_T"] == best["mean_T"]
    cells = {(c["method"], c["seed"]): c["rows"][c["method"]] for c in load_cells(tmp_path)}
    for method in ("na", "no-noise"):
        e = summary["rows"][method]["exit"]
        for i, seed in enumerate(e["seeds"]):
            row = cells[(method, seed)]
            chosen = next(x for x in row["exits"] if x["rule"] == row["exit_choice"]["rule"])
            fixed_T = min(4, math.ceil(chosen["mean_T"] - 1e-9))
            assert e["fixed"]["mean_T"]["values"][i] == fixed_T
            assert e["adaptive_minus_fixed"]["accuracy"]["values"][i] == pytest.approx(
                chosen["accuracy"] - row["snn_accuracy"][str(fixed_T)]
            )
            ann = row["ann_energy_pj_per_sample"]
            # the same mean latency: images split between floor and ceil of the mean T, transcribed
            low, high = math.floor(chosen["mean_T"]), math.ceil(chosen["mean_T"])
            w = chosen["mean_T"] - low
            for key, scale in (("snn_accuracy", 1), ("energy_pj_per_sample", ann)):
                mixed = ((1 - w) * row[key][str(low)] + w * row[key][str(high)]) / scale
                name = {"snn_accuracy": "accuracy", "energy_pj_per_sample": "energy"}[key]
                assert e["matched"][name]["values"][i] == pytest.approx(mixed)
            assert e["matched"]["mean_T"]["values"][i] == pytest.approx(chosen["mean_T"])
            assert e["adaptive_minus_full"]["energy"]["values"][i] == pytest.approx(
                (chosen["energy_pj_per_sample"] - row["energy_pj_per_sample"]["4"]) / ann
            )
    assert "per-image early exit: each network's rule chosen on 50 held-out training images" in study_table(summary)
    # chosen again from the cells' held-out results: the cells' own tolerance gives their choice; any larger one
    # a rule at most as slow there
    from noiseadaptor.study.statistics import early_exit

    data = [cells[("na", s)] for s in summary["rows"]["na"]["seeds"]]
    same = early_exit(data, summary["rows"]["na"]["seeds"], 4, tolerance=0.02)
    assert same["rules"] == summary["rows"]["na"]["exit"]["rules"]
    looser = early_exit(data, summary["rows"]["na"]["seeds"], 4, tolerance=0.5)
    for d, rule in zip(data, looser["rules"]):
        held = {e["rule"]: e["mean_T"] for e in d["exit_choice"]["exits"]}
        assert held[rule] == min(held.values())
    with pytest.raises(ValueError, match="exit rule 'confidence'"):
        _tiny(exit=("confidence",))
    with pytest.raises(ValueError, match="exit_tolerance"):
        _tiny(exit=rules, exit_tolerance=1.5)
    with pytest.raises(ValueError, match="exit_holdout only matter with exit rules"):
        _tiny(exit_holdout=50)  # a setting that would be ignored
    with pytest.raises(ValueError, match="hold out 1 to 1437 training images"):
        run_study(_tiny(exit=rules, exit_holdout=5000), tmp_path / "too-many", log=lambda *a: None)
    assert not (tmp_path / "too-many").exists()  # refused before the folder holds a study it cannot run
    from noiseadaptor.cli import build_parser
    from noiseadaptor.cli.common import study_config

    args = build_parser()[1]["compare"].parse_args(["--exit", "confidence=0.9", "margin=0.2,min_steps=2"])
    assert [r.label for r in study_config(args).exit_rules()] == ["confidence>=0.9", "margin>=0.2, from step 2"]


@pytest.mark.parametrize(
    "mean_T, low, high, w",
    [(2.5, 2, 3, 0.5), (2.0, 2, 2, 0), (4.0, 4, 4, 0), (1.0, 1, 1, 0), (2.9999999999, 3, 3, 0), (3.25, 3, 4, 0.25)],
)
def test_fixed_T_at_the_same_mean_latency_mixes_the_two_whole_T_around_it(mean_T, low, high, w):
    from noiseadaptor.study.statistics import early_exit

    T = 4
    accuracy = {str(t): 0.5 + 0.1 * t for t in range(1, T + 1)}
    energy = {str(t): 10.0 * t for t in range(1, T + 1)}
    cells = [
        {"exit_choice": {"rule": "confidence>=0.9", "images": 10, "tolerance": 0.005},
         "exits": [{"rule": "confidence>=0.9", "mean_T": mean_T, "accuracy": 0.8 + 0.01 * seed,
                    "energy_pj_per_sample": 10.0 * mean_T}],
         "snn_accuracy": accuracy, "energy_pj_per_sample": energy, "ann_energy_pj_per_sample": 100.0}
        for seed in range(3)
    ]  # fmt: skip
    e = early_exit(cells, [0, 1, 2], T)
    # by hand: a share w of the images run `high` steps, the rest `low`; ceil(mean T) alone is `fixed`
    assert e["matched"]["mean_T"]["mean"] == pytest.approx((1 - w) * low + w * high)
    assert e["matched"]["accuracy"]["mean"] == pytest.approx((1 - w) * accuracy[str(low)] + w * accuracy[str(high)])
    assert e["matched"]["energy"]["mean"] == pytest.approx(((1 - w) * energy[str(low)] + w * energy[str(high)]) / 100)
    assert e["fixed"]["mean_T"]["mean"] == high and e["full"]["mean_T"]["mean"] == T
    assert e["adaptive_minus_matched"]["accuracy"]["mean"] == pytest.approx(
        0.81 - ((1 - w) * accuracy[str(low)] + w * accuracy[str(high)])
    )


def test_float_per_seed_gives_each_seed_its_own_float_network(tmp_path):
    one = {"methods": ("na",), "baseline": "na", "variants": ()}
    shared = run_study(_tiny(seeds=(0,), **one), tmp_path / "shared", log=lambda *a: None)
    lines = []
    own = run_study(_tiny(seeds=(0, 1), float_per_seed=True, **one), tmp_path / "own", log=lines.append)
    # seed 0's float network is trained at seed 0 either way: its cells are the shared study's
    for method in ("na",):
        a = json.loads((tmp_path / "shared" / "cells" / f"{method}-seed0.json").read_text())
        b = json.loads((tmp_path / "own" / "cells" / f"{method}-seed0.json").read_text())
        assert json.dumps(a["rows"], sort_keys=True) == json.dumps(b["rows"], sort_keys=True)
    first, second = (torch.load(tmp_path / "own" / f"float-seed{s}.pt", weights_only=False)["model"] for s in (0, 1))
    assert any(not torch.equal(first[k], second[k]) for k in first)  # seed 1 starts from another float network
    assert not (tmp_path / "own" / "float.pt").exists()
    assert set(own["float"]["per_seed"]) == {"0", "1"} and own["float"]["ann_accuracy"]["n"] == 2
    assert shared["float"]["ann_accuracy"] == own["float"]["per_seed"]["0"]["ann_accuracy"]
    assert "[float-seed1]" in "\n".join(lines)
    assert "each seed's cells start from its own float network: ANN" in study_table(own)
    with pytest.raises(ValueError, match="other settings"):  # a folder of one float network is not reused
        run_study(_tiny(seeds=(0,), float_per_seed=True, **one), tmp_path / "shared", log=lambda *a: None)


def test_accuracy_at_an_energy_reads_the_curve_between_two_T_and_never_beyond():
    from noiseadaptor.study.statistics import _accuracy_at_energy

    row = {"energy_pj_per_sample": {"1": 10.0, "2": 20.0, "3": 20.0, "4": 40.0},
           "snn_accuracy": {"1": 0.5, "2": 0.6, "3": 0.7, "4": 0.9}}  # fmt: skip
    steps = ["1", "2", "3", "4"]
    assert _accuracy_at_energy(row, 10.0, steps) == 0.5  # the first T's energy: its accuracy
    assert _accuracy_at_energy(row, 15.0, steps) == pytest.approx(0.55)  # halfway between T = 1 and 2
    assert _accuracy_at_energy(row, 30.0, steps) == pytest.approx(0.8)  # between T = 3 and 4
    assert _accuracy_at_energy(row, 40.0, steps) == 0.9
    assert _accuracy_at_energy(row, 9.9, steps) is None and _accuracy_at_energy(row, 40.1, steps) is None
