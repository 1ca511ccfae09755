"""record() and the pictures of noiseadaptor.plot, checked by their data (not their pixels), and the
`noiseadaptor inspect` command that draws them from a checkpoint."""

import json

import pytest
import torch
from nets import residual_net, spiking, vgg_net
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor import QuantConfig, convert, init_scales, plot, prepare, record, simulate
from noiseadaptor.snn.recording import chosen_neurons


def _reference_if(inputs: torch.Tensor, threshold: float, start: float = 0.5):
    """Paper Eq. 1-2, step by step: u(t) = u(t-1) + I(t); s(t) = [u(t) >= theta]; u(t) -= s(t) theta, from
    u(0) = start * theta. Returns the spikes and u(t) before the reset, in units of theta."""
    u = torch.full_like(inputs[0], start * threshold)
    spikes, before = [], []
    for current in inputs:
        u = u + current
        s = (u >= threshold).to(u.dtype)
        spikes.append(s)
        before.append(u / threshold)
        u = u - s * threshold
    return torch.stack(spikes), torch.stack(before)


@pytest.mark.parametrize("make", [vgg_net, residual_net])
def test_record_follows_the_if_equations_in_every_layer(make):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    snn = spiking(make(), x)
    T = 10
    inputs = {}
    for name, neuron in snn.neurons():
        neuron.register_forward_pre_hook(lambda m, args, key=name: inputs.setdefault(key, []).append(args[0][0]))
    rec = record(snn, x[3], T=T, per_layer=20)
    assert rec.layers == [name for name, _ in snn.neurons()] and rec.output.shape == (T, 3)
    fired = 0
    for name, neuron in snn.neurons():
        assert len(inputs[name]) == T  # one call per step, a batch of one
        currents = torch.stack(inputs[name]).flatten(1)[:, rec.neurons[name]]
        spikes, before = _reference_if(currents, neuron.threshold.item())
        assert torch.equal(rec.spikes[name], spikes), name
        torch.testing.assert_close(rec.membrane[name], before, rtol=0, atol=1e-6)
        assert rec.size[name] == inputs[name][0].numel() and len(rec.neurons[name]) == min(20, rec.size[name])
        fired += bool(spikes.sum())
    assert fired == len(rec.layers)
    # the prediction per step is that of simulate on the same image
    result = simulate(snn, DataLoader(TensorDataset(x[3:4], rec.prediction()[-1:]), batch_size=1), T=T,
                      progress=False)  # fmt: skip
    assert result.accuracy[T] == 1.0
    assert all(n.membrane is None for _, n in snn.neurons())  # reset after


def test_chosen_neurons_spread_over_the_layer():
    assert chosen_neurons(5, 64).tolist() == [0, 1, 2, 3, 4]
    index = chosen_neurons(1000, 10)
    assert index[0] == 0 and index[-1] == 999 and len(index) == 10 and (index.diff() > 0).all()


def test_record_refuses_what_it_cannot_draw():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    snn = spiking(vgg_net(), x)
    with pytest.raises(ValueError, match="one image"):
        record(snn, x, T=2)
    with pytest.raises(TypeError, match="SpikingNetwork"):
        record(snn.net, x[0], T=2)
    with pytest.raises(ValueError, match="T"):
        record(snn, x[0], T=0)


def _points(collection):
    return sorted(map(tuple, collection.get_offsets().tolist()))


def test_the_raster_shows_every_recorded_spike_negative_ones_apart():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    snn = spiking(vgg_net(), x)
    for _, n in snn.neurons():
        n.negative_spikes = True
    rec = record(snn, x[0], T=16, per_layer=12)
    fig = plot.raster(rec)
    axes = fig.axes
    assert len(axes) == len(rec.layers)
    negatives = 0
    for ax, layer in zip(axes, rec.layers):
        spikes = rec.spikes[layer]
        drawn = {c.get_label(): _points(c) for c in ax.collections}
        for sign, label in ((1, "spike"), (-1, "negative spike")):
            step, neuron = (spikes == sign).nonzero(as_tuple=True)
            expected = sorted(zip((step + 1).tolist(), neuron.tolist()))
            assert drawn.get(label, []) == [tuple(map(float, p)) for p in expected], (layer, label)
        negatives += int((spikes == -1).sum())
    assert negatives > 0  # the case the red marks are for did occur


def test_the_traces_are_the_membranes_of_neurons_firing_half_the_steps():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    rec = record(spiking(residual_net(), x), x[1], T=12, per_layer=16)
    fig = plot.traces(rec, count=2)
    for ax, layer in zip(fig.axes, rec.layers):
        events = rec.spikes[layer].abs().sum(0)
        shown = plot.trace_neurons(rec, layer, 2)
        assert (events[shown[0]] - 6).abs() == (events - 6).abs().min()  # T / 2
        lines = [line for line in ax.get_lines() if line.get_label().startswith("neuron")]
        assert len(lines) == 2
        for line, i in zip(lines, shown):
            assert line.get_xdata().tolist() == list(range(1, 13))
            assert line.get_ydata().tolist() == rec.membrane[layer][:, i].tolist()
            assert line.get_label() == f"neuron {int(rec.neurons[layer][i])}"


def test_firing_rate_and_conversion_error_curves_are_the_simulations_numbers():
    torch.manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 3, (32,))
    q = prepare(vgg_net(), QuantConfig(p=2, noise="none")).eval()
    init_scales(q, x)
    result = simulate(convert(q), DataLoader(TensorDataset(x, y), batch_size=16), T=[1, 2, 4, 8, 16, 32],
                      progress=False, reference=q)  # fmt: skip
    for figure, values in ((plot.firing_rates(result), result.firing_rate),
                           (plot.conversion_error(result), result.layer_error)):  # fmt: skip
        lines = figure.axes[0].get_lines()
        layers = list(values[1])
        assert [line.get_label() for line in lines] == layers
        for line, layer in zip(lines, layers):
            assert line.get_xdata().tolist() == [1, 2, 4, 8, 16, 32]
            assert line.get_ydata().tolist() == [values[t][layer] for t in (1, 2, 4, 8, 16, 32)]
    # the error falls with T, as the conversion promises for a quantized ANN
    last = list(result.layer_error[1])[-1]
    assert result.layer_error[32][last] < result.layer_error[1][last]
    with pytest.raises(ValueError, match="reference"):
        plot.conversion_error(simulate(convert(q), [(x, y)], T=2, progress=False))


def test_inspect_writes_the_four_figures_and_their_data(tmp_path, capsys):
    from noiseadaptor.cli import main

    run = ["run", "--model", "small-cnn", "--methods", "na,no-noise", "--float-epochs", "1", "--epochs", "1",
           "--T", "2", "--no-progress", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(run) == 0
    checkpoint = tmp_path / "run" / "qat" / "na-seed0.pt"
    out = tmp_path / "inspect"
    args = ["inspect", str(checkpoint), "--image", "5", "--T", "6", "--neurons", "10", "--images", "40"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test image 5" in printed and "SNN accuracy on those images at T=6" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["conversion_error.png", "firing_rates.png", "inspect.json", "raster.png", "traces.png"]
    )
    data = json.loads((out / "inspect.json").read_text())
    assert data["image"] == 5 and data["T"] == 6 and data["images"] == 40
    assert len(data["prediction_per_step"]) == 6
    for layer, spikes in data["spikes"].items():
        assert len(spikes) == 6 and len(spikes[0]) == len(data["recorded_neurons"][layer]) <= 10
    assert set(data["layer_error"]["6"]) == set(data["spikes"])
    for bad, message in ((["--image", "100000"], "test split has 359 images"), (["--T", "0"], "--T")):
        with pytest.raises(SystemExit):
            main(["inspect", str(checkpoint), *bad, "--out", str(out)])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["inspect", str(tmp_path / "run" / "float.pt"), "--out", str(out)])
    assert "not converted" in capsys.readouterr().err
