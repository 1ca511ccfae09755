"""Direct SNN training with LIF neurons: ASGL (adaptive smoothing gradient learning, seed paper 004) and
plain surrogate-gradient (SG) training as its baseline, by one mechanism.

ASGL's spike function (Eq. 8-10, Algorithm 1), on x = u - threshold:

    H_a(x) = clip(x/a + 1/2, 0, 1)              the antiderivative of the rectangular surrogate (surrogate.py)
    s      = H_a(x) + m * detach(Theta(x) - H_a(x)),   m ~ Bernoulli(p) per element and step

Gradients flow only through H_a (the spike part is detached), the width a is learned per layer
(dH/da = -x/a^2 inside, Eq. 11, by autograd), and evaluation uses the pure Heaviside Theta. With p = 1
the forward is exactly the spiking network and the backward is the rectangular surrogate gradient:
that, with a fixed width, is the SG baseline.

Time is folded into the batch: stateless layers (conv, BN, pooling, linear) see [T*B, ...]; each LIF
neuron unfolds it to [T, B, ...] and steps through time. The readout is the mean over T of the last
layer's output (Eq. 5).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..ann.preparation import replace_activations
from ..checks import checked_type, module_device, positive_int
from ..distributed import all_reduce_sum
from . import surrogate


@dataclass(frozen=True)
class DirectConfig:
    """time_steps: the steps the SNN runs (exactly). tau: membrane time constant, leak gamma = 1 - 1/tau.
    threshold: firing threshold.
    reset: "hard" (to zero, the paper's Eq. 1) or "soft" (subtract the threshold).
    surrogate: "rectangular" (H = clip(x/a + 1/2, 0, 1)), "sigmoid" (H = 1/2 + 1/2 tanh(2x/a)) or "dspike"; see
        `noiseadaptor.snn.surrogate`.
    alpha: initial surrogate width a, one convention for every shape: the slope of H at 0 is 1/a (for the
        rectangle, the paper's alpha of Tables 4 and 11). learn_alpha: learn a per layer (ASGL) or keep
        it fixed (SG). The width is learned as is (the authors' code learns log(1/a) for the rectangle
        and 1/w for its sigmoid(x/w)); it is clamped at 1e-3 so that H stays defined.
    steepness: instead of alpha, the paper's steepness for the sigmoid shape, ``1/2 tanh(steepness x)
        + 1/2`` (Table 5 and Appendix A.6 write alpha = 2.5 for it): alpha becomes 2/steepness.
    spike_noise_p: probability that an element carries the true spike in training (the paper's p of Eq. 9-10;
        1.0: SG's forward; the authors' code's p is one minus it).
    noise_decay, noise_milestones: the paper's schedule of spike_noise_p (004, Appendix A.3, Table 6): at the
        start of each milestone epoch (0-based: milestone 90 is the 91st epoch) p <- 1 - (1 - p) * zeta,
        zeta = noise_decay, so the analog share of the forward shrinks by zeta each time and the trained
        network ends closer to the SNN it is evaluated as. CIFAR-100: p 0.6, zeta 0.8, milestones
        90, 210, 270, 285 of 300; the width ablation (Table 11): milestones 20, 40, 60, 80, 95 of 100.
        zeta = 1 (the default) keeps p fixed.
    neuron: "lif" (Eq. 1-3) or "clif", the current-based LIF of Guetig 2016 that ASGL uses for MedleyDB (004,
        A.2, Eq. 18): the input current c = u0 * I drives two traces, m <- beta_m m + c and v <- beta_v v + c
        (beta_m = 1 - 1/tau, beta_v = 1 - 1/tau_syn), a refractory trace e <- beta_m e + threshold * s[t-1],
        and u = m - v - e fires at u >= threshold; u0 scales the PSP kernel beta_m^t - beta_v^t to a peak
        of 1. Eq. 18 as printed writes e[t] = beta_m m[t-1] + ...; we read the m as a misprint of e (the
        refractory kernel of Guetig's model), since with m it would cancel the membrane trace. `reset` does
        not apply to it (the refractory trace is its reset).
    tau, tau_syn: the membrane and synaptic time constants in steps. tau defaults to 2 for "lif"; for
        "clif" tau = 20 and tau_syn = 5, Guetig 2016's tau_mem = 20 ms and tau_syn = 5 ms at 1-ms steps
        (paper 004 gives no values). C-LIF needs tau > tau_syn >= 1: only then is its PSP kernel
        beta_m^t - beta_v^t positive, and u0 defined."""

    time_steps: int = 4
    tau: float | None = None
    threshold: float = 1.0
    reset: Literal["hard", "soft"] = "hard"
    surrogate: Literal["rectangular", "sigmoid", "dspike"] = "rectangular"
    alpha: float = 1.0
    learn_alpha: bool = True
    spike_noise_p: float = 0.5
    noise_decay: float = 1.0
    noise_milestones: tuple[int, ...] = ()
    steepness: float | None = None
    neuron: Literal["lif", "clif"] = "lif"
    tau_syn: float | None = None

    def __post_init__(self) -> None:
        positive_int(self.time_steps, "DirectConfig.time_steps")
        if self.neuron not in ("lif", "clif"):
            raise ValueError(f"DirectConfig.neuron must be 'lif' or 'clif', got {self.neuron!r}")
        clif = self.neuron == "clif"
        if self.tau is None:
            object.__setattr__(self, "tau", 20.0 if clif else 2.0)
        if clif and self.tau_syn is None:
            object.__setattr__(self, "tau_syn", 5.0)
        for name in ("tau", "tau_syn"):
            checked_type(f"DirectConfig.{name}", getattr(self, name), "float | None")
        if not self.tau >= 1:
            raise ValueError(f"DirectConfig.tau must be >= 1 (leak 1 - 1/tau in [0, 1)), got {self.tau!r}")
        if self.reset not in ("hard", "soft"):
            raise ValueError(f"DirectConfig.reset must be 'hard' or 'soft', got {self.reset!r}")
        if clif and not self.tau > self.tau_syn >= 1:
            raise ValueError(
                f"C-LIF needs tau > tau_syn >= 1 (its PSP kernel beta_m^t - beta_v^t is positive only then), got "
                f"tau={self.tau!r}, tau_syn={self.tau_syn!r}; omit both for Guetig 2016's tau 20, tau_syn 5"
            )
        surrogate.check_shape(self.surrogate)
        if self.steepness is not None:
            if self.surrogate != "sigmoid":
                raise ValueError(
                    "DirectConfig.steepness is the sigmoid shape's 1/2 tanh(steepness x) + 1/2; for the "
                    f"{self.surrogate} surrogate give its width as alpha"
                )
            object.__setattr__(self, "alpha", surrogate.width_from_steepness(self.steepness))
        if not self.alpha > 0:
            raise ValueError(f"DirectConfig.alpha (surrogate width) must be positive, got {self.alpha!r}")
        if not 0 <= self.spike_noise_p <= 1:
            raise ValueError(f"DirectConfig.spike_noise_p must be a probability in [0, 1], got {self.spike_noise_p!r}")
        if not self.threshold > 0:
            raise ValueError(f"DirectConfig.threshold must be positive, got {self.threshold!r}")
        if not 0 <= self.noise_decay <= 1:
            raise ValueError(f"DirectConfig.noise_decay (zeta) must be in [0, 1], got {self.noise_decay!r}")
        milestones = tuple(self.noise_milestones)
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in milestones) or list(
            milestones
        ) != sorted(set(milestones)):
            raise ValueError(
                "DirectConfig.noise_milestones must be increasing non-negative epoch numbers, got "
                f"{self.noise_milestones!r}"
            )
        object.__setattr__(self, "noise_milestones", milestones)  # lists from a JSON config become a tuple

    def spike_noise_at(self, epoch: int) -> float:
        """spike_noise_p in (0-based) `epoch` under the zeta schedule."""
        passed = sum(epoch >= m for m in self.noise_milestones)
        return 1.0 - (1.0 - self.spike_noise_p) * self.noise_decay**passed

    @classmethod
    def asgl(cls, **kwargs) -> "DirectConfig":
        return cls(**kwargs)

    @classmethod
    def surrogate_gradient(cls, **kwargs) -> "DirectConfig":
        return cls(**{**kwargs, "learn_alpha": False, "spike_noise_p": 1.0})


class LIFNeuron(nn.Module):
    """Leaky integrate-and-fire over T steps folded into the batch (Eq. 1-3), with the ASGL spike."""

    def __init__(self, config: DirectConfig):
        super().__init__()
        self.config = config
        self.time_steps = config.time_steps
        self.gamma = 1.0 - 1.0 / config.tau
        self.spike_noise_p = config.spike_noise_p  # may be scheduled during training
        self.alpha = nn.Parameter(torch.tensor(float(config.alpha)), requires_grad=config.learn_alpha)
        self.recurrent: nn.Module | None = None  # recurrent synapses V: step t's input adds V s[t-1] (ASGL A.5)
        if config.neuron == "clif":  # C-LIF's u0: the PSP kernel beta_m^t - beta_v^t scaled to a peak of 1
            beta_m, beta_v = 1.0 - 1.0 / config.tau, 1.0 - 1.0 / config.tau_syn
            self.u0 = 1.0 / max(beta_m**k - beta_v**k for k in range(1, 10_000))

    def smooth(self, x: Tensor) -> Tensor:
        """H_a(x): the analog activation whose derivative is the surrogate gradient."""
        return surrogate.smooth(x, self.config.surrogate, self.alpha.clamp(min=1e-3))

    def spike(self, x: Tensor) -> Tensor:
        if not self.training:
            return (x >= 0).to(x.dtype)
        p = self.spike_noise_p
        mask = None if p >= 1.0 else torch.bernoulli(torch.full_like(x, p))
        return surrogate.spike(x, self.config.surrogate, self.alpha.clamp(min=1e-3), mask)

    def forward(self, current: Tensor) -> Tensor:
        steps = current.reshape(self.time_steps, -1, *current.shape[1:])
        if self.config.neuron == "clif":
            return self._current_based(steps).reshape(current.shape)
        u = torch.zeros_like(steps[0])
        s = torch.zeros_like(steps[0])
        out = []
        for t in range(self.time_steps):
            drive = steps[t] if self.recurrent is None else steps[t] + self.recurrent(s)
            if self.config.reset == "hard":
                u = self.gamma * u * (1 - s) + drive
            else:
                u = self.gamma * (u - s * self.config.threshold) + drive
            s = self.spike(u - self.config.threshold)
            out.append(s)
        return torch.stack(out).reshape(current.shape)

    def _current_based(self, steps: Tensor) -> Tensor:
        """C-LIF (Eq. 18, see DirectConfig.neuron) over the steps of `steps` [T, B, ...]."""
        c, theta = self.config, self.config.threshold
        beta_m, beta_v, u0 = 1.0 - 1.0 / c.tau, 1.0 - 1.0 / c.tau_syn, self.u0
        m = v = e = s = torch.zeros_like(steps[0])
        out = []
        for t in range(self.time_steps):
            drive = steps[t] if self.recurrent is None else steps[t] + self.recurrent(s)
            e = beta_m * e + theta * s
            m = beta_m * m + u0 * drive
            v = beta_v * v + u0 * drive
            s = self.spike(m - v - e - theta)
            out.append(s)
        return torch.stack(out)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"time_steps={c.time_steps}, tau={c.tau}, threshold={c.threshold}, reset={c.reset}, {c.surrogate} "
            f"width={self.alpha.item():.3g}{' (learned)' if c.learn_alpha else ''}, spike_noise_p={self.spike_noise_p}"
        )


class MultiStepNetwork(nn.Module):
    """Runs `net` on T copies of the (static) input folded into the batch and returns the mean over T of
    its output. With static_input=False the input is event frames [B, T, ...], one frame per step."""

    def __init__(self, net: nn.Module, time_steps: int, static_input: bool = True):
        super().__init__()
        self.net, self.time_steps, self.static_input = net, time_steps, static_input

    def forward(self, x: Tensor) -> Tensor:
        return self.per_step(x).mean(0)

    def per_step(self, x: Tensor) -> Tensor:
        """The output at every step, [T, B, ...] (the network is causal: step t's output depends on steps
        1..t alone, so the mean of the first t is what a run of t steps reads out)."""
        T = self.time_steps
        if self.static_input:
            folded = x.unsqueeze(0).expand(T, *x.shape).reshape(T * x.shape[0], *x.shape[1:])
        else:  # [B, T, ...] event frames
            if x.shape[1] != T:
                raise ValueError(f"event input has {x.shape[1]} time bins, the network was built for {T} steps")
            folded = x.transpose(0, 1).reshape(T * x.shape[0], *x.shape[2:])
        out = self.net(folded)
        return out.reshape(T, -1, *out.shape[1:])

    def neurons(self) -> list[tuple[str, LIFNeuron]]:
        return [(name, m) for name, m in self.net.named_modules() if isinstance(m, LIFNeuron)]

    def set_spike_noise_p(self, p: float) -> None:
        """Change ASGL's spike-noise probability (e.g. from another schedule, between epochs)."""
        for _, neuron in self.neurons():
            neuron.spike_noise_p = p

    def start_epoch(self, epoch: int) -> None:
        """Set the noise probability of (0-based) `epoch` from each neuron's config schedule: pass as
        ``fit(..., on_epoch_start=snn.start_epoch)``. A resumed run lands on the same value."""
        for _, neuron in self.neurons():
            neuron.spike_noise_p = neuron.config.spike_noise_at(epoch)


@torch.no_grad()
def accuracy_per_step(snn: MultiStepNetwork, data, device: torch.device | str | None = None) -> dict[int, float]:
    """Top-1 accuracy of a directly trained SNN's output summed over steps 1..t, for every t up to its T."""
    device = torch.device(device) if device is not None else module_device(snn)
    was = snn.training
    snn.eval().to(device)
    hits = torch.zeros(snn.time_steps + 1, dtype=torch.long)  # per step, then the number of images
    for x, y in data:
        summed = snn.per_step(x.to(device)).cumsum(0)  # [T, B, classes]
        hits[:-1] += (summed.argmax(-1) == y.to(device)).sum(1).cpu()
        hits[-1] += len(y)
    snn.train(was)
    hits = all_reduce_sum(hits)  # the test set is sharded over processes under torchrun
    return {t + 1: hits[t].item() / hits[-1].item() for t in range(snn.time_steps)}


@contextlib.contextmanager
def noisy_network(snn: MultiStepNetwork):
    """ASGL's noisy network (paper 004, Fig. 3d-e): the same weights, every LIF neuron with its spike noise
    (the training forward, p = its spike_noise_p), everything else in eval mode (BatchNorm's running
    statistics), for the block."""
    was_training = snn.training
    snn.eval()
    for _, neuron in snn.neurons():
        neuron.train()
    try:
        yield snn
    finally:
        snn.train(was_training)


@torch.no_grad()
def noisy_similarity(snn: MultiStepNetwork, data, device: torch.device | str | None = None) -> dict:
    """How close the noisy network is to the SNN embedded in it (paper 004, Fig. 3d-e), on `data`: per
    sample, the cosine similarity of each LIF layer's outputs in the two (all steps of a layer as one
    vector), averaged over layers, S; returns S's mean and standard deviation over the samples and both
    networks' accuracies. The noise draws come from a forked RNG: a training run that measures this
    after every epoch draws the same training noise as one that does not."""
    device = torch.device(device) if device is not None else module_device(snn)
    was_training = snn.training
    outputs: dict[str, Tensor] = {}
    hooks = [n.register_forward_hook(lambda m, i, o, k=k: outputs.__setitem__(k, o)) for k, n in snn.neurons()]
    similarity, hits = [], torch.zeros(2, dtype=torch.long)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for x, y in data:
                x, y = x.to(device), y.to(device)
                snn.eval()
                hits[0] += (snn(x).argmax(1) == y).sum().item()
                pure = dict(outputs)
                with noisy_network(snn):
                    hits[1] += (snn(x).argmax(1) == y).sum().item()
                per_layer = [_cosine(pure[k], outputs[k], snn.time_steps, len(x)) for k in pure]
                similarity.append(torch.stack(per_layer).mean(0).cpu())
    finally:
        for h in hooks:
            h.remove()
        snn.train(was_training)
    s = torch.cat(similarity)
    n = len(s)
    return {"mean": s.mean().item(), "std": s.std().item() if n > 1 else 0.0, "n": n,
            "snn_accuracy": hits[0].item() / n, "noisy_accuracy": hits[1].item() / n}  # fmt: skip


def _cosine(a: Tensor, b: Tensor, steps: int, batch: int) -> Tensor:
    """Per sample, the cosine similarity of two layer outputs [T*B, ...] (all steps as one vector); 1 where
    both are silent (the same output), which cosine_similarity would make 0."""
    a, b = (v.reshape(steps, batch, -1).transpose(0, 1).reshape(batch, -1) for v in (a, b))
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    return torch.where((a == 0).all(1) & (b == 0).all(1), torch.ones_like(cos), cos)


def to_direct_snn(model: nn.Module, config: DirectConfig | None = None, static_input: bool = True) -> MultiStepNetwork:
    """A copy of a ReLU network with every ReLU call replaced by its own LIF neuron (and max-pooling by
    average pooling), wrapped to run T steps: train it with `fit` like any classifier."""
    config = DirectConfig() if config is None else config
    if not isinstance(config, DirectConfig):
        raise TypeError(f"config must be a noiseadaptor.snn.lif.DirectConfig, got {type(config).__name__}")
    if hasattr(model, "spiking"):  # a design with no ReLU form of its dynamics (recurrent synapses) builds its own
        return MultiStepNetwork(model.spiking(lambda: LIFNeuron(config)), config.time_steps, static_input)
    return MultiStepNetwork(replace_activations(model, lambda: LIFNeuron(config)), config.time_steps, static_input)
