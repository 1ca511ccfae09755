"""Convert your own model: a torchvision ResNet-18, to an SNN, and read its accuracy against T.

Any `torch.nn.Module` whose activations are ReLUs converts: `prepare` traces it with torch.fx, gives every
ReLU call its own quantizer (torchvision's ResNet reuses one `nn.ReLU` module twice per block: each call
gets its own), and turns its max-pool into an average pool. Here it is torchvision's own `resnet18`,
built by `torchvision.models.resnet18(weights=...)` as in any torchvision code, with a 10-class head,
trained on the embedded digits enlarged to 32x32 RGB (no download). With the internet, `--weights DEFAULT`
starts from torchvision's ImageNet weights instead of random ones.

    python docs/tutorials/torchvision_resnet.py                 # about a minute on a 2-core laptop CPU
    python docs/tutorials/torchvision_resnet.py --weights DEFAULT
    python docs/tutorials/torchvision_resnet.py --toy           # seconds (what the tests run)
"""

import argparse

import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset, TensorDataset

import noiseadaptor as na
from noiseadaptor.data import get_dataset
from noiseadaptor.training.optim import OptimizerConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--weights", default=None, help="torchvision weights for resnet18 (DEFAULT, IMAGENET1K_V1)")
parser.add_argument("--toy", action="store_true", help="32 images and one epoch each, to check it runs")
args = parser.parse_args()
float_epochs, qat_epochs, T = (1, 1, 8) if args.toy else (10, 5, 64)
torch.manual_seed(0)


def rgb32(data):
    """The 8x8 grey digits as 32x32 RGB images (ResNet-18's stem divides the size by 4)."""
    x = torch.stack([image for image, _ in data])
    y = torch.tensor([int(label) for _, label in data])
    return TensorDataset(F.interpolate(x, size=32, mode="bilinear").repeat(1, 3, 1, 1), y)


digits = get_dataset("digits")
train, test = rgb32(digits.train), rgb32(digits.test)
if args.toy:
    train, test = Subset(train, range(32)), Subset(test, range(32))
train_loader = DataLoader(train, batch_size=16 if args.toy else 64, shuffle=True)
test_loader = DataLoader(test, batch_size=128)

# Your model, as torchvision builds it; a new head for 10 classes.
model = torchvision.models.resnet18(weights=args.weights)
model.fc = nn.Linear(model.fc.in_features, 10)
na.fit(model, train_loader, epochs=float_epochs, lr=0.05, progress=False)
print(f"resnet18 (weights={args.weights}), float: {100 * na.evaluate(model, test_loader):.2f} %")

# Prepare says what it did: one quantizer per ReLU call, and the max-pool now an average pool.
qmodel = na.prepare(model, na.QuantConfig(p=2))
pools = [type(m).__name__ for m in qmodel.modules() if "Pool" in type(m).__name__]
print(f"prepared: {len(na.quantizers(qmodel))} quantizers (17 ReLU calls), pools {pools}")
na.init_scales(qmodel, next(iter(train_loader))[0])  # also re-estimates BatchNorm after the replaced max-pool
print(f"quantized, before QAT: {100 * na.evaluate(qmodel, test_loader):.2f} %")
na.fit(qmodel, train_loader, epochs=qat_epochs, lr=0.02, optimizer=OptimizerConfig.noise_adaptor(), progress=False)
print(f"quantized, after QAT: {100 * na.evaluate(qmodel, test_loader):.2f} %")

snn = na.convert(qmodel)
result = na.simulate(snn, test_loader, T=T, progress=False, reference=qmodel)
print("\nT      " + " ".join(f"{t:>6}" for t in (1, 2, 4, 8, 16, 32, 64) if t <= T))
print("SNN %  " + " ".join(f"{100 * result.accuracy[t]:6.2f}" for t in (1, 2, 4, 8, 16, 32, 64) if t <= T))
print("agree  " + " ".join(f"{100 * result.agreement[t]:6.2f}" for t in (1, 2, 4, 8, 16, 32, 64) if t <= T)
      + "   (% of images where the SNN predicts what the quantized ANN does)")  # fmt: skip
