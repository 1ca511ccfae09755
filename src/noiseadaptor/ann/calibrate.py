"""Scale initialisation (paper §5.1): layer by layer, pick each quantizer's s to minimise the L2 gap
between the full-precision activation and the quantized one, each layer seeing the already-quantized
layers before it.

The full-precision network here is the float model with average- in place of max-pooling (what QAT
starts from). The BatchNorm layers after a replaced pool were trained on max-pooled activations, whose
statistics differ (a max is larger than a mean): with their old running statistics a trained VGG-style
network can fall to chance before any QAT, and scales fitted to it are fitted to noise. `init_scales`
therefore re-estimates those layers' statistics on the calibration batch first."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm.auto import tqdm

from ..checks import module_device
from ..hooks import StopForward
from .preparation import batchnorms_after_replaced_pools, quantizers
from .quantizer import QuantReLU


@torch.no_grad()
def init_scales(
    qmodel: nn.Module,
    batch: Tensor | tuple,
    max_elements: int = 1 << 17,
    grid: int = 128,
    seed: int = 0,
    batchnorm: bool = True,
    progress: bool = False,
) -> dict[str, float]:
    """Initialise every quantizer scale of a prepared model from one calibration batch (`progress`: a bar
    over the layers).

    Targets are the activations of the same network with all quantizers off (plain ReLU, avg-pooling
    already in place: the float network QAT starts from). For layer l, layers < l quantize (noise off)
    and l's pre-activation is fitted to its target by a grid search over s refined once around the
    best point. At most `max_elements` randomly chosen positions per layer are used (same positions
    for input and target). With `batchnorm`, the BatchNorm layers after a max-pool that prepare()
    replaced first get their running statistics from this batch (`reestimate_batchnorm`; none in a
    network without max-pooling). Returns {layer name: scale}.
    """
    layers = quantizers(qmodel)
    if not layers:
        raise ValueError("init_scales() expects a model returned by prepare(); this one has no QuantReLU")
    x = _calibration_batch(batch).to(module_device(qmodel))
    after_pools = [bn for _, bn in batchnorms_after_replaced_pools(qmodel)] if batchnorm else []
    if after_pools and len(x) < 2:
        raise ValueError(
            "init_scales re-estimates the BatchNorm statistics after the max-pools prepare() replaced, "
            "on its calibration batch, which needs more than one sample: pass a larger batch, or "
            "batchnorm=False to keep the old statistics"
        )
    reestimate_batchnorm(qmodel, x, after_pools)
    was_training = qmodel.training
    qmodel.eval()
    generator = torch.Generator().manual_seed(seed)
    positions: dict[int, Tensor] = {}

    def sample(i: int, v: Tensor) -> Tensor:
        flat = v.detach().flatten()
        if i not in positions:
            positions[i] = (
                torch.randperm(flat.numel(), generator=generator)[:max_elements].to(flat.device)
                if flat.numel() > max_elements
                else None
            )
        return flat if positions[i] is None else flat[positions[i]]

    targets = _float_targets(qmodel, layers, x, sample)
    scales = {}
    try:
        for i, (name, q) in enumerate(tqdm(layers, desc="init scales", disable=progress is not True, leave=False)):
            pre_activation = _layer_input(qmodel, q, x, lambda _, v, i=i: sample(i, v))
            q.scale.fill_(fit_scale(pre_activation, targets[i], q.p, grid, q.config.rounding))
            q.enabled = True
            scales[name] = q.scale.item()
    finally:
        for _, q in layers:
            q.enabled = True
        qmodel.train(was_training)
    return scales


def _calibration_batch(batch: Tensor | tuple) -> Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, Tensor) or not x.numel():
        raise ValueError("init_scales() needs a non-empty calibration batch (inputs, or (inputs, labels))")
    if not torch.isfinite(x).all():
        raise ValueError("the calibration batch holds NaN or infinite values: the scales would be NaN")
    return x


def _float_targets(qmodel: nn.Module, layers: list, x: Tensor, sample) -> list[Tensor]:
    """Each quantizer's target: its input in the network with every quantizer off, rectified, at the
    positions `sample` draws. Leaves every quantizer off."""
    for _, q in layers:
        q.enabled = False
    targets: list[Tensor] = [None] * len(layers)  # type: ignore[list-item]
    hooks = [q.register_forward_pre_hook(_store(targets, i, sample)) for i, (_, q) in enumerate(layers)]
    try:
        qmodel(x)
    finally:
        for h in hooks:
            h.remove()
    return [t.clamp(min=0) for t in targets]


def _layer_input(qmodel: nn.Module, q: nn.Module, x: Tensor, sample) -> Tensor:
    """Quantizer `q`'s input on batch `x`, at the positions `sample` draws; the network stops there."""
    inputs: list[Tensor] = [None]  # type: ignore[list-item]
    hook = q.register_forward_pre_hook(_store(inputs, 0, sample, stop=True))
    try:
        with contextlib.suppress(StopForward):  # the rest of the network is not needed
            qmodel(x)
    finally:
        hook.remove()
    return inputs[0]


@torch.no_grad()
def reestimate_batchnorm(
    qmodel: nn.Module,
    data: Tensor | Iterable,
    layers: Sequence[nn.Module] | None = None,
    num_batches: int | None = None,
) -> int:
    """Recompute the running mean and variance of `layers` (default: every BatchNorm of the model) as the
    plain average over `data` (a tensor of inputs, or an iterable of batches, the first `num_batches`),
    with the quantizers off and every other layer in eval mode: the statistics of the float network
    QAT starts from. Returns the number of batches used."""
    layers = [m for m in qmodel.modules() if isinstance(m, _BatchNorm)] if layers is None else list(layers)
    if not layers:
        return 0
    was_training, momenta = qmodel.training, [bn.momentum for bn in layers]
    qmodel.eval()
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    try:
        used = _float_passes(qmodel, data, num_batches)
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        qmodel.train(was_training)
    if not used:
        raise ValueError("reestimate_batchnorm() got no batches")
    return used


def _float_passes(qmodel: nn.Module, data: Tensor | Iterable, num_batches: int | None) -> int:
    """Forward passes of the float network (every quantizer off, in the modes the caller set) over `data`, a
    tensor of inputs or an iterable of batches (the first `num_batches`); returns the batches used."""
    batches = [data] if isinstance(data, Tensor) else data
    device = module_device(qmodel)
    enabled = [(q, q.enabled) for _, q in quantizers(qmodel)]
    for q, _ in enabled:
        q.enabled = False
    used = 0
    try:
        for batch in batches:
            if num_batches is not None and used >= num_batches:
                break
            qmodel((batch[0] if isinstance(batch, (tuple, list)) else batch).to(device))
            used += 1
    finally:
        for q, on in enabled:
            q.enabled = on
    return used


@torch.no_grad()
def balance_thresholds(
    qmodel: nn.Module, data: Tensor | Iterable, percentile: float = 99.5, num_batches: int | None = None
) -> dict[str, float]:
    """Weight-threshold balancing in threshold form (Rueckauer et al. 2017, the dual-phase paper's route 2
    to a source ANN): every quantizer's threshold p*s becomes the `percentile`-th percentile of the
    full-precision activation it replaces (the ReLU output, quantizers off), the largest over the
    batches of `data` (a tensor or an iterable of batches, the first `num_batches`), as the dual-phase
    authors' code computes it (99.5). Equivalent to rescaling the weights by the thresholds, which the
    IF neuron's threshold does instead. Returns {layer: threshold}."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    layers = quantizers(qmodel)
    if not layers:
        raise ValueError("balance_thresholds() expects a model returned by prepare(); this one has no QuantReLU")
    highest = [0.0] * len(layers)

    def record(i: int):
        def hook(module, args):
            highest[i] = max(highest[i], _quantile(torch.relu(args[0]).flatten().float(), percentile / 100))

        return hook

    was_training = qmodel.training
    qmodel.eval()
    handles = [q.register_forward_pre_hook(record(i)) for i, (_, q) in enumerate(layers)]
    try:
        used = _float_passes(qmodel, data, num_batches)
    finally:
        for h in handles:
            h.remove()
        qmodel.train(was_training)
    if not used:
        raise ValueError("balance_thresholds() got no batches")
    thresholds = {}
    for (name, q), top in zip(layers, highest):
        q.scale.fill_(top / q.p if top > 0 else 1.0)  # a dead layer: any threshold quantizes it to zero
        thresholds[name] = q.threshold.item()
    return thresholds


def _quantile(a: Tensor, q: float) -> float:
    """torch.quantile(a, q) (linear interpolation) without its 16M-element limit."""
    if not a.numel():
        return 0.0
    position = q * (a.numel() - 1)
    low, frac = int(position), position - int(position)
    lo = a.kthvalue(low + 1).values.item()
    hi = a.kthvalue(min(low + 2, a.numel())).values.item() if frac else lo
    return lo + (hi - lo) * frac


def _store(out: list, i: int, sample, stop: bool = False):
    def hook(module: QuantReLU, args):
        out[i] = sample(i, args[0])
        if stop:
            raise StopForward

    return hook


def fit_scale(v: Tensor, target: Tensor, p: int, grid: int = 128, rounding: bool = True) -> float:
    """argmin_s || s*clip(round(v/s), 0, p) - target ||^2 (without the round if not `rounding`) by a
    grid search over s in (0, max/p], then a second grid around the best point."""
    v, target = v.float(), target.float()
    hi = float(torch.maximum(v.max(), target.max())) / p
    if hi <= 0:  # a dead layer: any scale quantizes it to zero
        return 1.0
    lo_s, hi_s = hi / grid, hi
    for _ in range(2):
        candidates = torch.linspace(lo_s, hi_s, grid, device=v.device)
        errors = torch.cat([_quant_error(v, target, c, p, rounding) for c in candidates.split(32)])
        best = int(errors.argmin())
        step = float(candidates[1] - candidates[0])
        lo_s, hi_s = max(float(candidates[best]) - step, step / grid), float(candidates[best]) + step
    return float(candidates[best])


def _quant_error(v: Tensor, target: Tensor, scales: Tensor, p: int, rounding: bool = True) -> Tensor:
    s = scales[:, None]
    z = v[None] / s
    q = (torch.floor(z + 0.5) if rounding else z).clamp_(0, p) * s
    return (q - target[None]).pow_(2).sum(1)
