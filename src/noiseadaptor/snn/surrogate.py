"""Surrogate gradients of the spike, one convention for every shape.

A spike is the Heaviside step Theta(x) of x = u - threshold (fires at x >= 0). Its surrogate is a smooth
step H_a(x) whose derivative stands in for Theta's in the backward pass; `a` is its **width**, with the
same meaning for every shape: the slope of H_a at 0 is 1/a.

- "rectangular": H_a(x) = clip(x/a + 1/2, 0, 1), derivative 1/a on |x| < a/2 (ASGL Eq. 7-8, dual-phase
  Eq. 18; both papers call a the width, alpha).
- "dspike": Dspike (Li et al., NeurIPS 2021, the ASGL paper's Table 12), H_a(x) = 1/2 + tanh(b x / a) /
  (2 tanh(b/2)) on |x| <= a/2, 0 below and 1 above: a tanh step of temperature b = DSPIKE_TEMPERATURE
  that rises from 0 to 1 across a support of width a. Here a is the support's width, as Table 12's
  alpha reads (its small widths train worst, its large ones tolerably, the opposite of a temperature),
  and the one exception to the slope convention: the slope at 0 is b / (2 a tanh(b/2)), 1.66 / a at
  b = 3. Neither paper gives Table 12's temperature (Dspike learns it by finite differences); 3 is ours.
- "sigmoid": H_a(x) = 1/2 + 1/2 tanh(2x/a) = sigmoid(4x/a). The ASGL paper writes this shape with a
  steepness, ``1/2 tanh(alpha x) + 1/2`` (Table 5, Appendix A.6: alpha = 2.5), which is width 2/alpha
  (`width_from_steepness`); the ASGL authors' code writes ``sigmoid(x/w)``, which is width 4w.

`spike` is what training runs: Theta(x) forward and dH_a/dx backward (and dH_a/da, for a learned width);
with a mask, ASGL's mixture (Eq. 10) H_a(x) + m * detach(Theta(x) - H_a(x)).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Shape = Literal["rectangular", "sigmoid", "dspike"]
SHAPES = ("rectangular", "sigmoid", "dspike")
DSPIKE_TEMPERATURE = 3.0


def check_shape(shape: str) -> None:
    if shape not in SHAPES:
        raise ValueError(f"surrogate must be one of {', '.join(SHAPES)}; got {shape!r}")


def smooth(x: Tensor, shape: str, width: Tensor | float) -> Tensor:
    """H_a(x), the analog step whose derivative is the surrogate gradient."""
    if shape == "rectangular":
        return torch.clamp(x / width + 0.5, 0.0, 1.0)
    if shape == "dspike":  # beyond the support the tanh passes +-tanh(b/2): the clamp makes it 0 / 1, gradient 0
        b = DSPIKE_TEMPERATURE
        return torch.clamp(0.5 + torch.tanh(b * x / width) / (2.0 * math.tanh(b / 2)), 0.0, 1.0)
    return 0.5 + 0.5 * torch.tanh(2.0 * x / width)


def spike(x: Tensor, shape: str, width: Tensor | float, mask: Tensor | None = None) -> Tensor:
    """Theta(x) forward with the surrogate's gradients; with `mask` (1: the true spike), the ASGL mixture
    H_a + mask * detach(Theta - H_a), whose unmasked elements carry the analog H_a(x) forward."""
    heaviside = (x >= 0).to(x.dtype)
    h = smooth(x, shape, width)
    if mask is None:
        return heaviside + (h - h.detach())  # exactly Theta forward, dH/dx backward
    return h + mask * (heaviside - h).detach()


def width_from_steepness(steepness: float) -> float:
    """The width of the sigmoid shape written as ``1/2 tanh(steepness * x) + 1/2`` (the ASGL paper's alpha)."""
    if not steepness > 0:
        raise ValueError(f"surrogate steepness must be positive, got {steepness!r}")
    return 2.0 / steepness
