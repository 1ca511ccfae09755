"""Spiking neurons and the network that holds them.

Step mode is explicit: a `StepMode` says how many time steps one call of the network advances and for
how large a batch; `SpikingNetwork.run` sets it for the duration of one call (`SpikingNetwork.step_mode`),
and every neuron reads it from there. `StepMode.unfold` is the one place that tells an input stacked over
the steps (``[steps*batch, ...]``, time-major) from one that is the same at every step (``[batch, ...]``).
The integrate-and-fire update itself is `integrate_and_fire`, called by the neuron's eager loop and by
dual-phase calibration's differentiable run (the fused CUDA kernel in kernels.py is tested bit-identical
against it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import kernels


@dataclass(frozen=True)
class StepMode:
    """One call of a network advances `steps` time steps for a batch of `batch` samples."""

    steps: int = 1
    batch: int | None = None

    def unfold(self, x: Tensor, batch: int | None = None) -> Tensor | None:
        """`x` as ``[steps, batch, ...]`` when it holds one input per step, or None when it is the same at
        every step (one step per call, or a ``[batch, ...]`` input such as the analog image's current)."""
        batch = self.batch if batch is None else batch
        if self.steps == 1 or x.shape[0] == batch:
            return None
        return x.reshape(self.steps, batch, *x.shape[1:])


SINGLE_STEP = StepMode()


def integrate_and_fire(
    membrane: Tensor,
    x: Tensor,
    threshold: Tensor,
    spike: Callable[[Tensor], Tensor] | None = None,
    out: Tensor | None = None,
    correct: Callable[[Tensor, Tensor], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """One step of IF neurons with reset by subtraction: ``u += x``; fire where ``u >= threshold``;
    ``u -= spike * threshold``. Returns (membrane, spikes).

    Without `spike` (inference): in place, the membrane updated and the spikes (0/1 as a float compare)
    written into `out`; `correct(membrane, spikes)` may change the spikes before the reset (negative
    spikes). With `spike` (a surrogate's Heaviside of u - threshold, as `noiseadaptor.snn.surrogate.spike`):
    new tensors, with gradients through the spike and the reset."""
    if spike is None:
        membrane.add_(x)
        fired = torch.ge(membrane, threshold, out=out)
        if correct is not None:
            correct(membrane, fired)
        membrane.addcmul_(fired, threshold, value=-1)
        return membrane, fired
    membrane = membrane + x
    fired = spike(membrane - threshold)
    return membrane - fired * threshold, fired


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

    `output_mask` (SRP, see corrections.silence_by_residual), None by default: a 0/1 tensor broadcastable
    to the batch's membrane; where 0 the neuron's spikes are dropped (it still integrates and resets).

    One call advances `mode.steps` steps (`StepMode`, set by `SpikingNetwork.run`; 1 by default). With
    K > 1 the input is K steps stacked time-major, ``[K*B, ...]``, or ``[B, ...]`` for an input that is the
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
        self.output_mask: Tensor | None = None  # SRP: 0 silences a neuron (per sample), kept across reset()
        self.mode = SINGLE_STEP  # set by SpikingNetwork.step_mode
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
        K = self.mode.steps
        if self.membrane is None:
            batch = x.shape[0] if K == 1 else self.mode.batch
            start = (self.initial_membrane * self.threshold).to(x.dtype)
            self.membrane = start.expand(batch, *x.shape[1:]).clone()  # own memory: updated in place
            # read once per batch: .item() waits for the GPU
            self._fused_threshold = (
                self.threshold.item()
                if not self.negative_spikes and self.output_mask is None and kernels.fused_available(x, self.threshold)
                else None
            )
        m = self.membrane
        xs = self.mode.unfold(x, m.shape[0])  # None: the same input at every step
        if self._fused_threshold is not None and x.is_contiguous():
            out, counts = kernels.integrate_and_fire(m, x, self._fused_threshold, K)
            self.step_counts = counts.double()
            self.spike_count = self.spike_count + self.step_counts.sum()
            self.steps += K
            return out.view(K * m.shape[0], *m.shape[1:])
        spikes = torch.empty((K, *m.shape), dtype=x.dtype, device=x.device)  # +1 / -1 / 0 per step
        correct = None
        if self.negative_spikes:
            if self.net_count is None:
                self.net_count = torch.zeros_like(m)
            correct = self._negative
        for k in range(K):
            # float compares written into the output and one fused update: a CPU ``torch.where`` of a
            # bool mask costs several times these (benchmarks/speed.py, docs/PERFORMANCE.md)
            integrate_and_fire(m, x if xs is None else xs[k], self.threshold, out=spikes[k], correct=correct)
        if self.output_mask is not None:  # a silenced neuron integrates and resets as before, but emits nothing
            spikes.mul_(self.output_mask)
        events = spikes.abs() if self.negative_spikes else spikes
        # per-sample sums are exact in float32 (< 2**24 neurons a sample); the batch total in float64
        self.step_counts = events.view(K, m.shape[0], -1).sum(2).double().sum(1)
        self.spike_count = self.spike_count + self.step_counts.sum()
        self.steps += K
        return spikes.mul_(self.threshold).view(K * m.shape[0], *m.shape[1:])

    def _negative(self, membrane: Tensor, fired: Tensor) -> None:
        """QFFS: a neuron below zero with a positive net count over-fired; it emits a negative spike."""
        fired.sub_(((membrane < 0) & (self.net_count > 0)).to(fired.dtype))
        self.net_count.add_(fired)

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

    @contextlib.contextmanager
    def step_mode(self, mode: StepMode):
        """Every neuron in `mode` inside the block, single-step again after it."""
        neurons = [n for _, n in self.neurons()]
        for n in neurons:
            n.mode = mode
        try:
            yield mode
        finally:
            for n in neurons:
                n.mode = SINGLE_STEP

    def run(self, x: Tensor, steps: int) -> Tensor:
        """`steps` time steps of the same analog input `x`, layer by layer over all steps at once
        (memory grows with `steps`, not with the total T; see IFNeuron)."""
        with self.step_mode(StepMode(steps, x.shape[0])):
            out = self.net(x)
        if out.shape[0] == x.shape[0] * steps:
            return out.view(steps, x.shape[0], *out.shape[1:])
        return out.expand(steps, *out.shape)  # no neuron on the way: the same every step

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
