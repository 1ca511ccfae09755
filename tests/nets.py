"""Small converted networks shared by the export and interoperability tests."""

import torch
from torch import nn

from noiseadaptor import QuantConfig, convert, init_scales, prepare, quantizers
from noiseadaptor.ann.models import CifarResNet


def spiking(model: nn.Module, x: torch.Tensor, seed: int = 0):
    """A converted `model` whose neurons fire at varied rates: calibrated scales, each then scaled by a
    random factor, and non-trivial BatchNorm statistics (folded by convert)."""
    torch.manual_seed(seed)
    q = prepare(model, QuantConfig(p=2, noise="none")).eval()
    init_scales(q, x)
    for _, m in quantizers(q):
        m.scale.data *= 0.5 + torch.rand(())
    for m in q.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return convert(q)


def conv_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3)
    )


def vgg_net():  # VGG-style: conv-BN-ReLU blocks, max-pooling (average after prepare), a linear head
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3),
    )  # fmt: skip


def residual_net():  # identity and 1x1-conv shortcuts, AdaptiveAvgPool2d, torch.flatten
    return CifarResNet([1, 1], [4, 8], num_classes=3, in_channels=1)
