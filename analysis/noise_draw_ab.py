#!/usr/bin/env python3
"""A/B of how the CPU draws Noise Adaptor's rounding noise: the library's draw (15-bit values cut from
63-bit integer draws, `noiseadaptor.ann.quantizer._uniform`) against `torch.rand_like`, the draw of early
0.1 builds. For each draw and seed: NA QAT (p=2, lr 0.05) from the CIFAR benchmark's float network,
as `benchmarks/cifar10_noise_adaptor.py` runs it (`compare_methods`, same seeding), then the quantized
ANN and its SNN on the same 2,000 spread test images.

    python analysis/noise_draw_ab.py --seeds 10 11 12 13 --epochs 1 --T 4    # ~4 min per run, one thread
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from noiseadaptor import quantizer
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset, spread_subset
from noiseadaptor.io.checkpoint import load_checkpoint, restore
from noiseadaptor.runconfig import RunConfig
from noiseadaptor.study.cell import compare_methods


def float_draw(like: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return torch.rand_like(like).mul_(high - low).add_(low)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float-checkpoint", type=Path, default=Path("runs/cifar10-benchmark/float.pt"))
    ap.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "noiseadaptor" / "cifar10-jpeg")
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--draws", nargs="+", choices=("integer", "rand_like"), default=["integer", "rand_like"])
    args = ap.parse_args()
    splits = get_dataset("cifar10", args.data_dir)
    test = DataLoader(spread_subset(splits.test, 2000), batch_size=500)
    model = create_model("cifar-resnet20", num_classes=10)
    restore(load_checkpoint(args.float_checkpoint), model, rng=False)
    library_draw = quantizer._uniform
    results: dict[str, list[float]] = {}
    try:
        for draw in args.draws:
            quantizer._uniform = library_draw if draw == "integer" else float_draw
            for seed in args.seeds:
                torch.manual_seed(seed)
                train, _ = splits.loaders(128, seed=seed)
                rows, _ = compare_methods(
                    copy.deepcopy(model),
                    train,
                    test,
                    RunConfig(model="cifar-resnet20", p=2, epochs=args.epochs, lr=0.05, seed=seed),
                    ["na"],
                    T=args.T,
                    progress=False,
                    log=lambda *_: None,
                )
                row = rows["na"]
                results.setdefault(draw, []).append(100 * row["ann_accuracy"])
                print(
                    f"{draw:9s} seed {seed}: ANN {100 * row['ann_accuracy']:.2f}%, SNN "
                    + ", ".join(f"T={t} {100 * row['snn_accuracy'][t]:.2f}%" for t in (1, args.T)),
                    flush=True,
                )
    finally:
        quantizer._uniform = library_draw
    for draw, accuracies in results.items():
        print(
            f"{draw:9s} ANN mean {statistics.mean(accuracies):.2f}%, range {min(accuracies):.2f}-"
            f"{max(accuracies):.2f}% ({len(accuracies)} seeds, {args.epochs} epoch(s))"
        )


if __name__ == "__main__":
    main()
