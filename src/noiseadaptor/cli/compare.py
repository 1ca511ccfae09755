"""`noiseadaptor compare`: the paired multi-seed study (noiseadaptor.study.study) from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..checks import positive_int
from ..data import DATASETS
from ..io.files import write_json
from ..study.study import StudyConfig, load_cells, plot_study, report_table, run_study, summarize
from .common import (
    add_config_arguments,
    output_folder,
    read_recipe,
    show_progress,
)

COMPARE_DESCRIPTION = """\
Does a method beat its baseline, by how much, at which T? A paired study over seeds: one float network
(trained once), then for every seed each method by QAT from it with the same data order, calibration
batch and seed; each converted and simulated at every T = 1..--T on the same test images. Run-time
variants (negative spikes, COS offset spikes, Phase II) are extra rows of the same trained networks.
Every finished cell is saved: a killed study continues with the same command; --report re-prints."""


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

methods: a registered quantization method (na, no-noise, qcfs, clip, dual-phase), or one with settings in
brackets: QuantConfig fields noise, noise_amplitude, scale_grad, gradient_window, quant_noise_p, rounding,
and scale_decay (true/false: weight decay on the scales), e.g. "na[scale_grad=numel,scale_decay=true]",
"qcfs[noise=uniform]", "qcfs[gradient_window=clip]". Each cell records the full settings it trained under
and is trained again when the study gives it others.
"""


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor compare`'s parser, added to the sub-command set `commands`."""
    p = commands.add_parser(
        "compare",
        allow_abbrev=False,  # a prefix of a flag is an error, not that flag
        help="paired multi-seed study of conversion methods, with 95%% intervals",
        description=COMPARE_DESCRIPTION,
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", type=Path, help="YAML file of study settings (keys: the flags with _ for -)")
    add_config_arguments(p, StudyConfig, {"dataset": DATASETS}, grouped=False)
    p.add_argument("--num-seeds", type=int, help="seeds 0..N-1, instead of --seeds")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="study folder (default: %(default)s)")
    p.add_argument("--report", action="store_true", help="only print the tables and plot from --out's cells")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def study_config(args: argparse.Namespace) -> StudyConfig:
    """The StudyConfig of a compare command line: recipe, then flags. --seeds are the seeds themselves (--seeds 3
    is seed 3); --num-seeds N (recipe: num_seeds) is seeds 0..N-1. --methods, --variants and --method-lr also
    take comma-separated lists."""
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    values = read_recipe(args.recipe) if args.recipe is not None else {}
    unknown = sorted(set(values) - fields - {"num_seeds"})
    if unknown:
        raise ValueError(f"recipe {args.recipe}: unknown keys {unknown}; the keys are compare's flags")
    values.update({k: v for k, v in vars(args).items() if k in fields})
    for key in ("methods", "variants", "variant_methods", "method_lr", "contrasts"):
        if key in values:
            items = [values[key]] if isinstance(values[key], str) else values[key]
            values[key] = tuple(part for item in items for part in _split(str(item)) if part)
    from_recipe, given = values.pop("num_seeds", None), "seeds" in vars(args)
    if (args.num_seeds is not None and given) or (from_recipe is not None and "seeds" in values and not given):
        raise ValueError("give seeds (the seeds themselves) or num_seeds (seeds 0..N-1), not both")
    count = args.num_seeds if args.num_seeds is not None else from_recipe if not given else None
    if count is not None:  # --num-seeds, else the recipe's num_seeds unless --seeds overrides it
        values["seeds"] = tuple(range(positive_int(count, "num_seeds")))
    return StudyConfig(**values)


def _split(text: str) -> list[str]:
    """Comma-separated items, commas inside brackets kept ('na[scale_grad=numel,scale_decay=true],qcfs')."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current]


def main(args: argparse.Namespace) -> int:
    output_folder(args.out)
    if args.report:
        saved = args.out / "study.json"
        if not saved.exists():
            raise ValueError(f"{args.out} holds no study (no study.json): run compare without --report first")
        config = StudyConfig(**json.loads(saved.read_text()))
        summary = summarize(config, load_cells(args.out))
        write_json(summary, args.out / "compare.json")
    else:
        config = study_config(args)
        summary = run_study(config, args.out, progress=show_progress(args))
    print(report_table(summary))
    if summary["rows"]:
        plot_study(summary, args.out / "compare.png")
    print(f"\nwrote {args.out / 'compare.json'}" + (f" and {args.out / 'compare.png'}" if summary["rows"] else ""))
    return 0
