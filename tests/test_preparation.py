import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from noiseadaptor import QuantConfig, QuantReLU, prepare, quantizers


def test_torchvision_resnet18_every_relu_call_gets_its_own_quantizer():
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    q = prepare(model, QuantConfig(p=2))
    layers = quantizers(q)
    assert len(layers) == 17  # stem + 2 per BasicBlock; each block's nn.ReLU is called twice
    assert len({id(m) for _, m in layers}) == 17
    assert ("layer1.0.relu_1" in dict(layers)) and isinstance(q.maxpool, nn.AvgPool2d)
    assert not any(isinstance(m, nn.MaxPool2d) for m in q.modules())
    # the float model is untouched
    assert isinstance(model.maxpool, nn.MaxPool2d) and not any(isinstance(m, QuantReLU) for m in model.modules())


def test_bottleneck_resnet50_and_downsample_shortcuts():
    q = prepare(torchvision.models.resnet50(weights=None).eval())
    assert len(quantizers(q)) == 1 + 3 * 16


def test_quantizers_off_is_the_float_net_with_avg_pool():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    q = prepare(model).eval()
    for _, layer in quantizers(q):
        layer.enabled = False
    model.maxpool = nn.AvgPool2d(3, 2, 1)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(q(x), model(x), atol=1e-5)


def test_functional_relu_and_max_pool():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv(x)), kernel_size=2)
            return self.fc(torch.relu(x).mean((2, 3)).relu())

    q = prepare(Net())
    assert len(quantizers(q)) == 3
    pools = [m for m in q.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 1 and pools[0].kernel_size == 2 and pools[0].stride == 2
    assert q(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_unconvertible_module_is_named():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(TypeError, match=r"module '1' \(GELU\)"):
        prepare(model)


def test_unconvertible_function_is_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.sigmoid(F.relu(self.fc(x)))

    with pytest.raises(TypeError, match="sigmoid"):
        prepare(Net())


def test_untraceable_model_explains_why():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return F.relu(self.fc(x)) if x.sum() > 0 else x

    with pytest.raises(TypeError, match="control flow"):
        prepare(Net())


def test_bad_arguments():
    with pytest.raises(TypeError, match="QuantConfig"):
        prepare(nn.Sequential(nn.ReLU()), {"p": 2})
    with pytest.raises(TypeError, match="torch.nn.Module"):
        prepare("resnet18")
    with pytest.raises(ValueError, match="no ReLU"):
        prepare(nn.Sequential(nn.Linear(2, 2)))
    q = prepare(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    with pytest.raises(ValueError, match="already prepared"):
        prepare(q)


def test_max_pool_with_dilation_is_refused():
    with pytest.raises(TypeError, match="dilation"):
        prepare(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, dilation=2)))


@pytest.mark.parametrize(
    "name",
    [
        "cifar-resnet18",
        "cifar-resnet19",
        "cifar-resnet20",
        "cifar-resnet20-dp",
        "cifar-resnet34",
        "cifar-vgg16",
        "small-cnn",
    ],
)
def test_registered_cifar_models_prepare_and_convert(name):
    from noiseadaptor import convert, simulate
    from noiseadaptor.ann.models import create_model, list_models

    assert name in list_models()
    model = create_model(name, num_classes=7, in_channels=3)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    snn = convert(prepare(model, QuantConfig(p=2)))
    assert simulate(snn, [(x, torch.zeros(2, dtype=torch.long))], T=2, progress=False).num_samples == 2
