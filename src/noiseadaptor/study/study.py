"""`noiseadaptor compare` and `run`: a study's cells trained, simulated and kept, so that a killed study
continues where it stopped.

One float network is trained once (seed 0) and every cell starts from it. For each seed, every method is
trained by QAT from that float network with the same data order, the same calibration batch and the same
seed (so the seed-to-seed spread of the data order, the noise draws and the calibration cancels in the
per-seed differences between methods), converted, and simulated on the same test images at every T.
Run-time variants (negative spikes, COS or SRP pre-steps, dual-phase Phase II) are extra rows of the
same cell. With exit rules, a held-out part of the training set (no network trains on it) chooses each
network's rule, and its own row reports every rule on the test images. Every cell is written to
OUT/cells/<method>-seed<seed>.json when done; its QAT checkpoints each epoch to OUT/qat/.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..ann.models import create_model
from ..data import DeviceLoader, get_dataset, hold_out, spread_subset
from ..distributed import check_device
from ..io.files import InUse, exclusive, write_json
from ..progress import Progress
from ..runconfig import RunConfig
from ..training.loop import evaluate, fit
from .cell import ExitChoice, Row, method_cell
from .config import StudyConfig, cell_settings, variant_row
from .statistics import summarize, t_interval

_FREE = ("seeds", "methods", "data_dir", "download", "workers", "baseline", "contrasts", "device", "method_lr")
"""Settings a study may change between two commands on one folder: which cells, how data is read, how the
cells are compared (method_lr is per method: each cell records its lr, and one trained at another is
trained again)."""


def run_study(config: StudyConfig, out: Path, progress: Progress = False, log=print) -> dict:
    """Train and simulate every missing cell of the study (resuming killed ones), then summarize it into
    OUT/compare.json. Returns the summary."""
    out = Path(out)
    device = check_device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))  # before any file
    splits = get_dataset(config.run.dataset, config.run.data_dir, download=config.run.download)
    exit = None
    if config.exit:  # the rule is chosen on training images no network has trained on
        splits, held_out = hold_out(splits, config.exit_holdout)
        exit = ExitChoice(config.exit_rules(), DataLoader(held_out, batch_size=500), config.exit_tolerance)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    _check_same_study(config, out)
    facts = {"num_classes": splits.num_classes, "in_channels": splits.in_channels, "image_size": splits.image_size}
    test = DataLoader(spread_subset(splits.test, config.test_images or None), batch_size=500)
    start = time.time()
    float_model, float_name = None, None
    for seed in config.seeds:
        if config.float_name(seed) != float_name:  # one for the study, or one per seed
            float_name = config.float_name(seed)
            with exclusive(out / f"{float_name}-network", wait=True):  # one process trains it, the rest wait
                float_model = _float_network(dataclasses.replace(config.float_run(seed), **facts), splits, test,
                                             out / float_name, device, progress, log)  # fmt: skip
        for method in config.methods:
            path = out / "cells" / f"{method}-seed{seed}.json"
            run = dataclasses.replace(config.cell_run(method, seed), **facts)
            try:
                with exclusive(path):  # several processes may share a study: each cell goes to one of them
                    cell = _missing_cell(config, run, path, splits, float_model, test, exit, device, progress, log)
            except InUse:
                log(f"[{method} seed {seed}] another process is training it: skipped here")
                continue
            if cell is None:
                continue
            if "diverged" in cell:
                log(f"[{method} seed {seed}] diverged: {cell['diverged']}")
                continue
            log(
                f"[{method} seed {seed}] ANN {100 * cell['ann_accuracy']:.2f}%, SNN T={config.T} "
                f"{100 * cell['rows'][method]['snn_accuracy'][str(config.T)]:.2f}% ({time.time() - start:.0f} s)"
            )
    summary = summarize_folder(config, out)
    write_json(summary, out / "compare.json")
    return summary


def summarize_folder(config: StudyConfig, out: Path) -> dict:
    """`summarize` of the cells in `out`, with the float network's record (accuracy, training time) when kept;
    with float_per_seed, each seed's (`per_seed`) and their accuracy's t-interval."""
    summary = summarize(config, load_cells(out))
    records = {s: Path(out) / f"{config.float_name(s)}-network.json" for s in config.seeds}
    records = {s: json.loads(r.read_text()) for s, r in records.items() if r.is_file()}
    if records and not config.float_per_seed:
        summary["float"] = next(iter(records.values()))
    elif records:
        accuracy = t_interval([r["ann_accuracy"] for r in records.values()])
        summary["float"] = {"per_seed": {str(s): r for s, r in records.items()}, "ann_accuracy": accuracy}
    return summary


def _missing_cell(config, run, path, splits, float_model, test, exit, device, progress, log) -> dict | None:
    """Train and simulate the cell of `run` (a method and seed) into `path` unless it is there, trained under
    exactly the settings the study gives it now; returns it, or None when it was there."""
    if path.exists():
        wanted, kept = cell_settings(run), json.loads(path.read_text())
        differ = sorted(k for k in wanted if kept.get(k) != wanted[k])
        if not differ:
            return None
        log(f"[{run.method} seed {run.seed}] its cell was trained under other settings ({', '.join(differ)}): again")
    torch.manual_seed(run.seed)
    train = _train_loader(run, splits, device)
    cell = _cell(config, run, float_model, train, test, exit, path.parent.parent, device, progress)
    write_json(cell, path)
    return cell


def _check_same_study(config: StudyConfig, out: Path) -> None:
    saved = out / "study.json"
    settings = config.to_dict()
    if saved.exists():
        old = json.loads(saved.read_text())
        defaults = StudyConfig().to_dict()  # settings added since it was written
        clash = {k: (old.get(k, defaults[k]), v) for k, v in settings.items()
                 if k not in _FREE and old.get(k, defaults[k]) != v}  # fmt: skip
        if clash:
            detail = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in clash.items())
            raise ValueError(f"{out} holds a study with other settings ({detail}); use another --out")
        # what the folder holds: every seed and method any run on it has asked for (processes share a study)
        settings["seeds"] = sorted(set(old.get("seeds", [])) | set(settings["seeds"]))
        settings["methods"] = list(dict.fromkeys([*old.get("methods", []), *settings["methods"]]))
    write_json(settings, saved)


def _train_loader(run: RunConfig, splits, device: torch.device):
    if run.data_on_device:
        return DeviceLoader.from_dataset(splits.train, run.batch_size, run.dataset, device, train=True, seed=run.seed)
    return splits.loaders(run.batch_size, seed=run.seed, num_workers=run.workers)[0]


def _float_network(run: RunConfig, splits, test, stem: Path, device: torch.device, progress: Progress, log):
    """The float network of `run` (STEM.pt, e.g. OUT/float.pt, resumed), and STEM-network.json: its test
    accuracy and the time of the run that trained it."""
    torch.manual_seed(run.seed)
    train = _train_loader(run, splits, device)
    model = create_model(run.model, run.num_classes, run.in_channels)
    shared = "shared by every cell" if stem.name == "float" else f"the cells of seed {run.seed} start from it"
    log(f"[{stem.name}] {run.model} on {run.dataset}, {run.epochs} epochs ({shared})")
    begin = time.time()
    fit(model, train, run.epochs, lr=run.lr, weight_decay=run.weight_decay, device=device, progress=progress,
        desc=stem.name, checkpoint=stem.with_name(stem.name + ".pt"), resume=True, config=run.to_dict())  # fmt: skip
    record = stem.with_name(stem.name + "-network.json")
    if not record.exists():  # a resume reloads a trained network: the first run's time stands
        seconds = time.time() - begin
        write_json({"ann_accuracy": evaluate(model, test, device), "seconds": seconds}, record)
    return model.eval()


def _cell(config: StudyConfig, run: RunConfig, float_model, train, test, exit: ExitChoice | None, out: Path, device,
          progress: Progress) -> dict:  # fmt: skip
    """One seed of one method (`method_cell`), with its variant rows (and its exit rules): what a study keeps."""
    name = f"{run.method}-seed{run.seed}" + ("" if run.lr == config.run.lr else f"-lr{run.lr:g}")  # its QAT checkpoint
    variants = config.variants if run.method in config.variant_methods else ()
    rows = {run.method: Row(), **{f"{run.method}+{v}": variant_row(v, config.phase2_T) for v in variants}}
    cell, _ = method_cell(  # the seed's first batch calibrates (None): the same for every method
        float_model, run, train, test, T=config.T, device=device, progress=progress,
        checkpoint=out / "qat" / f"{name}.pt", rows=rows, reference=True, exit=exit,
    )  # fmt: skip
    return json.loads(json.dumps(cell))  # keys as JSON has them (T as strings), as a reloaded cell


def load_cells(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "cells").glob("*.json"))]
