"""simulate(snn, data, T): one run to max(T) steps that reports accuracy at every requested T.

The prediction at step t is the argmax of the last layer's output summed over steps 1..t (the same as
its mean). Neuron state is reset for every batch; nothing is kept per step, so memory does not grow
with T. Run-time corrections (negative spikes, two-stage offset spikes) and synaptic-operation counting
are options; off, they cost nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..ann.models import check_input
from ..ann.preparation import quantizers
from ..checks import module_device, positive_int
from ..distributed import all_reduce_sum, check_device
from ..progress import Progress, progress_over
from .accounting import EnergyModel, SynapticCounter
from .corrections import calibrate_offsets, silence_by_residual
from .neurons import SpikingNetwork
from .stopping import ExitRule, ExitTally, exit_rules

DEFAULT_T = 256
STEPS_GPU, STEPS_CPU = 8, 1


@dataclass
class SimulationResult:
    """Per requested T (steps 1..T of the main run):
    accuracy: top-1 accuracy (0-1). `firing_rate[T][layer]`: spike events per neuron per step.
    spikes_per_sample: spike events of all layers per sample.
    With synops=True: sops_per_sample (every spike event times its fan-out, Eq. 20), macs_per_sample
    (the layers that read analog values, every step) and
    energy_pj_per_sample (E_SNN); ann_macs_per_sample and ann_energy_pj_per_sample for the same net as
    an ANN. SOPs, MACs and energy count the pre-steps of a two-stage correction by default (every pass
    they run: SRP's one tau-step run, COS's rho-step run per calibrated layer); pre_step_sops_per_sample,
    pre_step_macs_per_sample and pre_step_energy_pj_per_sample hold their share, so that the count of
    the main run alone (as the COS and SRP papers count) is the difference. `corrections` records the
    run-time corrections used; pre-steps are not counted in T (as in the COS and SRP papers). With a
    reference ANN: agreement[T], the share of samples whose SNN prediction after T steps is the ANN's,
    and `layer_error[T][layer]`, the conversion error of each neuron layer, mean |SNN mean output over
    steps 1..T - ANN activation| / threshold."""

    accuracy: dict[int, float]
    firing_rate: dict[int, dict[str, float]]
    spikes_per_sample: dict[int, float]
    num_samples: int
    neurons_per_sample: dict[str, int] = field(default_factory=dict)
    corrections: dict = field(default_factory=dict)
    sops_per_sample: dict[int, float] = field(default_factory=dict)
    macs_per_sample: dict[int, float] = field(default_factory=dict)
    energy_pj_per_sample: dict[int, float] = field(default_factory=dict)
    ann_macs_per_sample: int | None = None
    ann_energy_pj_per_sample: float | None = None
    pre_step_sops_per_sample: float = 0.0
    pre_step_macs_per_sample: float = 0.0
    pre_step_energy_pj_per_sample: float = 0.0
    agreement: dict[int, float] = field(default_factory=dict)
    layer_error: dict[int, dict[str, float]] = field(default_factory=dict)
    exits: list = field(default_factory=list)  # an ExitResult per rule of simulate(exit=...)

    def row(self) -> dict:
        """What a results row keeps: per-T curves, and firing rates at the largest T."""
        t_max = max(self.accuracy)
        keep = {
            "snn_accuracy": self.accuracy,
            "firing_rate": self.firing_rate[t_max],
            "spikes_per_sample": self.spikes_per_sample,
            "corrections": self.corrections,
        }
        if self.agreement:
            keep.update(agreement=self.agreement, layer_error=self.layer_error)
        if self.exits:
            keep["exits"] = [e.row() for e in self.exits]
        if self.sops_per_sample:
            keep.update(
                sops_per_sample=self.sops_per_sample,
                macs_per_sample=self.macs_per_sample,
                energy_pj_per_sample=self.energy_pj_per_sample,
                ann_macs_per_sample=self.ann_macs_per_sample,
                ann_energy_pj_per_sample=self.ann_energy_pj_per_sample,
                pre_step_sops_per_sample=self.pre_step_sops_per_sample,
                pre_step_energy_pj_per_sample=self.pre_step_energy_pj_per_sample,
            )
        return keep


def reported_steps(T: int | Sequence[int]) -> list[int]:
    """Normalise T: an int n means every step 1..n; a sequence is sorted and de-duplicated."""
    steps = list(range(1, T + 1)) if isinstance(T, int) and not isinstance(T, bool) and T >= 1 else T
    if isinstance(steps, int) or not isinstance(steps, Iterable) or isinstance(steps, (str, bytes)):
        raise ValueError(f"T must be a positive integer or a list of positive integers, got {T!r}")
    steps = list(steps)
    if not steps or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in steps):
        raise ValueError(f"T must be a positive integer or a non-empty list of positive integers, got {T!r}")
    return sorted(set(steps))


def default_steps_per_call(device: torch.device | str) -> int:
    """Measured by benchmarks/speed.py (docs/PERFORMANCE.md): on a GPU, batching time steps through each
    layer pays up to about 8 steps (more costs memory for little); on a CPU, larger batches only fall
    out of cache, so one step per call."""
    return STEPS_GPU if torch.device(device).type == "cuda" else STEPS_CPU


def floating_type(snn: SpikingNetwork) -> torch.dtype:
    """The network's parameter type: float32 or float64. Half precision is refused: a membrane that sums
    inputs over hundreds of steps loses the small ones in a 10-bit mantissa."""
    types = {t.dtype for t in (*snn.parameters(), *snn.buffers()) if t.is_floating_point()}
    if types - {torch.float32, torch.float64} or len(types) > 1:
        found = ", ".join(sorted(str(t).removeprefix("torch.") for t in types))
        raise ValueError(f"simulate() runs in float32 or float64; this network holds {found} tensors "
                         "(.half() or .bfloat16()?): call .float() on it first")  # fmt: skip
    return types.pop() if types else torch.float32


def _check_inputs(x) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        found = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"simulate() needs floating-point input tensors (e.g. transforms.ToTensor() images in "
                        f"[0, 1]), got {found}")  # fmt: skip


LONG_T = 4096
"""Above this many steps simulate() says how much work it faces (16x the papers' largest T, 256) and
reports progress even when asked for none."""


@torch.inference_mode()
def simulate(
    snn: SpikingNetwork,
    data: Iterable,
    T: int | Sequence[int] = DEFAULT_T,
    device: torch.device | str | None = None,
    progress: Progress = True,
    negative_spikes: bool = False,
    offset_spikes: int = 0,
    srp: int = 0,
    synops: bool = False,
    energy: EnergyModel = EnergyModel(),
    steps_per_call: int | None = None,
    reference: nn.Module | None = None,
    exit: ExitRule | Sequence[ExitRule] | None = None,
) -> SimulationResult:
    """Simulate `snn` on every (inputs, labels) batch of `data` for max(T) steps.

    T: an int n (report every step 1..n) or a list of steps to report. The input is analog: the same
    batch enters the first layer at every step.
    negative_spikes: QFFS negative spikes in every neuron (see IFNeuron).
    offset_spikes: rho > 0 pre-steps of COS on each batch (corrections.calibrate_offsets); srp: tau > 0
        pre-steps of SRP (corrections.silence_by_residual; composes with negative_spikes, not with COS).
        Pre-steps are not counted in T (as their papers do): each image needs T + pre-steps.
    progress: a bar (True), a line now and then ("lines") or nothing (False); above LONG_T steps at least
        the lines, after a warning that says how much work it is.
    synops: count synaptic operations and MACs (pre-steps included) and estimate energy with `energy`.
    steps_per_call: time steps run layer by layer in one pass (`SpikingNetwork.run`). Larger is faster
        (bigger batched convolutions, the first layer computed once per pass) and costs memory in
        proportion; the total T does not change memory. Default: `default_steps_per_call(device)`.
    reference: the quantized ANN `snn` was converted from; measures agreement and per-layer conversion
        error against it (see SimulationResult; costs one ANN pass per batch and a running sum per layer).
        It is moved to `device`, as `snn` is.
    exit: an ExitRule, or several (noiseadaptor.snn.stopping): beside the fixed-T results, each image
        exits at the first step its summed output satisfies the rule; `result.exits` holds one ExitResult
        per rule (accuracy at exit, mean T, exits per step, SOPs and energy spent up to each image's
        exit). Counts operations as `synops` does.
    """
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"simulate() expects the SpikingNetwork returned by convert(), got {type(snn).__name__}")
    steps = reported_steps(T)
    if steps[-1] > LONG_T:
        warnings.warn(f"T={steps[-1]}: every image runs {steps[-1]} steps, {steps[-1] / DEFAULT_T:.0f} times the work "
                      f"of T={DEFAULT_T}; a line says how far it is and the time left", stacklevel=2)  # fmt: skip
        progress = progress or "lines"  # work this long is never silent
    _check_corrections(offset_spikes, srp)
    device = check_device(device, "device") if device is not None else module_device(snn)
    dtype = floating_type(snn)
    steps_per_call = positive_int(
        default_steps_per_call(device) if steps_per_call is None else steps_per_call, "steps_per_call"
    )
    snn.to(device).eval()
    neurons = snn.neurons()
    tracker = _ReferenceTracker(snn, reference, steps, device) if reference is not None else None  # validates first
    rules = exit_rules(exit)
    counter = SynapticCounter(snn) if synops or rules else None
    tally = _Tally(steps[-1], neurons, device, counter, tracker, rules)
    saved = tally.arm(negative_spikes)
    try:
        for batch in progress_over(data, f"simulate T={steps[-1]}", progress):
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise TypeError(
                    "simulate() needs batches of (inputs, labels), as a DataLoader of a labelled data set gives"
                )
            x, y = batch[0], batch[1].to(device)
            if tally.num_samples == 0:
                _check_inputs(x)
            x = x.to(device, dtype)
            if tally.num_samples == 0:
                check_input(snn, x)
            tally.first_stage(snn, x, offset_spikes, srp, [start for _, start in saved])
            tally.run(snn, x, y, steps_per_call)
    finally:
        tally.restore(saved)
    corrections = {"negative_spikes": negative_spikes, "offset_spikes_pre_steps": offset_spikes,
                   "srp_pre_steps": srp, "pre_steps": offset_spikes + srp, "pre_steps_counted_in_T": False}  # fmt: skip
    return tally.result(steps, corrections, energy)


def _check_corrections(offset_spikes: int, srp: int) -> None:
    positive_int(offset_spikes, "offset_spikes (pre-simulation steps)", zero=True)
    positive_int(srp, "srp (pre-simulation steps)", zero=True)
    if offset_spikes and srp:
        raise ValueError("offset_spikes (COS) and srp (SRP) are both two-stage corrections: choose one")


class _Tally:
    """What simulate() sums over batches, per time step and on the device: correct predictions, spike events
    per neuron layer, SOPs and MACs (with a SynapticCounter), agreement (with a _ReferenceTracker). `result`
    sums it over processes and reads it at the reported steps (all sums are cumulative over steps)."""

    def __init__(self, t_max: int, neurons, device: torch.device, counter, tracker, rules=()):
        self.neurons, self.device, self.counter, self.tracker = neurons, device, counter, tracker
        self.exits = [ExitTally(rule, t_max, device) for rule in rules]
        self.hits = torch.zeros(t_max, dtype=torch.long, device=device)
        self.spikes = torch.zeros(t_max, len(neurons), dtype=torch.float64, device=device)
        self.ops = torch.zeros(t_max, 2, dtype=torch.float64, device=device)  # SOPs, MACs
        self.pre_ops = torch.zeros(2, dtype=torch.float64, device=device)  # SOPs, MACs of the pre-steps
        self.num_samples, self.sizes = 0, {}

    def arm(self, negative_spikes: bool) -> list[tuple]:
        """Every neuron with `negative_spikes` on or off; returns what `restore` puts back."""
        saved = [(n.negative_spikes, n.initial_membrane) for _, n in self.neurons]
        for _, n in self.neurons:
            n.negative_spikes = negative_spikes
        return saved

    def first_stage(self, snn: SpikingNetwork, x: Tensor, offset_spikes: int, srp: int, starts: list) -> None:
        """The first stage of a two-stage correction on batch `x` (COS from the neurons' `starts`, or SRP),
        its pre-steps counted apart and not compared with the reference; then every neuron reset."""
        counting = self.counter is not None and bool(offset_spikes or srp)
        if self.tracker is not None:
            self.tracker.pause()
        if counting:
            self.counter.start(x)  # every pass of the pre-steps summed into one count
        if offset_spikes:
            for (_, n), start in zip(self.neurons, starts):
                n.initial_membrane = start
            calibrate_offsets(snn, x, offset_spikes)
        if srp:
            silence_by_residual(snn, x, srp)
        if counting:
            self.pre_ops += torch.stack([self.counter.sops[0], self.counter.macs[0]])
            self.counter.stop()
        snn.reset()
        if self.tracker is not None:
            self.tracker.start(x)

    def restore(self, saved: list[tuple]) -> None:
        """The neurons as simulate() found them (negative spikes, initial membranes, no masks), reset; and
        the counting hooks removed."""
        for (_, n), (negative, start) in zip(self.neurons, saved):
            n.negative_spikes, n.initial_membrane, n.output_mask = negative, start, None
            n.reset()
        for hooked in (self.counter, self.tracker):
            if hooked is not None:
                hooked.remove()

    def run(self, snn: SpikingNetwork, x: Tensor, y: Tensor, steps_per_call: int) -> None:
        """Every step of one batch (its neurons reset), `steps_per_call` steps per pass of the network."""
        t_max, counter, tracker = self.hits.shape[0], self.counter, self.tracker
        total = 0
        for rule in self.exits:
            rule.start(y.shape[0], y.device)
        for t0 in range(0, t_max, steps_per_call):
            k = min(steps_per_call, t_max - t0)
            if counter is not None:
                counter.start(x, k, per_sample=bool(self.exits))
            if tracker is not None:
                tracker.step = t0
            cumulative = total + snn.run(x, k).cumsum(0)  # [k, B, classes]: summed output up to each step
            total = cumulative[-1]
            self.hits[t0 : t0 + k] += (cumulative.argmax(-1) == y).sum(1)
            if tracker is not None:
                tracker.agree[t0 : t0 + k] += (cumulative.argmax(-1) == tracker.prediction).sum(1)
            self.spikes[t0 : t0 + k] += torch.stack([n.step_counts for _, n in self.neurons], 1)
            for rule in self.exits:
                rule.steps_of(cumulative, y, t0, None if counter is None else counter.per_sample)
            if counter is not None:
                self.ops[t0 : t0 + k] += torch.stack([counter.sops, counter.macs], 1)
                counter.stop()
        self.num_samples += y.numel()
        self.sizes = {name: n.neurons_per_sample() for name, n in self.neurons}

    def result(self, steps: list[int], corrections: dict, energy: EnergyModel) -> SimulationResult:
        num_samples = int(all_reduce_sum(torch.tensor([self.num_samples], device=self.device)).item())
        if num_samples == 0:
            raise ValueError("simulate() got no data: the loader yielded no batches")
        report_at, at = {t: i for i, t in enumerate(steps)}, torch.tensor(steps, device=self.device) - 1
        names, sizes = [name for name, _ in self.neurons], self.sizes
        correct = all_reduce_sum(self.hits)[at].tolist()
        spikes = all_reduce_sum(self.spikes).cumsum(0)[at].cpu()
        ops = all_reduce_sum(self.ops).cumsum(0)[at].cpu()
        result = SimulationResult(
            accuracy={t: correct[i] / num_samples for t, i in report_at.items()},
            firing_rate={
                t: {name: float(spikes[i, j]) / (max(sizes[name], 1) * t * num_samples) for j, name in enumerate(names)}
                for t, i in report_at.items()
            },
            spikes_per_sample={t: float(spikes[i].sum()) / num_samples for t, i in report_at.items()},
            num_samples=num_samples,
            neurons_per_sample=sizes,
            corrections=corrections,
        )
        if self.tracker is not None:
            agree = all_reduce_sum(self.tracker.agree)[at].tolist()
            errors = all_reduce_sum(self.tracker.error).cpu()  # [reported T, layer]
            result.agreement = {t: agree[i] / num_samples for t, i in report_at.items()}
            result.layer_error = {
                t: {name: float(errors[i, j]) / (max(sizes[name], 1) * num_samples) for j, name in enumerate(names)}
                for t, i in report_at.items()
            }
        if self.counter is not None:
            pre_sops, pre_macs = (all_reduce_sum(self.pre_ops).cpu() / num_samples).tolist()
            result.pre_step_sops_per_sample, result.pre_step_macs_per_sample = pre_sops, pre_macs
            result.pre_step_energy_pj_per_sample = energy.snn(pre_macs, pre_sops)
            result.sops_per_sample = {t: float(ops[i, 0]) / num_samples + pre_sops for t, i in report_at.items()}
            result.macs_per_sample = {t: float(ops[i, 1]) / num_samples + pre_macs for t, i in report_at.items()}
            result.energy_pj_per_sample = {
                t: energy.snn(result.macs_per_sample[t], result.sops_per_sample[t]) for t in report_at
            }
            result.ann_macs_per_sample = sum(self.counter.dense_macs.values())
            result.ann_energy_pj_per_sample = energy.ann(result.ann_macs_per_sample)
            analog, pre = self.counter.analog_macs, (pre_sops, pre_macs)
            result.exits = [e.result(num_samples, analog, pre, energy) for e in self.exits]
        return result


class _ReferenceTracker:
    """Agreement with, and per-layer error against, the quantized ANN an SNN was converted from: per batch,
    the ANN's predictions and activations (hooks on its quantizers, named as the SNN's neurons); per step,
    each neuron layer's running sum of outputs, compared at the reported steps."""

    def __init__(self, snn: SpikingNetwork, reference: nn.Module, steps: list[int], device: torch.device):
        layers = dict(quantizers(reference))
        neurons = snn.neurons()
        missing = [name for name, _ in neurons if name not in layers]
        if missing:
            raise ValueError(
                f"reference has no quantizer named like the SNN's neurons {missing}: pass the "
                "prepared model this SNN was converted from"
            )
        self.reference, self.names = reference.to(device), [name for name, _ in neurons]
        self.report = {t - 1: i for i, t in enumerate(steps)}  # 0-based step -> row
        self.agree = torch.zeros(steps[-1], dtype=torch.long, device=device)
        self.error = torch.zeros(len(steps), len(neurons), dtype=torch.float64, device=device)
        self.activations: dict[str, Tensor] = {}
        self.sums: dict[str, Tensor] = {}
        self.prediction: Tensor | None = None
        self.step = 0
        self._handles = [layers[name].register_forward_hook(self._keep(name)) for name in self.names]
        self._handles += [n.register_forward_hook(self._compare(j, name, n)) for j, (name, n) in enumerate(neurons)]

    def _keep(self, name: str):
        def hook(module, args, output: Tensor) -> None:
            self.activations[name] = output.detach()

        return hook

    def pause(self) -> None:
        self.prediction = None

    def start(self, x: Tensor) -> None:
        was_training = self.reference.training
        self.reference.eval()
        try:
            self.prediction = self.reference(x).argmax(-1)
        finally:
            self.reference.train(was_training)
        self.sums = {}

    def _compare(self, j: int, name: str, neuron):
        def hook(module, args, output: Tensor) -> None:
            if self.prediction is None:  # outside the counted run (offset-spike pre-steps)
                return
            target = self.activations[name]
            outputs = output.view(-1, *target.shape)
            total = self.sums.get(name)
            for k in range(outputs.shape[0]):
                total = outputs[k].clone() if total is None else total.add_(outputs[k])
                row = self.report.get(self.step + k)
                if row is not None:
                    gap = (total / (self.step + k + 1) - target).abs_().div_(neuron.threshold)
                    self.error[row, j] += gap.sum().double()
            self.sums[name] = total

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
