"""noiseadaptor: low-latency spiking neural networks from noise-injected, activation-quantized ANNs.

The pipeline mirrors torch.ao.quantization::

    qmodel = prepare(float_model, QuantConfig(p=2))   # ReLU -> QuantReLU, max-pool -> avg-pool
    init_scales(qmodel, calibration_images)           # layer-wise L2 initialisation of s (and BatchNorm
                                                      # statistics after a replaced max-pool)
    fit(qmodel, train_loader, epochs=...)             # quantization-aware training with noise
    snn = convert(qmodel)                             # IF neurons, threshold p*s, half-threshold start
    result = simulate(snn, test_loader, T=256)        # accuracy at every T in one run
"""

from .calibrate import balance_thresholds, init_scales, reestimate_batchnorm
from .conversion import convert
from .neurons import IFNeuron, SpikingNetwork
from .preparation import prepare, quantizers, requantize
from .quantizer import QuantConfig, QuantReLU, quantize
from .simulation import SimulationResult, simulate
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
