"""Model registry: ``create_model(name, num_classes=...)`` by the names users say."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """A one-line ValueError when a batch `x` cannot enter `model`'s first conv/linear layer (e.g. grey
    images into a network built for colour), instead of torch's error from deep inside the forward pass."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if first is None:
        return
    name, layer = first
    conv = isinstance(layer, nn.Conv2d)
    if x.dim() == (4 if conv else 2):
        wants = layer.in_channels if conv else layer.in_features
        if x.shape[1] != wants:
            unit = "channels" if conv else "features"
            raise ValueError(
                f"the data has {x.shape[1]} {unit} per sample but the network's first layer ({name}) takes {wants}: "
                f"build the model for this data (in_channels) or give it data with {wants} {unit}"
            )


def register_model(fn: Callable[..., nn.Module], name: str | None = None) -> Callable[..., nn.Module]:
    _REGISTRY[name or fn.__name__.replace("_", "-")] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build a registered model. torchvision models (resnet18 ... resnet152, vgg16, vgg16-bn) take
    ``weights=`` as torchvision does ("DEFAULT", "IMAGENET1K_V1", ...; None for random init)."""
    key = name.lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if kwargs.get("weights") is not None and not getattr(_REGISTRY[key], "pretrained", False):
        with_weights = ", ".join(m for m in list_models() if getattr(_REGISTRY[m], "pretrained", False))
        raise ValueError(
            f"weights {kwargs['weights']!r}: {name} has no pre-trained weights (torchvision's have: {with_weights}); "
            "start from your own float checkpoint with --init instead"
        )
    return _REGISTRY[key](num_classes=num_classes, in_channels=in_channels, **kwargs)


def _torchvision_model(arch: str) -> Callable[..., nn.Module]:
    def build(num_classes: int = 1000, in_channels: int = 3, weights: str | None = None) -> nn.Module:
        """torchvision's ImageNet architecture through get_model(); pre-trained weights by name."""
        import torchvision

        if in_channels != 3:
            raise ValueError(f"{arch} takes 3-channel images, got in_channels={in_channels}")
        try:
            model = torchvision.models.get_model(arch, weights=weights)
        except (OSError, RuntimeError) as err:  # no network, no cached file, or a bad file
            raise ValueError(
                f"could not load {arch} weights {weights!r} ({err}). torchvision downloads them to "
                "$TORCH_HOME/hub/checkpoints on first use; without internet, place the file there"
            ) from err
        if num_classes != 1000:  # a new head for another label set; the backbone keeps its weights
            head_owner, attr = (model, "fc") if hasattr(model, "fc") else (model.classifier, "6")
            old = getattr(head_owner, attr)
            setattr(head_owner, attr, nn.Linear(old.in_features, num_classes))
        return model

    build.__doc__ = f"torchvision {arch} (ImageNet layout: 7x7 stem and max-pool for ResNets)."
    build.pretrained = True  # takes weights=
    return build


for _arch in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg16_bn"):
    register_model(_torchvision_model(_arch), name=_arch.replace("_", "-"))


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def mlp_autoencoder(sizes: tuple[int, ...] = (784, 128, 64, 32, 64, 128, 784)) -> nn.Module:
    """The fully connected autoencoder of the ASGL paper's image reconstruction (004, Table 5):
    784-128-64-32-64-128-784 on flattened MNIST, ReLU hidden units (LIF neurons after `to_direct_snn`)
    and a linear output layer (a non-spiking read-out: the reconstruction is the sigmoid of its output,
    averaged over the steps). In the registry as ``mlp-autoencoder``, for ``--task reconstruct``, whose
    "classes" are the image's values (`noiseadaptor.data.reconstruction`): 784 for MNIST.
    The paper names only the sizes. With PyTorch's default initialisation and no normalisation, binary
    spikes into a threshold of 1 leave layers 3-5 silent (firing rates 0.09, 0.002, 0, 0, 0 at the start)
    and training stalls at the mean image, so each hidden layer has a BatchNorm1d before its neuron (as
    the directly trained SNNs of the same paper's classification tasks, tdBN-style; folded into the
    weights at inference)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers[:-2])


def _autoencoder_of(num_classes: int = 784, in_channels: int = 1) -> nn.Module:
    """ASGL Table 5's autoencoder for images of `num_classes` values (--task reconstruct)."""
    return mlp_autoencoder((num_classes, 128, 64, 32, 64, 128, num_classes))


register_model(_autoencoder_of, name="mlp-autoencoder")


class RecurrentMLP(nn.Module):
    """ASGL's SHD network (004, Table 3 and A.5): input features, one hidden layer with recurrent synapses
    V (its spikes of step t - 1 enter its input at step t), a linear read-out; 700-240-20 by default. As
    an ANN it has no time, so the recurrence is idle; `to_direct_snn` builds the spiking network through
    `spiking()`, the hidden neuron holding V. Eq. 19's synaptic current filter (tau_syn) is not modelled:
    the input current is W s + V s[t-1] at each step, the LIF membrane integrating it."""

    def __init__(self, num_classes: int = 20, in_channels: int = 1, features: int = 700, hidden: int = 240):
        super().__init__()
        self.fc = nn.Linear(in_channels * features, hidden)
        self.recurrent = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.out(torch.relu(self.fc(torch.flatten(x, 1))))

    def spiking(self, make_neuron) -> nn.Module:
        """The spiking form: flatten, W, a neuron (from `make_neuron()`) holding a copy of V, the read-out."""
        neuron = make_neuron()
        neuron.recurrent = copy.deepcopy(self.recurrent)
        return nn.Sequential(nn.Flatten(), copy.deepcopy(self.fc), neuron, copy.deepcopy(self.out))


@register_model
def shd_rsnn(num_classes: int = 20, in_channels: int = 1) -> nn.Module:
    """ASGL's recurrent SHD network 700-240-20 (`RecurrentMLP`), for --dataset shd with a direct method."""
    return RecurrentMLP(num_classes, in_channels)


@register_model
def small_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Module:
    """Three conv-BN-ReLU stages with max-pooling, for 8x8 to 32x32 inputs (the embedded default task).
    It keeps max-pooling on purpose: prepare() turns it into average-pooling as the paper does."""
    return nn.Sequential(
        *_conv_bn_relu(in_channels, width),
        *_conv_bn_relu(width, 2 * width),
        nn.MaxPool2d(2),
        *_conv_bn_relu(2 * width, 4 * width),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (1x1 conv-BN where the shape changes); the residual add
    comes before the last ReLU, so it lands before the spiking neuron after conversion."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stem (`stem_convs` conv-BN-ReLU layers) with no max-pool, then
    stages of BasicBlocks."""

    def __init__(
        self,
        blocks: list[int],
        widths: list[int],
        num_classes: int,
        in_channels: int = 3,
        hidden: int | None = None,
        stem_convs: int = 1,
    ):
        super().__init__()
        stem = _conv_bn_relu(in_channels, widths[0])
        for _ in range(stem_convs - 1):
            stem += _conv_bn_relu(widths[0], widths[0])
        self.stem = nn.Sequential(*stem)
        stages, c_in = [], widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths)):
            for j in range(n):
                stages.append(BasicBlock(c_in, width, stride=2 if i > 0 and j == 0 else 1))
                c_in = width
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = (
            nn.Linear(c_in, num_classes)
            if hidden is None
            # hidden: a two-layer classifier
            else nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
        )

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


@register_model
def cifar_resnet20(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """He et al. 2016's CIFAR ResNet-20: 3 stages x 3 blocks, 16-32-64 channels."""
    return CifarResNet([3, 3, 3], [16, 32, 64], num_classes, in_channels)


@register_model
def cifar_resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-18 with a 3x3 stem and no max-pool (the CIFAR variant the paper's Table 1 uses)."""
    return CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes, in_channels)


@register_model
def cifar_resnet20_dp(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """The "ResNet-20" of the dual-phase paper (002, Table 1: "ResNet-20 by adding two more layers to the
    ResNet-18", as OPT and CAP build it; the authors' code's ResNet_Modified): cifar-resnet18 with a stem
    of three 3x3 conv-BN-ReLU layers of 64 channels instead of one. Not He's 16-32-64 cifar-resnet20."""
    return CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes, in_channels, stem_convs=3)


@register_model
def cifar_resnet19(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-19 of the direct-training literature (Zheng et al. 2021, used by ASGL): a 128-channel 3x3
    stem, 3-3-2 blocks of 128-256-512 channels and a 256-unit hidden layer before the classifier."""
    return CifarResNet([3, 3, 2], [128, 256, 512], num_classes, in_channels, hidden=256)


@register_model
def cifar_resnet34(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return CifarResNet([3, 4, 6, 3], [64, 128, 256, 512], num_classes, in_channels)


def _vgg_features(config: list, in_channels: int) -> tuple[list[nn.Module], int]:
    """conv-BN-ReLU per number, "M" a 2x2 max-pool, "A" a 2x2 average pool; returns (layers, channels)."""
    layers, c_in = [], in_channels
    for c in config:
        if c in ("M", "A"):
            layers.append(nn.MaxPool2d(2) if c == "M" else nn.AvgPool2d(2))
        else:
            layers += _conv_bn_relu(c_in, c)
            c_in = c
    return layers, c_in


@register_model
def cifar_vgg16(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """VGG-16 with BatchNorm for 32x32 inputs; max-pooling (prepare() makes it average-pooling)."""
    config = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, _ = _vgg_features(config, in_channels)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))


@register_model
def cifarnet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CifarNet (Wu et al. 2019; ASGL Table 1) as the ASGL authors' code builds it: an encoding conv-BN
    of 128 channels with no neuron after it (its analog output is the next layer's input current at
    every step), conv-BN-ReLU 256, avg-pool, 512, avg-pool, 1024, 512, a 2x2 adaptive average pool and
    a 2048-4096-4096-classes classifier. ReLUs become LIF neurons under to_direct_snn."""
    layers, c_in = _vgg_features([256, "A", 512, "A", 1024, 512], 128)
    encode = [nn.Conv2d(in_channels, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)]
    head = [nn.Linear(c_in * 4, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 4096), nn.ReLU(inplace=True)]
    return nn.Sequential(*encode, *layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), *head, nn.Linear(4096, num_classes))


@register_model
def vggsnn(num_classes: int = 10, in_channels: int = 2) -> nn.Module:
    """VGGSNN (Deng et al. 2022, TET; ASGL Table 2) for 48x48 event frames of two polarities: conv-BN-ReLU
    64, 128, pool, 256, 256, pool, 512, 512, pool, 512, 512, pool (average pools), then one linear layer
    on the 512 x 3 x 3 features (an adaptive pool to 3x3 first, the identity at 48x48)."""
    config = [64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"]
    layers, c_in = _vgg_features(config, in_channels)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(c_in * 9, num_classes))


@register_model
def gesture_net(num_classes: int = 11, in_channels: int = 2) -> nn.Module:
    """The 8-layer DVS128 Gesture network of PLIF (Fang et al. 2021), the row ASGL's Table 7 compares
    with: five conv-BN-ReLU of 128 channels each followed by a 2x2 max-pool (128x128 frames -> 4x4), then
    a 512-unit hidden layer and the classifier (PLIF's dropout and voting layer are left out)."""
    layers, c_in = _vgg_features([128, "M"] * 5, in_channels)
    head = [nn.Linear(c_in * 16, 512), nn.ReLU(inplace=True), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten(), *head)


@register_model
def vgg13_snn(num_classes: int = 200, in_channels: int = 3) -> nn.Module:
    """The VGG-13 of ASGL's Tiny-ImageNet row (Table 8) as its authors' code builds it: conv-BN-ReLU 64, 64,
    pool, 128, 128, pool, 256, 256, pool, 512, 512, 512, pool, 512 (average pools), a global average pool
    and one linear layer."""
    config = [64, 64, "A", 128, 128, "A", 256, 256, "A", 512, 512, 512, "A", 512]
    layers, c_in = _vgg_features(config, in_channels)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
