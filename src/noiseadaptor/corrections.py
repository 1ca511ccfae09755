"""Two-stage offset-spike calibration (COS, Hao et al. 2023, arXiv 2302.10685).

Stage one runs the network for rho steps on the actual input. A neuron whose residual membrane ends
outside [0, threshold) has an offset: it fired fewer spikes (residual >= threshold) or more (residual
< 0) than its input warrants. Its initial membrane is shifted by that many whole thresholds, the
network is reset, and stage two (the reported simulation) runs from the shifted start.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .neurons import SpikingNetwork


@torch.inference_mode()
def calibrate_offsets(snn: SpikingNetwork, x: Tensor, pre_steps: int, max_shift: int | None = 1) -> None:
    """Shift each neuron's initial membrane (per sample, per neuron) by the offset its residual shows
    after `pre_steps` steps on `x`. `max_shift` bounds the shift in thresholds (1: COS's lightweight
    variant; None: the full offset)."""
    snn.reset()
    for _ in range(pre_steps):
        snn(x)
    for _, neuron in snn.neurons():
        offset = torch.floor(neuron.membrane / neuron.threshold)
        if max_shift is not None:
            offset = offset.clamp(-max_shift, max_shift)
        neuron.initial_membrane = neuron.initial_membrane + offset
    snn.reset()
