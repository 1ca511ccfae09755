"""Integer deployment (noiseadaptor.snn.integer): every weight, bias, threshold and pre-charge on its neuron
layer's grid, checked against the rule written out by hand for a VGG-style chain and a residual block."""

import math

import pytest
import torch
from nets import residual_net, spiking, vgg_net
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor import simulate
from noiseadaptor.snn.integer import integer_network


def _neuron_by_hand(ours, original, unit, analog):
    """The threshold max(1, round(theta / unit)) units; the pre-charge round(u0 * theta / unit) units, plus
    half a unit of headroom where the neuron's input is integer (not for the analog input's neurons)."""
    k = max(1, round(float(original.threshold) / unit))
    assert float(ours.threshold) == pytest.approx(k * unit, rel=1e-6)
    start = round(float(original.initial_membrane * original.threshold) / unit)
    assert float(ours.initial_membrane * ours.threshold) == pytest.approx((start + (not analog) / 2) * unit, rel=1e-5)
    return float(ours.threshold)


def _finest(layer, worth, levels):
    return float(layer.weight.detach().abs().max()) * worth / levels


def _weights_by_hand(ours, original, worth, unit, levels):
    """The layer's own grid: its finest step max|W| * worth / levels, rounded up to n whole units; W = k * n
    units (k = round(W * worth / (n * unit))); the bias round(b / unit) units."""
    n = math.ceil(_finest(original, worth, levels) / unit - 1e-6)
    k = (original.weight * worth / (n * unit)).round()
    assert ours.weight_scale == n and ours.unit == pytest.approx(unit, rel=1e-9)
    assert torch.allclose(ours.weight, k * n * unit / worth, rtol=1e-5, atol=1e-9)
    assert levels * 15 / 16 - 1 <= k.abs().max() <= levels  # at most 1/16 coarser than the finest that fits
    assert torch.allclose(ours.bias, (original.bias / unit).round() * unit, rtol=1e-5, atol=1e-9)


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
        unit = _finest(old(layer), worth, 7) / 16  # one layer into it: 1/16 of its finest step
        if layer == "0":  # the analog input's neurons: that rounded down to a power of two
            unit = 2.0 ** math.floor(math.log2(unit))
        assert units[neuron or "output"] == pytest.approx(unit, rel=1e-9)
        _weights_by_hand(new(layer), old(layer), worth, unit, 7)
        assert new(layer).weight_scale == 16 or layer == "0"
        if neuron:
            worth = _neuron_by_hand(new(neuron), old(neuron), unit, analog=layer == "0")
    assert all(torch.equal(v, snn.state_dict()[k]) for k, v in before.items())  # the input is left as it was
    with pytest.raises(ValueError, match="weight bits must be 2 to 16"):
        integer_network(snn, 1, x)


def test_a_residual_block_shortcut_brings_whole_units_and_each_conv_keeps_its_grid():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    snn = spiking(residual_net(), x)
    net, units = integer_network(snn, 8, x)
    old, new = snn.net.get_submodule, net.net.get_submodule
    # block 0: conv2 + identity shortcut (the stem's spikes): the unit lowered so a stem spike is whole units
    stem, relu1 = float(new("stem.2").threshold), float(new("layers.0.relu1").threshold)
    unit = units["layers.0.relu2"]
    assert unit == pytest.approx(stem / math.ceil(stem / (_finest(old("layers.0.conv2"), relu1, 127) / 16)), rel=1e-6)
    _weights_by_hand(new("layers.0.conv2"), old("layers.0.conv2"), relu1, unit, 127)
    _neuron_by_hand(new("layers.0.relu2"), old("layers.0.relu2"), unit, analog=False)
    # block 1: conv2 and the 1x1 shortcut conv into one neuron, each on its own grid in that neuron's units
    relu1, relu2 = float(new("layers.1.relu1").threshold), float(new("layers.0.relu2").threshold)
    unit = units["layers.1.relu2"]
    finest = min(_finest(old("layers.1.conv2"), relu1, 127), _finest(old("layers.1.shortcut.0"), relu2, 127))
    assert unit == pytest.approx(finest / 16, rel=1e-6)
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


def test_a_layer_of_zero_weights_takes_its_unit_from_the_threshold():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    snn = spiking(vgg_net(), x)
    snn.net.get_submodule("3").weight.data.zero_()  # a pruned layer: no weight step to take a unit from
    net, units = integer_network(snn, 4, x)
    theta = float(snn.net.get_submodule("5").threshold)
    assert units["5"] == pytest.approx(theta / 7 / 16, rel=1e-9)
    assert float(net.net.get_submodule("5").threshold) == pytest.approx(theta, rel=1e-9)  # 112 whole units
    bias, ours = snn.net.get_submodule("3").bias, net.net.get_submodule("3").bias
    assert (ours - bias).abs().max() <= units["5"] / 2 + 1e-7
