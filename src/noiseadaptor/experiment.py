"""The paper's comparison as one function: the same float network through prepare -> init_scales ->
QAT -> convert -> simulate once per quantization method."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from .ann.calibrate import init_scales
from .ann.models import create_model
from .ann.preparation import prepare, quantizers
from .ann.quantizer import QuantConfig
from .io.checkpoint import load_checkpoint, restore
from .methods import get_method, list_methods
from .snn.conversion import convert
from .snn.simulation import simulate, time_steps
from .train import TrainingDiverged, evaluate, fit

NA_COMPARISON = ("na", "no-noise", "qcfs")  # the Noise Adaptor paper's comparison, `run`'s default


def compare_methods(
    float_model: nn.Module,
    train_data: DataLoader,
    test_data: DataLoader,
    methods: Sequence[str] = NA_COMPARISON,
    p: int = 2,
    epochs: int = 30,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    T: int | Sequence[int] = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    simulate_options: dict | None = None,
    log=print,
) -> tuple[dict[str, dict], dict[str, nn.Module]]:
    """Returns ({method: {"ann_accuracy", "snn_accuracy", "firing_rate", "spikes_per_sample", "history",
    "scales"}}, {method: trained quantized model}). Every method starts from `float_model` with the same
    seed, calibration batch and data order; `simulate_options` go to simulate(). With `checkpoint_dir`, each
    method's training writes `<dir>/<method>-seed<seed>.pt` every epoch and a rerun resumes from it. A method
    whose training diverges gets the row {"diverged": message}."""
    configs = {m: quant_config(m, p) for m in methods}  # fail on a bad name before any work
    steps = time_steps(T)
    calibration_batch = next(iter(train_data))
    rows, models = {}, {}
    for method, config in configs.items():
        log(f"[{method}] quantization-aware training, p={p}, {epochs} epochs")
        checkpoint = Path(checkpoint_dir) / f"{method}-seed{seed}.pt" if checkpoint_dir is not None else None
        try:
            qmodel, history = train_quantized(
                float_model, config, train_data, calibration_batch, epochs, lr, weight_decay, seed, device,
                progress=progress, desc=f"QAT {method}", checkpoint=checkpoint,
                config={"method": method, "p": p, "seed": seed},
            )  # fmt: skip
        except TrainingDiverged as err:  # one method's failure is a result of the comparison, not its end
            log(f"[{method}] diverged: {err}")
            rows[method] = {"diverged": str(err)}
            continue
        ann = evaluate(qmodel, test_data, device)
        result = simulate(
            convert(qmodel), test_data, T=steps, device=device, progress=progress, **(simulate_options or {})
        )
        log(f"[{method}] ANN {100 * ann:.2f}%  SNN T={steps[-1]} {100 * result.accuracy[steps[-1]]:.2f}%")
        rows[method] = {
            "ann_accuracy": ann,
            **result.row(),
            "scales": {name: q.scale.item() for name, q in quantizers(qmodel)},
            "history": history,
        }
        models[method] = qmodel
    return rows, models


def train_quantized(
    float_model: nn.Module,
    quant: QuantConfig,
    train_data,
    calibration_batch,
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int,
    device: torch.device | str | None = None,
    **fit_options,
) -> tuple[nn.Module, list[dict]]:
    """The quantized copy of `float_model` with `quant`, its scales initialised on `calibration_batch` (None:
    the first batch of `train_data`, drawn after seeding), trained by `fit` from `seed` (resumed from a
    `checkpoint` in `fit_options`): the one QAT step of `run` and `compare`. Raises TrainingDiverged."""
    torch.manual_seed(seed)
    qmodel = prepare(copy.deepcopy(float_model), quant)
    if device is not None:
        qmodel.to(device)
    init_scales(qmodel, next(iter(train_data)) if calibration_batch is None else calibration_batch)
    history = fit(qmodel, train_data, epochs, lr=lr, weight_decay=weight_decay, device=device, resume=True,
                  **fit_options)  # fmt: skip
    return qmodel, history


def quant_config(method: str, p: int) -> QuantConfig:
    """The QuantConfig of a conversion method at p levels, with the method's other settings at their defaults."""
    from .runconfig import RunConfig

    info = get_method(method)
    if info.family != "conversion":
        raise ValueError(f"{method} is not a quantization method; choose from {', '.join(list_methods('conversion'))}")
    return info.quant(RunConfig(method=method, p=p))


def load_quantized(
    checkpoint, model: str, num_classes: int, in_channels: int, p: int = 2
) -> tuple[nn.Module, str, int]:
    """The quantized network of a QAT checkpoint written by `fit` from Python (train_quantized, a benchmark),
    whose config records method and p but not the architecture: (model, method, p)."""
    state = load_checkpoint(checkpoint)
    method, p = state["config"].get("method", "na"), state["config"].get("p", p)
    qmodel = prepare(create_model(model, num_classes, in_channels), quant_config(method, p))
    restore(state, qmodel, rng=False)
    return qmodel, method, p
