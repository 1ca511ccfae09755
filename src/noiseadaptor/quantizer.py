"""Activation quantizers: the Noise Adaptor ReLU and its baselines.

One quantizer serves every method of the paper's comparisons::

    v_hat = s * clip(round(v / s + eps), 0, p)

- Noise Adaptor (Li & Rajendran 2024, Eq. 5-6): eps ~ U(-a/2, a/2) in training, 0 in eval.
- "w/o NA" baseline (Eq. 3): eps = 0 always.
- QCFS (Bu et al. 2022): the clip-floor-shift activation ``lam/p * clip(floor(v*p/lam + 1/2), 0, p)``
  with a learnable threshold ``lam = p*s``. Its forward is the noiseless quantizer; training ``lam``
  by plain autograd equals training ``s`` with the scale gradient multiplied by ``1/p**2``
  (d/dlam = d/ds / p and an SGD step on lam moves s by lr*grad_lam/p), so QCFS is this quantizer
  with ``scale_grad="qcfs"``.

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

NoiseKind = Literal["uniform", "gaussian", "none"]
ScaleGrad = Literal["algorithm1", "qcfs", "none"]


@dataclass(frozen=True)
class QuantConfig:
    """How `prepare` quantizes each ReLU.

    p: quantization upper bound (positive integer); the SNN threshold is p*s.
    noise: training-time noise added to v/s before rounding. "uniform" is the paper's U(-a/2, a/2);
        "gaussian" is N(0, a^2/12), the same variance; "none" gives the plain quantizer.
    noise_amplitude: a above (1.0 = the paper's U(-0.5, 0.5)).
    scale_grad: factor on the gradient of the learnable scale s.
        "algorithm1": 1/sqrt(numel(v)*p), the paper's Algorithm 1 line 14 (LSQ-style); numel counts the
        whole activation tensor of the batch, as the issue of this library fixes it.
        "qcfs": 1/p**2, which makes training s identical to QCFS training its threshold p*s.
        "none": 1.
    """

    p: int = 2
    noise: NoiseKind = "uniform"
    noise_amplitude: float = 1.0
    scale_grad: ScaleGrad = "algorithm1"

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, int) or self.p <= 0:
            raise ValueError(f"QuantConfig.p must be a positive integer (the number of quantization levels "
                             f"above zero, e.g. 2 for CIFAR, 3 for ImageNet); got {self.p!r}")
        if self.noise not in ("uniform", "gaussian", "none"):
            raise ValueError(f"QuantConfig.noise must be 'uniform', 'gaussian' or 'none'; got {self.noise!r}")
        if not (isinstance(self.noise_amplitude, (int, float)) and self.noise_amplitude >= 0):
            raise ValueError(f"QuantConfig.noise_amplitude must be a number >= 0; got {self.noise_amplitude!r}")
        if self.scale_grad not in ("algorithm1", "qcfs", "none"):
            raise ValueError(f"QuantConfig.scale_grad must be 'algorithm1', 'qcfs' or 'none'; got {self.scale_grad!r}")

    # The three methods the paper compares, by name.
    @classmethod
    def noise_adaptor(cls, p: int = 2, **kwargs) -> "QuantConfig":
        return cls(p=p, **kwargs)

    @classmethod
    def no_noise(cls, p: int = 2) -> "QuantConfig":
        return cls(p=p, noise="none")

    @classmethod
    def qcfs(cls, p: int = 2) -> "QuantConfig":
        return cls(p=p, noise="none", scale_grad="qcfs")

    @classmethod
    def from_method(cls, method: str, p: int = 2) -> "QuantConfig":
        """`method` as the CLI names it: "na", "no-noise" or "qcfs"."""
        factories = {"na": cls.noise_adaptor, "no-noise": cls.no_noise, "qcfs": cls.qcfs}
        if method not in factories:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(factories)}")
        return factories[method](p=p)


def _noise(like: Tensor, kind: str, amplitude: float) -> Tensor:
    if kind == "uniform":
        return (torch.rand_like(like) - 0.5) * amplitude
    return torch.randn_like(like) * (amplitude / math.sqrt(12.0))


def _forward(v: Tensor, scale: Tensor, p: int, eps: Tensor | None, noise: str, amplitude: float):
    """Output and z = v/s + eps (noise drawn here unless `eps` is given)."""
    z = v / scale
    if eps is not None:
        z = z + eps
    elif noise != "none":
        z = z + _noise(z, noise, amplitude)
    return torch.floor(z + 0.5).clamp(0, p) * scale, z


def _backward(grad_out: Tensor, z: Tensor, p: int):
    """Eq. 7 (pass inside the clip range) and the per-element factor of Eq. 8, summed."""
    inside = (z > 0) & (z < p)
    dv_ds = torch.where(inside, torch.floor(z + 0.5) - z, (z >= p).to(z.dtype) * p)  # 0 below, p above
    return grad_out * inside, (grad_out * dv_ds).sum()


_fused: dict[str, object] = {}


def _kernels(v: Tensor):
    """`_forward`/`_backward` compiled into one elementwise kernel each (noise drawn in the kernel) on
    CUDA, where the unfused ops cost ~1.5x a ReLU's memory traffic; plain eager elsewhere, or when
    NOISEADAPTOR_FUSED=0, or inside an outer torch.compile (which fuses them itself)."""
    setting = os.environ.get("NOISEADAPTOR_FUSED", "auto")
    fuse = setting == "1" or (setting == "auto" and v.is_cuda)
    if not fuse or torch.compiler.is_compiling():
        return _forward, _backward
    if not _fused:
        _fused.update(forward=torch.compile(_forward, dynamic=True), backward=torch.compile(_backward, dynamic=True))
    return _fused["forward"], _fused["backward"]


class _Quantize(torch.autograd.Function):
    """s * clip(floor(v/s + eps + 1/2), 0, p) with the straight-through gradients of Eq. 7-8.

    Only z = v/s + eps is saved: both gradients are functions of it (noise included, as Eq. 7-8 say).
    """

    @staticmethod
    def forward(ctx, v: Tensor, scale: Tensor, eps: Tensor | None, p: int, grad_factor: float,
                noise: str = "none", amplitude: float = 0.0) -> Tensor:
        forward, backward = _kernels(v)
        out, z = forward(v, scale, p, eps, noise, amplitude)
        ctx.save_for_backward(z, scale)
        ctx.p, ctx.grad_factor, ctx.backward_kernel = p, grad_factor, backward
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        z, scale = ctx.saved_tensors
        grad_v, grad_s = ctx.backward_kernel(grad_out, z, ctx.p)
        grad_s = grad_s.reshape(scale.shape) * ctx.grad_factor if ctx.needs_input_grad[1] else None
        return grad_v if ctx.needs_input_grad[0] else None, grad_s, None, None, None, None, None


def quantize(v: Tensor, scale: Tensor, p: int, eps: Tensor | None = None, grad_factor: float = 1.0) -> Tensor:
    """Functional quantizer: ``scale * clip(round_half_up(v/scale + eps), 0, p)`` with Eq. 7-8 gradients."""
    return _Quantize.apply(v, scale, eps, p, grad_factor)


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

    @property
    def threshold(self) -> Tensor:
        """The firing threshold of the spiking neuron this becomes: p * s."""
        return self.p * self.scale

    def noise_kind(self) -> str:
        """The noise this call adds: the configured one in training, none in eval."""
        cfg = self.config
        return "none" if not self.training or cfg.noise_amplitude == 0 else cfg.noise

    def sample_noise(self, v: Tensor) -> Tensor | None:
        """One draw of the noise eps that forward adds to v/s (drawn inside the kernel there)."""
        kind = self.noise_kind()
        return None if kind == "none" else _noise(v, kind, self.config.noise_amplitude)

    def grad_factor(self, v: Tensor) -> float:
        if self.config.scale_grad == "algorithm1":
            return 1.0 / math.sqrt(v.numel() * self.p)
        if self.config.scale_grad == "qcfs":
            return 1.0 / self.p**2
        return 1.0

    def forward(self, v: Tensor) -> Tensor:
        if not self.enabled:
            return torch.relu(v)
        return _Quantize.apply(v, self.scale, None, self.p, self.grad_factor(v), self.noise_kind(),
                               self.config.noise_amplitude)

    def extra_repr(self) -> str:
        c = self.config
        noise = "none" if c.noise == "none" else f"{c.noise}(amplitude={c.noise_amplitude})"
        return f"p={self.p}, scale={self.scale.item():.4g}, noise={noise}, scale_grad={c.scale_grad}"
