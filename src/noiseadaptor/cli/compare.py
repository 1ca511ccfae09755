"""`noiseadaptor compare`: the paired multi-seed study (noiseadaptor.study.study) from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..io.files import write_json
from ..io.report import plot_study, study_table
from ..study.config import StudyConfig
from ..study.study import run_study, summarize_folder
from .common import add_study_arguments, command_parser, output_folder, show_progress, study_config

COMPARE_DESCRIPTION = """\
Does a method beat its baseline, by how much, at which T? A paired study over seeds: one float network
(trained once; one per seed with --float-per-seed), then for every seed each method by QAT from it with
the same data order, calibration batch and seed; each converted and simulated at every T = 1..--T on the
same test images, and paired with the baseline at the same T and at the same energy per image. Run-time
variants (negative spikes, COS offset spikes, Phase II) are extra rows of the same trained networks.
With --exit, every network also chooses a per-image exit rule on held-out training images (kept out
of all training) and is paired with a fixed T at the same mean latency. Every finished cell is saved:
a killed study continues with the same command; --report re-prints."""


COMPARE_EPILOG = """\
output (--out): cells/<method>-seed<seed>.json (one per trained network), compare.json (the statistics:
per row and T the per-seed accuracies, mean and 95% t-interval; per row the paired difference to
--baseline with its 95% t-interval and paired t-test p-value; ANN-SNN agreement; per-layer conversion
error; COS rows count T both ways), compare.png (accuracy, difference and layer error vs T with bands).

examples:
  noiseadaptor compare --dataset digits --model small-cnn --num-seeds 4 --epochs 5 --float-epochs 10 --T 16
  noiseadaptor compare --dataset cifar10 --data-dir DIR --num-seeds 8 --variants negative,cos4 --out runs/c10
  noiseadaptor compare --dataset digits --model small-cnn --methods na "qcfs[noise=uniform]" qcfs \
      --baseline qcfs --contrasts na:qcfs[noise=uniform]
  noiseadaptor compare --dataset digits --model small-cnn --T 32 --exit-holdout 300 \
      --exit confidence=0.9 confidence=0.99 margin=0.5 margin=0.9

methods: a registered quantization method (na, no-noise, qcfs, clip, dual-phase), or one with settings in
brackets: QuantConfig fields p, noise, noise_amplitude, scale_grad, gradient_window, quant_noise_p,
rounding, and scale_decay (true/false: weight decay on the scales), e.g.
"na[scale_grad=numel,scale_decay=true]", "qcfs[noise=uniform]", "qcfs[gradient_window=clip]"; p replaces
--p for that method ("--methods na[p=1] na[p=2] na[p=4] --baseline na[p=2]" is a study over p). Each cell
records the full settings it trained under and is trained again when the study gives it others.
"""


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor compare`'s parser, added to the sub-command set `commands`."""
    p = command_parser(
        commands,
        "compare",
        help="paired multi-seed study of conversion methods, with 95%% intervals",
        description=COMPARE_DESCRIPTION,
        epilog=COMPARE_EPILOG,
    )
    p.add_argument("--recipe", type=Path, help="YAML file of study settings (keys: the flags with _ for -)")
    add_study_arguments(p, StudyConfig(), OWN)
    p.add_argument("--num-seeds", type=int, help="seeds 0..N-1, instead of --seeds")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="study folder (default: %(default)s)")
    p.add_argument("--report", action="store_true", help="only print the tables and plot from --out's cells")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


OWN = tuple(f.name for f in dataclasses.fields(StudyConfig) if f.name != "run")
"""compare's flags beside the run settings a study reads: every field of StudyConfig."""


def main(args: argparse.Namespace) -> int:
    output_folder(args.out)
    if args.report:
        saved = args.out / "study.json"
        if not saved.exists():
            raise ValueError(f"{args.out} holds no study (no study.json): run compare without --report first")
        config = StudyConfig.from_dict(json.loads(saved.read_text()), source=str(saved))
        summary = summarize_folder(config, args.out)
        write_json(summary, args.out / "compare.json")
    else:
        config = study_config(args)
        summary = run_study(config, args.out, progress=show_progress(args))
    print(study_table(summary))
    if summary["rows"]:
        plot_study(summary, args.out / "compare.png")
    print(f"\nwrote {args.out / 'compare.json'}" + (f" and {args.out / 'compare.png'}" if summary["rows"] else ""))
    return 0
