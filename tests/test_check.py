"""check(model) and `noiseadaptor check`: every operation's fate, the same as prepare's; the rewrites of F.relu,
ReLU6 and clamp(0, b) are real (the SNN matches its quantized ANN); a sweep over torchvision classifiers."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor import QuantConfig, check, convert, init_scales, prepare, quantizers, simulate

ROOT = Path(__file__).resolve().parents[1]


class Clipped(nn.Module):
    """Every spelling of a ReLU or a clip to [0, b] that prepare rewrites."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1), nn.Conv2d(6, 6, 3)
        self.bn = nn.BatchNorm2d(6)
        self.relu6 = nn.ReLU6()
        self.fc = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = self.relu6(self.bn(self.c2(x)))
        x = F.max_pool2d(x, 2)
        x = torch.clamp(self.c3(x), 0, 6)
        return self.fc(x.flatten(1))


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm, self.act = nn.Conv2d(1, 4, 3), nn.LayerNorm([4, 6, 6]), nn.GELU()
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        y = self.act(self.norm(self.conv(x)))
        y = y * torch.sigmoid(y)  # a gate: a product of two activations
        return self.fc(F.gelu(y).flatten(1))


def test_every_rewrite_is_listed_and_the_snn_runs_as_its_quantized_ann():
    report = check(Clipped())
    assert report.converts and report.verdict() == "converts with rewrites"
    rewritten = {o.op: o.how.split(";")[0].split(" (")[0] for o in report.rewritten}
    assert rewritten == {"relu": "a quantizer", "ReLU6": "a quantizer", "clamp": "a quantizer",
                         "max_pool2d": "an average pool of the same window"}  # fmt: skip
    assert any("bound 6 becomes the learned threshold" in o.how for o in report.rewritten if o.op == "clamp")
    kept = {o.op for o in report.operations if o.fate == "kept"}
    assert {"Conv2d", "BatchNorm2d", "Linear", ".flatten()"} <= kept
    # the rewrites are real: prepare gives each its own quantizer, and the SNN matches the quantized ANN
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    q = prepare(Clipped(), QuantConfig(p=2, noise="none")).eval()
    init_scales(q, x)
    assert len(quantizers(q)) == 3
    result = simulate(convert(q), DataLoader(TensorDataset(x, q(x).argmax(1)), batch_size=32), T=[1, 2, 256],
                      progress=False, reference=q)  # fmt: skip
    assert result.agreement[256] >= 0.98 and result.accuracy[256] >= 0.98
    # at T = p an IF neuron with a constant input fires exactly the quantizer's level (the first layer: the
    # analog image); later layers, fed spikes, come near it; at large T the SNN computes the clip, not the
    # rounding (the paper's Eq. 9), so the error to the quantized ANN settles above 0
    errors = result.layer_error
    assert errors[2]["relu"] < 1e-6
    assert all(errors[2][layer] < errors[1][layer] for layer in errors[2])


def test_every_refusal_is_listed_where_prepare_stops_at_the_first():
    report = check(Gated())
    assert not report.converts and report.verdict().startswith("refused: LayerNorm at norm:")
    refused = [(o.op, o.where) for o in report.refused]
    assert [op for op, _ in refused] == ["LayerNorm", "GELU", "sigmoid", "mul", "gelu"]
    reasons = {o.op: o.how for o in report.refused}
    assert "use BatchNorm" in reasons["LayerNorm"] and "replace it by ReLU" in reasons["GELU"]
    assert "product of two activations" in reasons["mul"]
    with pytest.raises(TypeError, match=r"cannot convert module 'norm' \(LayerNorm\): LayerNorm has no"):
        prepare(Gated())  # the same first reason
    assert "LayerNorm" in str(report) and "5 x" not in str(report)


def test_a_layer_scale_times_an_activation_is_linear():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.gamma = nn.Conv2d(1, 2, 3), nn.Parameter(torch.ones(2, 1, 1))

        def forward(self, x):
            return F.relu(self.gamma * self.conv(x) * 0.5).flatten(1)

    assert check(Scaled()).converts


def test_the_command_says_whether_it_converts(tmp_path, capsys):
    from noiseadaptor.cli import main

    assert main(["check", "cifar-resnet20"]) == 0
    assert capsys.readouterr().out.startswith("cifar-resnet20: converts")
    torch.save(Gated(), tmp_path / "gated.pt")
    assert main(["check", str(tmp_path / "gated.pt"), "--all"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("gated.pt: refused: LayerNorm at norm") and "every operation:" in out
    for bad, message in ((["no-such-model"], "not a model name"), ([str(tmp_path)], "is a folder"),
                         (["resnet18", "--num-classes", "0"], "--num-classes must be a positive integer")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["check", *bad])
        assert message in capsys.readouterr().err


def _sweep():
    spec = importlib.util.spec_from_file_location("torchvision_check", ROOT / "analysis" / "torchvision_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, verdict, rewritten",
    [
        ("resnet18", "converts with rewrites", {"ReLU": 17, "MaxPool2d": 1}),
        ("vgg11", "converts with rewrites", {"ReLU": 10, "MaxPool2d": 5}),
        ("mobilenet_v2", "converts with rewrites", {"ReLU6": 35}),
        ("squeezenet1_0", "converts with rewrites", {"ReLU": 26, "MaxPool2d": 3}),
        ("convnext_tiny", "refused", {}),
    ],
)
def test_the_sweep_over_torchvision_classifiers(name, verdict, rewritten):
    row = _sweep().sweep_one(name, steps=2)
    assert (row["verdict"], row["rewritten"]) == (verdict, rewritten)
    if verdict == "refused":
        assert row["refused"]["GELU"] == 18 and "layer_norm" in row["first_reason"]
    else:
        assert row["snn_ran"] and row["snn"].startswith("ran 2 steps at 64x64")


def test_output_cut_short_by_its_reader_ends_quietly():
    import subprocess
    import sys

    command = [sys.executable, "-m", "noiseadaptor.cli", "check", "resnet18", "--all"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader goes before the first line (as `| head` does after its own), while the
    # process is still importing: its first write meets a closed pipe
    assert process.wait(timeout=120) == 128 + 13 and process.stderr.read() == b""


class _Net(nn.Module):
    """A conv, a ReLU and then `tail(h)`: one small model per case below."""

    def __init__(self, tail):
        super().__init__()
        self.conv, self.tail = nn.Conv2d(1, 2, 3), tail

    def forward(self, x):
        h = F.relu(self.conv(x))
        return self.tail(h).flatten(1)


@pytest.mark.parametrize(
    "tail, converts",
    [
        (lambda h: F.max_pool2d(h, 2, dilation=2), False),  # no average pool has this geometry
        (lambda h: h // 0.5, False),  # floor division of an activation: not linear
        (lambda h: h + (h == 0), False),  # a comparison of an activation
        (lambda h: 2.0 / (h + 1), False),  # an activation as divisor
        (lambda h: h / 2.0, True),
        (lambda h: h.view(h.size(0), h.size(1) * h.size(2) * h.size(3) // 2, 2), True),  # size arithmetic
    ],
)
def test_check_and_prepare_agree_on_what_is_linear(tail, converts):
    model = _Net(tail)
    assert check(model).converts == converts
    if converts:
        prepare(model)
    else:
        with pytest.raises(TypeError, match="cannot convert"):
            prepare(model)


def test_an_in_place_clip_whose_result_is_unused_is_refused():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            h = self.conv(x)
            h.clamp_(0, 6)  # the quantizer would return a new tensor that nobody reads
            return h.flatten(1)

    report = check(InPlace())
    assert not report.converts and "result is not used" in report.refused[0].how


def test_dropout_and_stochastic_depth_called_as_functions_are_the_identity_after_prepare():
    from torchvision.ops import StochasticDepth

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.drop = nn.Conv2d(2, 2, 3, padding=1), StochasticDepth(0.5, "row")

        def forward(self, x):
            h = F.relu(self.conv(x))
            return (x + F.dropout(self.drop(h), 0.5, self.training)).flatten(1)

    model = Residual().train()  # built in training mode, as models are
    assert check(model).converts and model.training
    q = prepare(model, QuantConfig(p=2, noise="none"))
    x = torch.rand(4, 2, 6, 6)
    init_scales(q, x)
    snn = convert(q.eval())
    runs = [(snn.reset(), torch.stack([snn(x) for _ in range(5)]))[1] for _ in range(2)]
    assert torch.equal(*runs) and torch.equal(q(x), q(x))  # nothing random left in the converted network


def test_a_model_checked_by_name_is_built_without_its_weights_and_checked_the_same():
    import torchvision

    from noiseadaptor.cli.check import _built

    for name in ("resnet18", "regnet_y_400mf"):  # RegNet's builder computes its widths with tensors: built in memory
        model = _built(torchvision.models.get_model, name, weights=None, num_classes=10)
        real = torchvision.models.get_model(name, weights=None, num_classes=10)
        meta = {p.device.type for p in model.parameters()}
        assert meta == ({"meta"} if name == "resnet18" else {"cpu"})
        assert str(check(model, name)) == str(check(real, name))
