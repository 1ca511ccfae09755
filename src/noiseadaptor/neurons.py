"""Spiking neurons and the network that holds them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import kernels


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

    One call advances `steps_per_call` steps (set by `SpikingNetwork.run`; 1 by default). With K > 1
    the input is K steps stacked time-major, ``[K*B, ...]``, or ``[B, ...]`` for an input that is the
    same at every step (the analog input after the first layer): stateless layers then run once on all
    K steps (or once for all of them), and only the neuron loops over time. The membrane is updated in
    place, so the state is one tensor the size of one step's input, whatever K and T.

    State lives between calls until `reset()`: `spike_count` is the number of spike events (positive
    and negative) since then, `step_counts` those of each step of the last call, `steps` the steps run.
    """

    def __init__(
        self, threshold: Tensor | float, initial_membrane: Tensor | float = 0.5, negative_spikes: bool = False
    ):
        super().__init__()
        threshold = torch.as_tensor(threshold, dtype=torch.float32).detach().clone()
        if (threshold <= 0).any():
            raise ValueError(f"IFNeuron threshold must be positive, got {threshold}")
        self.register_buffer("threshold", threshold)
        self.register_buffer("initial_membrane", torch.as_tensor(initial_membrane, dtype=torch.float32).clone())
        self.negative_spikes = negative_spikes
        self.steps_per_call, self.batch_size = 1, None  # set by SpikingNetwork.run
        self.reset()

    def reset(self) -> None:
        self.membrane: Tensor | None = None
        self.net_count: Tensor | None = None  # per-neuron positive minus negative spikes (negative_spikes only)
        self.spike_count: Tensor | int = 0
        self.step_counts: Tensor | None = None
        self.steps = 0
        self._fused_threshold: float | None = None  # set when the fused CUDA kernel can run this batch

    @torch.no_grad()  # a spike has no gradient; surrogate-gradient training uses direct.LIFNeuron
    def forward(self, x: Tensor) -> Tensor:
        K = self.steps_per_call
        if self.membrane is None:
            batch = x.shape[0] if K == 1 else self.batch_size
            start = (self.initial_membrane * self.threshold).to(x.dtype)
            self.membrane = start.expand(batch, *x.shape[1:]).clone()  # own memory: updated in place
            # read once per batch: .item() waits for the GPU
            self._fused_threshold = (
                self.threshold.item()
                if not self.negative_spikes and kernels.fused_available(x, self.threshold)
                else None
            )
        m = self.membrane
        constant = x.shape[0] == m.shape[0]  # K == 1, or the same input at every step
        if self._fused_threshold is not None and x.is_contiguous():
            out, counts = kernels.integrate_and_fire(m, x, self._fused_threshold, K)
            self.step_counts = counts.double()
            self.spike_count = self.spike_count + self.step_counts.sum()
            self.steps += K
            return out.view(K * m.shape[0], *m.shape[1:])
        xs = x.view(K, *m.shape) if not constant else None
        spikes = torch.empty((K, *m.shape), dtype=x.dtype, device=x.device)  # +1 / -1 / 0 per step
        if self.negative_spikes and self.net_count is None:
            self.net_count = torch.zeros_like(m)
        for k in range(K):
            # float compares written into the output and one fused update: a CPU ``torch.where`` of a
            # bool mask costs several times these (benchmarks/speed.py, docs/PERFORMANCE.md)
            m.add_(x if constant else xs[k])
            fired = torch.ge(m, self.threshold, out=spikes[k])
            if self.negative_spikes:  # over-fired: below zero with a positive net count
                fired.sub_(((m < 0) & (self.net_count > 0)).to(fired.dtype))
                self.net_count.add_(fired)
            m.addcmul_(fired, self.threshold, value=-1)
        events = spikes.abs() if self.negative_spikes else spikes
        # per-sample sums are exact in float32 (< 2**24 neurons a sample); the batch total in float64
        self.step_counts = events.view(K, m.shape[0], -1).sum(2).double().sum(1)
        self.spike_count = self.spike_count + self.step_counts.sum()
        self.steps += K
        return spikes.mul_(self.threshold).view(K * m.shape[0], *m.shape[1:])

    def neurons_per_sample(self) -> int:
        return 0 if self.membrane is None else self.membrane[0].numel()

    def extra_repr(self) -> str:
        t = self.threshold
        return f"threshold={t.item():.4g}" if t.numel() == 1 else f"threshold=<{tuple(t.shape)}>"


class SpikingNetwork(nn.Module):
    """A converted network. `snn(x)` advances every neuron by one time step on input `x`;
    `snn.run(x, K)` advances K steps in one pass and returns the K outputs, ``[K, B, ...]``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def neurons(self) -> list[tuple[str, IFNeuron]]:
        return [(name, m) for name, m in self.net.named_modules() if isinstance(m, IFNeuron)]

    def reset(self) -> None:
        """Return every neuron to its initial membrane, with zero spikes counted."""
        for _, neuron in self.neurons():
            neuron.reset()

    def run(self, x: Tensor, steps: int) -> Tensor:
        """`steps` time steps of the same analog input `x`, layer by layer over all steps at once
        (memory grows with `steps`, not with the total T; see IFNeuron)."""
        neurons = self.neurons()
        for _, n in neurons:
            n.steps_per_call, n.batch_size = steps, x.shape[0]
        try:
            out = self.net(x)
        finally:
            for _, n in neurons:
                n.steps_per_call, n.batch_size = 1, None
        if out.shape[0] == x.shape[0] * steps:
            return out.view(steps, x.shape[0], *out.shape[1:])
        return out.expand(steps, *out.shape)  # no neuron on the way: the same every step

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
