"""Integer deployment (noiseadaptor.snn.integer): every weight, bias, threshold and pre-charge on its neuron
layer's grid, checked against the rule written out by hand for a VGG-style chain and a residual block."""

import pytest
import torch
from nets import residual_net, spiking, vgg_net
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor import simulate
from noiseadaptor.snn.integer import integer_network


def _on_grid(value, step, levels=None):
    k = value / step
    assert torch.allclose(k, k.round(), atol=1e-3), (k - k.round()).abs().max()
    if levels is not None:
        assert k.round().abs().max() <= levels
    return k.round()


def _neuron_by_hand(ours, original, unit, analog):
    """The threshold max(1, round(theta / unit)) units; the pre-charge round(u0 * theta / unit) units, plus
    half a unit of headroom where the neuron's input is integer (not for the analog input's neurons)."""
    k = max(1, round(float(original.threshold) / unit))
    assert float(ours.threshold) == pytest.approx(k * unit, rel=1e-6)
    start = round(float(original.initial_membrane * original.threshold) / unit)
    assert float(ours.initial_membrane * ours.threshold) == pytest.approx((start + (not analog) / 2) * unit, rel=1e-5)
    return float(ours.threshold)


def _weights_by_hand(ours, original, worth, unit, levels):
    """W = round(W * worth / unit) * unit / worth, clipped at the levels; the bias round(b / unit) * unit."""
    k = (original.weight * worth / unit).round().clamp(-levels, levels)
    assert torch.allclose(ours.weight, k * unit / worth, rtol=1e-5, atol=1e-7)
    assert torch.allclose(ours.bias, (original.bias / unit).round() * unit, rtol=1e-5, atol=1e-7)


def test_a_chain_by_hand_four_bits():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    snn = spiking(vgg_net(), x)
    before = {k: v.clone() for k, v in snn.state_dict().items()}
    net, units = integer_network(snn, 4, x)
    old, new = snn.net.get_submodule, net.net.get_submodule
    worth = 1.0  # the analog input
    # conv 0 -> IF 2 -> conv 3 -> IF 5 -> avgpool 2x2 -> conv 7 -> IF 9 -> avgpool -> linear 12 -> IF 13 -> linear 14
    for layer, neuron, pool in (("0", "2", 1), ("3", "5", 1), ("7", "9", 4), ("12", "13", 4), ("14", None, 1)):
        worth /= pool
        unit = float(old(layer).weight.detach().abs().max()) * worth / 7  # the finest step at which every weight fits
        assert units[neuron or "output"] == pytest.approx(unit, rel=1e-6)
        _weights_by_hand(new(layer), old(layer), worth, unit, 7)
        assert _on_grid(new(layer).weight, unit / worth, 7).abs().max() == 7
        if neuron:
            worth = _neuron_by_hand(new(neuron), old(neuron), unit, analog=layer == "0")
    assert all(torch.equal(v, snn.state_dict()[k]) for k, v in before.items())  # the input is left as it was
    with pytest.raises(ValueError, match="at least 2"):
        integer_network(snn, 1, x)


def test_a_residual_block_shares_one_unit_and_a_shortcut_brings_whole_units():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    snn = spiking(residual_net(), x)
    net, units = integer_network(snn, 8, x)
    old, new = snn.net.get_submodule, net.net.get_submodule
    stem = float(new("stem.2").threshold)
    # block 0: conv2 + identity shortcut (the stem's spikes): the unit is lowered to theta_stem / m
    relu1 = float(new("layers.0.relu1").threshold)
    unit = units["layers.0.relu2"]
    top = float(old("layers.0.conv2").weight.detach().abs().max()) * relu1 / 127
    assert unit == pytest.approx(stem / (stem // top), rel=1e-6) and unit >= top
    _weights_by_hand(new("layers.0.conv2"), old("layers.0.conv2"), relu1, unit, 127)
    # block 1: conv2 and the 1x1 shortcut conv share one unit, set by the larger of the two
    relu1, relu2 = float(new("layers.1.relu1").threshold), float(new("layers.0.relu2").threshold)
    unit = units["layers.1.relu2"]
    top = max(float(old("layers.1.conv2").weight.detach().abs().max()) * relu1,
              float(old("layers.1.shortcut.0").weight.detach().abs().max()) * relu2) / 127  # fmt: skip
    assert unit == pytest.approx(top, rel=1e-6)
    _weights_by_hand(new("layers.1.conv2"), old("layers.1.conv2"), relu1, unit, 127)
    _weights_by_hand(new("layers.1.shortcut.0"), old("layers.1.shortcut.0"), relu2, unit, 127)
    # 8 bits: the integer network gives nearly the float network's outputs
    loader = DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=8)
    ours, theirs = (simulate(n, loader, T=16, progress=False, synops=False) for n in (snn, net))
    assert abs(ours.accuracy[16] - theirs.accuracy[16]) <= 0.25


def test_what_cannot_be_put_on_a_grid_is_refused():
    x = torch.randn(2, 1, 8, 8)
    snn = spiking(vgg_net(), x)
    snn.neurons()[0][1].negative_spikes = True
    with pytest.raises(ValueError, match="negative spikes"):
        integer_network(snn, 8, x)
