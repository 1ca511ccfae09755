import math
import shutil

import pytest
import torch

from noiseadaptor import QuantConfig, QuantReLU, quantize


@pytest.mark.parametrize("v", [-0.7, -0.01, 0.0, 0.13, 0.5, 0.74, 1.0, 1.26, 1.99, 2.0, 2.3, 5.0])
def test_theorem1_noisy_mean_is_clipped_relu(v):
    """E[s*round(clip(v/s + eps, 0, p))] = clip(v, 0, s*p) for eps ~ U(-0.5, 0.5) (supplementary Thm. 1)."""
    torch.manual_seed(0)
    q = QuantReLU(QuantConfig(p=3), scale=0.7).train()
    x = torch.full((400_000,), v)
    mean = q(x).mean().item()
    assert mean == pytest.approx(min(max(v, 0.0), 0.7 * 3), abs=0.004)


def test_gradients_match_eq7_eq8_by_hand():
    s, p = torch.tensor(0.5, requires_grad=True), 2
    v = torch.tensor([-0.3, 0.1, 0.37, 0.9, 1.2], requires_grad=True)
    eps = torch.tensor([0.2, 0.1, -0.2, 0.3, -0.4])
    # z = v/s + eps = [-0.4, 0.3, 0.54, 2.1, 2.0]
    out = quantize(v, s, p, eps)
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    out.backward(upstream)
    # Eq. 7: 1 strictly inside (0, p), 0 at or beyond the bounds.
    assert v.grad.tolist() == [0.0, 2.0, 3.0, 0.0, 0.0]
    # Eq. 8: 0 below; round(z) - z inside; p at or above: 2*(0 - 0.3) + 3*(1 - 0.54) + 4*2 + 5*2
    assert s.grad.item() == pytest.approx(18.78, abs=1e-5)


@pytest.mark.parametrize("rule", ["batch", "numel", "lsq", "qcfs", "none"])
def test_each_scale_gradient_normalisation_is_its_formula(rule):
    """Each QuantConfig.scale_grad against its formula, written out here for a (batch 4, 3x5x5) activation."""
    torch.manual_seed(0)
    v = torch.randn(4, 3, 5, 5)
    p = 2
    formula = {
        "batch": 1 / math.sqrt(len(v) * p),  # Algorithm 1 line 14: sqrt(len(x_clip) * p), len = first dimension
        "numel": 1 / math.sqrt(4 * 3 * 5 * 5 * p),  # every element of the batch tensor
        "lsq": 1 / math.sqrt(3 * 5 * 5 * p),  # LSQ: g = 1/sqrt(N_F * Q_P), N_F the features of one sample
        "qcfs": 1 / p**2,  # SGD on lam = p*s
        "none": 1.0,
    }[rule]
    q = QuantReLU(QuantConfig(p=p, noise="none", scale_grad=rule), scale=0.5)
    q(v).sum().backward()
    raw = torch.tensor(0.5, requires_grad=True)
    quantize(v, raw, p).sum().backward()
    assert q.scale.grad.item() == pytest.approx(raw.grad.item() * formula, rel=1e-6)


def test_noise_adaptor_defaults_to_the_batch_normalisation_and_no_decay_on_s():
    from noiseadaptor.methods import get_method

    assert QuantConfig().scale_grad == "batch" == QuantConfig.noise_adaptor().scale_grad
    na = get_method("na")
    assert "scale" in na.optimizer_preset().no_decay and "scale" in get_method("no-noise").optimizer_preset().no_decay
    assert "scale" not in get_method("qcfs").optimizer_preset().no_decay  # QCFS's code decays its threshold
    with pytest.raises(ValueError, match="scale_grad must be one of batch, numel, lsq"):
        QuantConfig(scale_grad="algorithm1")


def test_noise_only_in_training():
    torch.manual_seed(0)
    q = QuantReLU(QuantConfig(p=2), scale=1.0)
    x = torch.linspace(-1, 3, 1000)
    q.eval()
    assert torch.equal(q(x), q(x))
    assert torch.equal(q(x), torch.floor(x + 0.5).clamp(0, 2))
    q.train()
    assert not torch.equal(q(x), q(x))


def test_noise_kinds_and_amplitude():
    torch.manual_seed(0)
    x = torch.zeros(200_000)
    for kind, amplitude in [("uniform", 1.0), ("uniform", 2.0), ("gaussian", 1.0), ("gaussian", 0.5)]:
        eps = QuantReLU(QuantConfig(p=2, noise=kind, noise_amplitude=amplitude)).train().sample_noise(x)
        assert eps.var().item() == pytest.approx(amplitude**2 / 12, rel=0.02)
    assert QuantReLU(QuantConfig.no_noise()).train().sample_noise(x) is None


def test_cpu_uniform_noise_is_uniform_independent_and_seeded():
    """The eager CPU noise is cut from 63-bit integer draws (four 15-bit values each): it must still be
    U(-a/2, a/2) in every lane of the cut, uncorrelated between neighbours, and follow manual_seed."""
    from noiseadaptor.ann.quantizer import _uniform

    torch.manual_seed(1)
    u = _uniform(torch.empty(400_003), -0.5, 0.5)  # not a multiple of 4
    assert u.shape == (400_003,) and u.dtype == torch.float32
    assert -0.5 < u.min().item() and u.max().item() < 0.5
    lanes = u[:400_000].view(-1, 4)
    for lane in lanes.T:  # each quarter of the 64-bit draw, the sign-bit one included
        assert lane.mean().item() == pytest.approx(0.0, abs=0.005)
        assert torch.histc(lane, bins=10, min=-0.5, max=0.5).div(len(lane)).sub(0.1).abs().max() < 0.005
    assert torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].abs() < 0.01
    torch.manual_seed(1)
    assert torch.equal(u, _uniform(torch.empty(400_003), -0.5, 0.5))
    assert _uniform(torch.empty(3, 5, 7, dtype=torch.float64), 2.0, 3.0).dtype == torch.float64


def test_ties_round_half_up_like_the_spiking_neuron():
    q = QuantReLU(QuantConfig(p=3, noise="none"), scale=1.0).eval()
    assert q(torch.tensor([0.5, 1.5, 2.5])).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_p_is_a_clear_value_error(bad):
    with pytest.raises(ValueError, match="positive integer"):
        QuantConfig(p=bad)


def test_bad_options_are_clear():
    with pytest.raises(ValueError, match="noise"):
        QuantConfig(noise="laplace")
    with pytest.raises(ValueError, match="noise_amplitude"):
        QuantConfig(noise_amplitude=-1)
    with pytest.raises(ValueError, match="gradient_window"):
        QuantConfig(gradient_window="ste")


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="torch.compile on a CPU needs a C++ compiler"
)
def test_fused_kernels_match_eager(monkeypatch):
    """The compiled forward/backward (the CUDA default, NOISEADAPTOR_FUSED=1 elsewhere) compute what the
    eager ones do, given the same noise and mask (checked here with the CPU compiler)."""
    from noiseadaptor.ann import quantizer

    monkeypatch.setenv("NOISEADAPTOR_FUSED", "1")
    monkeypatch.setattr(quantizer, "_fused", {})
    torch.manual_seed(0)
    v = torch.randn(4, 3, 5, 5) * 2
    eps = torch.rand_like(v) - 0.5
    mask = torch.rand_like(v) > 0.3
    scale = torch.tensor(0.7)
    grad = torch.randn_like(v)
    fused_forward, fused_backward = quantizer._kernels(v)
    assert fused_forward is not quantizer._forward
    for m, window in ((None, "clip"), (mask, "clip"), (None, "rounding"), (mask, "rounding")):
        out, z, _ = fused_forward(v, scale, 2, eps, "none", 0.0, m)
        ref_out, ref_z, _ = quantizer._forward(v, scale, 2, eps, "none", 0.0, m)
        assert torch.allclose(out, ref_out) and torch.allclose(z, ref_z)
        grad_v, grad_s = fused_backward(grad, z, 2, m, window)
        ref_v, ref_s = quantizer._backward(grad, ref_z, 2, m, window)
        assert torch.equal(grad_v, ref_v) and torch.allclose(grad_s, ref_s, rtol=1e-5)
    # noise drawn inside the compiled kernel: still U(-1/2, 1/2) around v/s before rounding
    _, z, _ = fused_forward(v.new_zeros(100_000), scale, 2, None, "uniform", 1.0)
    assert -0.5 <= z.min().item() and z.max().item() <= 0.5 and abs(z.mean().item()) < 0.01


def test_the_old_name_of_the_pass_through_probability_served_its_release():
    import dataclasses

    with pytest.raises(TypeError, match="noise_probability"):
        QuantConfig(noise="bernoulli", noise_probability=0.2)
    # a copy with one change keeps that change (the InitVar alias silently undid it)
    assert dataclasses.replace(QuantConfig(quant_noise_p=0.1), quant_noise_p=0.3).quant_noise_p == 0.3
