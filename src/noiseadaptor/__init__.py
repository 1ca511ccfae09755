"""noiseadaptor: low-latency spiking neural networks from noise-injected, activation-quantized ANNs.

The pipeline mirrors torch.ao.quantization::

    qmodel = prepare(float_model, QuantConfig(p=2))   # ReLU -> QuantReLU, max-pool -> avg-pool
    init_scales(qmodel, calibration_images)           # layer-wise L2 initialisation of s (and BatchNorm
                                                      # statistics after a replaced max-pool)
    fit(qmodel, train_loader, epochs=...)             # quantization-aware training with noise
    snn = convert(qmodel)                             # IF neurons, threshold p*s, half-threshold start
    result = simulate(snn, test_loader, T=256)        # accuracy at every T in one run

Subpackages: `ann` (what is trained: models, quantizer, prepare, scale initialisation), `snn` (what runs:
neurons, surrogates, convert, simulate, corrections, operation counts), `methods` (the method registry,
dual-phase calibration, direct training), `data` (image and event data), `io` (checkpoints, atomic files,
export, tables); at the top, what ties them together: `runconfig`, `train`, `compare`, `experiment`, `cli`.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from .ann.calibrate import balance_thresholds, init_scales, reestimate_batchnorm
from .ann.preparation import prepare, quantizers, requantize
from .ann.quantizer import QuantConfig, QuantReLU, quantize
from .snn.conversion import convert
from .snn.neurons import IFNeuron, SpikingNetwork
from .snn.simulation import SimulationResult, simulate
from .train import evaluate, fit

__all__ = [
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
    "fit",
    "evaluate",
]
__version__ = "0.1.0"

_MOVED = {
    "models": "ann.models", "quantizer": "ann.quantizer", "preparation": "ann.preparation",
    "calibrate": "ann.calibrate", "neurons": "snn.neurons", "kernels": "snn.kernels", "surrogate": "snn.surrogate",
    "conversion": "snn.conversion", "simulation": "snn.simulation", "corrections": "snn.corrections",
    "accounting": "snn.accounting", "dual_phase": "methods.dual_phase", "direct": "methods.direct",
    "events": "data.events", "checkpoint": "io.checkpoint", "export": "io.export", "report": "io.report",
}  # fmt: skip
"""Modules that moved into subpackages in 0.2 (session 14): their old names still import, with a warning,
until the next release."""


class _MovedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import noiseadaptor.quantizer` gives the module `noiseadaptor.ann.quantizer` itself (not a copy)."""

    def find_spec(self, name, path=None, target=None):
        old = name.removeprefix(__name__ + ".")
        if old == name or old not in _MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        new = f"{__name__}.{_MOVED[spec.name.removeprefix(__name__ + '.')]}"
        warnings.warn(f"{spec.name} is now {new}; the old name goes in the next release", DeprecationWarning, 2)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        pass


sys.meta_path.append(_MovedModule())
