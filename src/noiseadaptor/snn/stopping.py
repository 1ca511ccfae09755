"""Per-image adaptive latency: stop an image once its accumulated output is confident.

`simulate(snn, data, T, exit=ExitRule(confidence=0.9))` runs every image to T as before (the fixed-T
curves stay in the result) and, beside them, reads each rule on every image's output summed over steps
1..t: the image exits at the first t where the rule holds (at T if never), with the prediction of that
step. An exited image spends nothing after it exits: its SOPs are its own spikes' up to its exit step, its
MACs the analog layers' for those steps (`ExitResult`). One simulation answers every rule given, so a
rule's threshold is chosen by simulating held-out training images once (`choose_exit`), never the test
set. (Early-exit SNNs in the literature: SEENN, Li et al., NeurIPS 2023; dynamic-timestep SNNs.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..distributed import all_reduce_sum


@dataclass(frozen=True)
class ExitRule:
    """Exit once the softmax of the mean output over steps 1..t has its top probability >= `confidence`
    and/or its top-1 minus top-2 probability >= `margin` (both, when both are given), from step
    `min_steps` on."""

    confidence: float | None = None
    margin: float | None = None
    min_steps: int = 1

    def __post_init__(self) -> None:
        if self.confidence is None and self.margin is None:
            raise ValueError("an ExitRule needs a confidence or a margin (or both)")
        for name in ("confidence", "margin"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if value is not None and not (number and 0 <= value <= 1):
                raise ValueError(f"ExitRule.{name} is a probability in [0, 1], got {value!r}")
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int) or self.min_steps < 1:
            raise ValueError(f"ExitRule.min_steps must be a positive integer, got {self.min_steps!r}")

    @property
    def label(self) -> str:
        parts = [f"confidence>={self.confidence:g}"] if self.confidence is not None else []
        parts += [f"margin>={self.margin:g}"] if self.margin is not None else []
        return " and ".join(parts) + (f", from step {self.min_steps}" if self.min_steps > 1 else "")

    def met(self, mean_output: Tensor) -> Tensor:
        """Per image ([B, classes] -> [B] bool): whether the rule holds for this mean output."""
        top = torch.softmax(mean_output.double(), -1).topk(min(2, mean_output.shape[-1]), -1).values
        holds = torch.ones(top.shape[0], dtype=torch.bool, device=top.device)
        if self.confidence is not None:
            holds &= top[:, 0] >= self.confidence
        if self.margin is not None:
            holds &= (top[:, 0] - (top[:, 1] if top.shape[1] > 1 else 0)) >= self.margin
        return holds


@dataclass
class ExitResult:
    """One rule over the data: accuracy at each image's exit, the mean T used and how many images exited
    at each step (`exits[t]`, t = 1..T), and per image the SOPs, MACs and energy actually spent (up to
    its exit; the pre-steps of a two-stage correction included, as in `SimulationResult`)."""

    rule: ExitRule
    accuracy: float
    mean_T: float
    exits: dict[int, int] = field(default_factory=dict)
    sops_per_sample: float = 0.0
    macs_per_sample: float = 0.0
    energy_pj_per_sample: float = 0.0

    def row(self) -> dict:
        return {"rule": self.rule.label, "accuracy": self.accuracy, "mean_T": self.mean_T, "exits": self.exits,
                "sops_per_sample": self.sops_per_sample, "energy_pj_per_sample": self.energy_pj_per_sample}  # fmt: skip


class ExitTally:
    """What simulate() sums for one rule over batches: correct exits, steps used, exits per step, SOPs."""

    def __init__(self, rule: ExitRule, t_max: int, device: torch.device):
        self.rule, self.t_max = rule, t_max
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.steps = torch.zeros((), dtype=torch.float64, device=device)
        self.exits = torch.zeros(t_max, dtype=torch.long, device=device)
        self.sops = torch.zeros((), dtype=torch.float64, device=device)
        self._running: Tensor | None = None  # per image of the batch: still running
        self._spent: Tensor | None = None

    def start(self, batch: int, device: torch.device) -> None:
        self._running = torch.ones(batch, dtype=torch.bool, device=device)
        self._spent = torch.zeros(batch, dtype=torch.float64, device=device)

    def steps_of(self, cumulative: Tensor, y: Tensor, t0: int, sops: Tensor | None) -> None:
        """Steps t0+1 .. t0+k of the batch: `cumulative` [k, B, classes] its summed output up to each,
        `sops` [k, B] each image's SOPs at each (None: not counted)."""
        for j in range(cumulative.shape[0]):
            t = t0 + j + 1
            if sops is not None:
                self._spent += sops[j].double() * self._running  # the exit step is spent, the rest not
            mean = cumulative[j] / t
            leaving = self._running & (self.rule.met(mean) if t >= self.rule.min_steps else False)
            if t == self.t_max:
                leaving = self._running.clone()
            if leaving.any():
                self.correct += (mean.argmax(-1) == y)[leaving].sum()
                self.steps += t * leaving.sum()
                self.exits[t - 1] += leaving.sum()
                self._running &= ~leaving
        if t0 + cumulative.shape[0] == self.t_max:  # the batch's last step: every image has exited
            self.sops += self._spent.sum()

    def result(self, num_samples: int, analog_macs: float, pre: tuple[float, float], energy) -> ExitResult:
        """Summed over processes: `analog_macs` the analog layers' MACs per image and step, `pre` the
        pre-steps' (SOPs, MACs) per image."""
        correct, steps, sops = (all_reduce_sum(v).item() for v in (self.correct, self.steps, self.sops))
        exits = all_reduce_sum(self.exits).tolist()
        mean_T = steps / num_samples
        sops_per, macs_per = sops / num_samples + pre[0], analog_macs * mean_T + pre[1]
        return ExitResult(
            rule=self.rule,
            accuracy=correct / num_samples,
            mean_T=mean_T,
            exits={t + 1: n for t, n in enumerate(exits)},
            sops_per_sample=sops_per,
            macs_per_sample=macs_per,
            energy_pj_per_sample=energy.snn(macs_per, sops_per),
        )


def parse_rule(text: str) -> ExitRule:
    """An ExitRule from its command-line spelling: 'confidence=0.9', 'margin=0.2',
    'confidence=0.8,margin=0.1,min_steps=2'."""
    fields = {}
    for part in filter(None, text.replace(" ", "").split(",")):
        key, _, value = part.partition("=")
        if key not in ("confidence", "margin", "min_steps") or not value:
            raise ValueError(f"exit rule {text!r}: write confidence=C, margin=M and/or min_steps=N, comma-separated")
        try:
            fields[key] = int(value) if key == "min_steps" else float(value)
        except ValueError:
            kind = "a whole number" if key == "min_steps" else "a number"
            raise ValueError(f"exit rule {text!r}: {key} must be {kind}, got {value!r}") from None
    return ExitRule(**fields)


def exit_rules(exit: ExitRule | Sequence[ExitRule] | None) -> list[ExitRule]:
    """`simulate`'s `exit` argument as a list of rules (distinct, in the order given)."""
    if exit is None:
        return []
    rules = [exit] if isinstance(exit, ExitRule) else list(exit)
    if not all(isinstance(r, ExitRule) for r in rules):
        raise TypeError("exit must be an ExitRule or a sequence of them (noiseadaptor.snn.stopping.ExitRule)")
    return list(dict.fromkeys(rules))


def choose_exit(results: Sequence[ExitResult], reference: float, max_drop: float = 0.005) -> ExitResult:
    """Among `results` of one simulation of held-out *training* images, the rule with the smallest mean T
    whose accuracy is at least `reference - max_drop` (`reference`: the accuracy on the same images at the
    fixed T it is to replace). The most accurate one when none is."""
    good = [r for r in results if r.accuracy >= reference - max_drop]
    if not good:
        return max(results, key=lambda r: r.accuracy)
    return min(good, key=lambda r: (r.mean_T, -r.accuracy))
