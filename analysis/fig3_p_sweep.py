#!/usr/bin/env python3
"""Paper 000 Fig. 3 / 001 Table 3 at CPU scale: SNN accuracy vs T for several quantization bounds p.

One float network (CIFAR-style ResNet-20 on the embedded digits by default), then Noise Adaptor QAT
and conversion for each p. Prints the accuracy table and writes a plot with one curve per p.

    python analysis/fig3_p_sweep.py --p 1 2 3 4 7 --out docs/figures/fig3_p_sweep.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from noiseadaptor import fit
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.io.files import write_json
from noiseadaptor.io.report import accuracy_table, plot_accuracy
from noiseadaptor.runconfig import RunConfig
from noiseadaptor.study.cell import compare_methods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p", type=int, nargs="+", default=[1, 2, 3, 4, 7])
    ap.add_argument("--model", default="cifar-resnet20")
    ap.add_argument("--float-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/fig3_p_sweep.png"))
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    splits = get_dataset("digits")
    train, test = splits.loaders(64, eval_batch_size=512, seed=args.seed)
    model = create_model(args.model, splits.num_classes, splits.in_channels)
    fit(model, train, args.float_epochs, progress=False)
    rows = {}
    for p in args.p:
        method_rows, _ = compare_methods(
            model,
            train,
            test,
            RunConfig(model=args.model, p=p, epochs=args.epochs, seed=args.seed),
            ["na"],
            T=args.T,
            progress=False,
            simulate_options={"synops": True},
        )
        rows[f"NA p={p}"] = method_rows["na"]
    print(f"\nDigits, {args.model}, Noise Adaptor, seed {args.seed}: accuracy (%) by p")
    print(accuracy_table(rows))
    plot_accuracy(rows, args.out, title=f"{args.model} on digits: SNN accuracy by p")
    write_json({"args": {k: str(v) for k, v in vars(args).items()}, "results": rows}, args.out.with_suffix(".json"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
