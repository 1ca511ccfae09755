import argparse
import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
from nets import conv_net, residual_net, spiking, vgg_net
from torch import nn

from noiseadaptor import QuantConfig, convert, init_scales, prepare

nir = pytest.importorskip("nir")
from noiseadaptor.io.export import export_nir  # noqa: E402  (after the skip: it needs nir)


def export(snn, x, path=None, **options):
    if options.get("primitives"):  # no IF node, nothing a reader could misread
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return export_nir(snn, x, path, **options)
    with pytest.warns(UserWarning, match="hard reset"):
        return export_nir(snn, x, path, **options)


def test_round_trip_keeps_nodes_thresholds_and_semantics(tmp_path):
    x = torch.randn(4, 1, 8, 8)
    snn = spiking(residual_net(), x)
    graph = export(snn, x, tmp_path / "net.nir")
    back = nir.read(tmp_path / "net.nir")
    assert {k: type(v) for k, v in back.nodes.items()} == {k: type(v) for k, v in graph.nodes.items()}
    assert sorted(back.edges) == sorted(graph.edges)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds.count("IF") == len(snn.neurons()) == 5 and {"Conv2d", "AvgPool2d", "Flatten", "Affine"} < set(kinds)
    assert sorted(src for src, dst in graph.edges if dst == "layers_0_relu2") == ["layers_0_conv2", "stem_2"]
    for name, neuron in snn.neurons():
        node, read = graph.nodes[name.replace(".", "_")], back.nodes[name.replace(".", "_")]
        gain = node.metadata["input_gain"]
        np.testing.assert_allclose(read.v_threshold, neuron.threshold.item() / gain, rtol=1e-6)
        np.testing.assert_allclose(read.metadata["initial_membrane"], 0.5 * read.v_threshold, rtol=1e-6)
        assert read.metadata["reset"] in ("subtract", b"subtract") and (read.r == 1).all()
    # the identity shortcut carries the stem's spikes unweighted, so that block's add is in their units
    stem = snn.net.get_submodule("stem.2").threshold.item()
    assert stem != pytest.approx(1) and graph.nodes["layers_0_relu2"].metadata["input_gain"] == pytest.approx(stem)
    assert graph.nodes["layers_1_relu2"].metadata["input_gain"] == 1.0  # 1x1-conv shortcut: rescaled weights
    assert back.metadata["neuron_reset"] in ("subtract", b"subtract")
    assert tuple(back.nodes["output"].output_type["output"]) == (3,)


def test_unsupported_layer_is_named():
    x = torch.randn(2, 4)
    snn = convert(prepare(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))))
    snn.net.add_submodule("act", nn.Tanh())  # a layer no NIR node expresses, put after the last layer
    out = next(n for n in snn.net.graph.nodes if n.op == "output")
    with snn.net.graph.inserting_before(out):
        tanh = snn.net.graph.call_module("act", (out.args[0],))
    out.args = (tanh,)
    snn.net.recompile()
    with pytest.raises(TypeError, match="Tanh at node 'act'.*supported: Conv2d, Linear"):
        export_nir(snn, x)


class TwoBranches(nn.Module):
    """Two spike trains summed with no weighted layer after either: equal thresholds export, unequal
    ones cannot (NIR would need a per-edge Scale that SpikingJelly does not read)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)
        self.relu_a, self.relu_b, self.drop = nn.ReLU(), nn.ReLU(), nn.Dropout(0.1)

    def forward(self, x):
        return self.head(self.drop(self.relu_a(self.a(x)) + self.relu_b(self.b(x))).flatten(1))


def test_adds_of_unweighted_spike_trains():
    x = torch.randn(2, 4)
    snn = convert(prepare(TwoBranches()))
    graph = export(snn, x)  # both thresholds 2.0 (scales 1.0): one unit, folded into head's weights
    assert sorted(src for src, dst in graph.edges if dst == "flatten") == ["relu_a", "relu_b"]  # Dropout: gone
    np.testing.assert_allclose(graph.nodes["head"].weight, 2.0 * snn.net.head.weight.detach().numpy(), rtol=1e-6)
    snn.net.get_submodule("relu_b").threshold.fill_(3.0)
    with pytest.raises(ValueError, match="different thresholds"):
        export_nir(snn, x)


def test_wrong_object_is_refused():
    with pytest.raises(TypeError, match="SpikingNetwork"):
        export_nir(nn.Linear(2, 2), torch.zeros(1, 2))


@pytest.mark.parametrize("make", [conv_net, residual_net])
def test_spikingjelly_reads_the_same_network(make, tmp_path):
    """SpikingJelly 2.0 imports the file; with soft reset and the exported initial membrane it runs the
    same spikes and outputs as our simulation, step by step."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    x = torch.randn(4, 1, 8, 8)
    snn = spiking(make(), x)
    graph = export(snn, x, tmp_path / "net.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SpikingJelly's own deprecation chatter
        sj = import_from_nir(tmp_path / "net.nir", dt=1.0)
    theirs_spikes, ours_spikes = {}, {}
    for name, m in sj.named_modules():
        if isinstance(m, neuron.IFNode):
            node = graph.nodes[name.split(".")[0]]
            m.v_reset = None  # reset by subtraction, as the metadata says
            m.v = torch.from_numpy(node.metadata["initial_membrane"]).expand(len(x), *node.v_threshold.shape).clone()
            sj.get_submodule(name.split(".")[0]).register_forward_hook(
                lambda mod, i, out, key=name.split(".")[0]: theirs_spikes.setdefault(key, []).append(out[0])
            )
    for name, m in snn.neurons():
        m.register_forward_hook(
            lambda mod, i, out, key=name.replace(".", "_"): ours_spikes.setdefault(key, []).append(out / mod.threshold)
        )
    assert len(theirs_spikes) == 0 and len(snn.neurons()) > 0
    snn.reset()
    state = None
    with torch.no_grad():
        for _ in range(12):
            ours = snn(x)
            theirs, state = sj(x, state)
            assert torch.allclose(ours, theirs, atol=1e-5)
    assert set(theirs_spikes) == set(ours_spikes)
    fired = 0
    for key in ours_spikes:
        a, b = torch.stack(ours_spikes[key]), torch.stack(theirs_spikes[key])
        assert torch.equal(a, b), key
        fired += 0 < a.mean() < 1
    assert fired == len(ours_spikes)  # every layer fires, but not always: the test sees thresholds at work


def test_export_command_writes_nir_and_refuses_float_runs(tmp_path, capsys):
    from noiseadaptor.ann.models import create_model
    from noiseadaptor.cli import export, main
    from noiseadaptor.io.checkpoint import save_checkpoint

    cfg = {
        "dataset": "digits",
        "model": "small-cnn",
        "num_classes": 10,
        "in_channels": 1,
        "image_size": 8,
        "method": "na",
        "p": 2,
    }
    model = prepare(create_model("small-cnn", 10, 1), QuantConfig(p=2))
    save_checkpoint(tmp_path / "checkpoint.pt", model, epoch=1, config=cfg)
    parser = export.add_parser(argparse.ArgumentParser().add_subparsers())
    with pytest.warns(UserWarning, match="hard reset"):
        assert main(["export", str(tmp_path / "checkpoint.pt")]) == 0
    graph = nir.read(tmp_path / "model.nir")
    assert tuple(graph.nodes["output"].output_type["output"]) == (10,)
    assert f"wrote {tmp_path / 'model.nir'}" in capsys.readouterr().out
    save_checkpoint(tmp_path / "float.pt", create_model("small-cnn", 10, 1), epoch=1, config={**cfg, "method": "float"})
    with pytest.raises(ValueError, match="quantized"):
        export.main(parser.parse_args([str(tmp_path / "float.pt")]))
    del cfg["image_size"]  # an older checkpoint: the size must be given
    save_checkpoint(tmp_path / "old.pt", model, epoch=1, config=cfg)
    with pytest.raises(ValueError, match="--input-shape"):
        export.main(parser.parse_args([str(tmp_path / "old.pt")]))
    with pytest.warns(UserWarning):
        assert export.main(parser.parse_args([str(tmp_path / "old.pt"), "--input-shape", "1,8,8"])) == 0
    nested = tmp_path / "new" / "folder" / "net.nir"  # missing folders are made; the write is atomic
    with pytest.warns(UserWarning):
        assert export.main(parser.parse_args([str(tmp_path / "checkpoint.pt"), "--out", str(nested)])) == 0
    assert nir.read(nested) and not list(nested.parent.glob(".net.nir.*"))
    (tmp_path / "a-file").write_text("x")
    for out, message in ((tmp_path, "is a folder; give the file"), (tmp_path / "a-file" / "x.nir", "is a file")):
        with pytest.raises(ValueError, match=message):
            export.main(parser.parse_args([str(tmp_path / "checkpoint.pt"), "--out", str(out)]))
    with pytest.raises(ValueError, match="expected C,H,W"):
        export.main(parser.parse_args([str(tmp_path / "checkpoint.pt"), "--input-shape", "abc"]))
    with pytest.warns(UserWarning):  # B-bit weights from the command line; the file says so
        export.main(parser.parse_args([str(tmp_path / "checkpoint.pt"), "--weight-bits", "8", "--out", str(nested)]))
    assert nir.read(nested).metadata["weight_bits"] == 8
    with pytest.raises(ValueError, match="--format nir"):
        export.main(parser.parse_args([str(tmp_path / "checkpoint.pt"), "--format", "onnx", "--weight-bits", "8"]))


def test_onnx_export_of_the_quantized_ann(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from onnx.reference import ReferenceEvaluator

    from noiseadaptor.io.export import export_onnx

    torch.manual_seed(0)
    q = prepare(conv_net(), QuantConfig(p=2))
    x = torch.randn(2, 1, 8, 8)
    init_scales(q, x)
    export_onnx(q, x, tmp_path / "q.onnx")
    export_onnx(q, x, tmp_path / "q.onnx")  # again, over it
    assert q.training  # restored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]  # one file: no hidden weights beside it
    copied = tmp_path / "elsewhere" / "q.onnx"
    copied.parent.mkdir()
    copied.write_bytes((tmp_path / "q.onnx").read_bytes())
    model = onnx.load(copied)
    assert {"Floor", "Clip"} <= {n.op_type for n in model.graph.node}
    (out,) = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.numpy()})
    np.testing.assert_allclose(out, q.eval()(x).detach().numpy(), atol=1e-5)


def test_if_neuron_fields_are_what_consumers_read():
    """NIR's IF per spec: r, v_threshold, v_reset; SpikingJelly needs one threshold per layer and r = 1/dt."""
    x = torch.randn(3, 4)
    snn = convert(prepare(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))))
    ((name, neuron),) = snn.neurons()
    neuron.threshold.fill_(0.7)
    node = export(snn, x).nodes[name]
    assert isinstance(node, nir.IF) and node.v_threshold.shape == (5,)
    assert (node.v_reset == 0).all() and np.unique(node.v_threshold).size == 1


def _exactly_in_nirtorch(snn, x, path, steps):
    """The file at `path` in nirtorch's executor (`interop.nirtorch_network`) against `snn`, step for step:
    identical spikes at every layer and step, the same predictions and outputs; returns the file's graph."""
    pytest.importorskip("nirtorch")
    from noiseadaptor import interop

    graph = nir.read(path)
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert "IF" not in kinds and {"I", "Threshold", "Scale"} <= kinds
    found = interop.compare_with_file(snn, path, x, steps)
    assert len(found["spikes_differing"]) == len(snn.neurons())
    assert all(share == 0 for share in found["spikes_differing"].values()), found["spikes_differing"]
    assert found["predictions_differing"] == 0 and found["outputs_relative_difference"] < 1e-4
    assert all(0 < rate < 1 for rate in found["firing_rate"].values()), found["firing_rate"]  # not all quiet
    return graph


@pytest.mark.parametrize("make", [conv_net, residual_net])
def test_the_standard_primitive_encoding_runs_in_nirtorchs_executor_with_our_spikes(make, tmp_path):
    x = torch.randn(4, 1, 8, 8)
    snn = spiking(make(), x)
    export(snn, x, tmp_path / "net.nir", primitives=True)
    _exactly_in_nirtorch(snn, x, tmp_path / "net.nir", steps=10)


@pytest.mark.parametrize("bits", [16, 8, 4])
@pytest.mark.parametrize("make", [conv_net, residual_net])
def test_an_integer_network_is_written_as_integers_and_runs_as_simulated(make, bits, tmp_path):
    from noiseadaptor.snn.integer import integer_network

    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    if make is residual_net and bits == 16:  # its shortcut's multiple times 2^15 passes 2^24: refused, not written
        with pytest.raises(ValueError, match="past 2\\^24, where float32 .* no longer holds integers exactly"):
            integer_network(spiking(make(), x), bits, x)
        return
    snn, _ = integer_network(spiking(make(), x), bits, x)
    export(snn, x, tmp_path / "net.nir", primitives=True)
    graph = _exactly_in_nirtorch(snn, x, tmp_path / "net.nir", steps=16)
    assert graph.metadata["weight_bits"] == bits and "integers" in graph.metadata["integer"]
    levels, scales = 2 ** (bits - 1) - 1, graph.metadata["weight_scales"]
    for name, node in graph.nodes.items():
        numbers = {k: getattr(node, k) for k in ("weight", "bias", "threshold", "scale") if hasattr(node, k)}
        for what, a in numbers.items():
            assert np.array_equal(a, np.rint(a)), (name, what)  # integers, exactly
        if "weight" in numbers:  # B-bit k times the layer's integer multiplier
            k = numbers["weight"] / scales[name]
            assert np.array_equal(k, np.rint(k)) and levels * 15 / 16 - 1 <= np.abs(k).max() <= levels, name
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert "SumPool2d" in kinds and "AvgPool2d" not in kinds
    if make is residual_net:  # the identity shortcut brings whole units through a Scale node
        assert any(name.endswith("_shortcut") for name in graph.nodes)


@pytest.mark.parametrize("bits", [1, 17, 24, 32, 64])
def test_weight_bits_beyond_what_float32_holds_exactly_are_refused(bits):
    from noiseadaptor.snn.integer import integer_network

    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(ValueError, match="weight bits must be 2 to 16"):
        integer_network(spiking(conv_net(), x), bits, x)


def direct(make, **config):
    """A directly trained SNN (LIF neurons; untrained weights) whose neurons fire at varied rates, with
    non-trivial BatchNorm statistics (folded by the export), in eval mode."""
    from noiseadaptor.snn.lif import DirectConfig, to_direct_snn

    torch.manual_seed(0)
    snn = to_direct_snn(make(), DirectConfig(time_steps=6, threshold=0.25, **config)).eval()
    for m in snn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return snn


def _readers(path):
    """The file at `path` in snnTorch's and SpikingJelly's NIR readers, each as (network, its neuron modules by
    NIR node name, a step function x -> output). snnTorch 1.0.0 reads NIR's Flatten dims as if they counted the
    batch; they are set right here (nirtorch's map in `interop.nirtorch_network` does the same)."""
    pytest.importorskip("snntorch")
    pytest.importorskip("spikingjelly")
    import snntorch
    from snntorch.import_nir import import_from_nir as snntorch_import
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.nir_exchange import import_from_nir as spikingjelly_import

    with contextlib.redirect_stdout(io.StringIO()):  # snnTorch prints while it reads
        sn = snntorch_import(nir.read(path))
    for m in sn.modules():
        if isinstance(m, nn.Flatten):
            m.start_dim, m.end_dim = m.start_dim + 1, m.end_dim + 1 if m.end_dim >= 0 else m.end_dim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SpikingJelly's own deprecation chatter
        sj = spikingjelly_import(path, dt=1e-4)
    state = {}

    def sj_step(x):
        out, state["sj"] = sj(x, state.get("sj"))
        return out

    return {
        "snntorch": (sn, {k: m for k, m in sn.named_modules() if isinstance(m, snntorch.Leaky)}, lambda x: sn(x)[0]),
        "spikingjelly": (sj, {k: m for k, m in sj.named_children() if any(isinstance(n, neuron.LIFNode) for n in
                                                                          m.modules())}, sj_step),
    }  # fmt: skip


@pytest.mark.parametrize("make", [vgg_net, residual_net])
def test_a_directly_trained_snn_runs_the_same_in_snntorch_and_spikingjelly(make, tmp_path):
    """An ASGL/SG network's NIR file: LIF nodes (hard reset, the NIR spec's own neuron: no warning), read by
    snnTorch and SpikingJelly, gives our spikes at every layer and step exactly, and our outputs up to float
    rounding."""
    x = 2 * torch.randn(4, 1, 8, 8)
    snn = direct(make)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = export_nir(snn, x, tmp_path / "net.nir")
    lif = {k: n for k, n in graph.nodes.items() if isinstance(n, nir.LIF)}
    assert len(lif) == len(snn.neurons()) and not any("BatchNorm" in type(n).__name__ for n in graph.nodes.values())
    assert graph.metadata["neuron_reset"] == "zero" and graph.metadata["dt"] == 1e-4
    for node in lif.values():  # tau_steps * dt, r = tau_steps: the Euler step of length dt is our neuron
        assert np.all(node.tau == 2 * 1e-4) and np.all(node.r == 2) and np.all(node.v_reset == 0)
    ours_spikes = {}
    for name, m in snn.neurons():
        m.register_forward_hook(lambda mod, i, out, k=name.replace(".", "_"): ours_spikes.__setitem__(k, out))
    with torch.no_grad():
        ours = snn.per_step(x)  # [T, B, classes]; the spikes of all T steps, folded into the batch
    ours_spikes = {k: v.reshape(6, len(x), *v.shape[1:]) for k, v in ours_spikes.items()}
    assert all(0 < v.mean() < 1 for v in ours_spikes.values())  # every layer fires, but not always
    for reader, (net, neurons, step) in _readers(tmp_path / "net.nir").items():
        assert set(neurons) == set(lif), reader
        spikes = {k: [] for k in neurons}
        for k, m in neurons.items():
            m.register_forward_hook(
                lambda mod, i, out, k=k: spikes[k].append(out[0] if isinstance(out, tuple) else out)
            )
        with torch.no_grad():
            theirs = torch.stack([step(x) for _ in range(6)])
        for k in lif:
            assert torch.equal(torch.stack(spikes[k]), ours_spikes[k]), (reader, k)
        # the same spikes into the same weights: the outputs up to the order of a float sum (one ulp, seen in
        # snnTorch's residual add on some CPUs)
        torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6, msg=reader)


def test_lif_export_options_and_refusals(tmp_path):
    """Reset by subtraction is written with its metadata and a warning (SpikingJelly runs it with v_reset=None);
    C-LIF and recurrent synapses are refused, named; a directly trained SNN's command-line export."""
    x = 2 * torch.randn(4, 1, 8, 8)
    snn = direct(vgg_net, reset="soft")
    with pytest.warns(UserWarning, match="reset to v_reset"):
        graph = export_nir(snn, x, tmp_path / "soft.nir")
    assert graph.metadata["neuron_reset"] == "subtract"
    assert all(n.metadata["reset"] == "subtract" for n in graph.nodes.values() if isinstance(n, nir.LIF))
    net, neurons, step = _readers(tmp_path / "soft.nir")["spikingjelly"]
    for m in net.modules():
        if hasattr(m, "v_reset"):
            m.v_reset = None
    with torch.no_grad():
        assert torch.equal(torch.stack([step(x) for _ in range(6)]), snn.per_step(x))
    with pytest.raises(ValueError, match="C-LIF neuron at node .*CubaLIF"):
        export_nir(direct(vgg_net, neuron="clif"), x)
    with pytest.raises(ValueError, match="primitives writes IF neurons"):
        export_nir(snn, x, primitives=True)
    with pytest.raises(ValueError, match="positive number"):
        export_nir(snn, x, dt=float("nan"))
    with pytest.raises(TypeError, match="got Sequential"):
        export_nir(nn.Sequential(), x)
    events = direct(vgg_net)
    events.static_input = False  # event frames [B, T, ...]: each step's input is its frame
    graph = export_nir(events, torch.rand(2, 6, 1, 8, 8))
    assert graph.metadata["input_encoding"] == "one event frame per step"
    assert tuple(graph.nodes["input"].input_type["input"]) == (1, 8, 8)
