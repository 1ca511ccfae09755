"""Spiking neurons and the network that holds them."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class IFNeuron(nn.Module):
    """Integrate-and-fire neuron with reset by subtraction (paper Eq. 1-2).

    Each step: ``u += x``; fire where ``u >= threshold``; ``u -= threshold`` where fired; output
    ``spike * threshold`` so the next layer's weights are the ANN's unchanged. The membrane starts at
    ``initial_membrane * threshold`` (0.5: the pre-charge that turns the neuron's flooring into the
    ANN's rounding). `initial_membrane` may be a tensor broadcastable to one sample's shape
    (per-channel or per-neuron starts for run-time corrections and calibration).

    Negative spikes (QFFS, Li, Ma & Furber 2022), off by default: a neuron whose membrane falls below
    0 while its net spike count is positive has over-fired; it emits -threshold and gets threshold back,
    so its count is corrected downward and never goes below zero.

    State lives between calls (one call = one time step) until `reset()`; `spike_count` is the number
    of spike events (positive and negative) since then, `steps` the number of steps.
    """

    def __init__(self, threshold: Tensor | float, initial_membrane: Tensor | float = 0.5,
                 negative_spikes: bool = False):
        super().__init__()
        threshold = torch.as_tensor(threshold, dtype=torch.float32).detach().clone()
        if (threshold <= 0).any():
            raise ValueError(f"IFNeuron threshold must be positive, got {threshold}")
        self.register_buffer("threshold", threshold)
        self.register_buffer("initial_membrane", torch.as_tensor(initial_membrane, dtype=torch.float32).clone())
        self.negative_spikes = negative_spikes
        self.reset()

    def reset(self) -> None:
        self.membrane: Tensor | None = None
        self.net_count: Tensor | None = None  # per-neuron positive minus negative spikes (negative_spikes only)
        self.spike_count: Tensor | int = 0
        self.steps = 0

    def forward(self, x: Tensor) -> Tensor:
        if self.membrane is None:
            self.membrane = (self.initial_membrane * self.threshold).to(x.dtype).expand_as(x)
        u = self.membrane + x
        spikes = (u >= self.threshold).to(x.dtype)
        if self.negative_spikes:
            if self.net_count is None:
                self.net_count = torch.zeros_like(x)
            spikes = spikes - ((u < 0) & (self.net_count > 0)).to(x.dtype)
            self.net_count = self.net_count + spikes
            self.spike_count = self.spike_count + spikes.abs().sum()
        else:
            self.spike_count = self.spike_count + spikes.sum()
        out = spikes * self.threshold
        self.membrane = u - out
        self.steps += 1
        return out

    def neurons_per_sample(self) -> int:
        return 0 if self.membrane is None else self.membrane[0].numel()

    def extra_repr(self) -> str:
        t = self.threshold
        return f"threshold={t.item():.4g}" if t.numel() == 1 else f"threshold=<{tuple(t.shape)}>"


class SpikingNetwork(nn.Module):
    """A converted network: each call advances every neuron by one time step on input `x`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def neurons(self) -> list[tuple[str, IFNeuron]]:
        return [(name, m) for name, m in self.net.named_modules() if isinstance(m, IFNeuron)]

    def reset(self) -> None:
        """Return every neuron to its initial membrane, with zero spikes counted."""
        for _, neuron in self.neurons():
            neuron.reset()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
