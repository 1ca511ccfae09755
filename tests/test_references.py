"""Each method against a transcription of its reference: the paper's equations or the authors' public
code as it ran, rewritten here from their text (never imported). Where the library deliberately
differs, the test pins the difference."""

import math

import pytest
import torch
from torch import nn

from noiseadaptor import QuantConfig, QuantReLU, convert, prepare, quantize, quantizers
from noiseadaptor.snn.lif import DirectConfig, LIFNeuron


def _inclusive_clamp(y, low, high):
    """clamp whose gradient passes at both bounds (PyTorch's clamp gradient when the reference code ran)."""
    inside = (y >= low) & (y <= high)
    return torch.where(inside, y, y.detach().clamp(low, high))


def _straight_through(y, rounded):
    return y + (rounded - y).detach()


# -- Noise Adaptor: Eq. 5-8 and Algorithm 1 -----------------------------------------------------------


def _algorithm1(x, scale, eps, p):
    """Paper 000, Algorithm 1: forward and the hand-written backward (lines 9-14), line 14's normaliser
    sqrt(len(x_clip) * p) with len() as PyTorch, where the pseudo-code is written, computes it."""
    x_scale = x / scale + eps
    x_clip = torch.clamp(x_scale, 0, p)
    x_round = torch.floor(x_clip + 0.5)  # round half up: see test_ties_round_half_up_like_the_spiking_neuron
    out = x_round * scale

    def backward(grad_output):
        internal = ((x_clip > 0) ^ (x_clip >= p)).to(x.dtype)  # 0 < x_clip < p
        grad_activation = grad_output * internal
        grad_scale_elem = torch.floor(x_clip + 0.5) - x_clip * internal
        grad_scale = (grad_scale_elem * grad_output).sum() / math.sqrt(len(x_clip) * p)
        return grad_activation, grad_scale

    return out, backward


def test_noise_adaptor_is_algorithm1_and_eq7_eq8():
    torch.manual_seed(0)
    p, s = 2, torch.tensor(0.4)
    v = torch.randn(6, 50) * 0.8
    eps = torch.rand_like(v) - 0.5
    upstream = torch.randn_like(v)
    ref_out, ref_backward = _algorithm1(v, s, eps, p)
    ref_v, ref_s = ref_backward(upstream)

    v_ours, s_ours = v.clone().requires_grad_(), s.clone().requires_grad_()
    out = quantize(v_ours, s_ours, p, eps=eps, grad_factor=1 / math.sqrt(6 * p))
    out.backward(upstream)
    assert torch.allclose(out, ref_out, atol=1e-6)
    assert torch.equal(v_ours.grad, ref_v)
    assert s_ours.grad.item() == pytest.approx(ref_s.item(), rel=1e-5)
    # the module: Algorithm 1's normaliser over the batch (len of the activation), Eq. 7's window
    q = QuantReLU(QuantConfig(p=p), scale=0.4)
    assert q.config.gradient_window == "clip" and q.grad_factor(v) == 1 / math.sqrt(len(v) * p)


# -- QCFS: the authors' MyFloor as it ran -------------------------------------------------------------


def _qcfs_myfloor(x, lam, L):
    """putshua/SNN_conversion_QCFS modules.MyFloor: x/lam, a straight-through floor(x*L + 0.5)/L, then a
    clamp to [0, 1] (gradient at both bounds, as PyTorch then), times lam."""
    y = x / lam
    y = y * L + 0.5
    y = _straight_through(y, torch.floor(y))
    y = y / L
    y = _inclusive_clamp(y, 0, 1)
    return y * lam


def test_qcfs_is_the_authors_myfloor_forward_and_both_gradients():
    torch.manual_seed(0)
    L, lam0 = 4, 1.0
    s = lam0 / L
    z = torch.tensor([-0.9, -0.5, -0.3, 0.0, 0.2, 1.7, 3.9, 4.0, 4.4, 4.5, 5.3])  # z = x*L/lam
    x = torch.cat([z * lam0 / L, torch.randn(500) * 0.6])
    upstream = torch.rand_like(x) + 0.5

    x_ref, lam = x.clone().requires_grad_(), torch.tensor(lam0, requires_grad=True)
    ref = _qcfs_myfloor(x_ref, lam, L)
    ref.backward(upstream)

    q = QuantReLU(QuantConfig.qcfs(p=L), scale=s).train()
    x_ours = x.clone().requires_grad_()
    out = q(x_ours)
    out.backward(upstream)
    assert torch.allclose(out, ref.detach(), atol=1e-6)
    assert torch.equal(x_ours.grad, x_ref.grad)  # 1 for z in [-0.5, L + 0.5), else 0
    assert (x_ours.grad[:11] != 0).tolist() == [False] + [True] * 8 + [False, False]
    # SGD on lam (the reference) moves the threshold exactly as SGD on s with scale_grad "qcfs"
    lr = 0.1
    assert (s - lr * q.scale.grad.item()) * L == pytest.approx(lam0 - lr * lam.grad.item(), rel=1e-5)
    # the case: z = 4.4, L = 4 -> d/dlam = (round(z) - z)/L = -0.1 (the clip window gave 1.0)
    one = QuantReLU(QuantConfig.qcfs(p=4), scale=0.25).train()
    one(torch.tensor([4.4 * 0.25])).sum().backward()
    assert one.scale.grad.item() * 4 == pytest.approx(-0.1, abs=1e-6)  # d/dlam = d/ds * (1/p**2) * p


# -- Dual-phase: the authors' NoisyQC ----------------------------------------------------------------


def _noisy_qc(z, theta, T, quantize_mask):
    """Windere/snn-cvt-dual-phase NoisyQC in training: u = z*T/theta; u_hat = u + m*(R(u) - u) with a
    straight-through round R; theta * clamp(u_hat / T, 0, 1) (gradient at both bounds). m = 1: quantized
    (probability 1 - noise_prob)."""
    u = z * T / theta
    rounded = _straight_through(u, torch.floor(u + 0.5))  # ties up: see the tie test below
    u_hat = u + quantize_mask * (rounded - u)
    return theta * _inclusive_clamp(u_hat / T, 0, 1)


def test_dual_phase_is_the_authors_noisy_qc():
    torch.manual_seed(0)
    T, theta0 = 4, 2.0
    z = torch.randn(2000) * 1.5 + 1.0
    z[:8] = torch.tensor([-0.25, -0.2, 0.0, 2.0, 2.2, 2.25, 2.6, 3.0])  # u = -1, -0.5 (edge, quantized), ...
    mask = torch.rand_like(z) > 0.1
    mask[:8] = True
    upstream = torch.rand_like(z) + 0.5

    z_ref, theta = z.clone().requires_grad_(), torch.tensor(theta0, requires_grad=True)
    ref = _noisy_qc(z_ref, theta, T, mask.to(z.dtype))
    ref.backward(upstream)

    z_ours, s = z.clone().requires_grad_(), torch.tensor(theta0 / T, requires_grad=True)
    out = quantize(z_ours, s, T, mask=mask, gradient_window=QuantConfig.dual_phase(p=T).gradient_window)
    out.backward(upstream)
    assert torch.allclose(out, ref.detach(), atol=1e-6)
    assert torch.equal(z_ours.grad, z_ref.grad)
    assert s.grad.item() == pytest.approx(T * theta.grad.item(), rel=1e-5)  # d/ds = T * d/dtheta
    # the module trains theta = p*s by plain SGD: scale_grad "qcfs" (1/p**2), Bernoulli pass-through
    config = QuantConfig.dual_phase(p=T, quant_noise_p=0.1)
    assert (config.scale_grad, config.noise, config.quant_noise_p) == ("qcfs", "bernoulli", 0.1)


def test_deliberate_difference_ties_round_up_where_the_references_round_to_even():
    # torch.round (the dual-phase reference's R) sends 0.5 and 2.5 to 0 and 2; the quantizer sends them up,
    # as the IF neuron with a half-threshold start fires on u >= threshold (a one-layer ANN and SNN then
    # agree exactly at T = p).
    q = QuantReLU(QuantConfig.dual_phase(p=4), scale=1.0).eval()
    assert q(torch.tensor([0.5, 2.5])).tolist() == [1.0, 3.0]
    assert torch.round(torch.tensor([0.5, 2.5])).tolist() == [0.0, 2.0]


# -- ASGL: the authors' EfficientNoisySpikeII with the rectangle --------------------------------------


def test_asgl_spike_is_the_authors_noisy_spike_and_eq11():
    torch.manual_seed(0)
    width, spike_probability = 0.8, 0.7
    x = torch.randn(5000) * 0.6
    x[:4] = torch.tensor([-0.4, 0.0, 0.39, 0.41])
    upstream = torch.randn_like(x)

    neuron = LIFNeuron(DirectConfig.asgl(alpha=width, spike_noise_p=spike_probability)).train()
    x_ours = x.clone().requires_grad_()
    torch.manual_seed(1)
    out = neuron.spike(x_ours)
    out.backward(upstream)

    # Windere/ASGL-SNN model/activation.py: m ~ Bernoulli(1 - p_code), p_code = P(analog), so our noise_p
    # (the paper's Eq. 9-10 p, P(true spike)) is 1 - p_code; sigma_w(x) = clamp(x/w + 1/2, 0, 1);
    # y = sigma_w(x) + stopgrad(m * (Heaviside(x) - sigma_w(x)))
    torch.manual_seed(1)
    m = torch.bernoulli(torch.full_like(x, 1 - (1 - spike_probability)))
    x_ref, w = x.clone().requires_grad_(), torch.tensor(width, requires_grad=True)
    smooth = torch.clamp(x_ref / w + 0.5, 0, 1)
    ref = smooth + (m * ((x_ref >= 0).to(x.dtype) - smooth)).detach()
    ref.backward(upstream)
    assert torch.equal(out, ref.detach())
    assert torch.allclose(x_ours.grad, x_ref.grad)
    assert neuron.alpha.grad.item() == pytest.approx(w.grad.item(), rel=1e-5)
    # Eq. 11: dH/dalpha = -x/alpha**2 inside [-alpha/2, alpha/2], 0 outside
    inside = (x.abs() < width / 2).to(x.dtype)
    assert neuron.alpha.grad.item() == pytest.approx((upstream * -x / width**2 * inside).sum().item(), rel=1e-4)
    # evaluation: the pure Heaviside
    assert torch.equal(neuron.eval().spike(x), (x >= 0).to(x.dtype))


# -- COS: the authors' MPLayer pre-simulation rule ---------------------------------------------------


def _cos_initial_membrane(currents, rho):
    """hzc1208/ANN2SNN_COS MPLayer, in units of the threshold: from v = 0.5, rho steps of the layer's input
    sequence, recording the spike count, the lowest pre-reset potential at a spike (M_min), the highest
    potential without one (V_max, -1000 when none) and the residual; then v_init = 0.5 - val (one spike
    too many), 0.5 + val2 (too few) or 0.5, with val = M_min - 0.999 and val2 = 1.001 - V_max when above 1,
    else 1."""
    v = torch.full_like(currents[0], 0.5)
    count = torch.zeros_like(v)
    m_min = torch.full_like(v, 1000.0)
    v_max = torch.full_like(v, -1000.0)
    for t in range(rho):
        v = v + currents[t]
        spike = (v >= 1).to(v.dtype)
        m_min = torch.where(spike > 0, torch.minimum(m_min, v), m_min)
        v_max = torch.where(spike > 0, v_max, torch.maximum(v_max, v))
        count += spike
        v = v - spike
    val = torch.where(m_min - 0.999 > 1, m_min - 0.999, torch.ones_like(v))
    val2 = torch.where(1.001 - v_max > 1, 1.001 - v_max, torch.ones_like(v))
    start = torch.full_like(v, 0.5)
    start = torch.where((v < 0) & (count > 0), 0.5 - val, start)
    return torch.where(v >= 1, 0.5 + val2, start)


def _run_layer(currents, start):
    """Spikes (0/1) of IF neurons with threshold 1 over a current sequence, from `start`."""
    v, out = start.clone(), []
    for current in currents:
        v = v + current
        spike = (v >= 1).to(v.dtype)
        out.append(spike)
        v = v - spike
    return out


def test_offset_spikes_are_the_authors_cos_rule_layer_by_layer():
    from noiseadaptor.snn.corrections import calibrate_offsets

    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))
    q = prepare(net, QuantConfig(p=2)).eval()
    for _, layer in quantizers(q):
        layer.scale.data.fill_(0.5)  # threshold 1: the reference's units
    snn = convert(q)
    x, rho = torch.randn(9, 5) * 2, 4
    calibrate_offsets(snn, x, rho)
    first, second = (n.initial_membrane for _, n in snn.neurons())

    w1, w2 = net[0], net[2]
    with torch.no_grad():
        current1 = w1(x)
        start1 = _cos_initial_membrane([current1] * rho, rho)
        spikes1 = _run_layer([current1] * rho, start1)  # layer 2 sees layer 1's calibrated run
        start2 = _cos_initial_membrane([w2(s) for s in spikes1], rho)
    assert torch.allclose(first.expand_as(start1), start1, atol=1e-5)
    assert torch.allclose(second.expand_as(start2), start2, atol=1e-5)
    assert not torch.equal(start1, torch.full_like(start1, 0.5)) or not torch.equal(
        start2, torch.full_like(start2, 0.5)
    )


# -- SRP: the authors' MPLayer residual-membrane mask -----------------------------------------------


def _srp_reference(x, weights, thresholds, tau, T):
    """hzc1208/ANN2SNN_SRP MPLayer on a net of linear layers with IF neurons between them (the last layer
    reads out): each neuron from v = 0.5 (in thresholds) runs tau steps of its input / threshold, firing at
    v >= 1 and subtracting 1, emitting spike * threshold; at step tau, mask = v > 1e-3, v back to 0.5;
    from then on it emits spike * threshold * mask. Returns the masks and the readout of the T main steps."""

    def run(steps, masks):
        vs = [torch.full((x.shape[0], w.out_features), 0.5) for w in weights[:-1]]
        outputs = []
        for _ in range(steps):
            h = x
            for i, w in enumerate(weights[:-1]):
                vs[i] = vs[i] + w(h) / thresholds[i]
                spike = (vs[i] >= 1).to(x.dtype)
                vs[i] = vs[i] - spike
                h = spike * thresholds[i] * masks[i]
            outputs.append(weights[-1](h))
        return vs, outputs

    vs, _ = run(tau, [1.0] * (len(weights) - 1))
    masks = [(v > 1e-3).to(x.dtype) for v in vs]
    return masks, torch.stack(run(T, masks)[1])


def test_srp_is_the_authors_residual_membrane_mask():
    from noiseadaptor import simulate
    from noiseadaptor.snn.corrections import silence_by_residual

    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 3))
    q = prepare(net, QuantConfig(p=2)).eval()
    for (_, layer), scale in zip(quantizers(q), (0.4, 0.7)):
        layer.scale.data.fill_(scale)  # thresholds 0.8 and 1.4: the reference divides by them
    snn = convert(q)
    x, tau, T = torch.randn(32, 6) * 2, 3, 6
    with torch.no_grad():
        masks, readout = _srp_reference(x, [net[0], net[2], net[4]], [0.8, 1.4], tau, T)
        silence_by_residual(snn, x, tau)
        for (_, neuron), mask in zip(snn.neurons(), masks):
            assert torch.equal(neuron.output_mask, mask)
        assert 0 < sum(float(m.mean()) for m in masks) < len(masks)  # some neurons silenced, not all
        assert torch.allclose(snn.run(x, T), readout, atol=1e-5)
    y = torch.randint(0, 3, (32,))
    result = simulate(convert(q), [(x, y)], T=T, srp=tau, progress=False)
    expected = (readout.cumsum(0).argmax(-1) == y).float().mean(1)
    assert [result.accuracy[t] for t in range(1, T + 1)] == pytest.approx(expected.tolist())
    assert result.corrections["pre_steps"] == tau and not result.corrections["pre_steps_counted_in_T"]
    both = simulate(convert(q), [(x, y)], T=T, srp=tau, negative_spikes=True, progress=False)  # composes
    assert both.corrections["negative_spikes"] and both.corrections["srp_pre_steps"] == tau
    with pytest.raises(ValueError, match="choose one"):
        simulate(convert(q), [(x, y)], T=T, srp=tau, offset_spikes=2, progress=False)


def test_coarse_calibration_is_the_authors_step():
    """Windere/snn-cvt-dual-phase calibInitMemPoten: init_mem += T * (mean over samples of the ANN's layer
    output - mean over samples and steps of the SNN's), per neuron, layer by layer from the input."""
    from noiseadaptor.snn.calibrate import calibrate_initial_membrane

    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    q = prepare(net, QuantConfig.dual_phase(p=4, quant_noise_p=0.0)).eval()
    for _, layer in quantizers(q):
        layer.scale.data.fill_(0.25)  # threshold 1
    x, T = torch.rand(64, 4) * 2, 4
    snn = convert(q)
    calibrate_initial_membrane(snn, q, x, T=T, num_samples=64)
    with torch.no_grad():
        a1 = q.get_submodule("1")(net[0](x))  # the QC-ANN's activations, layer by layer
        a2 = q.get_submodule("3")(net[2](a1))
        start1 = torch.full((6,), 0.5)
        rate1 = torch.stack(_run_layer([net[0](x)] * T, start1.expand(64, 6))).mean(0)
        start1 = start1 + T * (a1.mean(0) - rate1.mean(0))  # the reference's update, in thresholds
        spikes1 = _run_layer([net[0](x)] * T, start1.expand(64, 6))  # layer 2 sees the calibrated layer 1
        currents2 = [net[2](s) for s in spikes1]
        start2 = torch.full((5,), 0.5)
        rate2 = torch.stack(_run_layer(currents2, start2.expand(64, 5))).mean(0)
        start2 = start2 + T * (a2.mean(0) - rate2.mean(0))
    first, second = (n.initial_membrane for _, n in snn.neurons())
    assert torch.allclose(first, start1, atol=1e-5) and torch.allclose(second, start2, atol=1e-5)
