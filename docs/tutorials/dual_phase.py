"""Dual-phase conversion: Quant-Noise fine-tuning (Phase I), then layer-wise calibration of the SNN (Phase II).

Paper 002 targets a small T directly. Phase I quantizes the ANN to p = T levels, so that T steps of an IF
neuron can express every level, and fine-tunes it with Quant-Noise (each activation skips the rounding with
probability 0.1). Phase II calibrates the converted SNN layer by layer on unlabelled training images against
the quantized ANN: coarse sets each neuron's initial membrane in closed form (Eq. 16); fine then trains the
weights and initial membranes by backpropagation through the T steps to match the ANN's outputs (Eq. 17-19).
The test set is only read at the end.

    python docs/tutorials/dual_phase.py          # about a minute on a 2-core laptop CPU
    python docs/tutorials/dual_phase.py --toy    # seconds (what the tests run)
"""

import argparse
import copy

import torch
from torch.utils.data import DataLoader

import noiseadaptor as na
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.snn.calibrate import dual_phase_calibrate

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--toy", action="store_true", help="one epoch, few calibration images, to check it runs")
args = parser.parse_args()
T = 4
epochs, samples, calibration_epochs = (1, 32, 1) if args.toy else (20, 256, 30)
torch.manual_seed(0)

digits = get_dataset("digits")
train_loader = DataLoader(digits.train, batch_size=64, shuffle=True)
test_loader = DataLoader(digits.test, batch_size=256)
float_model = create_model("cifar-resnet20" if not args.toy else "small-cnn", num_classes=10, in_channels=1)
na.fit(float_model, train_loader, epochs=epochs, lr=0.05, progress=False)

# Phase I: p = T levels, Quant-Noise in training.
qmodel = na.prepare(float_model, na.QuantConfig.dual_phase(p=T, quant_noise_p=0.1))
na.init_scales(qmodel, next(iter(train_loader))[0])
na.fit(qmodel, train_loader, epochs=epochs, lr=0.02, progress=False)
print(f"Phase I: quantized ANN (p={T}) {100 * na.evaluate(qmodel, test_loader):.2f} %")


def at_T(snn) -> str:
    result = na.simulate(snn, test_loader, T=T, progress=False)
    return "  ".join(f"T={t}: {100 * result.accuracy[t]:.2f}" for t in range(1, T + 1))


snn = na.convert(qmodel)
print(f"converted SNN             {at_T(snn)}")
# Phase II on unlabelled training images: coarse alone, then coarse and fine.
coarse = copy.deepcopy(snn)
dual_phase_calibrate(coarse, qmodel, train_loader, T=T, fine=False, num_samples=samples)
print(f"Phase II, coarse          {at_T(coarse)}")
report = dual_phase_calibrate(snn, qmodel, train_loader, T=T, num_samples=samples, epochs=calibration_epochs)
print(f"Phase II, coarse + fine   {at_T(snn)}")
for layer, r in report["fine"].items():
    print(f"  {layer}: held-out KL to the ANN {r['loss_before']:.3g} -> {r['loss_after']:.3g}")
