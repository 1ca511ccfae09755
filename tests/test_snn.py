import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor import (
    IFNeuron,
    QuantConfig,
    SpikingNetwork,
    convert,
    evaluate,
    fit,
    init_scales,
    prepare,
    quantizers,
    simulate,
)
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import digits


@pytest.mark.parametrize("p", [1, 2, 3, 5])
def test_one_layer_snn_equals_quantized_ann_at_T_equal_p(p):
    """Constant input, no noise: spike count * threshold / T after T = p steps equals the quantized
    ANN output. Ties (v/s exactly k + 1/2) go up in both (u >= threshold fires; round-half-up); the
    inputs are kept 1e-3 away from them so float rounding cannot flip one."""
    torch.manual_seed(p)
    layer = nn.Linear(6, 50)
    q = prepare(nn.Sequential(layer, nn.ReLU()), QuantConfig(p=p, noise="none")).eval()
    quantizers(q)[0][1].scale.data.fill_(0.37)
    x = torch.randn(20, 6)
    v = layer(x) / 0.37
    keep = ((v - torch.floor(v) - 0.5).abs() > 1e-3).all(1)
    x = x[keep]
    snn = convert(q)
    snn.reset()
    total = sum(snn(x) for _ in range(p))
    neuron = snn.neurons()[0][1]
    assert torch.allclose(total / p, q(x), atol=1e-5)
    assert neuron.spike_count.item() == pytest.approx((q(x) / 0.37).sum().item(), abs=1e-3)


def test_if_neuron_dynamics():
    n = IFNeuron(threshold=1.0)
    outs = [n(torch.tensor([0.3, 1.0, -0.2, 2.5])) for _ in range(4)]
    counts = torch.stack(outs).sum(0)
    # membrane starts at 0.5: 0.3/step gives 0.8, 1.1 (fires) -> 0.1, 0.4, 0.7: one spike; 1.0/step and
    # 2.5/step fire every step (at most one spike per step); negative input never fires
    assert counts.tolist() == [1.0, 4.0, 0.0, 4.0]
    assert n.steps == 4 and n.spike_count.item() == 9
    n.reset()
    assert n.membrane is None and n.spike_count == 0
    with pytest.raises(ValueError, match="positive"):
        IFNeuron(threshold=0.0)


@pytest.fixture(scope="module")
def trained_digits():
    torch.manual_seed(0)
    splits = digits()
    train, test = splits.loaders(64, eval_batch_size=512)
    model = create_model("small-cnn", num_classes=10, in_channels=1, width=16)
    fit(model, train, 4, progress=False)
    q = prepare(model, QuantConfig(p=2))
    init_scales(q, next(iter(train)))
    fit(q, train, 3, progress=False)
    return q, test


def test_converted_network_reproduces_quantized_ann_at_large_T(trained_digits):
    q, test = trained_digits
    ann = evaluate(q, test)
    result = simulate(convert(q), test, T=[1, 4, 64, 128], progress=False)
    assert result.accuracy[128] == pytest.approx(ann, abs=0.03)
    assert result.accuracy[128] >= result.accuracy[1]
    x, _ = next(iter(test))
    snn = convert(q)
    snn.reset()
    total = sum(snn(x) for _ in range(128))
    agreement = (total.argmax(1) == q.eval()(x).argmax(1)).float().mean().item()
    assert agreement >= 0.95
    rates = result.firing_rate[128]
    assert set(rates) == {name for name, _ in snn.neurons()}
    assert all(0 < r <= 1 for r in rates.values())


def test_batchnorm_folding_is_exact(trained_digits):
    q, test = trained_digits
    x, _ = next(iter(test))
    folded, kept = convert(q), convert(q, fold_batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in kept.modules())
    with torch.no_grad():
        a = sum(folded(x) for _ in range(16))
        b = sum(kept(x) for _ in range(16))
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99
    assert torch.allclose(a, b, atol=1e-2 * a.abs().max().item())


def test_simulate_reports_every_T_and_resets_between_batches():
    torch.manual_seed(0)
    q = prepare(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), QuantConfig(p=2)).eval()
    x = torch.randn(10, 4)
    y = torch.randint(0, 3, (10,))
    snn = convert(q)
    one = simulate(snn, [(x, y)], T=16, progress=False)
    assert sorted(one.accuracy) == list(range(1, 17))
    split = simulate(snn, DataLoader(TensorDataset(x, y), batch_size=3), T=16, progress=False)
    assert split.accuracy == one.accuracy
    assert split.spikes_per_sample[16] == pytest.approx(one.spikes_per_sample[16])


@pytest.mark.parametrize("bad", [0, -3, [], [0, 2], [1.5], "8", True])
def test_bad_T_is_a_clear_value_error(bad):
    snn = convert(prepare(nn.Sequential(nn.Linear(2, 2), nn.ReLU())))
    with pytest.raises(ValueError, match="T must be"):
        simulate(snn, [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))], T=bad)


def test_wrong_objects_are_refused():
    with pytest.raises(TypeError, match="prepare"):
        convert(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    with pytest.raises(TypeError, match="SpikingNetwork"):
        simulate(nn.Linear(2, 2), [], T=4)
    snn = convert(prepare(nn.Sequential(nn.Linear(2, 2), nn.ReLU())))
    with pytest.raises(TypeError, match="inputs, labels"):
        simulate(snn, [torch.zeros(1, 2)], T=4)
    assert isinstance(snn, SpikingNetwork)


def test_a_network_or_device_simulate_cannot_use_is_one_line():
    """Half precision, a device this machine lacks and integer inputs are refused before any step; a
    float64 network runs, its inputs cast to its type, with the float32 network's answers."""
    torch.manual_seed(0)
    q = prepare(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), QuantConfig(p=2)).eval()
    batch = [(torch.rand(6, 4), torch.randint(0, 3, (6,)))]
    with pytest.raises(ValueError, match=r"float16 tensors \(.half\(\) or .bfloat16\(\)\?\): call .float\(\)"):
        simulate(convert(q).half(), batch, T=4, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device cuda: this machine has no CUDA GPU"):
            simulate(convert(q), batch, T=4, device="cuda", progress=False)
    with pytest.raises(ValueError, match="device meta: a meta tensor holds no values"):
        simulate(convert(q), batch, T=4, device="meta", progress=False)
    with pytest.raises(TypeError, match="floating-point input tensors .* got torch.uint8"):
        simulate(convert(q), [(torch.zeros(6, 4, dtype=torch.uint8), batch[0][1])], T=4, progress=False)
    single = simulate(convert(q), batch, T=4, progress=False)
    double = simulate(convert(q).double(), [(batch[0][0].double(), batch[0][1])], T=4, progress=False)
    assert double.accuracy == single.accuracy


def test_a_long_simulation_says_so_and_is_never_silent(monkeypatch):
    lines = []
    seen = lambda items, desc, mode: lines.append(mode) or items  # noqa: E731
    monkeypatch.setattr("noiseadaptor.snn.simulation.progress_over", seen)
    snn = convert(prepare(nn.Sequential(nn.Linear(2, 2), nn.ReLU())))
    with pytest.warns(UserWarning, match="T=5000: every image runs 5000 steps, 20 times the work of T=256"):
        simulate(snn, [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))], T=[1, 5000], progress=False)
    assert lines == ["lines"]


def test_torchvision_bottleneck_resnet_converts_with_residual_adds_before_neurons():
    import operator

    import torchvision

    torch.manual_seed(0)
    q = prepare(torchvision.models.resnet50(weights=None, num_classes=5).eval(), QuantConfig(p=3))
    x = torch.randn(2, 3, 32, 32)
    init_scales(q, x)
    snn = convert(q)
    graph = snn.net.graph
    neuron_inputs = {
        n.target: n.args[0]
        for n in graph.nodes
        if n.op == "call_module" and isinstance(snn.net.get_submodule(n.target), IFNeuron)
    }
    block_outputs = [t for t in neuron_inputs if t.endswith("relu_2")]
    assert len(block_outputs) == 16  # one per bottleneck block, downsample blocks included
    assert all(neuron_inputs[t].target in (operator.add, operator.iadd) for t in block_outputs)
    result = simulate(snn, [(x, torch.tensor([0, 1]))], T=4, progress=False)
    assert set(result.firing_rate[4]) == {name for name, _ in snn.neurons()}


@pytest.mark.parametrize("negative_spikes", [False, True])
def test_steps_per_call_changes_speed_not_results(trained_digits, negative_spikes):
    """Running K steps layer by layer in one pass (the first layer once for all K) is the same
    simulation as K single steps: identical accuracy, spike counts and synaptic operations at every T."""
    q, test = trained_digits
    x, y = next(iter(test))
    data = [(x[:100], y[:100]), (x[100:150], y[100:150])]
    snn = convert(q)
    runs = [
        simulate(snn, data, T=11, steps_per_call=k, synops=True, negative_spikes=negative_spikes, progress=False)
        for k in (1, 4, 11, 32)
    ]
    for r in runs[1:]:
        assert r.accuracy == runs[0].accuracy
        for t in range(1, 12):
            assert r.spikes_per_sample[t] == pytest.approx(runs[0].spikes_per_sample[t])
            assert r.sops_per_sample[t] == pytest.approx(runs[0].sops_per_sample[t])
            assert r.macs_per_sample[t] == runs[0].macs_per_sample[t]
    snn.reset()
    single = torch.stack([snn(x[:5]) for _ in range(6)])
    snn.reset()
    assert torch.allclose(snn.run(x[:5], 4), single[:4]) and torch.allclose(snn.run(x[:5], 2), single[4:])
    with pytest.raises(ValueError, match="steps_per_call"):
        simulate(snn, data, T=4, steps_per_call=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused neuron kernel runs on CUDA")
def test_fused_cuda_neuron_kernel_is_bit_identical_to_the_eager_loop(monkeypatch):
    torch.manual_seed(0)
    q = prepare(create_model("cifar-resnet20", num_classes=10).cuda(), QuantConfig(p=2, noise="none")).eval()
    x = torch.randn(32, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (32,), device="cuda")
    init_scales(q, x)
    snn = convert(q)
    fused = simulate(snn, [(x, y)], T=16, steps_per_call=8, progress=False)
    monkeypatch.setenv("NOISEADAPTOR_TRITON", "0")
    eager = simulate(snn, [(x, y)], T=16, steps_per_call=8, progress=False)
    assert fused.accuracy == eager.accuracy and fused.spikes_per_sample == eager.spikes_per_sample
