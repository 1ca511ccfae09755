#!/usr/bin/env python3
"""Noise Adaptor vs the same quantizer without noise on CIFAR-10, at the scale of a 2-core CPU.

Trains one float network, then QAT with and without NA (p=2) from that same float network for each
seed, converts both and simulates T = 1..--T on --test-images test images spread evenly over the test
set (the SNN is the expensive part; the image-folder copy is sorted by class, so the first N would hold
only the first classes). Prints a markdown table of ANN accuracy and SNN accuracy per T.

Data: --data-dir with CIFAR-10 in torchvision's layout or as an image-folder tree. Without it, the
JPEG copy in ../shared/datasets/cifar10-jpeg is unpacked once into ~/.cache/noiseadaptor/cifar10-jpeg.
A killed run resumes: the float model and every QAT run checkpoint each epoch under --out.

    python benchmarks/cifar10_noise_adaptor.py --seeds 0 1     # about an hour per seed on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from noiseadaptor import evaluate, fit
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset, spread_subset
from noiseadaptor.io.files import write_json
from noiseadaptor.io.report import TABLE_T, accuracy_table, plot_accuracy
from noiseadaptor.runconfig import RunConfig
from noiseadaptor.study.cell import compare_methods

SHARED_PACK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"


def shared_cifar10() -> Path:
    target = Path.home() / ".cache" / "noiseadaptor" / "cifar10-jpeg"
    if not (target / "test").is_dir():
        script = SHARED_PACK / "to_imagefolder.py"
        if not script.exists():
            sys.exit(f"no --data-dir given and no CIFAR-10 copy at {SHARED_PACK}")
        print(f"unpacking {SHARED_PACK} into {target} (once)")
        subprocess.run([sys.executable, str(script), str(target)], check=True)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--model", default="cifar-resnet20")
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--float-epochs", type=int, default=6)
    ap.add_argument("--float-lr", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=3, help="QAT epochs per method")
    ap.add_argument("--lr", type=float, default=0.05, help="QAT learning rate (paper: 0.05)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", type=Path, default=Path("runs/cifar10-benchmark"))
    args = ap.parse_args()
    start = time.time()

    splits = get_dataset("cifar10", args.data_dir or shared_cifar10())
    torch.manual_seed(0)
    train_data, full_test = splits.loaders(args.batch_size, eval_batch_size=500, seed=0)
    test_data = DataLoader(spread_subset(splits.test, args.test_images), batch_size=500)
    model = create_model(args.model, num_classes=10)
    print(f"float {args.model}: {args.float_epochs} epochs, lr {args.float_lr}")
    fit(
        model,
        train_data,
        args.float_epochs,
        lr=args.float_lr,
        checkpoint=args.out / "float.pt",
        resume=True,
        config={"model": args.model, "seed": 0},
    )
    rows = {"float": {"ann_accuracy": evaluate(model, test_data), "full_test_accuracy": evaluate(model, full_test)}}
    print(f"float ANN {100 * rows['float']['ann_accuracy']:.2f}% ({time.time() - start:.0f} s)")

    for seed in args.seeds:
        torch.manual_seed(seed)
        train_data, _ = splits.loaders(args.batch_size, seed=seed)
        method_rows, _ = compare_methods(
            copy.deepcopy(model),
            train_data,
            test_data,
            RunConfig(model=args.model, p=args.p, epochs=args.epochs, lr=args.lr, seed=seed),
            ["na", "no-noise"],
            T=args.T,
            checkpoint_dir=args.out,
        )
        rows.update({f"{m} (seed {seed})": r for m, r in method_rows.items()})
        print(f"seed {seed} done ({time.time() - start:.0f} s)")

    steps = [t for t in TABLE_T if t <= args.T]
    print(
        f"\nCIFAR-10 (JPEG copy), {args.model}, p={args.p}, float {args.float_epochs} ep, QAT {args.epochs} ep, "
        f"{len(test_data.dataset)} test images spread over the test set; {time.time() - start:.0f} s\n"
    )
    print(accuracy_table(rows, steps))
    write_json(
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "seconds": time.time() - start,
            "torch": torch.__version__,
            "results": rows,
        },
        args.out / "results.json",
    )
    plot_accuracy(
        {m: r for m, r in rows.items() if m != "float"},
        args.out / "accuracy_vs_T.png",
        title=f"CIFAR-10, {args.model}, p={args.p}",
    )


if __name__ == "__main__":
    main()
