"""Direct training: ASGL (learned surrogate width, spike noise) against a fixed surrogate gradient.

Conversion trains an ANN and turns it into IF neurons; direct training trains the SNN itself: LIF neurons
(leak 1 - 1/tau, hard reset, threshold 1) over T steps, with the spike's gradient taken from a smooth
stand-in (the surrogate), here a rectangle of width alpha. ASGL (paper 004) learns alpha per layer and, in
training, passes the surrogate's analog value instead of the spike through a random mask (a spike with
probability `spike_noise_p`, 0.5 here), which keeps the learned width from collapsing. The baseline "SG"
is the same network with a fixed width and true spikes. Same float architecture, data, seed and epochs.

    python docs/tutorials/asgl_direct_training.py          # about a minute and a half on a 2-core laptop CPU
    python docs/tutorials/asgl_direct_training.py --toy    # seconds (what the tests run)
"""

import argparse

import torch
from torch.utils.data import DataLoader, Subset

import noiseadaptor as na
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.snn.lif import DirectConfig, accuracy_per_step, to_direct_snn
from noiseadaptor.training.optim import OptimizerConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--toy", action="store_true", help="128 images and one epoch, to check it runs")
args = parser.parse_args()
epochs, T = (1, 2) if args.toy else (20, 4)

digits = get_dataset("digits")
train = Subset(digits.train, range(128)) if args.toy else digits.train
train_loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
test_loader = DataLoader(digits.test, batch_size=256)

for name, config in (
    ("ASGL", DirectConfig.asgl(time_steps=T, alpha=1.0, spike_noise_p=0.5)),
    ("SG", DirectConfig.surrogate_gradient(time_steps=T, alpha=1.0)),
):
    torch.manual_seed(0)  # the same initial weights for both
    snn = to_direct_snn(create_model("small-cnn", num_classes=10, in_channels=1), config)
    # the ASGL authors' optimiser: widths by their own Adam (lr 3e-4), no decay on biases, norms, widths
    na.fit(snn, train_loader, epochs=epochs, lr=0.05, optimizer=OptimizerConfig.asgl(), progress=False,
           on_epoch_start=snn.start_epoch)  # fmt: skip
    accuracy = accuracy_per_step(snn, test_loader)
    widths = ", ".join(f"{n.alpha.item():.3f}" for _, n in snn.neurons())
    per_step = "  ".join(f"t={t}: {100 * a:.2f}" for t, a in accuracy.items())
    print(f"{name:<5} test accuracy (%) with the output summed over steps 1..t: {per_step}")
    print(f"      surrogate width per layer: {widths}")
