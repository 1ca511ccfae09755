"""The demo, step by step: what `noiseadaptor run` does, for Noise Adaptor, in the Python API.

A float network learns the 8x8 digits that ship with scikit-learn; `prepare` turns its ReLUs into noisy
quantizers; quantization-aware training (Algorithm 1) fine-tunes it; `convert` makes integrate-and-fire
neurons of the quantizers; `simulate` reads the accuracy at every T = 1..256 in one run, with the operation
count and energy; `record` and `noiseadaptor.plot` draw what the neurons do.

    python docs/tutorials/demo.py            # about a minute on a 2-core laptop CPU
    python docs/tutorials/demo.py --toy      # seconds: a small network, one epoch (what the tests run)
"""

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import noiseadaptor as na
from noiseadaptor import plot
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.training.optim import OptimizerConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--toy", action="store_true", help="a small network and one epoch each, to check it runs")
parser.add_argument("--out", type=Path, default=Path("tutorial-demo"), help="where the figures go")
args = parser.parse_args()
model, epochs, T = ("small-cnn", 1, 16) if args.toy else ("cifar-resnet20", 30, 256)
torch.manual_seed(0)

# 1. Data: 1,438 training and 359 test images, standardised. Loaders as any PyTorch code has them.
digits = get_dataset("digits")
train_loader = DataLoader(digits.train, batch_size=64, shuffle=True)
test_loader = DataLoader(digits.test, batch_size=256)

# 2. A float network, trained as usual (SGD with momentum, cosine schedule).
float_model = create_model(model, num_classes=10, in_channels=1)
na.fit(float_model, train_loader, epochs=epochs, lr=0.05, progress=False)
print(f"float network ({model}): {100 * na.evaluate(float_model, test_loader):.2f} % test accuracy")

# 3. Prepare: every ReLU call becomes its own quantizer s * round(clip(v / s + noise, 0, p)), p = 2 levels;
#    the scales s are initialised layer by layer to fit the float activations (L2).
qmodel = na.prepare(float_model, na.QuantConfig(p=2))
na.init_scales(qmodel, next(iter(train_loader))[0])
before = na.evaluate(qmodel, test_loader)
print(f"quantizers: {len(na.quantizers(qmodel))}, ANN accuracy before QAT {100 * before:.2f} %")

# 4. Quantization-aware training with noise (Algorithm 1): uniform noise U(-0.5, 0.5) before the rounding,
#    learned scales without weight decay (the paper's optimiser).
na.fit(qmodel, train_loader, epochs=epochs, lr=0.05, optimizer=OptimizerConfig.noise_adaptor(), progress=False)
print(f"after QAT: {100 * na.evaluate(qmodel, test_loader):.2f} % (evaluated without noise)")

# 5. Convert and simulate: IF neurons with threshold p*s, membrane pre-charged to half of it; one run of
#    T steps reports every T. `reference=` measures each layer's conversion error against the ANN.
snn = na.convert(qmodel)
result = na.simulate(snn, test_loader, T=T, synops=True, reference=qmodel, progress=False)
shown = [t for t in (1, 2, 4, 8, 16, 32, 64, 128, 256) if t <= T]
print("\n" + " ".join(f"{'T=' + str(t):>7}" for t in shown))
print(" ".join(f"{100 * result.accuracy[t]:7.2f}" for t in shown) + "   SNN accuracy (%)")
print(" ".join(f"{result.energy_pj_per_sample[t] / result.ann_energy_pj_per_sample:7.3f}" for t in shown)
      + "   energy, SNN / ANN (Horowitz 45 nm)")  # fmt: skip

# 6. What the neurons do: one test image's spikes and membranes, and the per-layer curves against T.
args.out.mkdir(parents=True, exist_ok=True)
image, label = digits.test[0]
recording = na.record(snn, image, T=16, per_layer=32)
figures = {"raster": plot.raster(recording), "traces": plot.traces(recording),
           "firing_rates": plot.firing_rates(result), "conversion_error": plot.conversion_error(result)}  # fmt: skip
for name, figure in figures.items():
    figure.savefig(args.out / f"{name}.png", dpi=100)
first, last = recording.layers[0], recording.layers[-1]
print(f"\ntest image 0 (a {label}): predicted {recording.prediction()[-1].item()} after 16 steps")
error = result.layer_error
print(f"conversion error at T=1 -> T={T}: first layer {error[1][first]:.3f} -> {error[T][first]:.3f}, "
      f"last {error[1][last]:.3f} -> {error[T][last]:.3f}")  # fmt: skip
print(f"figures: {', '.join(f'{n}.png' for n in figures)} in {args.out}")
