"""Activation quantizers: the Noise Adaptor ReLU and its baselines.

One quantizer serves every method of the paper's comparisons::

    v_hat = s * clip(round(v / s + eps), 0, p)

- Noise Adaptor (Li & Rajendran 2024, Eq. 5-6): eps ~ U(-a/2, a/2) in training, 0 in eval.
- "w/o NA" baseline (Eq. 3): eps = 0 always.
- QCFS (Bu et al. 2022): the clip-floor-shift activation ``lam/p * clip(floor(v*p/lam + 1/2), 0, p)``
  with a learnable threshold ``lam = p*s``. Its forward is the noiseless quantizer; training ``lam``
  by plain autograd equals training ``s`` with the scale gradient multiplied by ``1/p**2``
  (d/dlam = d/ds / p and an SGD step on lam moves s by lr*grad_lam/p), so QCFS is this quantizer
  with ``scale_grad="qcfs"``. Its gradients are those of the authors' code as it ran
  (putshua/SNN_conversion_QCFS ``MyFloor``: a straight-through floor, then a clamp whose gradient
  passes at both bounds): ``gradient_window="rounding"``, see `QuantConfig`.
- Dual-phase Phase I (Wang et al. 2023, paper 002 Eq. 11-13): the QC-ANN activation
  ``theta * g_{theta,T}(x) = theta * clip(round(x*T/theta)/T, 0, 1)`` is this quantizer with p = T levels
  and threshold theta = p*s (``s * clip(round(x/s), 0, p)``), its trainable theta the ``"qcfs"`` scale
  gradient. Its Quant-Noise fine-tuning, ``Q^(x) = x + (Q(x) - x) * M``, is ``noise="bernoulli"``: in
  training, each element is quantized where M = 1 and passes through clipped but unrounded,
  ``s * clip(v/s, 0, p)``, where M = 0, with P(M = 0) = ``quant_noise_p`` (see QuantConfig).

Rounding is round-half-up, ``floor(z + 1/2)``, because the spiking neuron it is converted to fires on
``u >= threshold`` from a half-threshold start: ties go up in both, so a one-layer ANN and SNN agree
exactly at T = p (``torch.round`` would round ties to even and disagree there).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..checks import positive_int, probability

NoiseKind = Literal["uniform", "gaussian", "bernoulli", "none"]
ScaleGrad = Literal["batch", "numel", "lsq", "qcfs", "none"]
SCALE_GRADS = ("batch", "numel", "lsq", "qcfs", "none")
GradientWindow = Literal["clip", "rounding"]


@dataclass(frozen=True)
class QuantConfig:
    """How `prepare` quantizes each ReLU.

    p: quantization upper bound (positive integer); the SNN threshold is p*s.
    noise: training-time noise. "uniform" adds the paper's U(-a/2, a/2) to v/s before rounding;
        "gaussian" adds N(0, a^2/12), the same variance; "bernoulli" is the dual-phase method's
        Quant-Noise (Wang et al. 2023, Eq. 13): a random fraction `quant_noise_p` of the elements
        skips the rounding (output s*clip(v/s, 0, p), the clipped identity), the rest are quantized;
        "none" gives the plain quantizer. Evaluation is always the plain quantizer.
    noise_amplitude: a above (1.0 = the paper's U(-0.5, 0.5)); unused by "bernoulli".
    quant_noise_p: for "bernoulli", the probability that an element passes through UNquantized in a
        training forward, i.e. P(M = 0) in Eq. 13's ``x + (Q(x) - x) * M``. This is the convention of
        the paper's experiments ("the probability of quantization noise p is set as 0.1 ... otherwise,
        no noise") and of the authors' code (Windere/snn-cvt-dual-phase, ``NoisyQC``: mask =
        bernoulli(1 - noise_prob), ``noise_prob`` = 0.1): 0 is the plain quantizer, 1 the clip alone.
        (Eq. 13 itself writes M ~ Bernoulli(p), which read literally is the opposite convention.)
    scale_grad: the factor on the gradient of the learnable scale s, with v the activation tensor of a batch.
        "batch": 1/sqrt(len(v)*p), Algorithm 1 line 14 as it runs in PyTorch, where ``len`` of a tensor is
            its first dimension, the batch size (the Noise Adaptor default).
        "numel": 1/sqrt(numel(v)*p), every element of the batch's activation tensor: 64-128x smaller than
            "batch" on a CIFAR ResNet, so s barely moves (versions before 0.2 used it for Noise Adaptor).
        "lsq": 1/sqrt(N_F*p) with N_F = numel(v)/len(v), the features of one sample (LSQ, Esser et al.
            2020, g = 1/sqrt(N_F Q_P)).
        "qcfs": 1/p**2, which makes training s identical to QCFS training its threshold p*s.
        "none": 1.
    rounding: False gives the clip activation s*clip(v/s, 0, p) = clip(v, 0, theta), theta = p*s, in
        training and evaluation: the dual-phase method's source ANN (no rounding, no noise).
    gradient_window: where the straight-through gradient passes, with z = v/s + eps.
        "clip": 0 < z < p (Noise Adaptor Eq. 7-8: the clip's range); above, d/ds = p and d/dv = 0.
        "rounding": where the rounded value lies in [0, p], both ends included: -1/2 <= z < p + 1/2
        (for an element that skipped the rounding under Bernoulli noise, 0 <= z <= p); above, d/ds = p.
        This is the reference code of QCFS (``MyFloor``) and of dual-phase (``NoisyQC``) as it ran: a
        straight-through round, then a clamp with PyTorch's gradient of its time at the bounds. In
        threshold terms (lam = p*s): d/dv = 1 and d/dlam = (round(z) - z)/p inside, d/dlam = 1 above.
    """

    p: int = 2
    noise: NoiseKind = "uniform"
    noise_amplitude: float = 1.0
    scale_grad: ScaleGrad = "batch"
    quant_noise_p: float = 0.1
    rounding: bool = True
    gradient_window: GradientWindow = "clip"

    def __post_init__(self) -> None:
        positive_int(self.p, "QuantConfig.p (the number of quantization levels above zero, e.g. 2 for CIFAR)")
        if self.noise not in ("uniform", "gaussian", "bernoulli", "none"):
            raise ValueError(
                f"QuantConfig.noise must be 'uniform', 'gaussian', 'bernoulli' or 'none'; got {self.noise!r}"
            )
        if not (isinstance(self.noise_amplitude, (int, float)) and self.noise_amplitude >= 0):
            raise ValueError(f"QuantConfig.noise_amplitude must be a number >= 0; got {self.noise_amplitude!r}")
        probability(self.quant_noise_p, "QuantConfig.quant_noise_p", " (that an element passes through unquantized)")
        if not self.rounding and self.noise != "none":
            raise ValueError(
                f"QuantConfig.rounding=False is the plain clip activation; it takes no noise (got noise={self.noise!r})"
            )
        if self.scale_grad not in SCALE_GRADS:
            raise ValueError(f"QuantConfig.scale_grad must be one of {', '.join(SCALE_GRADS)}; got {self.scale_grad!r}")
        if self.gradient_window not in ("clip", "rounding"):
            raise ValueError(f"QuantConfig.gradient_window must be 'clip' or 'rounding'; got {self.gradient_window!r}")

    # The three methods the paper compares, by name.
    @classmethod
    def noise_adaptor(cls, p: int = 2, **kwargs) -> "QuantConfig":
        return cls(p=p, **kwargs)

    @classmethod
    def no_noise(cls, p: int = 2) -> "QuantConfig":
        return cls(p=p, noise="none")

    @classmethod
    def qcfs(cls, p: int = 2, **kwargs) -> "QuantConfig":
        """QCFS as its authors' code trains it: plain SGD on lam = p*s, the gradient window of ``MyFloor``."""
        return cls(p=p, **{"noise": "none", "scale_grad": "qcfs", "gradient_window": "rounding", **kwargs})

    @classmethod
    def dual_phase(cls, p: int = 4, quant_noise_p: float = 0.1, **kwargs) -> "QuantConfig":
        """Phase I of the dual-phase method (Wang et al. 2023): the QC-ANN ``theta*clip(round(x*T/theta)/T,
        0, 1)`` with p = T levels (give the simulation length as p) and a trainable threshold theta = p*s
        (the "qcfs" scale gradient: plain autograd on theta), fine-tuned with Bernoulli Quant-Noise.

        quant_noise_p: P(an element passes through unquantized) in training; 0.1 is the authors' value for
        CIFAR-100 and ImageNet at every T (CIFAR-10: 0.1-0.2 for T <= 4, 0 above). Phase II is
        `noiseadaptor.snn.calibrate.dual_phase_calibrate` on the converted network. Gradients: the authors'
        ``NoisyQC`` as it ran (``gradient_window="rounding"``)."""
        return cls(
            p=p,
            **{
                "noise": "bernoulli",
                "quant_noise_p": quant_noise_p,
                "scale_grad": "qcfs",
                "gradient_window": "rounding",
                **kwargs,
            },
        )

    @classmethod
    def clip(cls, p: int = 1) -> "QuantConfig":
        """The dual-phase source ANN (Wang et al. 2023, approach 3 of its Implementation Details): the
        rescaled clip ``clip(x, 0, theta)`` with a trainable threshold theta = p*s (plain autograd on
        theta). Its QC-ANN is `requantize(model, QuantConfig.dual_phase(p=T))`, which keeps each theta."""
        return cls(p=p, noise="none", scale_grad="qcfs", rounding=False)


def _uniform(like: Tensor, low: float, high: float, generator: torch.Generator | None = None) -> Tensor:
    """U(low, high) shaped like `like`, from `generator` (None: the default one). In an eager CPU run it is
    made of 15-bit integers, four cut from each 63-bit draw: `uniform_` costs ~2 ns per element on a CPU
    (the largest single cost the quantizer added to a CPU training step), the four-way cut a third of that,
    and a resolution of 2**-15 of the range is far below anything rounding can see (half-precision
    activations get half-precision noise, as from `rand_like`). Elsewhere (CUDA, or traced by
    torch.compile, whose kernels draw their own and take no generator) it is `rand`."""
    if like.device.type != "cpu" or torch.compiler.is_compiling():
        if generator is None or torch.compiler.is_compiling():
            return torch.rand_like(like).mul_(high - low).add_(low)
        return (
            torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device).mul_(high - low).add_(low)
        )
    n = like.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=like.device).random_(generator=generator)  # 63 bits each
    k = bits.view(torch.int16)[:n].bitwise_and_(0x7FFF).view(like.shape)  # 4 x 15 bits
    step = (high - low) / 32768
    return k.to(like.dtype).mul_(step).add_(low + step / 2)  # bin centres: symmetric about the middle


def _noise(like: Tensor, kind: str, amplitude: float, generator: torch.Generator | None = None) -> Tensor:
    if kind == "uniform":
        return _uniform(like, -amplitude / 2, amplitude / 2, generator)
    if generator is None or torch.compiler.is_compiling():
        normal = torch.randn_like(like)
    else:
        normal = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    return normal.mul_(amplitude / math.sqrt(12.0))


class NoiseSource:
    """The random stream of the quantizers' training noise (additive draws and Bernoulli masks), apart
    from the default generator: a method that draws noise then leaves the data order and augmentation of
    its run exactly as those of a method that draws none (so methods trained from one seed are paired
    batch for batch). One generator per device, each started from `seed`; `state_dict` holds them for a
    checkpoint, so that a resumed run draws what an uninterrupted one would."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}
        self._pending: dict[str, Tensor] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.seed)
            if key in self._pending:
                generator.set_state(self._pending.pop(key))
            self._generators[key] = generator
        return self._generators[key]

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "states": {**self._pending, **{k: g.get_state() for k, g in self._generators.items()}},
        }

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self._generators, self._pending = {}, dict(state["states"])

    def __getstate__(self) -> dict:  # deepcopy and pickle: torch.Generator is neither
        return self.state_dict()

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["seed"])
        self._pending = dict(state["states"])


def noise_seed(seed: int) -> int:
    """The noise stream's seed for a run's `seed`: a fixed mix, so that it is not the data's own stream."""
    return (int(seed) * 0x9E3779B97F4A7C15 + 0x6E6F697365) % 2**63


def seed_noise(model: nn.Module, seed: int) -> NoiseSource | None:
    """Give every quantizer of `model` one `NoiseSource` started from `noise_seed(seed)`; returns it (None
    when the model has no quantizer). Without it, quantizers draw from the default generator."""
    found = [m for m in model.modules() if isinstance(m, QuantReLU)]
    if not found:
        return None
    source = NoiseSource(noise_seed(seed))
    for module in found:
        module.noise_source = source
    return source


def _forward(
    v: Tensor,
    scale: Tensor,
    p: int,
    eps: Tensor | None,
    noise: str,
    amplitude: float,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
):
    """Output, z = v/s + eps (noise drawn here from `generator` unless `eps` is given), and the mask of
    quantized elements (None unless some elements pass through: noise "bernoulli", or a given `mask`).

    For "bernoulli", `amplitude` is the pass-through probability and the mask is drawn here unless given;
    elements where the mask is False skip the rounding: ``s * clip(z, 0, p)``."""
    if eps is not None:
        z = v / scale + eps
    elif noise in ("uniform", "gaussian"):
        z = _noise(v, noise, amplitude, generator).addcdiv_(v, scale)  # fewer passes over memory than v/s + noise
    else:
        z = v / scale
    q = (z + 0.5).floor_()
    if mask is None and noise == "bernoulli":
        mask = _uniform(z, 0, 1, generator) >= amplitude  # P(False) = amplitude
    if mask is not None:
        q = torch.where(mask, q, z)
    return q.clamp_(0, p).mul_(scale), z, mask


def _backward(grad_out: Tensor, z: Tensor, p: int, mask: Tensor | None = None, window: str = "clip"):
    """Eq. 7 (pass inside the window) and the per-element factor of Eq. 8, summed: round(z) - z
    inside, p above, 0 below; the window is QuantConfig.gradient_window's ("clip": 0 < z < p;
    "rounding": the rounded value, or z where it skipped the rounding, in [0, p] inclusive). An element
    that passed through unrounded (mask False) has out = s*z = v inside the range: d/ds = 0 there. Masks
    are float compares (a bool mask costs several times more on a CPU); two scratch buffers and dot
    products for the sums, since every fresh tensor of activation size costs page faults on a CPU."""
    if window == "clip":
        level, lower, upper, over = z, torch.gt, torch.lt, torch.ge
    else:  # clamp(round(z), 0, p) with the round straight-through and the clamp's gradient at both bounds
        level = torch.add(z, 0.5).floor_()
        level = level if mask is None else torch.where(mask, level, z)
        lower, upper, over = torch.ge, torch.le, torch.gt
    inside = lower(level, 0, out=torch.empty_like(z))
    scratch = upper(level, p, out=torch.empty_like(z))
    grad_v = grad_out * inside.mul_(scratch)
    error = torch.add(z, 0.5, out=scratch).floor_().sub_(z)
    if mask is not None:
        error.mul_(mask)
    above = over(level, p, out=inside)  # inside is not needed any more
    return grad_v, _dot(grad_v, error) + p * _dot(grad_out, above)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """sum(a * b) without the product tensor (traced by torch.compile, the product fuses into the sum)."""
    if torch.compiler.is_compiling():
        return (a * b).sum()
    return torch.dot(a.reshape(-1), b.reshape(-1))


_fused: dict[str, object] = {}


def _kernels(v: Tensor):
    """`_forward`/`_backward` compiled into one elementwise kernel each (noise or mask drawn in the kernel)
    on CUDA, where the unfused ops cost ~1.5x a ReLU's memory traffic; plain eager elsewhere, or when
    NOISEADAPTOR_FUSED=0, or inside an outer torch.compile (which fuses them itself)."""
    setting = os.environ.get("NOISEADAPTOR_FUSED", "auto")
    fuse = setting == "1" or (setting == "auto" and v.is_cuda)
    if not fuse or torch.compiler.is_compiling():
        return _forward, _backward
    if not _fused:
        _fused.update(forward=torch.compile(_forward, dynamic=True), backward=torch.compile(_backward, dynamic=True))
    return _fused["forward"], _fused["backward"]


class _Quantize(torch.autograd.Function):
    """s * clip(floor(v/s + eps + 1/2), 0, p) with the straight-through gradients of Eq. 7-8; with a mask
    of quantized elements (Bernoulli Quant-Noise), s * clip(v/s, 0, p) where the mask is False.

    Saved: z = v/s + eps, since both gradients are functions of it (noise included, as Eq. 7-8 say), and
    the mask only when there is one (bool, one byte per element).
    """

    @staticmethod
    def forward(
        ctx,
        v: Tensor,
        scale: Tensor,
        eps: Tensor | None,
        p: int,
        grad_factor: float,
        noise: str = "none",
        amplitude: float = 0.0,
        mask: Tensor | None = None,
        window: str = "clip",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        forward, backward = _kernels(v)
        if generator is not None and forward is not _forward and noise != "none":  # a fused kernel draws from
            if noise == "bernoulli":  # the device's default generator: the draw is made here instead
                mask = _uniform(v, 0, 1, generator) >= amplitude
            else:
                eps = _noise(v, noise, amplitude, generator)
            noise = "none"
        out, z, mask = forward(v, scale, p, eps, noise, amplitude, mask, generator)
        if mask is None:
            ctx.save_for_backward(z, scale)
        else:
            ctx.save_for_backward(z, scale, mask)
        ctx.p, ctx.grad_factor, ctx.window, ctx.backward_kernel = p, grad_factor, window, backward
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        z, scale, *mask = ctx.saved_tensors
        grad_v, grad_s = ctx.backward_kernel(grad_out, z, ctx.p, mask[0] if mask else None, ctx.window)
        grad_s = grad_s.reshape(scale.shape) * ctx.grad_factor if ctx.needs_input_grad[1] else None
        return grad_v if ctx.needs_input_grad[0] else None, grad_s, *([None] * 8)


def quantize(
    v: Tensor,
    scale: Tensor,
    p: int,
    eps: Tensor | None = None,
    grad_factor: float = 1.0,
    mask: Tensor | None = None,
    gradient_window: GradientWindow = "clip",
) -> Tensor:
    """Functional quantizer: ``scale * clip(round_half_up(v/scale + eps), 0, p)`` with Eq. 7-8 gradients.

    mask: Eq. 13's M of Bernoulli Quant-Noise, a bool tensor shaped like `v`: True where the element is
    quantized, False where it passes through clipped but unrounded, ``scale * clip(v/scale + eps, 0, p)``
    (gradient 1 to v inside the range and 0 to the scale there). gradient_window: see QuantConfig."""
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=v.device).expand_as(v)
    return _Quantize.apply(v, scale, eps, p, grad_factor, "none", 0.0, mask, gradient_window)


def _grad_scaled(t: Tensor, factor: float) -> Tensor:
    """t in the forward pass, its gradient times `factor` in the backward (LSQ's grad_scale)."""
    return t * factor + (t * (1 - factor)).detach()


class QuantReLU(nn.Module):
    """A ReLU replaced by a learnable-scale quantizer. Training mode adds noise; eval mode does not.

    ``enabled = False`` makes it a plain ReLU; scale initialisation uses that to see full-precision
    activations.
    """

    def __init__(self, config: QuantConfig, scale: float = 1.0):
        super().__init__()
        self.config = config
        self.p = config.p
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.enabled = True
        self.noise_source: NoiseSource | None = None  # set by `seed_noise`; None: the default generator

    @property
    def threshold(self) -> Tensor:
        """The firing threshold of the spiking neuron this becomes: p * s."""
        return self.p * self.scale

    def noise_kind(self) -> str:
        """The noise this call adds: the configured one in training, none in eval."""
        return "none" if not self.training or self.noise_parameter() == 0 else self.config.noise

    def noise_parameter(self) -> float:
        """What the kernel's noise takes: the amplitude a, or the pass-through probability for "bernoulli"."""
        cfg = self.config
        return cfg.quant_noise_p if cfg.noise == "bernoulli" else cfg.noise_amplitude

    def sample_noise(self, v: Tensor) -> Tensor | None:
        """One draw of the additive noise eps that forward adds to v/s (drawn inside the kernel there);
        None when there is none (eval, "none", and "bernoulli", which masks the rounding instead)."""
        kind = self.noise_kind()
        if kind in ("none", "bernoulli"):
            return None
        return _noise(v, kind, self.config.noise_amplitude, self._generator(v))

    def _generator(self, v: Tensor) -> torch.Generator | None:
        return None if self.noise_source is None else self.noise_source.generator(v.device)

    def grad_factor(self, v: Tensor) -> float:
        """The factor on the scale's gradient for the batch activation `v` (QuantConfig.scale_grad)."""
        rule, batch = self.config.scale_grad, (v.shape[0] if v.dim() else 1)
        if rule == "batch":
            return 1.0 / math.sqrt(batch * self.p)
        if rule == "numel":
            return 1.0 / math.sqrt(v.numel() * self.p)
        if rule == "lsq":
            return 1.0 / math.sqrt(v.numel() / batch * self.p)
        if rule == "qcfs":
            return 1.0 / self.p**2
        return 1.0

    def forward(self, v: Tensor) -> Tensor:
        if not self.enabled:
            return torch.relu(v)
        if not self.config.rounding:  # clip(v, 0, p*s): gradient 1 to v inside, p to s above, by autograd
            return torch.minimum(torch.relu(v), _grad_scaled(self.threshold, self.grad_factor(v)))
        return _Quantize.apply(
            v,
            self.scale,
            None,
            self.p,
            self.grad_factor(v),
            self.noise_kind(),
            self.noise_parameter(),
            None,
            self.config.gradient_window,
            self._generator(v) if self.training else None,
        )

    def extra_repr(self) -> str:
        c = self.config
        noise = (
            "none"
            if c.noise == "none"
            else f"bernoulli(pass_through={c.quant_noise_p})"
            if c.noise == "bernoulli"
            else f"{c.noise}(amplitude={c.noise_amplitude})"
        )
        if not c.rounding:
            return f"clip, threshold={self.threshold.item():.4g}, scale_grad={c.scale_grad}"
        return (
            f"p={self.p}, scale={self.scale.item():.4g}, noise={noise}, scale_grad={c.scale_grad}, "
            f"gradient_window={c.gradient_window}"
        )
