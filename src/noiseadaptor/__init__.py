"""noiseadaptor: low-latency spiking neural networks from noise-injected, activation-quantized ANNs.

The pipeline mirrors torch.ao.quantization::

    qmodel = prepare(float_model, QuantConfig(p=2))   # ReLU -> QuantReLU, max-pool -> avg-pool
    init_scales(qmodel, calibration_images)           # layer-wise L2 initialisation of s (and BatchNorm
                                                      # statistics after a replaced max-pool)
    fit(qmodel, train_loader, epochs=...)             # quantization-aware training with noise
    snn = convert(qmodel)                             # IF neurons, threshold p*s, half-threshold start
    result = simulate(snn, test_loader, T=256)        # accuracy at every T in one run
    recording = record(snn, image, T=8)               # one input's spikes and membranes (noiseadaptor.plot)

The house, from the ground up: `data` (image and event data sets); `ann` (what is trained: models, the
quantizer, prepare, scale initialisation); `snn` (what runs: IF and LIF neurons, surrogates, convert,
simulate, record, run-time corrections, dual-phase calibration, operation counts); `io` (checkpoints,
atomic files, export, tables); `plot` (pictures of what the neurons do); `training` (the loop and the
optimiser); `methods` (the method registry); `runconfig` (one typed description of a run); `study` (one
cell, and the paired multi-seed study); `interop` (other simulators); `cli`.
"""

from .ann.calibrate import balance_thresholds, init_scales, reestimate_batchnorm
from .ann.check import CheckReport, check
from .ann.preparation import prepare, quantizers, requantize
from .ann.quantizer import QuantConfig, QuantReLU, quantize
from .snn.conversion import convert
from .snn.neurons import IFNeuron, SpikingNetwork
from .snn.recording import Recording, record
from .snn.simulation import SimulationResult, simulate
from .training import evaluate, fit

__all__ = [
    "check",
    "CheckReport",
    "QuantConfig",
    "QuantReLU",
    "quantize",
    "prepare",
    "quantizers",
    "requantize",
    "init_scales",
    "reestimate_batchnorm",
    "balance_thresholds",
    "convert",
    "IFNeuron",
    "SpikingNetwork",
    "simulate",
    "SimulationResult",
    "record",
    "Recording",
    "fit",
    "evaluate",
]
__version__ = "0.2.0"
