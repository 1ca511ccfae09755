"""Dual-phase conversion (paper 002): Bernoulli Quant-Noise in Phase I, coarse and fine calibration in
Phase II."""

import pytest
import torch
from torch import nn

from noiseadaptor import QuantConfig, convert, init_scales, prepare, quantize, quantizers, requantize
from noiseadaptor.ann.models import create_model
from noiseadaptor.snn.calibrate import calibrate_initial_membrane, calibrate_weights, dual_phase_calibrate, if_rate


def test_bernoulli_quant_noise_passes_a_fraction_through_unrounded():
    torch.manual_seed(0)
    q = prepare(nn.Sequential(nn.ReLU()), QuantConfig.dual_phase(p=4, quant_noise_p=0.25))
    v = torch.rand(200_000) * 3.7 + 0.01
    out = q.train()(v)
    rounded = torch.floor(v + 0.5).clamp(0, 4)
    passed = out != rounded
    assert passed.float().mean().item() == pytest.approx(0.25 * (1 - (v == rounded).float().mean().item()), abs=0.01)
    assert torch.allclose(out[passed], v[passed])  # the pass-through elements are the identity here
    assert torch.equal(q.eval()(v), rounded)  # evaluation: always quantized
    with pytest.raises(ValueError, match="quant_noise_p"):
        QuantConfig(noise="bernoulli", quant_noise_p=1.5)


def test_bernoulli_mask_gradients():
    v = torch.tensor([0.3, 0.3, 1.4, 1.4, 5.0], requires_grad=True)
    s = torch.tensor(1.0, requires_grad=True)
    mask = torch.tensor([True, False, True, False, False])
    out = quantize(v, s, p=4, mask=mask)
    assert torch.allclose(out, torch.tensor([0.0, 0.3, 1.0, 1.4, 4.0]))
    out.sum().backward()
    assert torch.equal(v.grad, torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]))
    # d/ds: round(z) - z where quantized inside, 0 where passed through inside, p above the range
    assert s.grad.item() == pytest.approx((0 - 0.3) + 0 + (1 - 1.4) + 0 + 4)


def test_clip_source_ann_and_its_qc_ann_keep_the_threshold():
    torch.manual_seed(0)
    q = prepare(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), QuantConfig.clip())
    x = torch.randn(256, 4)
    init_scales(q, x)
    ((_, layer),) = quantizers(q)
    theta = layer.threshold.item()
    pre = q.get_submodule("0")(x)
    for mode in (q.train(), q.eval()):  # no rounding and no noise in either mode
        assert torch.allclose(mode(x), pre.clamp(0, theta))
    v = torch.tensor([-1.0, 0.5 * theta, 2.0 * theta], requires_grad=True)
    layer(v).sum().backward()
    assert v.grad.tolist() == [0.0, 1.0, 0.0] and layer.scale.grad.item() == pytest.approx(1.0)  # d/dtheta, p = 1
    requantize(q, QuantConfig.dual_phase(p=4))
    assert layer.p == 4 and layer.threshold.item() == pytest.approx(theta) and layer.config.rounding
    with pytest.raises(ValueError, match="no noise"):
        QuantConfig(rounding=False, noise="uniform")


def one_layer(p=4, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    q = prepare(model, QuantConfig.dual_phase(p=p, quant_noise_p=0.0))
    x = torch.randn(512, 6)
    init_scales(q, x[:256])
    return q.eval(), x


def mean_gap(snn, q, x, T):
    ((name, neuron),) = snn.neurons()
    ((_, quantizer),) = quantizers(q)
    ann = []
    quantizer.register_forward_hook(lambda m, a, o: ann.append(o))
    q(x)
    rate = if_rate(snn.net.get_submodule("0")(x), neuron.threshold, neuron.initial_membrane, T, len(x))
    return (ann[0] - rate).mean(0)


def test_if_rate_is_the_spiking_network():
    q, x = one_layer()
    snn = convert(q)
    ((_, neuron),) = snn.neurons()
    neuron.initial_membrane = torch.rand(5)
    linear = snn.net.get_submodule("0")
    snn.reset()
    T = 3
    spikes = sum(snn.net.get_submodule("1")(linear(x)) for _ in range(T)) / T
    assert torch.allclose(if_rate(linear(x), neuron.threshold, neuron.initial_membrane, T, len(x)), spikes)


def test_coarse_calibration_moves_the_snn_mean_onto_the_qc_ann():
    # identity layer, s = 1, p = T = 4, inputs inside the clip range; without the pre-charge the SNN
    # floors where the QC-ANN rounds: a mean gap of half a level that Eq. 16 removes in one step
    torch.manual_seed(0)
    layer = nn.Linear(5, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(5))
        layer.bias.zero_()
    q = prepare(nn.Sequential(layer, nn.ReLU()), QuantConfig.dual_phase(p=4, quant_noise_p=0.0)).eval()
    x = torch.rand(2048, 5) * 3.9 + 0.05
    snn = convert(q)
    ((name, neuron),) = snn.neurons()
    neuron.initial_membrane = torch.tensor(0.0)
    before = mean_gap(snn, q, x, T=4)
    assert torch.allclose(before, torch.full((5,), 0.5), atol=0.05)
    shifts = calibrate_initial_membrane(snn, q, x, T=4, num_samples=1024)
    assert list(shifts) == [name] and neuron.initial_membrane.shape == (5,)  # one start per neuron
    assert mean_gap(snn, q, x, T=4).abs().max() < 0.05  # on all 2048 samples, half of them unseen


def test_fine_calibration_lowers_the_held_out_kl():
    q, x = one_layer(seed=1)
    T = 4
    snn = convert(q)
    snn.neurons()[0][1].initial_membrane = torch.tensor(0.0)  # a representation error to calibrate away
    weight = snn.net.get_submodule("0").weight.detach().clone()
    report = calibrate_weights(snn, q, x, T=T, num_samples=512, epochs=15, lr=5e-3, holdout=0.25)
    ((layer, r),) = report.items()
    assert r["loss_after"] < 0.5 * r["loss_before"]  # held-out samples: never seen by the optimizer
    assert not torch.equal(snn.net.get_submodule("0").weight, weight)
    assert r["parameters"] == 6 * 5 + 5 + 5  # weight, bias, one initial membrane per neuron


def test_dual_phase_calibrate_on_a_residual_network():
    torch.manual_seed(0)
    q = prepare(create_model("cifar-resnet20", num_classes=4), QuantConfig.dual_phase(p=4)).eval()
    x = torch.randn(40, 3, 8, 8)
    init_scales(q, x[:32])
    snn = convert(q)
    report = dual_phase_calibrate(snn, q, x, T=4, num_samples=40, epochs=1, batch_size=20)
    assert set(report) == {"coarse", "fine"}
    assert list(report["fine"]) == [name for name, _ in snn.neurons()]
    assert all(r["loss_after"] <= r["loss_before"] for r in report["fine"].values())
    with pytest.raises(TypeError, match="unexpected"):
        dual_phase_calibrate(snn, q, x, T=4, lr_typo=1)
    with pytest.raises(ValueError, match="T must be a positive"):
        calibrate_initial_membrane(snn, q, x, T=0)


def test_authors_options_learned_sigmoid_surrogate_and_a_final_coarse_pass():
    q, x = one_layer(seed=2)
    snn = convert(q)
    snn.neurons()[0][1].initial_membrane = torch.tensor(0.0)
    report = dual_phase_calibrate(
        snn,
        q,
        x,
        T=4,
        num_samples=256,
        epochs=3,
        lr=5e-3,
        surrogate="sigmoid",
        surrogate_width=0.8,
        learn_width=True,
        final_coarse=True,
    )
    assert set(report) == {"coarse", "fine", "final_coarse"}
    (r,) = report["fine"].values()
    assert r["parameters"] == 6 * 5 + 5 + 5 + 1 and r["surrogate_width"] != 0.8  # the width trained too
    assert r["loss_after"] <= r["loss_before"]
    with pytest.raises(ValueError, match="surrogate"):
        dual_phase_calibrate(snn, q, x, T=4, surrogate="triangle")


def test_the_final_coarse_pass_is_selected_on_held_out_labelled_data():
    q, x = one_layer(seed=2)
    calibration, held = x[:256], x[256:]

    def uncalibrated():
        snn = convert(q)
        snn.neurons()[0][1].initial_membrane = torch.tensor(0.0)  # half a level off: the pass moves it
        return snn

    def only_the_final_pass(snn, labels):
        return dual_phase_calibrate(
            snn, q, calibration, T=4, coarse=False, fine=False, final_coarse=True, select_on=[(held, labels)]
        )

    # labelled as the QC-ANN: the pass brings the SNN closer to it, and is kept
    snn = uncalibrated()
    report = only_the_final_pass(snn, q(held).argmax(1))
    assert report["selection"]["kept"] and report["selection"]["after"] > report["selection"]["before"]
    assert snn.neurons()[0][1].initial_membrane.shape == (5,)
    # labelled as the uncalibrated SNN answers (top-1 100 % before): any change lowers it, and is undone
    snn = uncalibrated()
    snn.reset()
    labels = snn.run(held, 4).sum(0).argmax(1)
    snn.reset()
    report = only_the_final_pass(snn, labels)
    assert report["selection"] == {"before": 1.0, "after": report["selection"]["after"], "kept": False}
    assert report["selection"]["after"] < 1.0 and torch.equal(snn.neurons()[0][1].initial_membrane, torch.tensor(0.0))
    with pytest.raises(ValueError, match="final_coarse"):
        dual_phase_calibrate(snn, q, calibration, T=4, select_on=[(held, labels)])


def test_weight_threshold_balancing_is_the_authors_percentile():
    from noiseadaptor import balance_thresholds

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 20), nn.ReLU(), nn.Linear(20, 9), nn.ReLU(), nn.Linear(9, 3))
    q = prepare(net, QuantConfig.dual_phase(p=4))
    batches = [torch.randn(50, 6) for _ in range(3)]
    thresholds = balance_thresholds(q, batches)
    # the authors' getMaxAct: per batch, quantile(|a|, 0.995) of each layer's float activation, then the max
    with torch.no_grad():
        first = [torch.relu(net[0](b)) for b in batches]
        second = [torch.relu(net[2](a)) for a in first]
    expected = [max(torch.quantile(a.flatten(), 0.995).item() for a in acts) for acts in (first, second)]
    assert list(thresholds.values()) == pytest.approx(expected, rel=1e-6)
    assert [layer.threshold.item() for _, layer in quantizers(q)] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="percentile"):
        balance_thresholds(q, batches, percentile=0)


def test_dual_phase_through_the_cli(tmp_path, capsys):
    import json

    from noiseadaptor.cli import main
    from noiseadaptor.io.checkpoint import load_checkpoint

    common = ["--dataset", "digits", "--model", "small-cnn", "--workers", "0", "--no-progress", "--batch-size", "64"]
    out = tmp_path / "dp"
    # --epochs 0 checkpoints the untrained copy: the ablation's "copy weights" / "Phase II only"
    assert (
        main(
            [
                "train",
                *common,
                "--method",
                "dual-phase",
                "--p",
                "4",
                "--quant-noise-p",
                "0.2",
                "--epochs",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["config"]["method"] == "dual-phase" and state["config"]["quant_noise_p"] == 0.2
    assert state["epoch"] == 0
    assert (
        main(
            [
                "evaluate",
                str(out / "checkpoint.pt"),
                "--T",
                "4",
                "--calibrate",
                "both",
                "--calibration-samples",
                "32",
                "--calibration-epochs",
                "1",
                "--final-coarse",
                "--select-images",
                "64",
                "--no-progress",
                "--no-synops",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "[phase II] both calibration at T=4" in printed and "on 64 training images" in printed
    result = json.loads((out / "evaluation.json").read_text())["results"]["dual-phase+phase2"]
    assert set(result["calibration"]["fine"]) and result["calibration"]["samples"] == 32
    assert set(result["calibration"]["selection"]) == {"before", "after", "kept"}
    # more calibration samples than the split holds: said, and the count recorded is what was used
    assert main(["evaluate", str(out / "checkpoint.pt"), "--T", "2", "--calibrate", "coarse", "--calibration-samples",
                 "100000", "--no-progress", "--no-synops", "--out", str(tmp_path / "many")]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "the training split has 1438 images" in captured.err and "on 1438 training images" in captured.out
    many = json.loads((tmp_path / "many" / "evaluation.json").read_text())["results"]["dual-phase+phase2"]
    assert many["calibration"]["samples"] == 1438
    with pytest.raises(SystemExit):
        main(["evaluate", str(out / "checkpoint.pt"), "--calibrate", "coarse", "--select-images", "8"])
    assert "--select-images chooses whether to keep the final coarse pass" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", *common, "--method", "na", "--quant-noise-p", "0.2", "--out", str(tmp_path / "x")])
    assert "--quant-noise-p: not a setting of method na" in capsys.readouterr().err
    old_recipe = tmp_path / "old.yaml"  # a 0.1 recipe: noise_p, the old name of quant_noise_p
    old_recipe.write_text("method: dual-phase\np: 4\nnoise_p: 0.3\nepochs: 0\n")
    assert main(["train", *common, "--recipe", str(old_recipe), "--out", str(tmp_path / "old-recipe")]) == 0
    assert load_checkpoint(tmp_path / "old-recipe" / "checkpoint.pt")["config"]["quant_noise_p"] == 0.3
    with pytest.raises(SystemExit):  # the old flag is gone
        main(["train", *common, "--method", "dual-phase", "--noise-p", "0.3", "--out", str(tmp_path / "flag")])
    # the paper's chain: a clip source ANN, then its QC-ANN with the learned thresholds
    assert main(["train", *common, "--method", "clip", "--epochs", "1", "--out", str(tmp_path / "clip")]) == 0
    source = load_checkpoint(tmp_path / "clip" / "checkpoint.pt")
    assert (
        main(
            [
                "train",
                *common,
                "--method",
                "dual-phase",
                "--p",
                "4",
                "--epochs",
                "0",
                "--init",
                str(tmp_path / "clip" / "checkpoint.pt"),
                "--out",
                str(tmp_path / "qc"),
            ]
        )
        == 0
    )
    qc = load_checkpoint(tmp_path / "qc" / "checkpoint.pt")
    scales = [k for k in source["model"] if k.endswith("scale")]
    assert scales and all(torch.allclose(4 * qc["model"][k], 2 * source["model"][k]) for k in scales)  # p 2 -> 4
    with pytest.raises(SystemExit):
        main(
            [
                "train",
                *common,
                "--method",
                "float",
                "--init",
                str(tmp_path / "clip" / "checkpoint.pt"),
                "--out",
                str(tmp_path / "y"),
            ]
        )
    assert "is a quantized (clip) network" in capsys.readouterr().err
