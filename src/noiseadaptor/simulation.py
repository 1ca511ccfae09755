"""simulate(snn, data, T): one run to max(T) steps that reports accuracy at every requested T.

The prediction at step t is the argmax of the last layer's output summed over steps 1..t (the same as
its mean). Neuron state is reset for every batch; nothing is kept per step, so memory does not grow
with T.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .distributed import all_reduce_sum
from .neurons import SpikingNetwork

DEFAULT_T = 256


@dataclass
class SimulationResult:
    """accuracy[T]: top-1 accuracy (0-1) after T steps. firing_rate[T][layer]: spikes per neuron per step
    over steps 1..T. spikes_per_sample[T]: all spikes of all layers in steps 1..T, per sample."""

    accuracy: dict[int, float]
    firing_rate: dict[int, dict[str, float]]
    spikes_per_sample: dict[int, float]
    num_samples: int
    neurons_per_sample: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "firing_rate": self.firing_rate,
                "spikes_per_sample": self.spikes_per_sample, "num_samples": self.num_samples,
                "neurons_per_sample": self.neurons_per_sample}


def time_steps(T: int | Sequence[int]) -> list[int]:
    """Normalise T: an int n means every step 1..n; a sequence is sorted and de-duplicated."""
    steps = list(range(1, T + 1)) if isinstance(T, int) and not isinstance(T, bool) and T >= 1 else T
    if isinstance(steps, int) or not isinstance(steps, Iterable) or isinstance(steps, (str, bytes)):
        raise ValueError(f"T must be a positive integer or a list of positive integers, got {T!r}")
    steps = list(steps)
    if not steps or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in steps):
        raise ValueError(f"T must be a positive integer or a non-empty list of positive integers, got {T!r}")
    return sorted(set(steps))


@torch.inference_mode()
def simulate(snn: SpikingNetwork, data: Iterable, T: int | Sequence[int] = DEFAULT_T,
             device: torch.device | str | None = None, progress: bool = True) -> SimulationResult:
    """Simulate `snn` on every (inputs, labels) batch of `data` for max(T) steps.

    T: an int n (report every step 1..n) or a list of steps to report. The input is analog: the same
    batch enters the first layer at every step.
    """
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"simulate() expects the SpikingNetwork returned by convert(), got {type(snn).__name__}")
    steps = time_steps(T)
    t_max, report_at = steps[-1], {t: i for i, t in enumerate(steps)}
    device = torch.device(device) if device is not None else next(snn.buffers()).device
    snn.to(device).eval()
    neurons = snn.neurons()
    correct = torch.zeros(len(steps), dtype=torch.long, device=device)
    spikes = torch.zeros(len(steps), len(neurons), dtype=torch.float64, device=device)
    num_samples = 0
    sizes: dict[str, int] = {}
    for batch in tqdm(data, desc=f"simulate T={t_max}", disable=not progress, leave=False):
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise TypeError("simulate() needs batches of (inputs, labels), as a DataLoader of a labelled data set gives")
        x, y = batch[0].to(device), batch[1].to(device)
        snn.reset()
        total = 0
        for t in range(1, t_max + 1):
            total = total + snn(x)
            i = report_at.get(t)
            if i is not None:
                correct[i] += (total.argmax(1) == y).sum()
                spikes[i] += torch.stack([torch.as_tensor(n.spike_count, device=device) for _, n in neurons])
        num_samples += y.numel()
        sizes = {name: n.neurons_per_sample() for name, n in neurons}
    counts = all_reduce_sum(torch.tensor([num_samples], device=device))
    num_samples = int(counts.item())
    if num_samples == 0:
        raise ValueError("simulate() got no data: the loader yielded no batches")
    correct, spikes = all_reduce_sum(correct).tolist(), all_reduce_sum(spikes).cpu()
    firing_rate = {t: {name: float(spikes[i, j]) / (max(sizes[name], 1) * t * num_samples)
                       for j, (name, _) in enumerate(neurons)} for t, i in report_at.items()}
    return SimulationResult(
        accuracy={t: correct[i] / num_samples for t, i in report_at.items()},
        firing_rate=firing_rate,
        spikes_per_sample={t: float(spikes[i].sum()) / num_samples for t, i in report_at.items()},
        num_samples=num_samples,
        neurons_per_sample=sizes,
    )
