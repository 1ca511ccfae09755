"""`noiseadaptor run`: the whole job on the embedded data set (float, QAT per method, convert, simulate)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import time
from pathlib import Path

from ..methods import get_method
from ..runconfig import RunConfig
from ..study.cell import NA_COMPARISON
from ..study.config import StudyConfig, variant_names
from ..study.study import load_cells, run_study
from .common import (
    DESCRIPTION,
    add_study_arguments,
    command_parser,
    common_args,
    correction_args,
    correction_options,
    output_folder,
    print_tables,
    show_progress,
    study_config,
    write_results,
)

RUN_EPILOG = """\
what it does:
  1. trains a float network (default: CIFAR-style ResNet-20) on the data set
     (no download: 'digits' ships with scikit-learn)
  2. for each method: prepare (ReLU -> quantizer, max-pool -> avg-pool), initialise the scales
     layer by layer, quantization-aware training from the float weights
       na        Noise Adaptor: uniform noise U(-0.5, 0.5) added before rounding in training
       no-noise  the same quantizer without noise (the paper's "w/o NA" baseline)
       qcfs      QCFS clip-floor-shift activation with a learned threshold (Bu et al. 2022)
  3. converts each to an SNN and simulates T = 1..--T steps in one run
  4. prints ANN and SNN accuracy per T; writes results.json and accuracy_vs_T.png to --out

It is a study of one seed (see noiseadaptor compare): --out holds its cells, checkpoints and study.json,
and the same settings with --seed S trained by compare give the same cell.

example:
  noiseadaptor run                          # defaults, about two minutes on 2 CPU cores
  noiseadaptor run --p 3 --methods na,no-noise --T 64 --out runs/p3
"""


ONE_SEED = """
One seed: this shows that the pipeline runs and where each method's curve lies, not which method is
better. Between seeds a method's low-T accuracy moves by more than the gaps between methods here (the
documentation's Results, section 1); for a paired comparison with 95% intervals, run these settings
over seeds 0-7:
  noiseadaptor compare --recipe {study} --num-seeds 8 --out {out}"""


RUN_STUDY = StudyConfig(
    run=RunConfig(dataset="digits", model="cifar-resnet20", epochs=30, lr=0.05, batch_size=64, workers=0),
    methods=NA_COMPARISON,
    seeds=(0,),
    float_epochs=30,
    float_lr=0.05,
    T=256,
    test_images=0,
    baseline=NA_COMPARISON[0],
)
"""`run`'s study: one seed, every test image, T up to 256."""


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor run`'s parser, added to the sub-command set `commands`."""
    p = command_parser(
        commands,
        "run",
        help="train, quantize, convert and simulate on the embedded data set",
        description=DESCRIPTION,
        epilog=RUN_EPILOG,
    )
    add_study_arguments(p, RUN_STUDY, ("methods", "float_epochs", "float_lr", "T"))
    correction_args(p)
    p.add_argument("--resume", action="store_true", help="continue a killed run from the checkpoints in --out")
    common_args(p, out="noiseadaptor-run")
    return p


def main(args: argparse.Namespace) -> int:
    config = _study(args)
    out = output_folder(args.out)
    if (out / "study.json").exists() and not args.resume:
        raise ValueError(f"{out} holds a run: add --resume to continue it, or choose another --out")
    start = time.time()
    run_study(config, out, progress=show_progress(args))
    rows = _rows(config, out)
    diverged = [rows[m]["diverged"] for m in config.methods if "diverged" in rows.get(m, {})]
    if len(diverged) == len(config.methods):  # nothing to show: say so, not a table of failures
        raise ValueError(f"every method diverged (first: {diverged[0].split(';')[0]}); lower --lr")
    run = config.run
    banners = {get_method(m).banner(run) for m in config.methods}  # ", p=2", unless a method sets its own p
    shared = banners.pop() if len(banners) == 1 else ""
    print_tables(rows, f"\nTop-1 accuracy (%) on {run.dataset} test, {run.model}{shared}, seed {config.seeds[0]}")
    print(ONE_SEED.format(study=shlex.quote(str(out / "study.json")), out=shlex.quote(f"{out}-seeds")))
    write_results(out, config.to_dict(), rows, start, title=f"{run.model} on {run.dataset}{shared}")
    return 0


def _study(args: argparse.Namespace) -> StudyConfig:
    """`run`'s command line as a one-seed study: --seed its seed, the corrections given one variant row of every
    method (all of them at once, as `evaluate` runs them: 'na+negative+cos4')."""
    corrections = "+".join(variant_names(correction_options(args)))
    variants = (corrections,) if corrections else ()
    methods = study_config(args, RUN_STUDY).methods  # the baseline is the first (run shows no differences)
    defaults = dataclasses.replace(RUN_STUDY, methods=methods, baseline=methods[0], seeds=(args.seed,),
                                   variants=variants, variant_methods=methods)  # fmt: skip
    return study_config(args, defaults)


def _rows(config: StudyConfig, out: Path) -> dict:
    """The table rows of the run's seed: the float network, then each method's rows (a diverged method says so)."""
    record = json.loads((out / "float-network.json").read_text())
    rows = {"float": {"ann_accuracy": record["ann_accuracy"]}}
    cells = {c["method"]: c for c in load_cells(out) if c["seed"] == config.seeds[0]}
    for method in config.methods:
        cell = cells[method]
        if "diverged" in cell:
            rows[method] = {"diverged": cell["diverged"]}
            continue
        for name, row in cell["rows"].items():  # the method's own row, then its variants
            rows[name] = {"ann_accuracy": cell["ann_accuracy"], **_by_step(row)}
    return rows


def _by_step(row: dict) -> dict:
    """A cell's row with its per-T curves keyed by int T again (JSON keeps them as text)."""
    return {k: {int(t): v for t, v in value.items()} if isinstance(value, dict) and all(map(str.isdigit, value))
            else value for k, value in row.items()}  # fmt: skip
