"""The paper's comparison as one function: the same float network through prepare -> init_scales ->
QAT -> convert -> simulate once per quantization method."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..ann.calibrate import init_scales
from ..ann.models import create_model
from ..ann.preparation import prepare, quantizers
from ..ann.quantizer import QuantConfig, seed_noise
from ..io.checkpoint import load_checkpoint, restore
from ..methods import get_method, list_methods
from ..runconfig import RunConfig
from ..snn.calibrate import dual_phase_calibrate
from ..snn.conversion import convert
from ..snn.simulation import reported_steps, simulate
from ..training.loop import TrainingDiverged, evaluate, fit

NA_COMPARISON = ("na", "no-noise", "qcfs")  # the Noise Adaptor paper's comparison, `run`'s default


@dataclass(frozen=True)
class Row:
    """One simulation of a trained network: `simulate()` options, after dual-phase Phase II has calibrated the
    SNN for `calibrate_T` steps when that is set (Phase II composes with any converted network)."""

    options: dict = field(default_factory=dict)
    calibrate_T: int | None = None


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
    "scales"}}, {method: trained quantized model}): one `method_cell` per method, one seed (what `run`
    shows; `compare` runs the same cells over seeds). Every method starts from `float_model` with the same
    seed, calibration batch and data order; `simulate_options` go to simulate(). With `checkpoint_dir`, each
    method's training writes `<dir>/<method>-seed<seed>.pt` every epoch and a rerun resumes from it. A method
    whose training diverges gets the row {"diverged": message}."""
    for method in methods:
        quant_config(method, p)  # fail on a bad name before any work
    calibration_batch = next(iter(train_data))
    rows, models = {}, {}
    for method in methods:
        log(f"[{method}] quantization-aware training, p={p}, {epochs} epochs")
        checkpoint = Path(checkpoint_dir) / f"{method}-seed{seed}.pt" if checkpoint_dir is not None else None
        cell, qmodel = method_cell(
            float_model, method, train_data, test_data, p=p, epochs=epochs, lr=lr, weight_decay=weight_decay,
            T=T, seed=seed, device=device, progress=progress, checkpoint=checkpoint,
            calibration_batch=calibration_batch, rows={method: Row(simulate_options or {})},
            config={"method": method, "p": p, "seed": seed},
        )  # fmt: skip
        if "diverged" in cell:  # one method's failure is a result of the comparison, not its end
            log(f"[{method}] diverged: {cell['diverged']}")
            rows[method] = {"diverged": cell["diverged"]}
            continue
        row, last = cell["rows"][method], reported_steps(T)[-1]
        log(f"[{method}] ANN {100 * cell['ann_accuracy']:.2f}%  SNN T={last} {100 * row['snn_accuracy'][last]:.2f}%")
        rows[method] = {"ann_accuracy": cell["ann_accuracy"], **row, **{k: cell[k] for k in ("scales", "history")}}
        models[method] = qmodel
    return rows, models


def method_cell(
    float_model: nn.Module,
    method: str,
    train_data,
    test_data: DataLoader,
    *,
    p: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    T: int | Sequence[int],
    seed: int,
    device: torch.device | str | None = None,
    progress: bool = False,
    checkpoint: str | Path | None = None,
    calibration_batch=None,
    rows: dict[str, Row] | None = None,
    reference: bool = False,
    config: dict | None = None,
) -> tuple[dict, nn.Module | None]:
    """One method from one seed, the unit of `run` (one seed) and `compare` (over seeds): QAT from
    `float_model` (`train_quantized`), the quantized ANN's test accuracy, then one simulation per entry of
    `rows` ({row name: Row}). `reference`: record agreement and per-layer error against the quantized ANN.
    Returns ({"method", "seed", "lr", "quant", "optimizer", "ann_accuracy", "history", "scales", "rows":
    {row: SimulationResult.row()}, "seconds"}, qmodel) ("quant" and "optimizer": the full QuantConfig and
    OptimizerConfig it trained under), or ({..., "diverged": message, "rows": {}}, None) when training diverged."""
    begin = time.time()
    quant, optimizer = quant_config(method, p), get_method(method).optimizer_preset(lr=lr, weight_decay=weight_decay)
    settings = {"method": method, "seed": seed, "lr": lr, "quant": asdict(quant), "optimizer": asdict(optimizer)}
    try:
        qmodel, history = train_quantized(
            float_model, quant, train_data, calibration_batch, epochs, lr, weight_decay, seed, device,
            progress=progress, desc=f"QAT {method} seed {seed}", checkpoint=checkpoint, config=config,
            optimizer=optimizer,
        )  # fmt: skip
    except TrainingDiverged as err:
        return {**settings, "diverged": str(err), "rows": {}}, None
    qmodel.eval()
    seconds = {"qat": time.time() - begin}
    cell = {
        **settings,
        "ann_accuracy": evaluate(qmodel, test_data, device),
        "history": history,
        "scales": {name: q.scale.item() for name, q in quantizers(qmodel)},
        "rows": {},
        "seconds": seconds,
    }
    begin = time.time()
    for name, row in (rows or {method: Row()}).items():
        snn = convert(qmodel)
        if row.calibrate_T is not None:
            dual_phase_calibrate(snn, qmodel, train_data, T=row.calibrate_T, seed=seed)
        result = simulate(snn, test_data, T=T, device=device, progress=progress,
                          reference=qmodel if reference else None, **row.options)  # fmt: skip
        cell["rows"][name] = result.row()
    seconds["simulate"] = time.time() - begin
    return cell, qmodel


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
    `checkpoint` in `fit_options`): the one QAT step of `run` and `compare`. The quantizers' noise draws come
    from their own stream (`seed_noise`), so every method of one seed sees the same batches. Raises
    TrainingDiverged."""
    torch.manual_seed(seed)
    qmodel = prepare(copy.deepcopy(float_model), quant)
    seed_noise(qmodel, seed)
    if device is not None:
        qmodel.to(device)
    init_scales(qmodel, next(iter(train_data)) if calibration_batch is None else calibration_batch)
    history = fit(qmodel, train_data, epochs, lr=lr, weight_decay=weight_decay, device=device, resume=True,
                  **fit_options)  # fmt: skip
    return qmodel, history


def quant_config(method: str, p: int) -> QuantConfig:
    """The QuantConfig of a conversion method at p levels, with the method's other settings at their defaults."""

    info = get_method(method)
    if not info.converts:
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
