"""Two-stage offset-spike calibration (COS, Hao et al. 2023, arXiv 2302.10685), as its released code
(hzc1208/ANN2SNN_COS) does it.

Layer by layer, from the input: run the network for rho steps on the actual input (the layers before
already calibrated), and read each neuron of this layer at the end:
- residual membrane < 0 after at least one spike: one spike too many. Lower the initial membrane by
  one threshold, or by enough to remove the spike fired at the lowest potential if that is more.
- residual >= threshold (a saturated neuron): one spike too few. Raise the initial membrane by one
  threshold, or by enough to make the highest non-firing step fire if that is more.
Then reset and run the reported simulation. Per sample, per neuron; the rho steps are not counted in
T, as in the paper and its code.

SRP (Hao et al., AAAI 2023, arXiv 2302.02091), as its released code (hzc1208/ANN2SNN_SRP, MPLayer) does it:
run the whole network tau steps on the actual input from the usual start, then, per sample, silence every
neuron whose residual membrane is not positive (u <= 1e-3 thresholds): it mostly marks a neuron whose ANN
activation is 0 but which fires early because of uneven spike arrival (the paper's largest share of
unevenness error). Reset and run the reported simulation with those neurons emitting nothing. The tau
steps are not counted in T by the paper; `simulate` reports both counts.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ..hooks import StopForward
from .neurons import IFNeuron, SpikingNetwork


@torch.inference_mode()
def calibrate_offsets(snn: SpikingNetwork, x: Tensor, pre_steps: int) -> None:
    """Shift every neuron's initial membrane by its offset on input batch `x` (see the module doc)."""
    for _, neuron in snn.neurons():
        trace = _Trace(neuron)
        handles = [neuron.register_forward_pre_hook(trace.before), neuron.register_forward_hook(trace.after)]
        try:
            snn.reset()
            for _ in range(pre_steps):
                with contextlib.suppress(StopForward):  # later layers are not needed
                    snn(x)
        finally:
            for h in handles:
                h.remove()
        neuron.initial_membrane = neuron.initial_membrane + trace.shift()
    snn.reset()


@torch.inference_mode()
def silence_by_residual(snn: SpikingNetwork, x: Tensor, pre_steps: int) -> None:
    """SRP: set every neuron's `output_mask` from a `pre_steps`-step run on input batch `x` (see the module
    doc). The pre-run is the network as it is configured (e.g. with negative spikes), without masks."""
    neurons = [n for _, n in snn.neurons()]
    for neuron in neurons:
        neuron.output_mask = None
    snn.reset()
    snn.run(x, pre_steps)
    for neuron in neurons:
        neuron.output_mask = (neuron.membrane > SRP_RESIDUAL * neuron.threshold).to(neuron.membrane.dtype)
    snn.reset()


SRP_RESIDUAL = 1e-3
"""The authors' test ``v > 1e-3`` (in thresholds) for a positive residual membrane."""

_SENTINEL = 1000.0


class _Trace:
    """Per-neuron record over the pre-simulation, in thresholds: the lowest potential at which it fired,
    the highest potential at which it did not, its spike count and its final residual."""

    def __init__(self, neuron: IFNeuron):
        self.neuron = neuron
        self.lowest_fired = self.highest_silent = self.count = self.potential = None

    def before(self, neuron: IFNeuron, args) -> None:
        start = neuron.membrane if neuron.membrane is not None else neuron.initial_membrane * neuron.threshold
        self.potential = (start + args[0]) / neuron.threshold  # pre-reset potential this step

    def after(self, neuron: IFNeuron, args, output: Tensor) -> None:
        fired = self.potential >= 1
        if self.count is None:
            self.count = torch.zeros_like(self.potential)
            # the reference's sentinels: a neuron that fired at every pre-step has "highest silent
            # potential" -1000, so a saturated one is raised by 1001 thresholds (fires all through T)
            self.lowest_fired = torch.full_like(self.potential, _SENTINEL)
            self.highest_silent = torch.full_like(self.potential, -_SENTINEL)
        self.count += fired
        self.lowest_fired = torch.where(fired, torch.minimum(self.lowest_fired, self.potential), self.lowest_fired)
        self.highest_silent = torch.where(
            fired, self.highest_silent, torch.maximum(self.highest_silent, self.potential)
        )
        raise StopForward

    def shift(self) -> Tensor:
        residual = self.neuron.membrane / self.neuron.threshold
        over = (residual < 0) & (self.count > 0)
        under = residual >= 1
        down = torch.clamp(self.lowest_fired - 0.999, min=1.0)
        up = torch.clamp(1.001 - self.highest_silent, min=1.0)
        return torch.where(under, up, torch.where(over, -down, torch.zeros_like(residual)))
