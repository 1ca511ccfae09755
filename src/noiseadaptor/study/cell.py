"""The paper's comparison as one function: the same float network through prepare -> init_scales ->
QAT -> convert -> simulate once per quantization method."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..ann.calibrate import init_scales
from ..ann.preparation import prepare, quantizers
from ..ann.quantizer import QuantConfig, seed_noise
from ..methods import list_methods
from ..progress import Progress
from ..runconfig import RunConfig
from ..snn.calibrate import dual_phase_calibrate
from ..snn.conversion import convert
from ..snn.simulation import reported_steps, simulate
from ..snn.stopping import ExitRule, choose_exit
from ..training.loop import TrainingDiverged, evaluate, fit

NA_COMPARISON = ("na", "no-noise", "qcfs")  # the Noise Adaptor paper's comparison, `run`'s default


@dataclass(frozen=True)
class Row:
    """One simulation of a trained network: `simulate()` options, after dual-phase Phase II has calibrated the
    SNN for `calibrate_T` steps when that is set (Phase II composes with any converted network)."""

    options: dict = field(default_factory=dict)
    calibrate_T: int | None = None


@dataclass(frozen=True)
class ExitChoice:
    """Per-image early exit in a cell's own row: every rule of `rules` is read on the `held_out` training
    images at the cell's largest T, the one with the smallest mean T whose accuracy is within `tolerance`
    of the fixed T's is chosen there (`choose_exit`), and the test simulation reports them all."""

    rules: tuple[ExitRule, ...]
    held_out: DataLoader
    tolerance: float = 0.005


def compare_methods(
    float_model: nn.Module,
    train_data: DataLoader,
    test_data: DataLoader,
    run: RunConfig,
    methods: Sequence[str] = NA_COMPARISON,
    T: int | Sequence[int] = 256,
    device: torch.device | str | None = None,
    progress: Progress = True,
    checkpoint_dir: str | Path | None = None,
    simulate_options: dict | None = None,
    log=print,
) -> tuple[dict[str, dict], dict[str, nn.Module]]:
    """Returns ({method: {"ann_accuracy", "snn_accuracy", "firing_rate", "spikes_per_sample", "history",
    "scales"}}, {method: trained quantized model}): one `method_cell` per method of `run` (its seed, p,
    epochs, lr, weight decay), every method from `float_model` with one calibration batch (the next batch
    of `train_data`) and one loader, the path of the benchmark and analysis scripts. `simulate_options` go
    to simulate(). With `checkpoint_dir`, each method's training writes `<dir>/<method>-seed<seed>.pt`
    every epoch and a rerun resumes from it. A method whose training diverges gets the row {"diverged": message}."""
    cells = {m: dataclasses.replace(run, method=m) for m in methods}
    for cell_run in cells.values():
        _quant(cell_run)  # fail on a bad name before any work
    calibration_batch = next(iter(train_data))
    rows, models = {}, {}
    for method, cell_run in cells.items():
        log(f"[{method}] quantization-aware training, p={cell_run.p}, {run.epochs} epochs")
        checkpoint = Path(checkpoint_dir) / f"{method}-seed{run.seed}.pt" if checkpoint_dir is not None else None
        cell, qmodel = method_cell(
            float_model, cell_run, train_data, test_data, T=T, device=device, progress=progress,
            checkpoint=checkpoint, calibration_batch=calibration_batch, rows={method: Row(simulate_options or {})},
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
    run: RunConfig,
    train_data,
    test_data: DataLoader,
    *,
    T: int | Sequence[int],
    device: torch.device | str | None = None,
    progress: Progress = False,
    checkpoint: str | Path | None = None,
    calibration_batch=None,
    rows: dict[str, Row] | None = None,
    reference: bool = False,
    exit: ExitChoice | None = None,
) -> tuple[dict, nn.Module | None]:
    """One method from one seed, the unit of `run` and `compare`: QAT of `run` (its method, p, seed, epochs,
    lr, weight decay) from `float_model` (`train_quantized`; the checkpoint records `run`), the quantized
    ANN's test accuracy, then one simulation per entry of `rows` ({row name: Row}; default: the method's
    own, plain), counting synaptic operations. `reference`: record agreement and per-layer error against
    the quantized ANN. `exit`: the method's own row reads its exit rules too, and records the one chosen
    on held-out training images ("exit_choice"). Returns ({"method", "seed", "lr", "quant", "optimizer",
    "ann_accuracy", "history", "scales", "rows": {row: SimulationResult.row()}, "seconds"}, qmodel) ("quant"
    and "optimizer": the full QuantConfig and OptimizerConfig it trained under), or ({..., "diverged":
    message, "rows": {}}, None) when training diverged."""
    begin = time.time()
    quant, optimizer = _quant(run), run.method_info.optimizer(run)
    settings = {"method": run.method, "seed": run.seed, "lr": run.lr, "quant": asdict(quant),
                "optimizer": asdict(optimizer)}  # fmt: skip
    try:
        qmodel, history = train_quantized(
            float_model, quant, train_data, calibration_batch, run.epochs, run.lr, run.weight_decay, run.seed,
            device, progress=progress, desc=f"QAT {run.method} seed {run.seed}", checkpoint=checkpoint,
            config=run.to_dict(), optimizer=optimizer,
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
    for name, row in (rows or {run.method: Row()}).items():
        snn = convert(qmodel)
        if row.calibrate_T is not None:
            dual_phase_calibrate(snn, qmodel, train_data, T=row.calibrate_T, seed=run.seed)
        options = {"synops": True, **row.options}
        choice = None
        if exit is not None and name == run.method:
            choice = choose_on_held_out(snn, exit, T, device)
            options["exit"] = exit.rules
        result = simulate(snn, test_data, T=T, device=device, progress=progress,
                          reference=qmodel if reference else None, **options)  # fmt: skip
        cell["rows"][name] = result.row() if choice is None else {**result.row(), "exit_choice": choice}
    seconds["simulate"] = time.time() - begin
    return cell, qmodel


def choose_on_held_out(snn, exit: ExitChoice, T: int | Sequence[int], device=None) -> dict:
    """The rule `exit` chooses on its held-out training images at the largest of `T`: {"rule" (its label),
    "tolerance", "images", "accuracy_at_T" (the fixed T's there), "accuracy", "mean_T" (the rule's there),
    "exits" (every rule's row there)}."""
    last = reported_steps(T)[-1]
    held = simulate(snn, exit.held_out, T=[last], device=device, progress=False, exit=exit.rules)
    chosen = choose_exit(held.exits, reference=held.accuracy[last], max_drop=exit.tolerance)
    return {"rule": chosen.rule.label, "tolerance": exit.tolerance, "images": held.num_samples,
            "accuracy_at_T": held.accuracy[last], "accuracy": chosen.accuracy, "mean_T": chosen.mean_T,
            "exits": [e.row() for e in held.exits]}  # fmt: skip


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


def _quant(run: RunConfig) -> QuantConfig:
    """The QuantConfig of `run`, whose method must be a conversion method."""
    if not run.method_info.converts:
        raise ValueError(
            f"{run.method} is not a quantization method; choose from {', '.join(list_methods('conversion'))}"
        )
    return run.method_info.quant(run)
