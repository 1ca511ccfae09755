"""`noiseadaptor run`: the whole job on the embedded data set (float, QAT per method, convert, simulate)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..ann.models import create_model
from ..data import DATASETS, get_dataset
from ..distributed import init_from_env, is_main
from ..io.files import write_json
from ..methods import list_methods
from ..snn.simulation import reported_steps
from ..study.cell import NA_COMPARISON, compare_methods
from ..training import evaluate, fit
from .common import (
    DESCRIPTION,
    check_positive,
    common_args,
    model_args,
    optim_args,
    output_folder,
    print_tables,
    show_progress,
    simulate_options,
    simulation_args,
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

example:
  noiseadaptor run                          # defaults, about a minute on 2 CPU cores
  noiseadaptor run --p 3 --methods na,no-noise --T 64 --out runs/p3
"""


ONE_SEED = """
One seed: this shows that the pipeline runs and where each method's curve lies, not which method is
better. Between seeds a method's low-T accuracy moves by more than the gaps between methods here
(docs/RESULTS.md section 1); for a paired comparison with 95% intervals, run the same setting over
seeds:
  noiseadaptor compare --dataset {dataset} --model {model} --p {p} --methods {methods} --num-seeds 8"""


def add_parser(commands) -> argparse.ArgumentParser:
    """`noiseadaptor run`'s parser, added to the sub-command set `commands`."""
    p = commands.add_parser(
        "run",
        allow_abbrev=False,  # a prefix of a flag is an error, not that flag
        help="train, quantize, convert and simulate on the embedded data set",
        description=DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", default="digits", choices=DATASETS, help="data set (default: %(default)s)")
    p.add_argument("--data-dir", type=Path, help="data folder for a data set other than digits")
    p.add_argument("--download", action="store_true", help="let torchvision download the data set (needs internet)")
    model_args(p, default="cifar-resnet20")
    p.add_argument(
        "--methods",
        default=",".join(NA_COMPARISON),
        help="comma-separated quantization methods to compare (default: %(default)s)",
    )
    p.add_argument(
        "--p", type=int, default=2, help="quantization upper bound p; SNN threshold = p*s (default: %(default)s)"
    )
    p.add_argument("--float-epochs", type=int, default=30, help="float pre-training epochs (default: %(default)s)")
    optim_args(p, epochs=30, lr=0.05, weight_decay=5e-4, batch_size=64)
    simulation_args(p)
    p.add_argument("--resume", action="store_true", help="continue a killed run from the checkpoints in --out")
    common_args(p, out="noiseadaptor-run")
    return p


def main(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    convertible = list_methods("conversion")
    unknown = [m for m in methods if m not in convertible]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(convertible)}")
    check_positive(args, "p", "T", "batch_size", "float_epochs", "epochs", allow_zero=("float_epochs", "epochs"))
    simulate_options(args)
    checkpoints = _checkpoints(args)
    device = init_from_env(args.device)
    progress, start = show_progress(args), time.time()

    torch.manual_seed(args.seed)
    splits = get_dataset(args.dataset, args.data_dir, download=args.download)
    train_data, test_data = splits.loaders(args.batch_size, eval_batch_size=512, seed=args.seed)
    model = create_model(args.model, num_classes=splits.num_classes, in_channels=splits.in_channels).to(device)
    print(
        f"[float] training {args.model} on {args.dataset} ({len(splits.train)} train / {len(splits.test)} "
        f"test images), {args.float_epochs} epochs, device {device}"
    )
    fit(
        model,
        train_data,
        args.float_epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        device=device,
        progress=progress,
        desc="float",
        checkpoint=checkpoints / "float.pt",
        resume=args.resume,
        config={"model": args.model, "dataset": args.dataset, "seed": args.seed},
    )
    rows = {"float": {"ann_accuracy": evaluate(model, test_data, device)}}
    print(f"[float] ANN {100 * rows['float']['ann_accuracy']:.2f}%")

    method_rows, _ = compare_methods(
        model,
        train_data,
        test_data,
        methods,
        p=args.p,
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        T=reported_steps(args.T),
        seed=args.seed,
        device=device,
        progress=progress,
        checkpoint_dir=checkpoints,
        simulate_options=simulate_options(args),
    )
    rows.update(method_rows)
    print_tables(rows, f"\nTop-1 accuracy (%) on {args.dataset} test, {args.model}, p={args.p}, seed {args.seed}")
    print(ONE_SEED.format(dataset=args.dataset, model=args.model, p=args.p, methods=",".join(methods)))
    write_results(args, rows, device, start, title=f"{args.model} on {args.dataset}, p={args.p}")
    return 0


_FREE_FLAGS = ("resume", "out", "device", "no_progress", "command")
"""`run`'s flags that do not change what it computes: a resumed run may give them anew (its checkpoints'
own settings free on resume are io.checkpoint.FREE_ON_RESUME)."""


def _checkpoints(args: argparse.Namespace) -> Path:
    """--out's checkpoint folder (float.pt and <method>-seed<seed>.pt, every epoch), with the settings they
    were made with (settings.json). A run that holds checkpoints continues only with --resume and the same
    settings: a changed --batch-size or --float-epochs would mix an old network with a new one."""
    checkpoints = output_folder(args.out) / "checkpoints"
    settings = {k: str(v) for k, v in sorted(vars(args).items()) if k not in _FREE_FLAGS and not callable(v)}
    saved = checkpoints / "settings.json"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        if not args.resume:
            raise ValueError(f"{checkpoints} holds a run: add --resume to continue it, or choose another --out")
        before = json.loads(saved.read_text()) if saved.is_file() else settings
        changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
        if changed:
            flags = ", ".join(f"--{k.replace('_', '-')} {before.get(k)} -> {settings.get(k)}" for k in changed)
            raise ValueError(f"--resume: {checkpoints} was made with other settings ({flags}); give the same, or "
                             "choose another --out")  # fmt: skip
    if is_main():
        write_json(settings, saved)
    return checkpoints
