"""Command line: ``noiseadaptor run`` does the whole job on the embedded data set."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from .data import DATASETS, get_dataset
from .experiment import METHODS, compare_methods
from .models import create_model, list_models
from .report import accuracy_table, plot_accuracy, write_json
from .simulation import time_steps
from .train import evaluate, fit

DESCRIPTION = """\
Build low-latency spiking neural networks (SNNs) from ordinary deep networks with Noise Adaptor:
train an activation-quantized ANN whose ReLU is s*round(clip(v/s + noise, 0, p)), convert it to
integrate-and-fire neurons (threshold p*s), and measure SNN accuracy at every time step T."""

RUN_EPILOG = """\
what it does:
  1. trains a float network (default: CIFAR-style ResNet-20) on the data set (no download: 'digits' ships with scikit-learn)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="noiseadaptor", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="train, quantize, convert and simulate on the embedded data set",
                              description=DESCRIPTION, epilog=RUN_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--dataset", default="digits", choices=DATASETS, help="data set (default: %(default)s)")
    run.add_argument("--model", default="cifar-resnet20", help=f"network, one of {', '.join(list_models())} "
                     "(default: %(default)s)")
    run.add_argument("--methods", default=",".join(METHODS),
                     help="comma-separated quantization methods to compare (default: %(default)s)")
    run.add_argument("--p", type=int, default=2, help="quantization upper bound p; SNN threshold = p*s "
                     "(default: %(default)s)")
    run.add_argument("--float-epochs", type=int, default=30, help="float pre-training epochs (default: %(default)s)")
    run.add_argument("--epochs", type=int, default=30, help="quantization-aware training epochs per method "
                     "(default: %(default)s)")
    run.add_argument("--lr", type=float, default=0.05, help="SGD learning rate, cosine schedule (default: %(default)s)")
    run.add_argument("--weight-decay", type=float, default=5e-4, help="(default: %(default)s)")
    run.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    run.add_argument("--T", type=int, default=256, help="simulate T = 1..this many steps (default: %(default)s)")
    run.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    run.add_argument("--out", type=Path, default=Path("noiseadaptor-run"),
                     help="folder for results.json and accuracy_vs_T.png (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _run(args)
    except ValueError as err:  # bad input found by the library, before any heavy work
        parser.exit(2, f"noiseadaptor: error: {err}\n")


def _run(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(METHODS)}")
    for flag in ("p", "T", "batch_size"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    for flag in ("float_epochs", "epochs"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    progress = not args.no_progress and sys.stderr.isatty()
    start = time.time()

    torch.manual_seed(args.seed)
    splits = get_dataset(args.dataset)
    train_data, test_data = splits.loaders(args.batch_size, eval_batch_size=512, seed=args.seed)
    model = create_model(args.model, num_classes=splits.num_classes, in_channels=splits.in_channels).to(device)
    print(f"[float] training {args.model} on {args.dataset} ({len(splits.train)} train / {len(splits.test)} "
          f"test images), {args.float_epochs} epochs, device {device}")
    fit(model, train_data, args.float_epochs, lr=args.lr, weight_decay=args.weight_decay, device=device,
        progress=progress, desc="float")
    rows = {"float": {"ann_accuracy": evaluate(model, test_data, device)}}
    print(f"[float] ANN {100 * rows['float']['ann_accuracy']:.2f}%")

    method_rows, _ = compare_methods(model, train_data, test_data, methods, p=args.p, epochs=args.epochs,
                                     lr=args.lr, weight_decay=args.weight_decay, T=time_steps(args.T),
                                     seed=args.seed, device=device, progress=progress)
    rows.update(method_rows)
    print()
    print(f"Top-1 accuracy (%) on {args.dataset} test, {args.model}, p={args.p}, seed {args.seed}")
    print(accuracy_table(rows))
    write_json({"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "device": str(device), "torch": torch.__version__, "seconds": round(time.time() - start, 1),
                "results": rows}, args.out / "results.json")
    plot_accuracy({m: r for m, r in rows.items() if m != "float"}, args.out / "accuracy_vs_T.png",
                  title=f"{args.model} on {args.dataset}, p={args.p}")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'accuracy_vs_T.png'} "
          f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
